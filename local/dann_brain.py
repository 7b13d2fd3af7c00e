"""The Brain of ``train_dann.py``: speaker loss on source, domain losses on both."""

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger
from torch.nn.parallel import DistributedDataParallel

from local.adversarial import LayerOutputTap
from local.alignment import coral_loss, mmd_loss
from local.embed import compute_embeddings
from local.pseudo_labels import cluster_pseudo_speakers

logger = get_logger(__name__)


class DANNBrain(sb.Brain):
    """Speaker embedding training with a gradient-reversal domain branch.

    Each training batch is a ``(source, target)`` pair of PaddedBatch objects
    (see :class:`local.dataio.PairedDataset`). Both go through the front end
    and the encoder in one forward pass; the speaker head sees the source
    embeddings, and the domain discriminator sees all of them behind the
    gradient-reversal layer. The reversal coefficient is
    ``adv_weight * ganin_lambda(progress)`` after an optional warm-up, so with
    ``adv_weight: 0`` the encoder receives no gradient from the domain loss
    (the discriminator still trains and reports how separable the domains
    are) and the recipe is the source-only baseline.

    Besides the adversary, and on the same schedule, ``coral_weight`` and
    ``mmd_weight`` align the statistics of the batch's source and target
    embeddings (:mod:`local.alignment`). With ``pseudo_label_epochs``, the
    target training utterances are clustered into pseudo-speakers at the start
    of those epochs (:mod:`local.pseudo_labels`), and the speaker head also
    trains on the target crops that have one.

    Target-domain speaker labels are never read: the target pipeline provides
    only ``id`` and ``sig``.
    """

    def _wrap_distributed(self):
        """DDP on CPU (gloo) too: Brain converts BatchNorm to SyncBatchNorm, which needs CUDA."""
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )
        return None

    def init_optimizers(self):
        """Optimisers for the discriminator, the SSL model when fine-tuned, and the rest.

        The SSL model needs a much smaller learning rate than the layers
        trained from scratch (``ssl_opt_class`` vs ``opt_class``), as in
        SpeechBrain's wav2vec2 fine-tuning recipes; the discriminator has its
        own (``disc_opt_class``) so that its learning rate and its number of
        updates per step (``disc_steps``) are knobs of the adversary.
        """
        ssl = getattr(unwrapped(self.modules.frontend), "ssl", None)
        ssl_params = [p for p in ssl.parameters() if p.requires_grad] if ssl else []
        disc_params = list(self.modules.domain_discriminator.parameters())
        own = {id(p) for p in ssl_params + disc_params}
        self.optimizer = self.opt_class(
            [p for p in self.modules.parameters() if id(p) not in own])
        self.disc_optimizer = self.hparams.disc_opt_class(disc_params)
        self.optimizers_dict = {"opt_class": self.optimizer, "disc_opt_class": self.disc_optimizer}
        recoverables = {"optimizer": self.optimizer, "disc_optimizer": self.disc_optimizer}
        if ssl_params:
            self.ssl_optimizer = self.hparams.ssl_opt_class(ssl_params)
            self.optimizers_dict["ssl_opt_class"] = self.ssl_optimizer
            recoverables["ssl_optimizer"] = self.ssl_optimizer
        if self.checkpointer is not None:
            for name, optimizer in recoverables.items():
                self.checkpointer.add_recoverable(name, optimizer)

    def on_fit_start(self):
        """Initialise the per-epoch statistics and, if asked, the frame tap."""
        super().on_fit_start()
        self.stats = {}
        if self.hparams.adv_layer and getattr(self, "adv_tap", None) is None:
            self.adv_tap = LayerOutputTap(
                unwrapped(self.modules.embedding_model), self.hparams.adv_layer)

    def embed(self, wavs, wav_lens):
        """Embeddings ``[batch, 1, dim]`` of 16 kHz waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms at 16 kHz.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.

        Returns
        -------
        torch.Tensor
            ``[batch, 1, emb_dim]``.
        """
        frontend, encoder = self.modules.frontend, self.modules.embedding_model
        if not encoder.training:
            # Evaluation runs on the main process alone, where a DDP wrapper
            # would wait for the other processes to sync its buffers.
            frontend, encoder = unwrapped(frontend), unwrapped(encoder)
        return encoder(frontend(wavs, wav_lens), wav_lens)

    def compute_forward(self, batch, stage):
        """Embed the source and target crops (training) or utterances (evaluation).

        Arguments
        ---------
        batch : tuple or PaddedBatch
            ``(source, target)`` batches in training, one batch otherwise.
        stage : speechbrain.Stage
            The stage.

        Returns
        -------
        torch.Tensor
            ``[batch, 1, emb_dim]``; in training the source rows come first.
        """
        if stage != sb.Stage.TRAIN:
            batch = batch.to(self.device)
            return self.embed(*batch.sig)
        source, target = (part.to(self.device) for part in batch)
        wavs = torch.cat([source.sig.data, target.sig.data])
        lens = torch.cat([source.sig.lengths, target.sig.lengths])
        return self.embed(wavs, lens)

    def compute_objectives(self, embeddings, batch, stage):
        """Speaker loss on source (and pseudo-labelled target) plus the domain losses.

        Arguments
        ---------
        embeddings : torch.Tensor
            As from :meth:`compute_forward`.
        batch : tuple
            The ``(source, target)`` batches.
        stage : speechbrain.Stage
            The stage (training only).

        Returns
        -------
        torch.Tensor
            The total loss.
        """
        source, target = batch
        n_source = len(source)
        speaker_loss, pseudo_fraction = self._speaker_loss(embeddings, source, target)

        coefficient = self.hparams.adv_schedule(self.progress())
        self.modules.grl.set_coefficient(coefficient)
        features = embeddings
        if self.hparams.adv_layer:
            features = self.adv_tap.frames(self.hparams.adv_input_size)
        # [batch, frames (1 for the embedding), domains]: every frame is classified.
        domains = torch.cat(
            [torch.zeros(n_source), torch.ones(len(target))]
        ).long().to(self.device).repeat_interleave(features.shape[1])
        # Kept for the discriminator's extra updates (disc_steps) after this step,
        # which run outside mixed precision's autocast: in float32.
        self.domain_batch = (features.detach().float(), domains)
        domain_logits = self.modules.domain_discriminator(self.modules.grl(features))
        domain_logits = domain_logits.reshape(len(domains), -1)
        domain_loss = self._domain_loss(domain_logits, domains)

        # CORAL and MMD ramp up as the adversary does: zero during warm-up.
        alignment = self.hparams.adv_schedule.ramp(self.progress())
        source_emb, target_emb = embeddings[:n_source], embeddings[n_source:]
        aligned, alignment_loss = {}, 0.0
        for name, loss_fn, weight in (("coral", coral_loss, self.hparams.coral_weight),
                                      ("mmd", mmd_loss, self.hparams.mmd_weight)):
            if weight:
                aligned[name] = loss_fn(source_emb, target_emb)
                alignment_loss = alignment_loss + alignment * weight * aligned[name]

        loss = speaker_loss + domain_loss + alignment_loss
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"Non-finite loss at epoch {self.hparams.epoch_counter.current}, "
                f"step {self.step}: speaker loss {speaker_loss.item()}, domain loss "
                f"{domain_loss.item()}, alignment losses "
                f"{ {name: value.item() for name, value in aligned.items()} }. Lower the "
                "learning rate, adv_weight, coral_weight or mmd_weight, or check the input "
                "audio of this batch."
            )
        accuracy = (domain_logits.argmax(dim=-1) == domains).float().mean()
        self._accumulate(
            speaker_loss=speaker_loss, domain_loss=domain_loss,
            domain_accuracy=accuracy, adv_coefficient=torch.tensor(coefficient),
            **{f"{name}_loss": value for name, value in aligned.items()},
        )
        if self.hparams.pseudo_labels.n_speakers:
            self._accumulate(pseudo_labelled=torch.tensor(pseudo_fraction))
        return loss

    def _speaker_loss(self, embeddings, source, target):
        """Speaker loss on the source crops and the target crops with a pseudo-speaker.

        Returns the loss and the fraction of target crops that took part.
        """
        n_source = len(source)
        labels = source.spk_id_encoded.data.to(self.device)
        speakers = embeddings[:n_source]
        pseudo = self.hparams.pseudo_labels
        fraction = 0.0
        if pseudo.n_speakers:
            target_labels = pseudo.lookup(target.id).to(self.device)
            labelled = target_labels >= 0
            speakers = torch.cat([speakers, embeddings[n_source:][labelled]])
            labels = torch.cat([labels, target_labels[labelled].unsqueeze(1)])
            fraction = float(labelled.float().mean())
        # Only the rows of the current pseudo-speakers are classes: the
        # reserved rows beyond them are not competitors in the softmax.
        logits = self.modules.classifier(speakers)[..., :pseudo.offset + pseudo.n_speakers]
        return self.hparams.compute_cost(logits, labels), fraction

    def _domain_loss(self, logits, domains):
        return F.cross_entropy(logits, domains,
                               label_smoothing=self.hparams.domain_label_smoothing)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Give the discriminator ``disc_steps - 1`` more updates on this step's features.

        With ``--grad_accumulation_factor=N`` the optimisers step every N
        batches; the extra updates follow each optimiser step, on the
        features of the batch that completed it.

        Arguments
        ---------
        batch : tuple
            The ``(source, target)`` batches.
        outputs : torch.Tensor
            The embeddings.
        loss : torch.Tensor
            The step's loss.
        should_step : bool
            Whether the optimisers stepped.
        """
        if not should_step:
            return
        features, domains = self.domain_batch
        for _ in range(self.hparams.disc_steps - 1):
            logits = self.modules.domain_discriminator(features).reshape(len(domains), -1)
            self._domain_loss(logits, domains).backward()
            self.disc_optimizer.step()
            self.disc_optimizer.zero_grad(set_to_none=True)

    def progress(self):
        """Fraction of training done, in [0, 1], for the reversal schedule.

        Counted in batches (``self.step``, ``steps_per_epoch``), so that the
        schedule is the same with and without gradient accumulation.
        """
        epoch = self.hparams.epoch_counter.current
        done = (epoch - 1) * self.steps_per_epoch + self.step
        return min(1.0, done / (self.hparams.number_of_epochs * self.steps_per_epoch))

    def _accumulate(self, **values):
        for name, value in values.items():
            total, count = self.stats.get(name, (0.0, 0))
            self.stats[name] = (total + float(value.detach()), count + 1)

    def on_stage_start(self, stage, epoch=None):
        """Re-draw the source/target pairing and the random state of ``epoch``.

        Seeding from (seed, epoch) makes a run resumed at an epoch boundary
        draw the same crops and dropout masks as an uninterrupted one.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage starting.
        epoch : int, optional
            The epoch starting.
        """
        if stage == sb.Stage.TRAIN:
            self.stats = {}
            if (epoch in self.hparams.pseudo_label_epochs
                    and self.hparams.pseudo_labels.epoch != epoch):
                self.update_pseudo_labels(epoch)
            self.train_pairs.set_epoch(epoch)
            torch.manual_seed(self.hparams.seed * 1000 + epoch)

    def update_pseudo_labels(self, epoch):
        """Cluster the target training utterances with the current model.

        At most ``pseudo_max_utterances`` of them, drawn with the run's seed,
        are embedded whole and clustered into at most ``pseudo_max_speakers``
        pseudo-speakers (at least ``pseudo_min_speakers``). The speaker head's rows of the pseudo-speakers start
        from their centroids, with fresh optimiser statistics, since a new
        clustering numbers its speakers anew.

        Arguments
        ---------
        epoch : int
            The epoch about to start.
        """
        dataset = self.target_utterances
        ids = list(dataset.data_ids)
        limit = self.hparams.pseudo_max_utterances
        if len(ids) > limit:
            rng = np.random.default_rng([self.hparams.seed, epoch])
            ids = sorted(rng.choice(ids, size=limit, replace=False).tolist())
        self.modules.eval()
        embeddings = compute_embeddings(self.embed, dataset, self.hparams.eval_batch_size,
                                        self.device, ids=ids)
        labels, centroids, summary = cluster_pseudo_speakers(
            embeddings, self.hparams.pseudo_max_speakers, self.hparams.pseudo_min_silhouette,
            self.hparams.pseudo_min_speakers)
        pseudo = self.hparams.pseudo_labels
        pseudo.update(labels, len(centroids), epoch)
        weight = unwrapped(self.modules.classifier).weight
        rows = slice(pseudo.offset, pseudo.offset + len(centroids))
        with torch.no_grad():
            weight[rows] = centroids.to(weight.device, weight.dtype)
        for moment in self.optimizer.state.get(weight, {}).values():
            if moment.dim() and moment.shape == weight.shape:
                moment[rows] = 0
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "pseudo-labels": "target clustering"},
            train_stats=summary)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the epoch's losses and domain accuracy, then checkpoint.

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage ending.
        stage_loss : float
            Its average loss.
        epoch : int, optional
            The epoch ending.
        """
        if stage != sb.Stage.TRAIN:
            return
        stats = {"loss": stage_loss, "steps": self.step}
        stats.update({k: total / count for k, (total, count) in self.stats.items()})
        self.train_stats = stats
        self.hparams.train_logger.log_stats(stats_meta={"epoch": epoch}, train_stats=stats)
        # There is no validation stage to checkpoint in, so the end-of-epoch
        # checkpoint is saved here; Brain resets its step counter and running
        # loss only after this method, and a checkpoint must not carry them
        # into the next epoch.
        self.step, self.avg_train_loss = 0, 0.0
        self.checkpointer.save_and_keep_only(meta={"epoch": epoch}, num_to_keep=1)


def check_domain_settings(hparams):
    """Fail early on a domain-loss or pseudo-label setting that training could not use.

    Arguments
    ---------
    hparams : dict
        ``disc_steps``, ``domain_label_smoothing``, ``coral_weight``,
        ``mmd_weight``, ``pseudo_label_epochs``, ``pseudo_min_speakers``,
        ``pseudo_max_speakers``, ``number_of_epochs``.

    Example
    -------
    >>> settings = dict(disc_steps=1, domain_label_smoothing=0.0, coral_weight=0.0,
    ...                 mmd_weight=1.0, pseudo_label_epochs=[3], pseudo_min_speakers=2,
    ...                 pseudo_max_speakers=0, number_of_epochs=8)
    >>> check_domain_settings(settings)
    Traceback (most recent call last):
      ...
    ValueError: pseudo_label_epochs [3] needs 2 <= pseudo_min_speakers <= pseudo_max_speakers (the speaker-head rows reserved for pseudo-speakers); got 2 and 0
    """
    if not isinstance(hparams["disc_steps"], int) or hparams["disc_steps"] < 1:
        raise ValueError(f"disc_steps must be an integer >= 1; got {hparams['disc_steps']!r}")
    if not 0 <= hparams["domain_label_smoothing"] < 1:
        raise ValueError("domain_label_smoothing must be in [0, 1); got "
                         f"{hparams['domain_label_smoothing']!r}")
    for name in ("coral_weight", "mmd_weight"):
        if not hparams[name] >= 0:
            raise ValueError(f"{name} must be >= 0; got {hparams[name]!r}")
    epochs = hparams["pseudo_label_epochs"]
    bounds = hparams["pseudo_min_speakers"], hparams["pseudo_max_speakers"]
    if epochs and not 2 <= bounds[0] <= bounds[1]:
        raise ValueError(
            f"pseudo_label_epochs {epochs} needs 2 <= pseudo_min_speakers <= "
            "pseudo_max_speakers (the speaker-head rows reserved for pseudo-speakers); "
            f"got {bounds[0]} and {bounds[1]}")
    if any(e < 1 for e in epochs):
        raise ValueError(f"pseudo_label_epochs {epochs} must be epochs of the run, from 1")
    late = [e for e in epochs if e > hparams["number_of_epochs"]]
    if late:
        logger.warning("pseudo_label_epochs %s come after the last epoch (%d): no clustering "
                       "at them in this run", late, hparams["number_of_epochs"])


def unwrapped(module):
    """The module inside a DistributedDataParallel wrapper (or the module itself).

    Arguments
    ---------
    module : torch.nn.Module
        A module, wrapped or not.

    Returns
    -------
    torch.nn.Module
        The module that does the work.

    Example
    -------
    >>> linear = torch.nn.Linear(2, 2)
    >>> unwrapped(linear) is linear
    True
    """
    return getattr(module, "module", module)
