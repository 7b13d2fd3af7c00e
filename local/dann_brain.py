"""The Brain of ``train_dann.py``: speaker loss on source, domain-adversarial loss on both."""

import speechbrain as sb
import torch
from torch.nn.parallel import DistributedDataParallel

from local.adversarial import LayerOutputTap


class DANNBrain(sb.Brain):
    """Speaker embedding training with a gradient-reversal domain branch.

    Each training batch is a ``(source, target)`` pair of PaddedBatch objects
    (see :class:`local.dataio.PairedDataset`). Both go through the front end
    and the encoder in one forward pass; the speaker head sees the source
    embeddings only, and the domain discriminator sees all of them behind the
    gradient-reversal layer. The reversal coefficient is
    ``adv_weight * ganin_lambda(progress)`` after an optional warm-up, so with
    ``adv_weight: 0`` the encoder receives no gradient from the domain loss
    (the discriminator still trains and reports how separable the domains
    are) and the recipe is the source-only baseline.

    Target-domain speaker labels are never read: the target pipeline provides
    only ``sig``.
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
        """One optimiser for the SSL model when it is fine-tuned, one for the rest.

        The SSL model needs a much smaller learning rate than the layers
        trained from scratch (``ssl_opt_class`` vs ``opt_class``), as in
        SpeechBrain's wav2vec2 fine-tuning recipes.
        """
        ssl = getattr(unwrapped(self.modules.frontend), "ssl", None)
        ssl_params = [p for p in ssl.parameters() if p.requires_grad] if ssl else []
        if not ssl_params:
            return super().init_optimizers()
        ssl_ids = {id(p) for p in ssl_params}
        self.optimizer = self.opt_class(
            [p for p in self.modules.parameters() if id(p) not in ssl_ids])
        self.ssl_optimizer = self.hparams.ssl_opt_class(ssl_params)
        self.optimizers_dict = {"opt_class": self.optimizer, "ssl_opt_class": self.ssl_optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            self.checkpointer.add_recoverable("ssl_optimizer", self.ssl_optimizer)
        return None

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
        """Speaker loss on the source half plus the reversed domain loss.

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
        labels = source.spk_id_encoded.data.to(self.device)
        speaker_logits = self.modules.classifier(embeddings[:n_source])
        speaker_loss = self.hparams.compute_cost(speaker_logits, labels)

        coefficient = self.hparams.adv_schedule(self.progress())
        self.modules.grl.set_coefficient(coefficient)
        features = embeddings
        if self.hparams.adv_layer:
            features = self.adv_tap.frames(self.hparams.adv_input_size)
        # [batch, frames (1 for the embedding), domains]: every frame is classified.
        domain_logits = self.modules.domain_discriminator(self.modules.grl(features))
        domains = torch.cat(
            [torch.zeros(n_source), torch.ones(len(target))]
        ).long().to(self.device).repeat_interleave(domain_logits.shape[1])
        domain_logits = domain_logits.reshape(len(domains), -1)
        domain_loss = torch.nn.functional.cross_entropy(domain_logits, domains)

        loss = speaker_loss + domain_loss
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"Non-finite loss at epoch {self.hparams.epoch_counter.current}, "
                f"step {self.step}: speaker loss {speaker_loss.item()}, domain loss "
                f"{domain_loss.item()}. Lower the learning rate or adv_weight, or check "
                "the input audio of this batch."
            )
        accuracy = (domain_logits.argmax(dim=-1) == domains).float().mean()
        self._accumulate(
            speaker_loss=speaker_loss, domain_loss=domain_loss,
            domain_accuracy=accuracy, adv_coefficient=torch.tensor(coefficient),
        )
        return loss

    def progress(self):
        """Fraction of training done, in [0, 1], for the reversal schedule."""
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
            self.train_pairs.set_epoch(epoch)
            torch.manual_seed(self.hparams.seed * 1000 + epoch)

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
