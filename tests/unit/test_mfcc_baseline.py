"""The mean-MFCC baseline's scoring: cosine of mean MFCCs, EER by the recipe's metric."""

import re

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from scipy import signal

from local.data.manifest_io import (
    read_manifest,
    read_trials,
    write_enrolment,
    write_manifest,
    write_trials,
)
from local.data.schema import utterance_row
from local.errors import ManifestError
from local.evaluation import mfcc_baseline
from local.evaluation.metrics import eer
from local.evaluation.mfcc_baseline import baseline_eer, main


def test_the_baseline_eer_is_that_of_the_trials_cosine_scores():
    # Independent: the threshold sweep over every score, where the miss and
    # false-alarm rates cross (no tied scores, so the crossing is one point).
    rng = np.random.default_rng(0)
    speakers = rng.integers(0, 20, 400)
    vectors = rng.normal(size=(20, 8))[speakers] + 2 * rng.normal(size=(400, 8))
    embeddings = {f"u{i}": torch.tensor(vector, dtype=torch.float32)
                  for i, vector in enumerate(vectors)}
    enrol, test = rng.integers(0, 400, (2, 3000))
    labels = (speakers[enrol] == speakers[test]).astype(int)
    trials = pd.DataFrame({"label": labels, "enrol": [f"u{i}" for i in enrol],
                           "test": [f"u{i}" for i in test]})
    # c0 dropped, each coefficient standardised over the utterances scored, cosine.
    scored = np.unique(np.concatenate([enrol, test]))
    standard = vectors[:, 1:] - vectors[scored, 1:].mean(axis=0)
    standard /= vectors[scored, 1:].std(axis=0, ddof=1)
    unit = standard / np.linalg.norm(standard, axis=1, keepdims=True)
    scores = np.sum(unit[enrol] * unit[test], axis=1)
    miss = np.array([np.mean(scores[labels == 1] < t) for t in np.sort(scores)])
    false_alarm = np.array([np.mean(scores[labels == 0] >= t) for t in np.sort(scores)])
    crossing = np.argmin(np.abs(miss - false_alarm))
    expected = (miss[crossing] + false_alarm[crossing]) / 2

    assert baseline_eer(embeddings, trials) == pytest.approx(expected, abs=1e-9)


def test_an_enrolment_model_is_the_normalised_mean_of_its_utterances():
    # SdSV's form: models of two utterances each, against single test utterances.
    rng = np.random.default_rng(1)
    speakers = np.repeat(np.arange(10), 6)
    vectors = rng.normal(size=(10, 9))[speakers] + 1.5 * rng.normal(size=(60, 9))
    embeddings = {f"u{i}": torch.tensor(vector) for i, vector in enumerate(vectors)}
    models = {f"m{s}": [f"u{6 * s}", f"u{6 * s + 1}"] for s in range(10)}
    tests = [i for i in range(60) if i % 6 > 1]
    trials = pd.DataFrame([(int(speakers[t] == s), f"m{s}", f"u{t}")
                           for s in range(10) for t in tests], columns=["label", "enrol", "test"])
    # Independent: c0 dropped, standardised over the utterances scored, unit vectors
    # averaged per model and normalised again, cosine.
    standard = vectors[:, 1:]
    standard = (standard - standard.mean(axis=0)) / standard.std(axis=0, ddof=1)
    unit = standard / np.linalg.norm(standard, axis=1, keepdims=True)
    model_vectors = {m: unit[[int(u[1:]) for u in utts]].mean(axis=0) for m, utts in models.items()}
    scores = [model_vectors[m] @ unit[int(t[1:])] / np.linalg.norm(model_vectors[m])
              for m, t in zip(trials["enrol"], trials["test"])]
    assert baseline_eer(embeddings, trials, models) == pytest.approx(
        eer(scores, trials["label"]), abs=1e-9)


def _sdsv_like(folder, demo_corpus):
    """A trial list of the demo's target speakers with enrolment models, and its table."""
    manifest = pd.read_csv(demo_corpus["target_eval"])
    by_speaker = manifest.groupby("spk_id")["ID"].apply(list)
    write_enrolment([{"model_id": f"model_{spk}", "utt_ids": utts[:2]}
                     for spk, utts in by_speaker.items()], folder / "enrolment.csv")
    write_trials([(int(spk == other), f"model_{spk}", utts[2])
                  for spk in by_speaker.index for other, utts in by_speaker.items()],
                 folder / "trials.txt")
    return str(folder / "trials.txt"), str(folder / "enrolment.csv")


def test_a_list_with_enrolment_models_is_scored_from_the_command_line(demo_corpus, tmp_path,
                                                                     capsys):
    trials, enrolment = _sdsv_like(tmp_path, demo_corpus)
    assert not main(["--manifest", demo_corpus["target_eval"], "--trials", trials,
                     "--enrolment", enrolment])
    assert re.fullmatch(r".*trials.txt: mean-MFCC cosine EER \d+\.\d\d%\n", capsys.readouterr().out)


def test_trial_ids_the_manifest_lacks_are_named_before_any_audio_is_read(demo_corpus, tmp_path,
                                                                        monkeypatch):
    def read(*args):
        raise AssertionError("audio read before the trial lists were checked")

    monkeypatch.setattr(mfcc_baseline, "load_segment", read)
    trials, _ = _sdsv_like(tmp_path, demo_corpus)
    for manifest, trial_list, unknown in [
            (demo_corpus["target_eval"], trials, "enrol 'model_"),  # no enrolment table
            (demo_corpus["source_eval"], demo_corpus["trials_target"], "enrol 'tare")]:
        with pytest.raises(ManifestError, match=f"trials name IDs that are not in {manifest}"
                                                f"\n  line 1: {unknown}"):
            mfcc_baseline.print_baseline_eers(manifest, [trial_list])


def _recordings(folder):
    """Noise-like recordings of one second and their manifest: speakers a and b each in one
    colour of noise, c and d each in both (c1 and d1 in one, c2 and d2 in the other)."""
    rng = np.random.default_rng(0)
    rows = []
    for utt, colour in (("a1", 0.9), ("a2", 0.9), ("b1", -0.9), ("b2", -0.9),
                        ("c1", 0.9), ("c2", -0.9), ("d1", 0.9), ("d2", -0.9)):
        wav = str(folder / f"{utt}.wav")
        soundfile.write(wav, 0.1 * signal.lfilter([1.0, colour], [1.0], rng.uniform(-1, 1, 16000)),
                        16000)
        rows.append(utterance_row(utt, wav, utt[0], "demo"))
    write_manifest(rows, folder / "eval.csv")
    return str(folder / "eval.csv")


def test_a_rows_vector_is_that_of_its_segment_alone(tmp_path):
    manifest = read_manifest(_recordings(tmp_path))
    samples, rate = soundfile.read(manifest["wav"][0])
    soundfile.write(tmp_path / "part.wav", samples[4000:12000], rate)
    part = manifest.iloc[:1].assign(ID="part", wav=str(tmp_path / "part.wav"), start=0,
                                    stop=8000)
    segment = manifest.iloc[:1].assign(ID="segment", start=4000, stop=12000)
    vectors = mfcc_baseline.mean_mfcc_embeddings(pd.concat([part, segment]))
    whole = mfcc_baseline.mean_mfcc_embeddings(manifest.iloc[:1])
    assert torch.allclose(vectors["segment"], vectors["part"], atol=1e-5)
    assert not torch.allclose(vectors["segment"], whole["a1"], atol=1e-3)


def test_each_trial_lists_eer_is_printed_in_percent(tmp_path, capsys):
    manifest = _recordings(tmp_path)
    lists = {"easy.txt": [(1, "a1", "a2"), (1, "b1", "b2"), (0, "a1", "b1"), (0, "a2", "b2")],
             # Targets across colours, non-targets within one: an EER well above zero.
             "hard.txt": [(1, "c1", "c2"), (1, "d1", "d2"), (0, "c1", "d1"), (0, "c2", "d2")]}
    for name, trials in lists.items():
        write_trials(trials, tmp_path / name)
    mfcc_baseline.print_baseline_eers(manifest, [str(tmp_path / name) for name in lists])
    embeddings = mfcc_baseline.mean_mfcc_embeddings(read_manifest(manifest))
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2
    rates = [baseline_eer(embeddings, read_trials(str(tmp_path / name))) for name in lists]
    assert rates[0] < 0.5 < rates[1]
    for line, name, rate in zip(printed, lists, rates):
        assert line == f"{tmp_path / name}: mean-MFCC cosine EER {100 * rate:.2f}%"
