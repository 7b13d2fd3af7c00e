"""The Brain of ``train_dann.py``: speaker loss on source, domain losses on both."""

import json

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.logger import get_logger
from torch.nn.parallel import DistributedDataParallel

from local.data.pseudo_labels import cluster_pseudo_speakers
from local.evaluation.embed import compute_embeddings
from local.model.adversarial import LayerOutputTap
from local.model.alignment import coral_loss, mmd_loss
from local.model.gan import check_adversary, discriminator_loss, embedding_loss, source_score

logger = get_logger(__name__)


@register_checkpoint_hooks
class EpochStatistics:
    """Running sums of the per-step values that an epoch's log line averages.

    A recoverable of the run's checkpointer: a checkpoint inside an epoch
    (``--ckpt_interval_steps``) keeps the sums of the steps before it, so
    that a run resumed there logs the means over the whole epoch, as Brain
    does for its running loss.

    Example
    -------
    >>> stats = EpochStatistics()
    >>> stats.add(mmd_loss=torch.tensor(1.0))
    >>> stats.add(mmd_loss=torch.tensor(2.0))
    >>> stats.means()
    {'mmd_loss': 1.5}
    """

    def __init__(self):
        self.sums = {}

    def add(self, **values):
        """Add one step's value of each name.

        Arguments
        ---------
        **values : torch.Tensor
            ``name=value``, tensors of one element.
        """
        for name, value in values.items():
            total, count = self.sums.get(name, (0.0, 0))
            self.sums[name] = (total + float(value.detach()), count + 1)

    def means(self):
        """``{name: mean over the steps added}``."""
        return {name: total / count for name, (total, count) in self.sums.items()}

    def reset(self):
        """Start a new epoch."""
        self.sums = {}

    @mark_as_saver
    def _save(self, path):
        # JSON writes floats with repr, which reads back exactly.
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.sums, out)

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch  # an end-of-epoch checkpoint holds the next epoch's empty sums
        with open(path, encoding="utf-8") as saved:
            self.sums = {name: tuple(sums) for name, sums in json.load(saved).items()}


class DANNBrain(sb.Brain):
    """Speaker embedding training with a domain adversary.

    Each training batch is a ``(source, target)`` pair of PaddedBatch objects
    (see :class:`local.data.dataio.PairedDataset`). Both go through the front end
    and the encoder in one forward pass; the speaker head sees the source
    embeddings, and the domain discriminator sees all of them behind the
    gradient-reversal layer. The reversal coefficient is
    ``adv_weight * ganin_lambda(progress)`` after an optional warm-up, so with
    ``adv_weight: 0`` the encoder receives no gradient from the domain loss
    (the discriminator still trains and reports how separable the domains
    are) and the recipe is the source-only baseline. Instead of gradient
    reversal (``adversary: grl``), the adversary can be a GAN game with
    alternating updates (``vanilla``, ``least_squares``, ``relativistic``,
    ``auxiliary_classifier``; :mod:`local.model.gan`), its encoder loss weighted by
    the same coefficient.

    Besides the adversary, and on the same schedule, ``coral_weight`` and
    ``mmd_weight`` align the statistics of the batch's source and target
    embeddings (:mod:`local.model.alignment`). With ``pseudo_label_epochs``, the
    target training utterances are clustered into pseudo-speakers at the start
    of those epochs (:mod:`local.data.pseudo_labels`), and the speaker head also
    trains on the target crops that have one.

    The speaker head is a classifier with a margin softmax over the source
    speakers (``classifier`` and ``compute_cost``), or, when the modules hold
    a ``ge2e_loss`` (:class:`local.model.ge2e.GE2ELoss`), the GE2E loss of source
    batches laid out as ``ge2e_speakers`` x ``ge2e_utterances``
    (:class:`local.data.dataio.SpeakerBatchSampler`), with no classifier and so
    no pseudo-labels.

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
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.hparams.adversary == "grl":
            # Stepped by Brain with the rest; a GAN adversary's discriminator
            # is stepped on its own (update_discriminator).
            self.optimizers_dict["disc_opt_class"] = self.disc_optimizer
        recoverables = {"optimizer": self.optimizer, "disc_optimizer": self.disc_optimizer}
        if ssl_params:
            self.ssl_optimizer = self.hparams.ssl_opt_class(ssl_params)
            self.optimizers_dict["ssl_opt_class"] = self.ssl_optimizer
            recoverables["ssl_optimizer"] = self.ssl_optimizer
        if self.checkpointer is not None:
            for name, optimizer in recoverables.items():
                self.checkpointer.add_recoverable(name, optimizer)

    def on_fit_start(self):
        """Initialise the per-epoch statistics (recovered with a checkpoint) and the frame tap."""
        self.stats = EpochStatistics()
        if self.checkpointer is not None:
            # Optional: checkpoints written before the statistics were saved still load.
            self.checkpointer.add_recoverable("epoch_statistics", self.stats, optional_load=True)
        super().on_fit_start()
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
        embeddings = encoder(frontend(wavs, wav_lens), wav_lens)
        # SpeechBrain's ResNet returns [batch, dim], its ECAPA and x-vector [batch, 1, dim].
        return embeddings.unsqueeze(1) if embeddings.dim() == 2 else embeddings

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
        domain_loss, adversarial_loss = self._adversary(
            embeddings, n_source, source.spk_id_encoded.data, coefficient)

        # CORAL and MMD ramp up as the adversary does: zero during warm-up.
        alignment = self.hparams.adv_schedule.ramp(self.progress())
        source_emb, target_emb = embeddings[:n_source], embeddings[n_source:]
        aligned, alignment_loss = {}, 0.0
        for name, loss_fn, weight in (("coral", coral_loss, self.hparams.coral_weight),
                                      ("mmd", mmd_loss, self.hparams.mmd_weight)):
            if weight:
                aligned[name] = loss_fn(source_emb, target_emb)
                alignment_loss = alignment_loss + alignment * weight * aligned[name]

        loss = speaker_loss + adversarial_loss + alignment_loss
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"Non-finite loss at epoch {self.hparams.epoch_counter.current}, "
                f"step {self.step}: speaker loss {speaker_loss.item()}, domain loss "
                f"{domain_loss.item()}, alignment losses "
                f"{ {name: value.item() for name, value in aligned.items()} }. Lower the "
                "learning rate, adv_weight, coral_weight or mmd_weight, or check the input "
                "audio of this batch."
            )
        self.stats.add(
            speaker_loss=speaker_loss, adv_coefficient=torch.tensor(coefficient),
            **{f"{name}_loss": value for name, value in aligned.items()},
        )
        if pseudo_fraction is not None:
            self.stats.add(pseudo_labelled=torch.tensor(pseudo_fraction))
        return loss

    def _speaker_loss(self, embeddings, source, target):
        """Speaker loss on the source crops and the target crops with a pseudo-speaker.

        Returns the loss and the fraction of target crops that took part
        (None while there are no pseudo-labels).
        """
        n_source = len(source)
        speakers = embeddings[:n_source]
        if "ge2e_loss" in self.modules:
            # Speaker-major batches: the first ge2e_utterances rows are one speaker's.
            return self.modules.ge2e_loss(speakers.reshape(
                self.hparams.ge2e_speakers, self.hparams.ge2e_utterances, -1)), None
        labels = source.spk_id_encoded.data.to(self.device)
        pseudo = self.hparams.pseudo_labels
        fraction = None
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

    def _adversary(self, embeddings, n_source, speakers, coefficient):
        """The domain discriminator's loss and what the encoder minimises against it.

        The discriminator reads the embeddings, or the frames of ``adv_layer``;
        every frame is an item it classifies. With ``adversary: grl`` both
        players minimise one loss through the gradient-reversal layer. The GAN
        adversaries (:mod:`local.model.gan`) alternate: ``disc_steps`` discriminator
        updates on the step's detached features first, then the encoder's
        loss against the updated discriminator, whose parameters it does not
        change.

        Returns the discriminator's loss (for the log) and the encoder's
        adversarial loss, already weighted by ``coefficient``.
        """
        features = embeddings
        if self.hparams.adv_layer:
            features = self.adv_tap.frames(self.hparams.adv_input_size)
        frames = features.shape[1]
        # [batch * frames, features], the source items first.
        items = features.reshape(-1, features.shape[-1])
        speakers = speakers.reshape(-1).to(self.device).repeat_interleave(frames)
        # Kept for the discriminator's updates (disc_steps) on this step's features.
        self.domain_batch = (items.detach(), n_source * frames, speakers)
        adversary = self.hparams.adversary
        if adversary == "grl":
            self.modules.grl.set_coefficient(coefficient)
            logits = self.modules.domain_discriminator(self.modules.grl(items))
            domain_loss = adversarial_loss = self._discriminator_loss(logits)
        else:
            self.update_discriminator(self.hparams.disc_steps)
            logits = self._fixed_discriminator(items)
            domain_loss = self._discriminator_loss(logits.detach())
            gan_loss = embedding_loss(adversary, logits, n_source * frames, speakers)
            adversarial_loss = coefficient * gan_loss
            self.stats.add(embedding_adv_loss=gan_loss)
        is_source = torch.arange(len(items), device=logits.device) < n_source * frames
        accuracy = ((source_score(logits) > 0) == is_source).float().mean()
        self.stats.add(domain_loss=domain_loss, domain_accuracy=accuracy)
        return domain_loss, adversarial_loss

    def _discriminator_loss(self, logits):
        _, n_source, speakers = self.domain_batch
        return discriminator_loss(self.hparams.adversary, logits, n_source, speakers,
                                  self.hparams.domain_label_smoothing)

    def _fixed_discriminator(self, items):
        """The discriminator's logits, with no gradient reaching its parameters."""
        discriminator = unwrapped(self.modules.domain_discriminator)
        parameters = {name: p.detach() for name, p in discriminator.named_parameters()}
        return torch.func.functional_call(discriminator, parameters, (items,))

    def update_discriminator(self, steps):
        """Update the discriminator alone, ``steps`` times, on the step's detached features.

        In full precision even under ``--precision=fp16``: the discriminator
        is small, and its optimiser is stepped here, outside Brain's scaler.

        Arguments
        ---------
        steps : int
            Number of updates.
        """
        items = self.domain_batch[0]
        with torch.autocast(torch.device(self.device).type, enabled=False):
            for _ in range(steps):
                logits = self.modules.domain_discriminator(items.float())
                self._discriminator_loss(logits).backward()
                self.disc_optimizer.step()
                self.disc_optimizer.zero_grad(set_to_none=True)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """With gradient reversal, give the discriminator ``disc_steps - 1`` more updates.

        Its first update came with the encoder's, from the joint loss; the GAN
        adversaries update it before the encoder's loss instead.

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
        if should_step and self.hparams.adversary == "grl":
            self.update_discriminator(self.hparams.disc_steps - 1)

    def progress(self):
        """Fraction of training done, in [0, 1], for the reversal schedule.

        Counted in batches (``self.step``, ``steps_per_epoch``), so that the
        schedule is the same with and without gradient accumulation.
        """
        epoch = self.hparams.epoch_counter.current
        done = (epoch - 1) * self.steps_per_epoch + self.step
        return min(1.0, done / (self.hparams.number_of_epochs * self.steps_per_epoch))

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
            self.hparams.pseudo_min_speakers,
            self.hparams.whiten_ridge if self.hparams.pseudo_whiten else None,
            self.hparams.pseudo_count)
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
        stats = {"loss": stage_loss, "steps": self.step, **self.stats.means()}
        self.train_stats = stats
        self.hparams.train_logger.log_stats(stats_meta={"epoch": epoch}, train_stats=stats)
        # There is no validation stage to checkpoint in, so the end-of-epoch
        # checkpoint is saved here; Brain resets its step counter and running
        # loss only after this method, and a checkpoint must not carry them,
        # or this epoch's statistics, into the next epoch.
        self.step, self.avg_train_loss = 0, 0.0
        self.stats.reset()
        self.checkpointer.save_and_keep_only(meta={"epoch": epoch}, num_to_keep=1)


def check_domain_settings(hparams):
    """Fail early on a domain-loss or pseudo-label setting that training could not use.

    Arguments
    ---------
    hparams : dict
        ``adversary``, ``disc_steps``, ``domain_label_smoothing``, ``coral_weight``,
        ``mmd_weight``, ``pseudo_label_epochs``, and with pseudo-label epochs
        ``pseudo_min_speakers``, ``pseudo_max_speakers``, ``number_of_epochs``.

    Example
    -------
    >>> settings = dict(adversary="grl", disc_steps=1, domain_label_smoothing=0.0,
    ...                 coral_weight=0.0,
    ...                 mmd_weight=1.0, pseudo_label_epochs=[3], pseudo_min_speakers=2,
    ...                 pseudo_max_speakers=0, number_of_epochs=8)
    >>> check_domain_settings(settings)
    Traceback (most recent call last):
      ...
    ValueError: pseudo_label_epochs [3] needs 2 <= pseudo_min_speakers <= pseudo_max_speakers (the speaker-head rows reserved for pseudo-speakers); got 2 and 0
    """
    check_adversary(hparams["adversary"])
    if not isinstance(hparams["disc_steps"], int) or hparams["disc_steps"] < 1:
        raise ValueError(f"disc_steps must be an integer >= 1; got {hparams['disc_steps']!r}")
    if not 0 <= hparams["domain_label_smoothing"] < 1:
        raise ValueError("domain_label_smoothing must be in [0, 1); got "
                         f"{hparams['domain_label_smoothing']!r}")
    for name in ("coral_weight", "mmd_weight"):
        if not hparams[name] >= 0:
            raise ValueError(f"{name} must be >= 0; got {hparams[name]!r}")
    epochs = hparams["pseudo_label_epochs"]
    if not epochs:
        return
    bounds = hparams["pseudo_min_speakers"], hparams["pseudo_max_speakers"]
    if not 2 <= bounds[0] <= bounds[1]:
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


def check_speaker_head(hparams):
    """Fail early on GE2E settings that training could not use.

    The GE2E head (``ge2e_loss`` defined) needs batches of ``ge2e_speakers``
    x ``ge2e_utterances`` source crops, at least 2 of each, and has no
    classifier to train pseudo-speakers in. Hparams without it pass.

    Arguments
    ---------
    hparams : dict
        ``ge2e_loss``, ``ge2e_speakers``, ``ge2e_utterances``, ``n_speakers``
        (source speakers), ``batch_size``, ``pseudo_label_epochs``.

    Example
    -------
    >>> settings = dict(ge2e_loss=None, ge2e_speakers=8, ge2e_utterances=4, n_speakers=24,
    ...                 batch_size=16, pseudo_label_epochs=[])
    >>> check_speaker_head(settings)
    Traceback (most recent call last):
      ...
    ValueError: With the GE2E head, batch_size must be ge2e_speakers * ge2e_utterances (8 * 4 = 32); got 16: set ge2e_speakers and ge2e_utterances instead
    """
    if "ge2e_loss" not in hparams:
        return
    n_speakers, n_utterances = hparams["ge2e_speakers"], hparams["ge2e_utterances"]
    if not all(isinstance(n, int) and n >= 2 for n in (n_speakers, n_utterances)):
        raise ValueError(
            "ge2e_speakers and ge2e_utterances must be integers >= 2 (each utterance is "
            "compared with its speaker's other utterances and with other speakers); got "
            f"{n_speakers!r} and {n_utterances!r}")
    if n_speakers > hparams["n_speakers"]:
        raise ValueError(f"ge2e_speakers {n_speakers} exceeds the {hparams['n_speakers']} "
                         "speakers of the source training set: lower it")
    if hparams["batch_size"] != n_speakers * n_utterances:
        raise ValueError(
            "With the GE2E head, batch_size must be ge2e_speakers * ge2e_utterances "
            f"({n_speakers} * {n_utterances} = {n_speakers * n_utterances}); got "
            f"{hparams['batch_size']}: set ge2e_speakers and ge2e_utterances instead")
    if hparams["pseudo_label_epochs"]:
        raise ValueError(
            f"pseudo_label_epochs {hparams['pseudo_label_epochs']} train target "
            "pseudo-speakers in the speaker classifier, and the GE2E head has none: set "
            "pseudo_label_epochs: [] or use a margin-softmax hparams file "
            "(hparams/dann_fbank.yaml)")


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
