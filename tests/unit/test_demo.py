"""The generated demo corpus: its files, splits, trials and difficulty."""

import hashlib
import os
import re

import numpy as np
import pandas as pd
import pytest
import soundfile

from data_prep.demo import draw_speaker, main, prepare_demo, synthesize
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
