"""Filterbank front end with the same interface as the SSL front end."""

import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import InputNormalization

from local.data.audio import relative_lengths, sample_counts


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
            utterance's frames (:meth:`frame_lengths`) subtracted.
        """
        return self.norm(self.fbank(wavs), self.frame_lengths(wavs, wav_lens))

    def frame_lengths(self, wavs, wav_lens):
        """Relative lengths of the frames :meth:`forward` gives, for the encoder's pooling.

        The STFT centres a frame on every ``hop_length``-th sample, so a
        waveform has ``samples // hop_length + 1`` frames: ``wav_lens`` times
        the padded batch's frames can be a frame fewer or one of padding.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms at 16 kHz.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.

        Returns
        -------
        torch.Tensor
            ``[batch]`` relative lengths of the frames (all ones for a batch of
            one length).

        Example
        -------
        >>> FbankFrontend(n_mels=40).frame_lengths(torch.zeros(2, 48000), torch.tensor([1.0, 1 / 3]))
        tensor([1.0000, 0.3355])
        """
        hop = self.fbank.compute_STFT.hop_length
        frames = [samples // hop + 1 for samples in sample_counts(wavs, wav_lens)]
        return relative_lengths(frames, wavs.shape[1] // hop + 1, wav_lens)
