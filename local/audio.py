"""Reading manifest rows as 16 kHz waveforms."""

import torch
import torchaudio
from speechbrain.dataio.dataio import read_audio

TARGET_SAMPLE_RATE = 16000


def load_segment(wav, start, stop, sample_rate, target_rate=TARGET_SAMPLE_RATE):
    """Read samples ``start:stop`` of ``wav`` and resample them to ``target_rate``.

    SpeechBrain's ``read_audio`` reads the segment (soundfile backend);
    resampling happens here, on the fly, so that 8 kHz telephone corpora are
    used without a resampled copy on disk.

    Arguments
    ---------
    wav : str
        Audio file.
    start : int
        First sample, at the file's rate.
    stop : int
        One past the last sample, at the file's rate.
    sample_rate : int
        The file's rate, as the manifest declares it.
    target_rate : int
        Rate the models expect.

    Returns
    -------
    torch.Tensor
        Mono waveform ``[samples]`` at ``target_rate``.

    Example
    -------
    >>> import os, tempfile, soundfile, numpy
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, numpy.zeros(8000), 8000)
    >>> load_segment(path, 0, 4000, 8000).shape
    torch.Size([8000])
    """
    signal = read_audio({"file": wav, "start": int(start), "stop": int(stop)})
    if signal.dim() > 1:
        signal = signal.mean(dim=-1)
    if int(sample_rate) != target_rate:
        signal = torchaudio.functional.resample(signal, int(sample_rate), target_rate)
    return signal.to(torch.float32)
