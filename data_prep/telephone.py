"""The telephone call of the generated corpora: handset band, 8 kHz, codec, line noise.

One model, :func:`telephone_channel`; what a corpus's calls draw from is a
:class:`Line`. The demo corpus's calls (:data:`HANDSET_LINE`) add a handset
resonance and mains hum to a continuous mu-law curve; the recorded-voice
corpus's (:data:`G711_LINE`) use the G.711 codec, mu- or A-law, after the
noise of the analogue local loop.
"""

import dataclasses

import numpy as np
from scipy import signal

from local.data.schema import SAMPLE_RATE

TELEPHONE_RATE = 8000
MU = 255.0


@dataclasses.dataclass(frozen=True)
class Line:
    """The ranges a corpus's telephone calls are drawn from.

    Attributes
    ----------
    low_edge, high_edge : tuple of float
        Ranges (Hz) of the band's lower and upper edge.
    filter_order : int
        Order of the Butterworth band-pass's low-pass prototype (scipy's
        ``N``): the band-pass has twice this order.
    codecs : tuple of str
        Codecs a call draws from (:func:`codec`).
    snr_db : tuple of float
        Range of the line noise's signal-to-noise ratio.
    loop_noise : bool
        Noise on the analogue loop, before the codec; else after it, with
        50 Hz hum.
    resonance : bool
        A handset resonance between 1 and 3 kHz.
    """

    low_edge: tuple
    high_edge: tuple
    filter_order: int
    codecs: tuple
    snr_db: tuple
    loop_noise: bool
    resonance: bool


HANDSET_LINE = Line(low_edge=(250, 450), high_edge=(2900, 3500), filter_order=4,
                    codecs=("mu_curve",), snr_db=(15, 30), loop_noise=False, resonance=True)
G711_LINE = Line(low_edge=(250, 400), high_edge=(3200, 3500), filter_order=6,
                 codecs=("mu", "a"), snr_db=(20, 35), loop_noise=True, resonance=False)


def resonate(wave, freq, bandwidth):
    """A two-pole resonator at ``freq`` Hz (at most 0.45 of the rate) of ``bandwidth`` Hz.

    Arguments
    ---------
    wave : numpy.ndarray
        16 kHz waveform.
    freq, bandwidth : float
        Centre and bandwidth, Hz.

    Returns
    -------
    numpy.ndarray
        The filtered waveform.

    Example
    -------
    >>> resonate(np.zeros(4), 1000.0, 80.0).tolist()
    [0.0, 0.0, 0.0, 0.0]
    """
    freq = min(freq, 0.45 * SAMPLE_RATE)
    radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2 * np.pi * freq / SAMPLE_RATE
    return signal.lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], wave)


def g711(wave, law):
    """Encode and decode with the G.711 codec: 8-bit segmented mu-law or A-law.

    Written here because torchaudio has only the continuous mu-law curve and
    no A-law, and Python's ``audioop`` is gone from Python 3.13.

    Arguments
    ---------
    wave : numpy.ndarray
        Samples in [-1, 1].
    law : str
        ``"mu"`` or ``"a"``.

    Returns
    -------
    numpy.ndarray
        The decoded samples, in [-1, 1].

    Example
    -------
    >>> g711(np.array([0.0, 0.5, -0.25]), "a").round(4).tolist()
    [0.0002, 0.5156, -0.2461]
    """
    # Integer arithmetic of ITU-T G.711 on 16-bit samples (negative values
    # floor-shifted, as the reference coder does).
    pcm = np.clip(np.round(wave * 32768), -32768, 32767).astype(np.int64)
    sign = np.where(pcm < 0, -1, 1)
    if law == "mu":
        magnitude = np.minimum(np.abs(pcm >> 2), 8158) + 33  # 14-bit, biased
        segment = np.floor(np.log2(magnitude)).astype(np.int64) - 5
        mantissa = (magnitude >> (segment + 1)) & 0xF
        decoded = (((2 * mantissa + 33) << segment) - 33) << 2
    elif law == "a":
        magnitude = np.where(pcm < 0, -(pcm >> 3) - 1, pcm >> 3)  # 13-bit
        segment = np.maximum(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64) - 4, 0)
        shift = np.maximum(segment, 1)
        mantissa = (magnitude >> shift) & 0xF
        decoded = np.where(segment == 0, 2 * mantissa + 1, (2 * mantissa + 33) << (segment - 1))
        decoded = decoded << 3
    else:
        raise ValueError(f"G.711 law must be 'mu' or 'a', not {law!r}")
    return sign * decoded / 32768.0


def codec(narrow, name):
    """Encode and decode ``narrow`` with a call's codec.

    Arguments
    ---------
    narrow : numpy.ndarray
        8 kHz waveform.
    name : str
        ``"mu"`` or ``"a"``: :func:`g711`, the input brought to a 0.9 peak;
        ``"mu_curve"``: the continuous mu-law curve quantised to 8 bits,
        scaled to the waveform's peak.

    Returns
    -------
    numpy.ndarray
        The decoded waveform.

    Example
    -------
    >>> codec(np.array([0.0, 0.5, -1.0]), "mu_curve").round(4).tolist()
    [0.0, 0.4953, -1.0]
    """
    peak = np.abs(narrow).max() + 1e-9
    if name != "mu_curve":
        return g711(0.9 * narrow / peak, name)
    companded = np.sign(narrow) * np.log1p(MU * np.abs(narrow) / peak) / np.log1p(MU)
    quantised = np.round(companded * 127) / 127
    return peak * np.sign(quantised) * ((1 + MU) ** np.abs(quantised) - 1) / MU


def telephone_channel(rng, wave, line):
    """One telephone call: handset band, 8 kHz, codec and line noise, drawn from ``line``.

    Each call draws its band edges, codec and noise level (and, as ``line``
    says, a handset resonance and the hum's phase), so that the channel
    varies between recordings as real calls do.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    wave : numpy.ndarray
        16 kHz waveform.
    line : Line
        What the call is drawn from.

    Returns
    -------
    tuple
        The 8 kHz waveform and the codec's name.

    Example
    -------
    >>> narrow, name = telephone_channel(np.random.default_rng(0), np.zeros(16000), G711_LINE)
    >>> narrow.shape, name in ("mu", "a")
    ((8000,), True)
    """
    band = [rng.uniform(*line.low_edge), rng.uniform(*line.high_edge)]
    sos = signal.butter(line.filter_order, band, btype="band", fs=SAMPLE_RATE, output="sos")
    handset = signal.sosfilt(sos, wave)
    if line.resonance:
        resonance = resonate(handset, rng.uniform(1000, 3000), 80.0)
        handset += rng.uniform(0.0, 0.5) * resonance * np.std(handset) / (np.std(resonance) + 1e-12)
    narrow = signal.resample_poly(handset, TELEPHONE_RATE, SAMPLE_RATE)
    if line.loop_noise:
        narrow = narrow + _noise(rng, narrow, line.snr_db)
    name = str(rng.choice(line.codecs)) if len(line.codecs) > 1 else line.codecs[0]
    narrow = codec(narrow, name)
    if not line.loop_noise:
        time = np.arange(narrow.size) / TELEPHONE_RATE
        rms = np.sqrt(np.mean(narrow**2))
        hum = 0.1 * rms * np.sin(2 * np.pi * 50 * time + rng.uniform(0, 2 * np.pi))
        narrow = narrow + hum + _noise(rng, narrow, line.snr_db)
    return narrow, name


def _noise(rng, wave, snr_db):
    """White noise at a signal-to-noise ratio drawn from ``snr_db``."""
    rms = np.sqrt(np.mean(wave**2))
    return rms / 10 ** (rng.uniform(*snr_db) / 20) * rng.standard_normal(wave.size)
