"""The telephone channel: its resonator, codecs, line noise, hum and handset resonance."""

import dataclasses

import numpy as np
import pytest
from scipy import signal

from data_prep.telephone import (
    G711_LINE,
    HANDSET_LINE,
    codec,
    g711,
    resonate,
    telephone_channel,
)


def _power_spectrum(wave, rate):
    power = np.abs(np.fft.rfft(wave)) ** 2
    return np.fft.rfftfreq(wave.size, 1 / rate), power


def _tones(wave, freqs, rate=8000):
    """Least-squares fit of ``wave`` by sines of ``freqs``: the fit and each tone's amplitude."""
    time = np.arange(wave.size) / rate
    basis = np.column_stack([fn(2 * np.pi * f * time) for f in freqs for fn in (np.sin, np.cos)])
    coefficients = np.linalg.lstsq(basis, wave, rcond=None)[0]
    return basis @ coefficients, np.hypot(coefficients[0::2], coefficients[1::2])


@pytest.mark.parametrize("freq, bandwidth", [(1000.0, 80.0), (2500.0, 200.0), (500.0, 120.0)])
def test_the_resonator_peaks_at_its_frequency_with_its_bandwidth(freq, bandwidth):
    impulse = np.zeros(16000)
    impulse[0] = 1.0
    freqs, power = _power_spectrum(resonate(impulse, freq, bandwidth), 16000)
    half_power = freqs[power >= power.max() / 2]
    assert freqs[np.argmax(power)] == pytest.approx(freq, abs=bandwidth / 20)
    # A two-pole resonator's half-power band is one connected band of the given width.
    assert half_power.max() - half_power.min() == pytest.approx(bandwidth, rel=0.05)
    assert len(half_power) == half_power.max() - half_power.min() + 1


def test_the_resonator_stays_below_the_nyquist_frequency():
    impulse = np.zeros(16000)
    impulse[0] = 1.0
    freqs, power = _power_spectrum(resonate(impulse, 9000.0, 80.0), 16000)
    assert freqs[np.argmax(power)] == pytest.approx(0.45 * 16000, abs=3)


@pytest.mark.parametrize("law", ["mu", "a"])
def test_a_g711_call_is_coded_by_its_law_at_a_0_9_peak(law):
    wave = 0.3 * np.sin(2 * np.pi * np.arange(4000) * 441 / 8000)
    decoded = codec(wave, law)
    # Every sample is a code word of this law's decoder (its 256 values), not of the other's.
    words = {"mu": set(g711(np.linspace(-1, 1, 200001), "mu")),
             "a": set(g711(np.linspace(-1, 1, 200001), "a"))}
    assert set(decoded) <= words[law] and not set(decoded) <= words[{"mu": "a", "a": "mu"}[law]]
    # Brought to a 0.9 peak: within the coarsest step (1/32 of full scale) of it.
    assert np.abs(decoded).max() == pytest.approx(0.9, abs=1 / 32)
    assert np.corrcoef(decoded, wave)[0, 1] > 0.999


def test_the_mu_law_curve_keeps_the_waveform_level():
    wave = np.sin(2 * np.pi * np.arange(4000) * 441 / 8000)
    for level in (0.05, 0.4):
        decoded = codec(level * wave, "mu_curve")
        assert np.abs(decoded).max() == pytest.approx(level, rel=1e-6)
        assert np.sqrt(np.mean(decoded**2)) == pytest.approx(level / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("line", [G711_LINE, HANDSET_LINE], ids=["g711", "handset"])
def test_the_line_noise_is_at_a_signal_to_noise_ratio_of_the_line(line):
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000)
    for snr_db in (10.0, 20.0):
        narrow, _ = telephone_channel(np.random.default_rng(0), tone,
                                      dataclasses.replace(line, snr_db=(snr_db, snr_db)))
        fitted, _ = _tones(narrow, [1000, 50])  # the call's tone, and its hum
        measured = 10 * np.log10(np.mean(_tones(narrow, [1000])[0] ** 2)
                                 / np.mean((narrow - fitted) ** 2))
        assert measured == pytest.approx(snr_db, abs=0.5)


def test_the_handset_line_hums_at_50_hz_a_tenth_of_its_level_and_the_g711_line_does_not():
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        handset, _ = telephone_channel(rng, tone, dataclasses.replace(HANDSET_LINE,
                                                                      snr_db=(60, 60)))
        g711_call, _ = telephone_channel(rng, tone, dataclasses.replace(G711_LINE,
                                                                        snr_db=(60, 60)))
        for call, share in ((handset, 0.1), (g711_call, 0.0)):
            _, (signal_amplitude, hum_amplitude) = _tones(call, [1000, 50])
            # A tone's RMS is its amplitude over sqrt(2); the hum is a tenth of the call's RMS.
            assert hum_amplitude == pytest.approx(share * signal_amplitude / np.sqrt(2),
                                                  abs=0.003)
        _, amplitudes = _tones(handset, [40, 50, 60])
        assert amplitudes[1] > 10 * max(amplitudes[0], amplitudes[2])


def test_the_handset_resonance_is_a_narrow_peak_at_its_drawn_frequency():
    # The call draws its band's two edges, then the resonance's frequency and weight.
    noise = np.random.default_rng(99).standard_normal(4 * 16000)
    quiet = dataclasses.replace(HANDSET_LINE, snr_db=(80, 80))
    for seed in range(8):
        draws = np.random.default_rng(seed)
        draws.uniform(size=2)
        freq, weight = draws.uniform(1000, 3000), draws.uniform(0.0, 0.5)
        spectra = []
        for line in (quiet, dataclasses.replace(quiet, resonance=False)):
            call, _ = telephone_channel(np.random.default_rng(seed), noise, line)
            spectra.append(signal.welch(call, 8000, nperseg=512))
        freqs, gain = spectra[0][0], spectra[0][1] / spectra[1][1]
        if weight > 0.05:
            assert freqs[np.argmax(gain)] == pytest.approx(freq, abs=40)
        # At the handset's power over ~80 Hz of a ~2.9 kHz band, the resonance's amplitude
        # at its centre is about sqrt(2900 / (pi / 2 * 80)) ~ 4.8 times the handset's.
        assert 3 * weight < np.sqrt(gain.max()) - 1 < 6.5 * weight + 0.05
        assert np.median(gain[(freqs > 500) & (freqs < 2800)]) == pytest.approx(1, abs=0.15)


@pytest.mark.parametrize("line", [G711_LINE, HANDSET_LINE], ids=["g711", "handset"])
def test_below_the_band_the_call_falls_off_as_a_butterworth_band_pass_of_the_lines_order(line):
    # An analogue Butterworth band-pass of order 2N from edges fl, fh attenuates frequency f
    # by 1 + ((fl * fh - f**2) / (f * (fh - fl)))**(2N) in power.
    noise = np.random.default_rng(5).standard_normal(8 * 16000)
    quiet = dataclasses.replace(line, snr_db=(80, 80), resonance=False)
    for seed in range(3):
        draws = np.random.default_rng(seed)  # the call draws its lower edge, then its upper
        low, high = draws.uniform(*line.low_edge), draws.uniform(*line.high_edge)
        call, _ = telephone_channel(np.random.default_rng(seed), noise, quiet)
        freqs, power = signal.welch(call, 8000, nperseg=2048)
        in_band = np.median(power[(freqs > low + 200) & (freqs < high - 300)])
        for attenuation_db in (10, 20):
            omega = (10 ** (attenuation_db / 10) - 1) ** (1 / (2 * line.filter_order))
            bandwidth = high - low
            freq = (np.sqrt((omega * bandwidth) ** 2 + 4 * low * high) - omega * bandwidth) / 2
            measured = 10 * np.log10(in_band / power[np.argmin(np.abs(freqs - freq))])
            assert measured == pytest.approx(attenuation_db, abs=2)
