"""The Brain of ``train_dann.py``: speaker loss on source, domain losses on both domains."""

import gc

import speechbrain as sb
import torch
from speechbrain.core import INTRA_EPOCH_CKPT_FLAG
from speechbrain.utils.distributed import ddp_broadcast
from speechbrain.utils.logger import get_logger
from speechbrain.utils.optimizers import rm_vector_weight_decay
from torch.nn.parallel import DistributedDataParallel

from local.data.dataio import STEP_STREAM, process_group, random_seed
from local.embedding import compute_embeddings, embeddable_ids, embedded_in, none_embeddable
from local.errors import checked_on_every_process, checked_on_main, fail
from local.model.adversaries import DomainItems
from local.model.augmentation import DataPositions, augmented_pair
from local.model.distributed import buffers_of_main, process_share, unwrapped, wrap_in_ddp
from local.model.domain_branch import LayerOutputTap
from local.model.epoch_statistics import EpochStatistics
from local.model.pseudo_labels import check_neighbours
from local.model.train_log import TrainLogLength

logger = get_logger(__name__)
# Relies on speechbrain 1.1.2's Brain internals (tests/unit/test_speechbrain_internals.py):
# _fit_train counts `step` before fit_batch and resets `step` and `avg_train_loss` only after
# on_stage_end, _save checkpoints both, check_loss_isfinite only counts a non-finite loss
# until its patience runs out, _wrap_distributed wraps the modules,
# _should_save_intra_epoch_ckpt decides after each step whether to save inside the epoch, and
# _train_loader_specifics gives the training loader its DDP sampler.
SPEECHBRAIN_VERSION = "1.1.2"


class DANNBrain(sb.Brain):
    """Speaker embedding training against a domain adversary.

    Each training batch is a ``(source, target)`` pair of PaddedBatch objects
    (:class:`local.data.dataio.PairedDataset`), embedded in one forward pass.
    The hparams file builds three roles; this class does not know which
    variant of each it holds:

    ``speaker_head`` (:mod:`local.model.speaker_heads`), ``domain_adversary``
    (:mod:`local.model.adversaries`, against ``domain_discriminator``) and
    ``alignment_losses`` (:mod:`local.model.alignment`), the last two on
    ``adv_schedule``. With ``pseudo_label_epochs``, ``target_utterances`` are
    clustered into pseudo-speakers (:mod:`local.model.pseudo_labels`). Target
    speaker labels never train the default recipe: the pipeline provides only
    ``id`` and ``sig``, and a clustering reads the target manifest's ``spk_id``,
    where it has one, only to log its agreement with it (or, with
    ``pseudo_oracle``, to take it as the labels of a ceiling run).

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.Brain``.
    target_utterances : speechbrain.dataio.dataset.DynamicItemDataset
        Whole target training utterances, for the pseudo-labels.
    """

    def __init__(self, *args, target_utterances=None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.debug and not self.debug_persistently and self.checkpointer is not None:
            # SpeechBrain's --debug gives each process a temporary checkpoint
            # folder of its own. Under DDP the main process would then find,
            # at the second epoch's save_and_keep_only, a checkpoint to delete
            # that the others do not have, and wait for them at another
            # collective than theirs, for ever: every process takes its folder.
            self.checkpointer.checkpoints_dir = ddp_broadcast(self.checkpointer.checkpoints_dir)
        self.target_utterances = target_utterances
        pseudo = self.hparams.pseudo_labels
        clusters = any(e <= self.hparams.number_of_epochs for e in pseudo.epochs)
        if clusters and target_utterances is not None:
            # Before any training: only the utterances embedded whole are labelled, by
            # the oracle too, which builds no neighbour graph.
            clustered = self.clustered_ids()
            if not pseudo.oracle:
                check_neighbours(pseudo.settings["neighbours"], len(clustered))
        self.adversary = self.hparams.domain_adversary
        # What the discriminator's own updates read: the items of each batch of the
        # optimisers' step, up to --grad_accumulation_factor of them.
        self.domain_items = []
        self.stats = EpochStatistics()
        self.augmentation_data = DataPositions(self.hparams.wav_augment)
        self.train_log = TrainLogLength(self.hparams.train_log)
        if self.checkpointer is not None:  # optional: older checkpoints have none of these
            self.checkpointer.add_recoverable("epoch_statistics", self.stats, optional_load=True)
            self.checkpointer.add_recoverable("train_log", self.train_log, optional_load=True)
            if self.hparams.augment:
                self.checkpointer.add_recoverable("augmentation_data", self.augmentation_data,
                                                  optional_load=True)
        self.adv_tap = self.hparams.adv_layer and LayerOutputTap(
            self.modules.embedding_model, self.hparams.adv_layer)

    def _wrap_distributed(self):
        # A private hook: Brain's DDP wrapping needs CUDA (SyncBatchNorm).
        if self.distributed_launch and str(self.device).startswith("cpu"):
            return wrap_in_ddp(self.modules, self.find_unused_parameters)
        return super()._wrap_distributed()

    def _train_loader_specifics(self, dataset, loader_kwargs):
        # A private hook. A batch sampler given (the GE2E head's speaker batches)
        # is this process's share already (PairedDataset.process_batches): in DDP,
        # SpeechBrain's would deal its batches out again, and hand a process of
        # one batch that batch's indices as batches.
        if "batch_sampler" in loader_kwargs:
            return loader_kwargs
        return super()._train_loader_specifics(dataset, loader_kwargs)

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        # A checkpoint holds no accumulated gradients: one saved between the
        # optimisers' steps would resume without them, so it waits for the next.
        if self.step % self.grad_accumulation_factor:
            return False
        return super()._should_save_intra_epoch_ckpt(last_ckpt_time, steps_since_ckpt)

    def init_optimizers(self):
        """Optimisers of the discriminator, of the SSL model when fine-tuned, and of the rest.

        The fine-tuned SSL model takes a much smaller learning rate, as in
        SpeechBrain's wav2vec2 recipes. Brain's ``optimizers_step`` steps the
        discriminator's with the others only when it learns from the encoder's
        loss (gradient reversal); its own updates are :meth:`train_discriminator`'s.
        With ``--remove_vector_weight_decay``, as in Brain, each optimiser
        takes its vectors (biases, norms) and scalars (GE2E's scale and bias)
        without weight decay.
        """
        ssl = getattr(unwrapped(self.modules.frontend), "ssl", None)
        ssl_params = [p for p in ssl.parameters() if p.requires_grad] if ssl else []
        disc_params = list(self.modules.domain_discriminator.parameters())
        own = {id(p) for p in ssl_params + disc_params}
        self.optimizer = self.opt_class(
            self._parameter_groups([p for p in self.modules.parameters() if id(p) not in own]))
        self.disc_optimizer = self.hparams.disc_opt_class(self._parameter_groups(disc_params))
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.adversary.joint:
            self.optimizers_dict["disc_opt_class"] = self.disc_optimizer
        recoverables = {"optimizer": self.optimizer, "disc_optimizer": self.disc_optimizer}
        if ssl_params:
            self.ssl_optimizer = self.hparams.ssl_opt_class(self._parameter_groups(ssl_params))
            self.optimizers_dict["ssl_opt_class"] = self.ssl_optimizer
            recoverables["ssl_optimizer"] = self.ssl_optimizer
        if self.checkpointer is not None:
            for name, optimizer in recoverables.items():
                self.checkpointer.add_recoverable(name, optimizer)

    def _parameter_groups(self, params):
        """``params``, or with ``--remove_vector_weight_decay`` SpeechBrain's groups of them.

        SpeechBrain's group without weight decay takes the vectors alone
        (one dimension); the scalars join it, as a bias of one element is no
        more a weight to shrink than a bias vector is.
        """
        if not self.remove_vector_weight_decay:
            return params
        no_decay, decay = rm_vector_weight_decay(
            torch.nn.ParameterList(p for p in params if p.dim()))
        no_decay["params"] += [p for p in params if not p.dim() and p.requires_grad]
        return [no_decay, decay]

    def optimizers_step(self):
        """Brain's step, with each optimiser's gradients clipped over all its parameter groups.

        Brain clips only an optimiser's first group (``param_groups[0]``): with
        ``--remove_vector_weight_decay`` that is the vectors' group, and the
        weight matrices would go unclipped. Written out because the clip sits
        inside Brain's method, between the scaler's unscaling and the step.
        A ``--max_grad_norm`` of 0 or below disables the clip, as SpeechBrain's
        ``--help`` says of a negative one: torch would scale the gradients by
        it, reversing them (a negative norm) or zeroing them (0).
        """
        optimizers = self.freeze_optimizers(self.optimizers_dict)
        for optimizer in optimizers.values():
            self.scaler.unscale_(optimizer)
            if self.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for group in optimizer.param_groups for p in group["params"]],
                    self.max_grad_norm)
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        for optimizer in optimizers.values():
            self.scaler.step(optimizer)
        self.scaler.update()
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def on_fit_start(self):
        """Brain's start (modules wrapped, optimisers built, checkpoint restored), then the
        speaker head wrapped anew, since a restored checkpoint may have grown its classifier,
        and the training log as the checkpoint left it (:meth:`resume_log`)."""
        super().on_fit_start()
        self.rewrap_speaker_head()
        checked_on_main(self.resume_log)

    def resume_log(self):
        """Log which checkpoint the run resumes from, and where in its training; drop from
        the training log the lines logged after that checkpoint, which the run logs again
        (all of them, for a run that starts anew)."""
        checkpoint = self.checkpointer.find_checkpoint()
        if checkpoint is not None:
            counter = self.hparams.epoch_counter
            if checkpoint.meta.get(INTRA_EPOCH_CKPT_FLAG):
                where = f"saved after step {self.step} of epoch {counter.current + 1}"
            else:
                where = f"saved at the end of epoch {counter.current} of {counter.limit}"
            logger.info("Resuming the run from the checkpoint %s, %s", checkpoint.path, where)
        self.train_log.rewind(resumed=checkpoint is not None)

    def rewrap_speaker_head(self):
        """Wrap the speaker head in a new DDP wrapper, which takes its current parameter sizes.

        DDP keeps the sizes of the parameters it was built with, and the
        classifier grows a row per new pseudo-speaker. The old wrapper goes
        first: it holds the parameters' gradient accumulators, made for the old sizes.
        """
        head = self.modules.speaker_head
        if isinstance(head, DistributedDataParallel):
            module, device_ids = head.module, head.device_ids
            self.modules.speaker_head = module
            del head
            gc.collect()
            self.modules.speaker_head = DistributedDataParallel(
                module, device_ids=device_ids, find_unused_parameters=self.find_unused_parameters)

    def fit(self, epoch_counter, train_set, *args, **kwargs):
        """Train on ``train_set``, a :class:`~local.data.dataio.PairedDataset` re-paired each epoch."""
        self.train_pairs = train_set
        self.steps_per_epoch = train_set.steps_per_epoch(self.hparams.batch_size)
        return super().fit(epoch_counter, train_set, *args, **kwargs)

    def embed(self, wavs, wav_lens):
        """Embeddings ``[batch, 1, emb_dim]`` of 16 kHz waveforms.

        The encoder's pooling gets the relative lengths of the front end's
        frames (its ``frame_lengths``), which those of the samples only
        approach in a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]``.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.
        """
        frontend, encoder = self.modules.frontend, self.modules.embedding_model
        if not encoder.training:
            # Evaluation runs on the main process alone, where a DDP wrapper
            # would wait for the other processes to sync its buffers.
            frontend, encoder = unwrapped(frontend), unwrapped(encoder)
        embeddings = encoder(frontend(wavs, wav_lens),
                             unwrapped(frontend).frame_lengths(wavs, wav_lens))
        # SpeechBrain's ResNet returns [batch, dim], its ECAPA and x-vector [batch, 1, dim].
        return embeddings.unsqueeze(1) if embeddings.dim() == 2 else embeddings

    def evaluation_embed(self, wavs, wav_lens):
        """:meth:`embed` in the precision of ``--eval_precision``, in float32: the verification's.

        SpeechBrain's Brain applies that precision in its ``evaluate_batch``,
        which the verification does not run. The pseudo-labels, part of the
        training, embed in float32 whatever it is.

        Arguments
        ---------
        wavs, wav_lens : torch.Tensor
            As :meth:`embed` takes them.
        """
        return embedded_in(self.eval_precision, self.device_type, self.embed, wavs, wav_lens)

    def compute_forward(self, batch, stage):
        """Embeddings; in training, of the source then the target crops, and what the
        discriminator reads: the embeddings, or the frames of ``adv_layer``."""
        if stage != sb.Stage.TRAIN:
            return self.embed(*batch.to(self.device).sig)
        source, target = (part.to(self.device) for part in batch)
        # In float32: cached SSL hidden states are float16, which a cat under
        # --precision=bf16 refuses, and the front end reads them as float32.
        embeddings = self.embed(torch.cat([source.sig.data.float(), target.sig.data.float()]),
                                torch.cat([source.sig.lengths, target.sig.lengths]))
        if self.adv_tap:
            return embeddings, self.adv_tap.frames(self.hparams.adv_input_size)
        return embeddings, embeddings

    def fit_batch(self, batch):
        """One step, with the discriminator's own updates where its adversary plays them.

        With ``augment``, the step's crops and their augmented copies
        (:func:`~local.model.augmentation.augmented_pair`); training only:
        the pseudo-labels, the cohort and the verification embed clean audio.

        A GAN's come before the encoder's loss is computed against it; with
        gradient reversal, any beyond the joint loss's follow the optimisers' step.
        Both come at the batches where the optimisers step
        (:meth:`train_discriminator`).
        """
        if self.hparams.augment:
            batch = tuple(part.to(self.device) for part in batch)
            # Before the step's seed: the draws of a loader built to restore it are not the step's.
            self.augmentation_data.restore(*batch)
        self.seed_step()
        if self.hparams.augment:
            batch = augmented_pair(self.hparams.wav_augment, *batch)
        should_step = self.step % self.grad_accumulation_factor == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                self.domain_items.append(DomainItems.of(
                    outputs[1].detach().float(), batch[0].spk_id_encoded.data.to(self.device)))
                if should_step:
                    self.train_discriminator(self.adversary.updates_before)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            scaled_loss = self.scaler.scale(loss / self.grad_accumulation_factor)
            self.check_loss_isfinite(scaled_loss)
            scaled_loss.backward()
        if should_step:
            self.optimizers_step()
            self.train_discriminator(self.adversary.updates_after)
            self.domain_items = []
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def seed_step(self):
        """Seed dropout and any other draw of the step from (seed, epoch, step) alone, and
        under DDP from the process's rank: each process augments its own crops with draws
        of its own, rather than every process with the same speed, bands and chunks."""
        torch.manual_seed(random_seed(self.hparams.seed, STEP_STREAM,
                                      self.hparams.epoch_counter.current, self.step,
                                      process=process_group()[1]))

    def train_discriminator(self, steps):
        """Discriminator-only updates on the detached items of the optimisers' step.

        The items are those of every batch since the optimisers' last step
        (``--grad_accumulation_factor`` of them), and each update is on the
        mean of the adversary's loss over those batches, as the encoder's
        gradient is: with gradient accumulation the discriminator takes its
        updates once per step of the encoder, on the step's batches, as it
        does without. A GAN's updates come at the step's last batch, before
        its encoder loss: the encoder's loss of the step's earlier batches
        plays against the discriminator of the step before.

        Arguments
        ---------
        steps : int
            Number of updates.
        """
        if not steps:
            return
        discriminator = self.modules.domain_discriminator
        inputs = torch.cat([items.features for items in self.domain_items])
        sizes = [len(items.features) for items in self.domain_items]
        # In full precision even under --precision=fp16: the discriminator is
        # small, and its optimiser is stepped here, outside Brain's scaler.
        # One forward and one backward pass for all the step's batches.
        with torch.autocast(self.device_type, enabled=False):
            for _ in range(steps):
                logits = discriminator(inputs).split(sizes)
                loss = sum(self.adversary.discriminator_loss(part, items) for part, items
                           in zip(logits, self.domain_items)) / len(self.domain_items)
                self.check_discriminator_loss(loss)
                loss.backward()
                self.disc_optimizer.step()
                self.disc_optimizer.zero_grad(set_to_none=True)

    def check_discriminator_loss(self, loss):
        """Stop before a non-finite loss of the discriminator's own update reaches its weights.

        The encoder's loss is checked only in :meth:`compute_objectives`: an
        update after the optimisers' step (gradient reversal's beyond the
        first) would otherwise write NaN into the discriminator, and the
        step's checkpoint would keep it, so that no resume could go on.

        Arguments
        ---------
        loss : torch.Tensor
            The discriminator's loss of one update, before its backward pass.

        Raises
        ------
        RuntimeError
            When the loss is NaN or infinite, naming the epoch, the step and the fix.
        """
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"Non-finite discriminator loss at epoch {self.hparams.epoch_counter.current}, "
                f"step {self.step}: {float(loss.detach())}. Lower disc_lr, or check the input "
                "audio of this batch.")

    def compute_objectives(self, predictions, batch, stage):
        """Speaker loss plus the adversary's and the alignment losses, on their schedule.

        ``predictions`` are the ``(embeddings, features)`` of :meth:`compute_forward`.
        """
        embeddings, features = predictions
        source, target = batch
        n_source, labels = len(source), source.spk_id_encoded.data.to(self.device)
        speaker_loss, log = self.modules.speaker_head(
            embeddings[:n_source], labels, embeddings[n_source:], target.id, source.id)
        coefficient = self.hparams.adv_schedule(self.progress())
        adversarial_loss, adversary_log = self.adversary.encoder_loss(
            self.modules.domain_discriminator, DomainItems.of(features, labels), coefficient)
        # CORAL and MMD ramp up as the adversary does: zero during warm-up.
        ramp = self.hparams.adv_schedule.ramp(self.progress())
        source_emb, target_emb = embeddings[:n_source], embeddings[n_source:]
        alignment_loss = 0.0
        for name, alignment in self.hparams.alignment_losses.items():
            if alignment.weight:
                log[f"{name}_loss"] = alignment(source_emb, target_emb)
                alignment_loss = alignment_loss + ramp * alignment.weight * log[f"{name}_loss"]
        loss = speaker_loss + adversarial_loss + alignment_loss
        log.update(adversary_log, speaker_loss=speaker_loss,
                   adv_coefficient=torch.tensor(coefficient))
        # Before Brain's check_loss_isfinite, whose patience only counts: in
        # full precision no scaler skips the step, so the backward of this
        # loss would write NaN into every parameter, and only here is it known
        # which loss went wrong.
        if not torch.isfinite(loss):
            values = {name: float(value.detach()) for name, value in log.items()}
            raise RuntimeError(
                f"Non-finite loss at epoch {self.hparams.epoch_counter.current}, step "
                f"{self.step}: {values}. Lower the learning rate, adv_weight, coral_weight "
                "or mmd_weight, or check the input audio of this batch.")
        self.stats.add(**log)
        return loss

    def progress(self):
        """Fraction of training done, in [0, 1], in batches (as without gradient accumulation)."""
        done = (self.hparams.epoch_counter.current - 1) * self.steps_per_epoch + self.step
        return min(1.0, done / (self.hparams.number_of_epochs * self.steps_per_epoch))

    def on_stage_start(self, stage, epoch=None):
        """Re-cluster the target; re-draw the pairing from (seed, epoch).

        With the crops drawn per pair and the steps' random state per step
        (:func:`~local.data.dataio.random_seed`), a run resumed at any
        checkpoint trains as an uninterrupted one.
        """
        if stage != sb.Stage.TRAIN:
            return
        # SpeechBrain drops the gradients of an epoch's batches past its last
        # optimisers' step; the discriminator drops their items.
        self.domain_items = []
        pseudo = self.hparams.pseudo_labels
        if epoch in pseudo.epochs and pseudo.epoch != epoch:
            self.update_pseudo_labels(epoch)
        self.train_pairs.set_epoch(epoch)

    def embed_limits(self):
        """``(min_embed_seconds, max_embed_seconds)``: the lengths embedded whole."""
        return self.hparams.min_embed_seconds, self.hparams.max_embed_seconds

    def clustered_ids(self):
        """The target training utterances that a clustering embeds: those within
        :meth:`embed_limits`; it warns of the others, which get no pseudo-label,
        and refuses a target of none."""
        limits = self.embed_limits()
        ids = embeddable_ids(self.target_utterances, *limits)
        if not ids:
            reason, fix = none_embeddable(
                f"{len(self.target_utterances)} target training utterances",
                "the target's recordings", *limits)
            fail("--min_embed_seconds={} --max_embed_seconds={}".format(*limits),
                 f"{reason}, so the pseudo-labels have none to cluster",
                 fix=f"{fix}, or set pseudo_label_epochs: []")
        if len(ids) < len(self.target_utterances):
            logger.warning("pseudo-labels: %d of %d target training utterances are outside "
                           "min_embed_seconds-max_embed_seconds (%s-%s s) and get no "
                           "pseudo-label", len(self.target_utterances) - len(ids),
                           len(self.target_utterances), *limits)
        return ids

    def update_pseudo_labels(self, epoch):
        """Cluster the target training utterances of :meth:`clustered_ids` with the model.

        The utterances are embedded whole and clustered (:mod:`local.model.pseudo_labels`);
        the speaker head's pseudo-speaker rows start from the centroids.

        Arguments
        ---------
        epoch : int
            The epoch about to start.
        """
        pseudo = self.hparams.pseudo_labels
        ids = self.clustered_ids()
        self.modules.eval()
        # Under DDP each process embeds its share (a bad file in one stops them all) with the
        # main process's model; the main one clusters them all.
        buffers_of_main(self.modules)
        embeddings = checked_on_every_process(
            compute_embeddings, self.embed, self.target_utterances, self.hparams.eval_batch_size,
            self.device, ids=process_share(ids), limits=self.embed_limits())
        speakers = {utt: row["spk_id"] for utt, row in self.target_utterances.data.items()
                    if row.get("spk_id")}
        centroids, summary = pseudo.relabel(embeddings, epoch, speakers, self.hparams.seed)
        unwrapped(self.modules.speaker_head).start_pseudo_speakers(centroids, self.optimizer)
        self.rewrap_speaker_head()
        self.log_stats(stats_meta={"epoch": epoch, "pseudo-labels": "target clustering"},
                       train_stats=summary)

    def log_stats(self, **stats):
        """Append ``stats`` to the training log, by the main process alone.

        A write that fails there (a full disk) stops every process with its
        error, rather than the others at their next collective operation
        with an error of the connection.

        Arguments
        ---------
        **stats
            The keyword arguments of the train logger's ``log_stats``.
        """
        checked_on_main(self.hparams.train_logger.log_stats, **stats)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the epoch's losses, domain accuracy and step count, then checkpoint."""
        if stage != sb.Stage.TRAIN:
            return
        self.train_stats = {"loss": stage_loss, "steps": self.step, **self.stats.means()}
        self.log_stats(stats_meta={"epoch": epoch}, train_stats=self.train_stats)
        # No validation stage to checkpoint in: Brain would clear its counters only
        # after this, and restores them even from an end-of-epoch checkpoint.
        self.step, self.avg_train_loss = 0, 0.0
        self.stats.reset()
        self.checkpointer.save_and_keep_only(meta={"epoch": epoch}, num_to_keep=1)

