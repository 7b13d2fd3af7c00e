"""Filterbank front end with the same interface as the SSL front end."""

import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import InputNormalization


class FbankFrontend(torch.nn.Module):
    """Log mel filterbanks with per-utterance mean normalisation.

    The SSL-free front end of ``hparams/dann_fbank.yaml``: fast on a CPU and
    a reference point for what the SSL layers add.

    Arguments
    ---------
    n_mels : int
        Number of mel bands (the encoder's input size).

    Example
    -------
    >>> frontend = FbankFrontend(n_mels=40)
    >>> frontend(torch.rand(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 101, 40])
    """

    def __init__(self, n_mels=80):
        super().__init__()
        self.fbank = Fbank(n_mels=n_mels)
        self.norm = InputNormalization(norm_type="sentence", std_norm=False)

    def forward(self, wavs, wav_lens):
        """Features ``[batch, frames, n_mels]`` of 16 kHz ``wavs``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms at 16 kHz.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths (1.0 for the longest).

        Returns
        -------
        torch.Tensor
            ``[batch, frames, n_mels]`` log mel filterbanks, the mean of each
            utterance's frames (within its length) subtracted.
        """
        return self.norm(self.fbank(wavs), wav_lens)
