"""The length check at the front of an exported model.

Exported models' ``hyperparams.yaml`` name :class:`LengthGuard` by this
module's path (:mod:`local.export`), so it stays here.
"""

import pandas as pd
import torch

from local.data.audio import check_lengths
from local.data.schema import SAMPLE_RATE


class LengthGuard(torch.nn.Module):
    """Passes 16 kHz waveforms through, refusing those the models cannot embed whole.

    The first module of an exported model (:mod:`local.export`), so that
    SpeechBrain's ``encode_batch`` and ``verify_files`` stop with a message
    on a clip too short for the encoder, or too long to embed in bounded
    memory (:func:`local.data.audio.check_lengths`).

    Arguments
    ---------
    shortest : float, optional
        ``min_embed_seconds`` of the run.
    longest : float, optional
        ``max_embed_seconds`` of the run.

    Example
    -------
    >>> guard = LengthGuard(0.5, 600)
    >>> guard(torch.zeros(1, 16000)).shape
    torch.Size([1, 16000])
    >>> guard(torch.zeros(1, 0))
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: the waveform to embed: 1 inputs are shorter than min_embed_seconds (0.5 s), ...
    """

    def __init__(self, shortest=None, longest=None):
        super().__init__()
        self.shortest, self.longest = shortest, longest

    def forward(self, wavs):
        """``wavs``, once their length is checked.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` at 16 kHz (the length of the longest is checked).

        Returns
        -------
        torch.Tensor
            ``wavs``.
        """
        seconds = pd.Series([wavs.shape[-1] / SAMPLE_RATE], index=["the waveform"])
        check_lengths(seconds, "the waveform to embed", self.shortest, self.longest)
        return wavs
