"""The generated demo corpus: its files, splits, trials and difficulty."""

import hashlib
import os
import re

import numpy as np
import pandas as pd
import pytest
import soundfile
from scipy import signal

from data_prep import demo
from data_prep.demo import (
    CLOSURE_RMS,
    FRICATIVE_RMS,
    PROSODY,
    VOWEL_RMS,
    draw_speaker,
    main,
    prepare_demo,
    session_effects,
    synthesize,
)
from data_prep.preparation import OptionError
from data_prep.telephone import HANDSET_LINE, telephone_channel
from local.data.manifest_io import read_manifest, read_trials
from local.data.validation import validate
from local.errors import ManifestError
from local.evaluation.mfcc_baseline import baseline_eer, mean_mfcc_embeddings

SMALL = dict(n_train_speakers=3, n_eval_speakers=3, utts_per_train_speaker=2,
             utts_per_eval_speaker=3)


def test_manifests_match_the_audio(demo_corpus):
    for name in ("source_train", "target_train", "source_eval", "target_eval"):
        table = validate(demo_corpus[name])
        for row in table.itertuples():
            assert os.path.isabs(row.wav)  # usable from any working directory
            info = soundfile.info(row.wav)
            assert row.stop == info.frames and row.sample_rate == info.samplerate
        domain = name.split("_")[0]
        assert set(table["domain"]) == {domain}
        assert set(table["channel"]) == {"wideband" if domain == "source" else "telephone"}
        assert set(table["sample_rate"]) == {16000 if domain == "source" else 8000}
        assert set(table["lang"]) == {"l1" if domain == "source" else "l2"}
        assert table["session"].tolist() == table["ID"].tolist()  # a recording per session


def test_splits_and_speaker_counts(demo_corpus):
    tables = {n: read_manifest(demo_corpus[n]) for n in
              ("source_train", "target_train", "source_eval", "target_eval")}
    speakers = {n: set(t["spk_id"]) for n, t in tables.items()}
    assert {n: len(s) for n, s in speakers.items()} == {
        "source_train": 24, "target_train": 24, "source_eval": 10, "target_eval": 10}
    names = list(speakers)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not speakers[a] & speakers[b], (a, b)
    assert all(len(t) == 10 * len(speakers[n]) for n, t in tables.items() if "train" in n)
    eval_ids = set(read_manifest(demo_corpus["eval"])["ID"])
    assert eval_ids == set(tables["source_eval"]["ID"]) | set(tables["target_eval"]["ID"])


def test_trials_are_all_pairs_with_true_labels(demo_corpus):
    for domain in ("source", "target"):
        manifest = read_manifest(demo_corpus[f"{domain}_eval"])
        trials = read_trials(demo_corpus[f"trials_{domain}"])
        validate(demo_corpus["eval"], demo_corpus[f"trials_{domain}"], check_audio=False)
        n = len(manifest)
        assert len(trials) == n * (n - 1) // 2
        speaker = dict(zip(manifest["ID"], manifest["spk_id"]))
        same = [int(speaker[e] == speaker[t]) for e, t in zip(trials["enrol"], trials["test"])]
        assert trials["label"].tolist() == same
        assert trials["label"].sum() == 10 * 6 * 5 // 2


def test_target_trials_are_harder_for_a_speaker_independent_baseline(demo_corpus):
    embeddings = mean_mfcc_embeddings(read_manifest(demo_corpus["eval"]))
    source = baseline_eer(embeddings, read_trials(demo_corpus["trials_source"]))
    target = baseline_eer(embeddings, read_trials(demo_corpus["trials_target"]))
    assert 0.1 < source < 0.35 and 0.3 < target < 0.45
    assert target > source + 0.08


def test_same_seed_same_corpus(tmp_path):
    first = prepare_demo(str(tmp_path / "a"), seed=7, **SMALL)
    second = prepare_demo(str(tmp_path / "b"), seed=7, **SMALL)
    other = prepare_demo(str(tmp_path / "c"), seed=8, **SMALL)

    def digest(paths):
        table = pd.read_csv(paths["eval"])
        return [hashlib.sha1(open(w, "rb").read()).hexdigest() for w in table["wav"]]

    assert digest(first) == digest(second)
    assert digest(first) != digest(other)


def test_rerun_is_skipped_and_new_options_regenerate(tmp_path):
    paths = prepare_demo(str(tmp_path), seed=3, **SMALL)
    stamp = os.path.getmtime(paths["eval"])
    prepare_demo(str(tmp_path), seed=3, **SMALL)
    assert os.path.getmtime(paths["eval"]) == stamp
    prepare_demo(str(tmp_path), seed=4, **SMALL)
    assert os.path.getmtime(paths["eval"]) != stamp


def test_the_corpus_through_a_symbolic_link_is_not_generated_again(tmp_path):
    real = tmp_path / "corpus"
    paths = prepare_demo(str(real), seed=3, **SMALL)
    stamp = os.path.getmtime(paths["eval"])
    os.symlink(real, tmp_path / "link")
    linked = prepare_demo(str(tmp_path / "link"), seed=3, **SMALL)
    assert os.path.getmtime(paths["eval"]) == stamp
    assert all(wav.startswith(str(real) + os.sep) for wav in read_manifest(linked["eval"])["wav"])


def test_text_dependent_mode_types_trials(tmp_path):
    paths = prepare_demo(str(tmp_path), seed=5, phrases=2, **SMALL)
    manifest = read_manifest(paths["source_eval"])
    assert set(manifest["phrase"]) == {"01", "02"}
    trials = read_trials(paths["trials_source"])
    phrase = dict(zip(manifest["ID"], manifest["phrase"]))
    speaker = dict(zip(manifest["ID"], manifest["spk_id"]))
    for trial in trials.itertuples():
        kind = ("T" if speaker[trial.enrol] == speaker[trial.test] else "I") + (
            "C" if phrase[trial.enrol] == phrase[trial.test] else "W")
        assert trial.trial_type == kind and trial.label == int(kind == "TC")
    assert set(trials["trial_type"]) == {"TC", "TW", "IC", "IW"}
    validate(paths["eval"], paths["trials_source"])


def test_telephone_channel_is_band_limited():
    rng = np.random.default_rng(0)
    narrow, codec = telephone_channel(rng, rng.standard_normal(16000), HANDSET_LINE)
    assert codec == "mu_curve"
    spectrum = np.abs(np.fft.rfft(narrow)) ** 2
    freqs = np.fft.rfftfreq(narrow.size, 1 / 8000)
    in_band = spectrum[(freqs > 500) & (freqs < 3000)].mean()
    assert spectrum[(freqs > 60) & (freqs < 150)].mean() < 0.1 * in_band  # above the 50 Hz hum
    assert spectrum[freqs > 3800].mean() < 0.1 * in_band


def test_command_line(tmp_path, capsys):
    assert main(["--save_folder", str(tmp_path), "--seed", "2"]) == 0
    assert f"trials_target: {tmp_path}" in capsys.readouterr().out


@pytest.mark.parametrize("option, value, message", [
    ("n_eval_speakers", 1, r"n_eval_speakers is 1: not an integer in \[2, inf\), the evaluation"),
    ("utts_per_eval_speaker", 1, r"utts_per_eval_speaker is 1: not an integer in \[2, inf\)"),
    ("n_train_speakers", 0, r"n_train_speakers is 0: not an integer in \[1, inf\)"),
    ("phrases", 1.5, r"phrases is 1.5: not an integer in \[0, 5\]"),
    # Utterance i says phrase i mod N: with N >= 6 no speaker says a phrase twice.
    ("phrases", 6, r"phrases is 6: not an integer in \[0, 5\], .* fewer than the 6 "
                   r"utterances per evaluation speaker \(target trials need a phrase said"),
])
def test_out_of_range_options(tmp_path, option, value, message):
    with pytest.raises(OptionError, match=message):
        prepare_demo(str(tmp_path / "demo"), **{option: value})
    assert not os.path.exists(tmp_path / "demo")


def test_command_line_errors_are_messages(tmp_path, capsys):
    assert main(["--save_folder", str(tmp_path), "--phrases", "-1"]) == 1
    assert capsys.readouterr().err == (
        "phrases is -1: not an integer in [0, 5], 0 for free text, else the phrases per "
        "language, fewer than the 6 utterances per evaluation speaker (target trials need a "
        "phrase said twice)\nFix: choose phrases in [0, 5] (--phrases on the command line)\n")
    (tmp_path / "file").write_text("")
    assert main(["--save_folder", str(tmp_path / "file" / "demo")]) == 1
    printed = capsys.readouterr().err
    assert f"Not a directory: '{tmp_path / 'file' / 'demo'}'" in printed
    assert printed.endswith("Fix: check that the folders exist and that save_folder is writable\n")


def test_the_target_language_has_shorter_segments():
    """Language l2 is spoken faster than l1 (the module's docstring says so)."""
    speaker = draw_speaker(np.random.default_rng(0), "spk1")
    source = synthesize(np.random.default_rng(1), speaker, "l1", ["a"] * 20)
    target = synthesize(np.random.default_rng(1), speaker, "l2", ["ae"] * 20)
    assert target.size < 0.92 * source.size


def test_a_manifest_whose_audio_changed_is_prepared_anew_as_its_fix_says(tmp_path):
    # A preparation with the same options skips its folder: the fix names what stops it.
    paths = prepare_demo(str(tmp_path), seed=3, **SMALL)
    wav = read_manifest(paths["source_train"])["wav"].iloc[0]
    samples, rate = soundfile.read(wav)
    soundfile.write(wav, samples[: len(samples) // 2], rate)
    with pytest.raises(ManifestError, match=r"does not match its audio") as error:
        validate(paths["source_train"])
    os.remove(re.search(r"\nFix: remove (\S+), then re-run the data preparation",
                        str(error.value)).group(1))
    paths = prepare_demo(str(tmp_path), seed=3, **SMALL)
    assert len(validate(paths["source_train"])) == len(read_manifest(paths["source_train"]))


def _pitch(wave):
    """The fundamental frequency of ``wave`` (Hz): its autocorrelation's peak below 350 Hz."""
    low = signal.sosfiltfilt(signal.butter(4, 350, fs=16000, output="sos"), wave)
    correlation = np.correlate(low, low, "full")[low.size - 1:]
    lags = np.arange(16000 // 400, 16000 // 60)
    return 16000 / lags[np.argmax(correlation[lags])]


def _speaker(f0=120.0, rate=1.0):
    return dict(spk_id="spk", gender="m", f0=f0, jitter=0.02, tilt=0.9, vtl=1.0,
                formant_offsets=np.ones(3), rate=rate, breath=0.2)


def test_speakers_pitch_and_formant_scale_follow_their_gender():
    rng = np.random.default_rng(0)
    speakers = [draw_speaker(rng, f"spk{i}") for i in range(300)]
    for gender, f0_range, vtl_range in (("m", (85, 155), (0.88, 1.12)),
                                        ("f", (165, 255), (0.88 * 1.12, 1.12 * 1.12))):
        f0 = np.array([s["f0"] for s in speakers if s["gender"] == gender])
        vtl = np.array([s["vtl"] for s in speakers if s["gender"] == gender])
        assert len(f0) > 100
        assert f0_range[0] <= f0.min() < f0_range[0] + 5 and f0_range[1] - 5 < f0.max() <= f0_range[1]
        assert vtl_range[0] <= vtl.min() < vtl_range[0] + 0.02
        assert vtl_range[1] - 0.02 < vtl.max() <= vtl_range[1]


@pytest.mark.parametrize("lang, vowel", [("l1", "a"), ("l2", "ae")])
@pytest.mark.parametrize("f0", [100.0, 220.0])
def test_the_pitch_falls_in_l1_and_rises_in_l2_around_the_speakers(lang, vowel, f0):
    # Over the utterance the F0 moves by f0_slope, centred on the session's F0, which is
    # the speaker's within 10 %: compare the first and last sixth, and the middle third.
    slope = PROSODY[lang]["f0_slope"]
    expected = (1 + slope * (11 / 12 - 0.5)) / (1 + slope * (1 / 12 - 0.5))
    ratios, middles = [], []
    for seed in range(10):
        wave = synthesize(np.random.default_rng(seed), _speaker(f0), lang, [vowel] * 30)
        sixth = wave.size // 6
        ratios.append(_pitch(wave[-sixth:]) / _pitch(wave[:sixth]))
        middles.append(_pitch(wave[2 * sixth:4 * sixth]) / f0)
    assert np.mean(ratios) == pytest.approx(expected, abs=0.06)
    assert all((ratio < 0.9) if slope < 0 else (ratio > 1.05) for ratio in ratios)
    assert np.mean(middles) == pytest.approx(1.0, abs=0.04)
    assert min(middles) > 0.85 and max(middles) < 1.15


@pytest.mark.parametrize("lang, segment, seconds", [
    ("l1", "a", 0.11), ("l1", "s", 0.07), ("l1", ".", 0.04), ("l2", "ae", 0.11),
    ("l2", "x", 0.07), ("l2", ".", 0.04)])
def test_segments_last_their_length_at_the_speakers_and_languages_rate(lang, segment, seconds):
    # Each segment's length is drawn uniform in [0.7, 1.4] times its base: 1.05 on average.
    for rate in (0.8, 1.25):
        wave = synthesize(np.random.default_rng(0), _speaker(rate=rate), lang, [segment] * 300)
        fade = int(0.008 * 16000)
        mean = (wave.size - fade) / 300 / 16000
        assert mean == pytest.approx(seconds * 1.05 * rate * PROSODY[lang]["rate"], rel=0.04)


@pytest.mark.parametrize("consonant, level", [("s", FRICATIVE_RMS), (".", CLOSURE_RMS)])
def test_vowels_are_louder_than_consonants_by_their_levels(consonant, level):
    speaker = _speaker()
    wave = synthesize(np.random.default_rng(0), speaker, "l1", ["a"] * 20 + [consonant] * 40)
    # The 20 vowels last at least 20 * 0.11 * 0.7 s, the 40 consonants at least 40 * 0.04 * 0.7.
    vowels, consonants = wave[:int(20 * 0.11 * 0.7 * 16000)], wave[-int(40 * 0.04 * 0.7 * 16000):]
    ratio = np.sqrt(np.mean(vowels**2) / np.mean(consonants**2))
    assert ratio == pytest.approx(VOWEL_RMS / level, rel=0.15)


def test_a_session_sets_the_level_and_adds_noise_at_15_to_35_db():
    time = np.arange(16000) / 16000
    levels, snrs = [], []
    for seed in range(30):
        recording = session_effects(np.random.default_rng(seed),
                                    0.05 * np.sin(2 * np.pi * 500 * time))
        basis = np.column_stack([np.sin(2 * np.pi * 500 * time), np.cos(2 * np.pi * 500 * time)])
        coefficients = np.linalg.lstsq(basis, recording, rcond=None)[0]
        tone = basis @ coefficients
        levels.append(np.hypot(*coefficients))  # the coloured tone's peak
        snrs.append(10 * np.log10(np.mean(tone**2) / np.mean((recording - tone) ** 2)))
    assert 0.3 - 1e-3 <= min(levels) < 0.4 and 0.9 < max(levels) <= 1.0 + 1e-3
    assert 15 - 0.3 <= min(snrs) < 18 and 32 < max(snrs) <= 35 + 0.3


@pytest.mark.parametrize("phrases", [0, 2])
def test_each_domains_speakers_say_words_of_its_language(tmp_path, monkeypatch, phrases):
    spoken = []

    def recording(rng, speaker, lang, segments):
        spoken.append((speaker["spk_id"], lang, list(segments)))
        return synthesize(rng, speaker, lang, segments)

    monkeypatch.setattr(demo, "synthesize", recording)
    prepare_demo(str(tmp_path), seed=3, phrases=phrases, **SMALL)
    assert {(spk[:3], lang) for spk, lang, _ in spoken} == {("sou", "l1"), ("tar", "l2")}
    for _, lang, segments in spoken:
        assert set(segments[1::2]) <= set(demo.VOWELS[lang])
        assert set(segments[0::2]) <= set(demo.FRICATIVES[lang]) | {"."}
    consonants = [s for _, _, segments in spoken for s in segments[0::2]]
    assert "." in consonants  # stop closures among the consonants


@pytest.mark.parametrize("vtl, offset", [(1.0, 1.0), (1.15, 1.0), (0.9, 1.05)])
def test_a_speakers_formants_are_the_vowels_scaled_by_the_vocal_tract_and_offsets(vtl, offset):
    # The vowel i of l1 has F2 at 2290 Hz, alone between 1.9 and 2.9 kHz at these scales.
    speaker = {**_speaker(f0=100.0), "vtl": vtl, "formant_offsets": np.array([1.0, offset, 1.0])}
    wave = synthesize(np.random.default_rng(0), speaker, "l1", ["i"] * 30)
    freqs, power = signal.welch(wave, 16000, nperseg=1024)
    band = (freqs > 1900) & (freqs < 2900)
    assert freqs[band][np.argmax(power[band])] == pytest.approx(2290 * vtl * offset, abs=40)


def test_a_segment_fades_in_and_out_over_8_ms():
    wave = synthesize(np.random.default_rng(0), _speaker(), "l1", ["a"])
    end = np.flatnonzero(wave)[-1] + 1
    peak = np.abs(wave).max()
    assert np.abs(wave[:16]).max() < 0.15 * peak and np.abs(wave[end - 16:end]).max() < 0.15 * peak
    assert np.abs(wave[end - 400:end - 200]).max() > 0.3 * peak  # at full level before the fade


def test_breath_adds_noise_in_proportion_to_the_speakers_breathiness():
    def render(breath):
        speaker = {**_speaker(), "jitter": 0.0, "breath": breath}
        return synthesize(np.random.default_rng(0), speaker, "l1", ["a"] * 10)

    voiced = render(0.0)
    added = {breath: np.sqrt(np.mean((render(breath) - voiced) ** 2) / np.mean(voiced**2))
             for breath in (0.02, 0.2)}
    assert added[0.2] > 0.01
    assert added[0.2] / added[0.02] == pytest.approx(10, rel=0.2)


@pytest.mark.parametrize("vtl", [0.9, 1.0, 1.2])
def test_a_fricatives_noise_band_is_centred_at_its_centre_scaled_by_the_vocal_tract(vtl):
    # sh of l1: a band 1.5 kHz wide around 3 kHz for a vocal-tract factor of 1.
    speaker = {**_speaker(), "vtl": vtl}
    wave = synthesize(np.random.default_rng(0), speaker, "l1", ["sh"] * 40)
    freqs, power = signal.welch(wave, 16000, nperseg=1024)
    centroid = np.sum(freqs * power) / np.sum(power)
    assert centroid == pytest.approx(3000 * vtl, rel=0.08)
