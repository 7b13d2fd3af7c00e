"""The length check at the front of an exported model.

Exported models' ``hyperparams.yaml`` name :class:`LengthGuard` by this
module's path (:mod:`local.export`), so it stays here.
"""

import pandas as pd
import torch

from local.data.audio import check_lengths
from local.data.schema import SAMPLE_RATE


class LengthGuard(torch.nn.Module):
    """Refuses 16 kHz waveforms the models cannot embed whole, then runs the front end.

    The front end of an exported model (:mod:`local.export`), in the slot of
    SpeechBrain's ``encode_batch`` that gets the waveforms with their
    relative lengths (``mean_var_norm``), so that each waveform of a padded
    batch is measured by its own length: ``encode_batch``, ``verify_batch``
    and ``verify_files`` stop with a message on a clip too short for the
    encoder, or too long to embed in bounded memory
    (:func:`local.data.audio.check_lengths`). Without a front end (models
    exported before it took one, where it is ``compute_features``) it checks
    the length of the padded batch and passes the waveforms through.

    Arguments
    ---------
    shortest : float, optional
        ``min_embed_seconds`` of the run.
    longest : float, optional
        ``max_embed_seconds`` of the run.
    frontend : torch.nn.Module, optional
        The run's front end, ``frontend(wavs, wav_lens)``.

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
        """The front end's features of ``wavs`` (or ``wavs``), once their lengths are checked.

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
        check_lengths(seconds, "the waveform to embed", self.shortest, self.longest)
        return wavs if self.frontend is None else self.frontend(wavs, wav_lens)
