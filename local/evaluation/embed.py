"""The modules an exported model adds to the run's: the length check, the embedder.

Exported models' ``hyperparams.yaml`` name :class:`LengthGuard` and
:class:`FrameLengthEmbedder` by this module's path (:mod:`local.export`), so
they stay here.
"""

import pandas as pd
import torch

from local.data.audio import check_finite_samples, check_lengths, sample_counts
from local.data.schema import SAMPLE_RATE
from local.embedding import embedded_in, equal_length_batches


class LengthGuard(torch.nn.Module):
    """Refuses 16 kHz waveforms the models cannot embed whole, then runs the front end.

    In the slot of SpeechBrain's ``encode_batch`` that gets the waveforms
    with their relative lengths (``mean_var_norm``) of an exported model
    (:mod:`local.export`), so that each waveform of a padded batch is
    measured by its own length: ``encode_batch``, ``verify_batch`` and
    ``verify_files`` stop with a message on a clip too short for the
    encoder, too long to embed in bounded memory
    (:func:`local.data.audio.check_lengths`), or with NaN or infinite
    samples, which would give a NaN embedding and score
    (:func:`local.data.audio.check_finite_samples`), before the front end runs
    (:class:`FrameLengthEmbedder`). It passes the waveforms through, or runs
    the front end it is given: models exported before the embedder held the
    front end have it here. Models exported before it took one have it as
    ``compute_features``, where it checks the length of the padded batch.

    Arguments
    ---------
    shortest : float, optional
        ``min_embed_seconds`` of the run.
    longest : float, optional
        ``max_embed_seconds`` of the run.
    frontend : torch.nn.Module, optional
        The run's front end, ``frontend(wavs, wav_lens)``, in models exported
        before :class:`FrameLengthEmbedder`.

    Example
    -------
    >>> guard = LengthGuard(0.5, 600)
    >>> guard(torch.zeros(1, 16000)).shape
    torch.Size([1, 16000])
    >>> guard(torch.zeros(2, 16000), torch.tensor([1.0, 0.25]))
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: the waveform to embed: 1 inputs are shorter than min_embed_seconds (0.5 s), ...
      waveform 1 of the batch: 0.25 s
    ...
    """

    def __init__(self, shortest=None, longest=None, frontend=None):
        super().__init__()
        self.shortest, self.longest, self.frontend = shortest, longest, frontend

    def forward(self, wavs, wav_lens=None):
        """The front end's features of ``wavs`` (or ``wavs``), once they are checked.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` at 16 kHz.
        wav_lens : torch.Tensor, optional
            ``[batch]`` length of each relative to ``samples`` (default all whole).

        Returns
        -------
        torch.Tensor
            What the front end gives, or ``wavs`` without one.
        """
        relative = torch.ones(len(wavs)) if wav_lens is None else wav_lens.detach().cpu()
        names = (["the waveform"] if len(wavs) == 1 else
                 [f"waveform {i} of the batch" for i in range(len(wavs))])
        seconds = pd.Series((relative * wavs.shape[-1] / SAMPLE_RATE).tolist(), index=names)
        check_lengths(seconds, "the waveform to embed", self.shortest, self.longest, fixes=(
            f"give each waveform at least {self.shortest} s of audio",
            f"embed it in pieces of at most {self.longest} s and average their "
            "length-normalised embeddings, as an enrolment model is"))
        check_finite_samples(wavs, "the waveform to embed", names,
                             fix="replace or drop the waveform: its samples must be finite")
        return wavs if self.frontend is None else self.frontend(wavs, wav_lens)


class FrameLengthEmbedder(torch.nn.Module):
    """The run's front end and encoder, each waveform of a batch embedded as it is alone.

    The ``embedding_model`` of an exported model (:mod:`local.export`), which
    ``encode_batch`` gives the waveforms and their relative lengths. The
    waveforms of each length run together, cut to that length
    (:func:`local.embedding.equal_length_batches`), as the recipe embeds
    them: no padding reaches the front end or the encoder, whose
    convolutions, SpeechBrain's ResNet's pooling (it takes no lengths) and
    an SSL model's CNN with group normalisation would mix it into a shorter
    waveform's embedding. A batch costs a forward pass per distinct length.
    The model folder's checkpoints are those of the two modules it holds
    (``embedding_model.ckpt``, and the front end's). They run in the
    precision the run's report scored in (``--eval_precision``), as
    ``DANNBrain.evaluation_embed`` does, so that the embeddings and scores
    are those its thresholds were set on.

    Arguments
    ---------
    frontend : torch.nn.Module
        The run's front end: ``frontend(wavs, wav_lens)``.
    encoder : torch.nn.Module
        The run's ``embedding_model``.
    precision : str
        ``fp32``, ``bf16`` or ``fp16`` (autocast); the embeddings are float32.

    Example
    -------
    >>> from speechbrain.lobes.models.Xvector import Xvector
    >>> from local.model.fbank_frontend import FbankFrontend
    >>> embedder = FrameLengthEmbedder(FbankFrontend(n_mels=24), Xvector(in_channels=24))
    >>> embedder(torch.rand(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 1, 512])
    """

    def __init__(self, frontend, encoder, precision="fp32"):
        super().__init__()
        self.frontend, self.encoder, self.precision = frontend, encoder, precision

    def forward(self, wavs, wav_lens):
        """Embeddings of ``wavs``, in their order.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` at 16 kHz.
        wav_lens : torch.Tensor
            ``[batch]`` length of each relative to ``samples``.

        Returns
        -------
        torch.Tensor
            What the encoder gives, in float32.
        """
        counts = sample_counts(wavs, wav_lens)
        groups = equal_length_batches(counts, len(counts))
        embeddings = torch.cat([embedded_in(self.precision, wavs.device.type, self._embed_whole,
                                            wavs[group, :counts[group[0]]]) for group in groups])
        order = torch.tensor([index for group in groups for index in group],
                             device=embeddings.device)
        return embeddings[torch.argsort(order)]

    def _embed_whole(self, wavs):
        """Embeddings of ``[batch, samples]`` waveforms of one length, unpadded."""
        whole = wavs.new_ones(len(wavs))
        return self.encoder(self.frontend(wavs, whole), whole)
