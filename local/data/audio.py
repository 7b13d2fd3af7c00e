"""Reading manifest rows as 16 kHz waveforms, and the key of what a row's waveform is."""

import os

import pandas as pd
import torch
import torchaudio
from speechbrain.dataio import audio_io

from local.data.schema import SAMPLE_RATE, unreadable
from local.errors import fail
from local.provenance import short_digest

CHANGED_AUDIO_FIX = ("the file changed after the manifest was written or checked: restore it, "
                     "or prepare the manifest again; python -m data_prep.manifest MANIFEST "
                     "checks a manifest against its audio")


def load_segment(wav, start, stop, sample_rate, target_rate=SAMPLE_RATE):
    """Read samples ``start:stop`` of ``wav`` and resample them to ``target_rate``.

    SpeechBrain's ``audio_io.load`` reads the segment (soundfile backend)
    and the file's rate, which must be the one the row declares: a file read
    at another rate than its own would train and score on sped-up or
    slowed-down speech. Resampling happens here, on the fly, so that 8 kHz
    telephone corpora are used without a resampled copy on disk.

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

    Raises
    ------
    ManifestError
        Naming the file when it cannot be read, is at another rate than
        ``sample_rate`` (a manifest without a ``sample_rate`` column declares
        16 kHz; ``check_audio`` finds such rows before training), ends
        before ``stop`` (changed since the manifest was checked) or has NaN
        or infinite samples in the segment (:func:`check_finite_samples`).

    Example
    -------
    >>> import os, tempfile, soundfile, numpy
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, numpy.zeros(8000), 8000)
    >>> load_segment(path, 0, 4000, 8000).shape
    torch.Size([8000])
    >>> load_segment(path, 0, 4000, 16000)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: /...a.wav: is 8000 Hz, but its manifest row says 16000 Hz
    Fix: ...
    """
    try:
        signal, file_rate = audio_io.load(wav, frame_offset=int(start),
                                          num_frames=int(stop) - int(start),
                                          channels_first=False, dtype=torch.float32)
    except Exception as err:  # libsndfile raises several types
        unreadable(wav, err)
    if file_rate != int(sample_rate):
        fail(wav, f"is {file_rate} Hz, but its manifest row says {sample_rate} Hz",
             fix="add or fix the manifest's sample_rate column (16000 where it has none); "
                 "python -m data_prep.manifest MANIFEST checks a manifest against its audio")
    if signal.shape[0] != int(stop) - int(start):
        fail(wav, f"has {signal.shape[0]} samples from sample {start} on, where the manifest's "
                  f"row needs {int(stop) - int(start)} (start {start}, stop {stop})",
             fix=CHANGED_AUDIO_FIX)
    check_finite_samples(signal.T, wav, [f"samples {start} to {stop}"],
                         fix="write the file again from its source audio, or take its rows "
                             "out of the manifest")
    signal = signal.mean(dim=-1)
    if int(sample_rate) != target_rate:
        signal = torchaudio.functional.resample(signal, int(sample_rate), target_rate)
    return signal.to(torch.float32)


def check_finite_samples(wavs, source, names, fix):
    """Refuse waveforms with NaN or infinite samples, naming each.

    Float audio files and tensors can hold them (a writer that failed, an
    enhancement model that diverged); they would become NaN features,
    embeddings, scores and losses.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[len(names), ...]``: the samples of each waveform.
    source : str
        Where they come from (a file), named first in the message.
    names : list of str
        How the message names each waveform.
    fix : str
        How to fix it.

    Raises
    ------
    ManifestError
        Naming the waveforms and how many such samples each has.

    Example
    -------
    >>> check_finite_samples(torch.tensor([[0.1, float("nan")]]), "a.wav", ["samples 0 to 2"],
    ...                      fix="write it again")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: a.wav: NaN or infinite samples, which no model can embed
      samples 0 to 2: 1 such samples
    Fix: write it again
    """
    counts = (~torch.isfinite(wavs)).reshape(len(names), -1).sum(dim=1).tolist()
    if any(counts):
        fail(source, "NaN or infinite samples, which no model can embed",
             rows=[f"{name}: {count} such samples" for name, count in zip(names, counts) if count],
             fix=fix)


def load_random_crop(wav, start, stop, sample_rate, seconds, target_rate=SAMPLE_RATE):
    """A random ``seconds``-long crop of a manifest row, at ``target_rate``.

    Only the crop is read from disk. A row shorter than ``seconds`` is
    repeated until it fills the crop, so that every training example has the
    same length and no padding reaches the SSL model or the encoder.

    Arguments
    ---------
    wav : str
        Audio file.
    start : int
        First sample of the row, at the file's rate.
    stop : int
        One past the row's last sample, at the file's rate.
    sample_rate : int
        The file's rate.
    seconds : float
        Crop length.
    target_rate : int
        Rate the models expect.

    Returns
    -------
    torch.Tensor
        ``[round(seconds * target_rate)]`` samples.

    Example
    -------
    >>> import os, tempfile, soundfile, numpy
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, numpy.ones(8000) * 0.1, 8000)
    >>> load_random_crop(path, 0, 8000, 8000, 3.0).shape
    torch.Size([48000])
    """
    start, stop, sample_rate = int(start), int(stop), int(sample_rate)
    native = int(round(seconds * sample_rate))
    if stop - start > native:
        start += int(torch.randint(0, stop - start - native + 1, (1,)))
        stop = start + native
    signal = load_segment(wav, start, stop, sample_rate, target_rate)
    wanted = int(round(seconds * target_rate))
    repeats = -(-wanted // signal.numel())
    return signal.repeat(repeats)[:wanted]


def relative_lengths(counts, total, like):
    """``counts / total`` as relative lengths that SpeechBrain's masks read back as ``counts``.

    The nearest float32 to ``k / total`` can lie above it, by more than the
    ``1e-6`` that ``make_padding_mask`` (``InputNormalization``) takes off
    ``k / total * total``: that mask then takes a frame of padding as the
    utterance's (for 29 of the 1,104 lengths of batches of 101 to 501
    frames). Each length is rounded down instead, so that masks and rounding
    alike count ``k``; a whole length stays exactly 1.

    Arguments
    ---------
    counts : list of int
        Frames (or samples) of each utterance.
    total : int
        Those of the padded batch.
    like : torch.Tensor
        A tensor of the lengths' type and device.

    Returns
    -------
    torch.Tensor
        ``[len(counts)]``.

    Example
    -------
    >>> from speechbrain.processing.features import make_padding_mask
    >>> lengths = relative_lengths([51, 101], 101, torch.ones(1))
    >>> make_padding_mask(torch.zeros(2, 101, 1), lengths).sum(dim=1).flatten().tolist()
    [51, 101]
    """
    exact = torch.tensor(counts, dtype=torch.float64) / total
    nearest = exact.to(like.dtype)
    below = torch.nextafter(nearest, torch.zeros_like(nearest))
    return torch.where(nearest.double() > exact, below, nearest).to(like.device)


def sample_counts(wavs, wav_lens):
    """The samples of each waveform of a padded batch, as SpeechBrain's padding mask counts them.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[batch, samples]``.
    wav_lens : torch.Tensor, optional
        ``[batch]`` relative lengths (default all whole).

    Returns
    -------
    list of int
        The samples of each.

    Example
    -------
    >>> sample_counts(torch.zeros(2, 300), torch.tensor([1.0, 0.5]))
    [300, 150]
    """
    if wav_lens is None:
        return [wavs.shape[1]] * len(wavs)
    return torch.round(wav_lens * wavs.shape[1]).int().tolist()


def signal_key(row):
    """A digest of what a manifest row's waveform is made of: its file as it is now, and its span.

    The file counts by its absolute path, size and modification and change
    times (how ``make`` and ``rsync`` tell a changed file, without reading
    it), so that a cache keyed by it is not reused after the audio was
    replaced under the same ID; the span by ``start``, ``stop`` and
    ``sample_rate``. A file that cannot be found gets a key too: reading it
    names it.

    Arguments
    ---------
    row : dict
        A manifest row: ``wav``, ``start``, ``stop``, ``sample_rate``.

    Returns
    -------
    str
        16 hex digits.

    Example
    -------
    >>> import tempfile, soundfile, numpy
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, numpy.zeros(800), 8000)
    >>> row = {"wav": path, "start": 0, "stop": 800, "sample_rate": 8000}
    >>> before = signal_key(row)
    >>> before == signal_key(row), before == signal_key(dict(row, stop=400))
    (True, False)
    >>> soundfile.write(path, numpy.ones(800) * 0.1, 8000)
    >>> before == signal_key(row)
    False
    """
    path = os.path.abspath(row["wav"])
    return short_digest([path, int(row["start"]), int(row["stop"]), int(row["sample_rate"]),
                         file_identity(path)])


def file_identity(path):
    """A file as it is now, without reading it: its size and modification and change times.

    How ``make`` and ``rsync`` tell a changed file: a file replaced or
    rewritten gets other times, even where its size stays.

    Arguments
    ---------
    path : str
        The file (a link counts as the file it points to).

    Returns
    -------
    list of int or None
        ``[size, mtime_ns, ctime_ns]``, or None when the file cannot be found.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> file_identity(path) is None
    True
    >>> _ = open(path, "w").write("abc")
    >>> file_identity(path)[0]
    3
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def check_lengths(seconds, source, shortest=None, longest=None, fixes=None):
    """Refuse audio shorter or longer than the models embed whole, naming each.

    Arguments
    ---------
    seconds : pandas.Series
        Duration of each input, indexed by how a message names it
        (``"u1 (/data/u1.wav)"``).
    source : str
        What the inputs are (a manifest), named first in the message.
    shortest : float, optional
        ``min_embed_seconds``: the models' encoders need frames to pad.
    longest : float, optional
        ``max_embed_seconds``: the memory of embedding one input grows with
        its length.
    fixes : tuple of str, optional
        The fixes of too short and too long inputs, where they are no
        manifest rows (the waveforms given to an exported model); by default
        those of a manifest's rows.

    Raises
    ------
    ManifestError
        Naming the inputs and the fix.

    Example
    -------
    >>> check_lengths(pd.Series([2.0, 0.1], index=["u1", "u2"]), "eval.csv", 0.5, 600)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: eval.csv: 1 inputs are shorter than min_embed_seconds (0.5 s), the shortest the models take
      u2: 0.10 s
    Fix: ...
    """
    short_fix, long_fix = fixes or (
        "take them out of the manifest or trial list, or give them more audio",
        f"cut each into rows of at most {longest} s (start, stop; data_prep.preparation."
        "chunk_rows does) and score them as one enrolment model, or raise "
        "max_embed_seconds where the memory allows it")
    limits = (
        (shortest, seconds < (shortest or 0), "shorter than min_embed_seconds",
         "the shortest the models take", short_fix),
        (longest, seconds > (longest or float("inf")), "longer than max_embed_seconds",
         "the longest embedded whole, which bounds the memory", long_fix),
    )
    for limit, beyond, problem, meaning, fix in limits:
        if limit is not None and beyond.any():
            fail(source, f"{int(beyond.sum())} inputs are {problem} ({limit} s), {meaning}",
                 rows=[f"{name}: {value:.2f} s" for name, value in seconds[beyond].items()],
                 fix=fix)
