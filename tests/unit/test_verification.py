"""Verification of a condition: embedding once, scoring, score normalisation, reports."""

import errno
import glob
import itertools
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from speechbrain.dataio.dataset import DynamicItemDataset

from local.data.dataio import add_whole_pipeline, manifest_dataset
from local.data.manifest_io import read_trials, write_enrolment, write_trials
from local.embedding import compute_embeddings
from local.errors import ManifestError
from local.evaluation import verification
from local.evaluation.metrics import VOXCELEB_DCF, compute_metrics, eer
from local.evaluation.report import read_scores, score_file
from local.evaluation.scoring import score_trials
from local.evaluation.verification import (
    EmbeddingCache,
    best_systems,
    check_cohort,
    check_score_norm,
    cohort_note,
    cohort_subset,
    drawn_systems,
    list_systems,
    training_embeddings,
    verify,
)
from local.model.pseudo_labels import PseudoLabels
from local.model.ssl_frontend import SSLFrontend
from tests.conftest import save_tiny_ssl
from tests.unit.test_scoring import loop_scores, numpy_norm

NORM = {"score_norm": None, "cohort_domain": "target", "cohort_size": 50, "cohort_top_k": 10,
        "backend_adaptation": None, "whiten_ridge": 0.1, "backend": [], "lda_dim": 150,
        "plda_within_scale": 0.3, "plda_between_scale": 0.7, "backend_max_utterances": 20000,
        "det_systems": "default", "min_embed_seconds": 0.5, "max_embed_seconds": 600,
        "emb_dim": 16}  # the CountingEmbedder's bands


class CountingEmbedder:
    """A fixed 'model' (log spectrum band energies, or the mean frame of an SSL front end)
    that counts what it embeds."""

    def __init__(self, frontend=None):
        self.embedded = 0
        self.frontend = frontend

    def __call__(self, wavs, wav_lens):
        self.embedded += len(wavs)
        if self.frontend is not None:
            return self.frontend(wavs, wav_lens).mean(dim=1, keepdim=True)
        spectrum = torch.stft(wavs, 512, window=torch.hann_window(512), return_complex=True)
        bands = spectrum.abs().pow(2).mean(dim=-1)[:, :256].reshape(len(wavs), 16, -1).sum(-1)
        return torch.log(bands + 1e-8).unsqueeze(1)


def whole(path):
    dataset = manifest_dataset(path, check_audio=False)
    add_whole_pipeline(dataset)
    return dataset


def verify_demo(demo_corpus, folder, target_train=None, **settings):
    """Verification of both demo trial lists with a counting embedder and a target cohort."""
    hparams = dict(NORM, output_folder=folder, eval_batch_size=8, seed=1, **settings)
    condition = {"condition": "demo", "evaluation": {
        "source": {"manifest": demo_corpus["source_eval"], "trials": demo_corpus["trials_source"]},
        "target": {"manifest": demo_corpus["target_eval"], "trials": demo_corpus["trials_target"]},
    }}
    datasets = {demo_corpus[k]: whole(demo_corpus[k]) for k in ("source_eval", "target_eval")}
    embed = CountingEmbedder(settings.get("frontend"))
    training = {"source": whole(demo_corpus["source_train"]),
                "target": whole(target_train or demo_corpus["target_train"])}
    results = verify(embed, hparams, condition, datasets, training, "cpu", "CKPT+test")
    return folder, results, embed


@pytest.fixture(scope="module")
def verified(demo_corpus, tmp_path_factory):
    return verify_demo(demo_corpus, str(tmp_path_factory.mktemp("verify")), score_norm="snorm")


def test_each_utterance_is_embedded_once(verified, demo_corpus):
    folder, _, embed = verified
    utterances = sum(len(pd.read_csv(demo_corpus[k])) for k in ("source_eval", "target_eval"))
    trials = sum(len(read_trials(demo_corpus[k])) for k in ("trials_source", "trials_target"))
    assert trials > 10 * utterances  # every utterance is in many trials
    assert embed.embedded == utterances + NORM["cohort_size"]
    caches = sorted(f.rsplit("_", 2)[0] for f in os.listdir(folder) if f.startswith("embeddings_"))
    assert caches == ["embeddings_cohort_target50_CKPT+test", "embeddings_source_CKPT+test",
                      "embeddings_target_CKPT+test"]


def copied_manifest(manifest, folder):
    """The manifest with its audio copied into ``folder``: audio a test may change."""
    table = pd.read_csv(manifest)
    os.makedirs(folder, exist_ok=True)
    table["wav"] = [shutil.copy(wav, os.path.join(folder, os.path.basename(wav)))
                    for wav in table["wav"]]
    path = os.path.join(folder, os.path.basename(manifest))
    table.to_csv(path, index=False)
    return path, table


def cache_files(folder):
    """``{name: bytes}`` of the embedding caches in ``folder``."""
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in os.listdir(folder) if name.startswith("embeddings_")}


def test_audio_changed_under_the_same_ids_is_embedded_again(demo_corpus, tmp_path):
    manifest, table = copied_manifest(demo_corpus["target_eval"], str(tmp_path / "audio"))
    corpus = dict(demo_corpus, target_eval=manifest)
    _, first, _ = verify_demo(corpus, str(tmp_path))
    before = cache_files(tmp_path)
    # The first half of the utterances replaced by noise of the same length.
    for wav, rate in table[["wav", "sample_rate"]][:30].itertuples(index=False):
        signal, _ = soundfile.read(wav)
        soundfile.write(wav, torch.randn(len(signal), generator=torch.Generator().manual_seed(
            len(signal))).numpy() * 0.1, rate)
    _, second, embed = verify_demo(corpus, str(tmp_path))
    assert embed.embedded == len(table)  # the target list again; the source one from its cache
    assert second["source"] == first["source"]
    assert second["target"]["eer"] != first["target"]["eer"]
    after = cache_files(tmp_path)
    assert len(after) == len(before) + 1
    assert all(after[name] == content for name, content in before.items())  # kept as they were


def test_embeddings_cached_by_other_code_are_embedded_again(demo_corpus, tmp_path, monkeypatch):
    verify_demo(demo_corpus, str(tmp_path), score_norm="snorm")
    before = cache_files(tmp_path)
    _, _, same_code = verify_demo(demo_corpus, str(tmp_path), score_norm="snorm")
    assert same_code.embedded == 0
    # The recipe's sources or libraries changed since (local.provenance.code_digest).
    monkeypatch.setattr(verification, "CODE", "0" * 16)
    _, _, embed = verify_demo(demo_corpus, str(tmp_path), score_norm="snorm")
    utterances = sum(len(pd.read_csv(demo_corpus[k])) for k in ("source_eval", "target_eval"))
    assert embed.embedded == utterances + NORM["cohort_size"]
    after = cache_files(tmp_path)
    assert len(after) == 2 * len(before)
    assert all(after[name] == content for name, content in before.items())  # kept as they were


def test_another_manifest_under_the_same_list_name_is_embedded_again(demo_corpus, tmp_path):
    verify_demo(demo_corpus, str(tmp_path))
    # The "target" list now names a copy of the source manifest and its trials.
    manifest, table = copied_manifest(demo_corpus["source_eval"], str(tmp_path / "audio"))
    swapped = dict(demo_corpus, target_eval=manifest, trials_target=demo_corpus["trials_source"])
    _, results, embed = verify_demo(swapped, str(tmp_path))
    assert embed.embedded == len(table)
    assert results["target"] == results["source"]


def test_an_ssl_model_replaced_under_the_same_source_is_embedded_again(demo_corpus, tmp_path):
    """A frozen SSL model is not in the checkpoint: it is the one ssl_source loads."""
    source = save_tiny_ssl(tmp_path / "ssl", "wavlm")
    folder = str(tmp_path / "run")

    def verified_with_ssl():
        frontend = SSLFrontend(source, str(tmp_path / "hub")).eval()
        return verify_demo(demo_corpus, folder, frontend=frontend)

    _, first, embed = verified_with_ssl()
    before = cache_files(folder)
    assert verified_with_ssl()[2].embedded == 0  # the same model: every embedding cached
    save_tiny_ssl(source, "wavlm")  # another model's files in its place
    _, second, again = verified_with_ssl()
    assert again.embedded == embed.embedded
    assert second["target"]["eer"] != first["target"]["eer"]
    after = cache_files(folder)
    assert len(after) == 2 * len(before)
    assert all(after[name] == content for name, content in before.items())


def test_a_cache_is_reused_for_the_same_draw_model_and_precision_only(demo_corpus, tmp_path):
    """A draw of as many other utterances (another seed), a model defined otherwise (its
    settings) or embeddings in bf16 are embedded again, each into a cache of its own."""
    dataset = whole(demo_corpus["target_train"])

    def cache(seed=1, settings=None, precision="fp32"):
        hparams = dict(NORM, output_folder=str(tmp_path), eval_batch_size=8, seed=seed)
        embed = CountingEmbedder()
        return EmbeddingCache(embed, hparams, "cpu", "CKPT+test", settings, precision), embed

    drawn, _ = cache()[0].subset("cohort", dataset, 10)
    other, vectors = cache(seed=2)[0].subset("cohort", dataset, 10)
    assert other != drawn
    direct = compute_embeddings(CountingEmbedder(), dataset, ids=other)
    torch.testing.assert_close(vectors, torch.stack([direct[utt] for utt in other]))
    model = {"emb_dim": 16}
    for settings, precision, embedded in [(model, "fp32", 10), ({"emb_dim": 32}, "fp32", 10),
                                          (model, "bf16", 10), (model, "fp32", 0),
                                          (model, "bf16", 0)]:
        made, embed = cache(settings=settings, precision=precision)
        made("drawn", dataset, drawn)
        assert embed.embedded == embedded, (settings, precision)
    assert len(glob.glob(str(tmp_path / "embeddings_*.pt"))) == 5


def report_files(folder):
    """``{path: bytes}`` of every file of the report in ``folder``."""
    report = os.path.join(folder, "verification")
    return {os.path.join(root, name): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(report) for name in names}


def test_a_failed_verification_leaves_the_report_before_it_and_removes_its_own(demo_corpus,
                                                                              tmp_path,
                                                                              monkeypatch):
    verify_demo(demo_corpus, str(tmp_path))
    before = report_files(tmp_path)

    def failed(*args, **kwargs):
        raise RuntimeError("failed")

    # After every system's score file and table, before the figure and the summary.
    monkeypatch.setattr(verification, "plot_det", failed)
    with pytest.raises(RuntimeError, match="failed"):
        verify_demo(demo_corpus, str(tmp_path), score_norm="snorm")
    assert report_files(tmp_path) == before
    assert [name for name in os.listdir(tmp_path) if name.startswith("verification")] \
        == ["verification"]


@pytest.mark.parametrize("written", ["cache", "report"])
def test_a_full_disk_during_verification_says_so_and_leaves_what_was_there(demo_corpus, tmp_path,
                                                                         monkeypatch, written):
    verify_demo(demo_corpus, str(tmp_path))
    report, caches = report_files(tmp_path), cache_files(tmp_path)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if written == "cache":  # the cohort's, the first cache that is not there yet
        monkeypatch.setattr(torch, "save", full_disk)
    else:
        monkeypatch.setattr(verification, "plot_det", full_disk)
    with pytest.raises(ManifestError, match=rf"{tmp_path}: the disk is full: the verification "
                                            r"report or an embedding cache could not be written "
                                            rf".*\nFix: free space on the disk of {tmp_path}, "
                                            r"and evaluate the run again .*; the report before "
                                            r"it, the checkpoints and the embedding caches "
                                            r"written before are intact"):
        verify_demo(demo_corpus, str(tmp_path), score_norm="snorm")
    assert report_files(tmp_path) == report
    assert cache_files(tmp_path).items() >= caches.items()  # and the cohort's, when it was written
    assert sorted(name for name in os.listdir(tmp_path) if not name.startswith("embeddings_")) \
        == ["verification"]


def test_score_files_and_metrics_agree(verified, demo_corpus):
    folder, results, _ = verified
    assert set(results) == {"source", "source_snorm", "target", "target_snorm"}
    for system, trial_list in (("target", "trials_target"), ("source_snorm", "trials_source")):
        scores = pd.read_csv(score_file(os.path.join(folder, "verification"), system),
                             sep=" ", header=None, names=["enrol", "test", "score", "label"])
        trials = read_trials(demo_corpus[trial_list])
        assert list(scores["enrol"]) == list(trials["enrol"])
        assert list(scores["label"]) == list(trials["label"])
        assert results[system]["eer"] == pytest.approx(eer(scores["score"], scores["label"]))
    summary = pd.read_csv(os.path.join(folder, "verification", "summary.csv"))
    assert list(summary["system"]) == ["source", "source_snorm", "target", "target_snorm"]
    assert os.path.isfile(os.path.join(folder, "verification", "det.png"))


def test_the_summary_and_the_figure_hold_what_each_score_file_gives(demo_corpus, tmp_path,
                                                                      monkeypatch):
    """summary.csv: each system's trials, EER (%) and every minDCF of its score file; det.png:
    each list's panel, a curve per system drawn, of its score file's scores and labels."""
    panels = {}
    monkeypatch.setattr(verification, "plot_det", lambda drawn, *args: panels.update(drawn))
    folder, _, _ = verify_demo(demo_corpus, str(tmp_path), score_norm="snorm", det_systems="all")
    report = os.path.join(folder, "verification")
    summary = pd.read_csv(os.path.join(report, "summary.csv")).set_index("system")
    assert list(summary.columns) == ["trials", "eer_percent", "min_dcf_0.01", "min_dcf_0.001"]
    for system, row in summary.iterrows():
        scores = read_scores(score_file(report, system))
        expected = compute_metrics(scores["score"], scores["label"], VOXCELEB_DCF)
        assert row["trials"] == len(scores)
        np.testing.assert_allclose(row[["eer_percent", "min_dcf_0.01", "min_dcf_0.001"]].tolist(),
                                   [100 * expected["eer"], expected["min_dcf_0.01"],
                                    expected["min_dcf_0.001"]], rtol=1e-12)
    assert {name: list(curves) for name, curves in panels.items()} == {
        "source": ["source", "source_snorm"], "target": ["target", "target_snorm"]}
    for curves in panels.values():
        for system, (values, labels) in curves.items():
            scores = read_scores(score_file(report, system))
            np.testing.assert_array_equal(values, scores["score"])
            np.testing.assert_array_equal(labels, scores["label"])


def test_a_list_of_enrolment_models_scores_their_mean_and_takes_their_conditions(demo_corpus,
                                                                                tmp_path):
    """Models of two target utterances each: a trial's score is that of the normalised mean of
    their unit embeddings, and the conditions table gives the model its utterances' channel."""
    table = pd.read_csv(demo_corpus["target_eval"])
    speakers = sorted(table["spk_id"].unique())[:4]
    utterances = {spk: sorted(table.loc[table["spk_id"] == spk, "ID"]) for spk in speakers}
    models = {f"m_{spk}": utts[:2] for spk, utts in utterances.items()}
    trials = pd.DataFrame([(int(spk == other), f"m_{spk}", utt) for spk in speakers
                           for other in speakers for utt in utterances[other][2:5]],
                          columns=["label", "enrol", "test"])
    write_enrolment([{"model_id": m, "utt_ids": utts} for m, utts in models.items()],
                    tmp_path / "models.csv")
    write_trials(trials.itertuples(index=False, name=None), tmp_path / "trials.txt")
    condition = {"condition": "models", "evaluation": {"target": {
        "manifest": demo_corpus["target_eval"], "trials": str(tmp_path / "trials.txt"),
        "enrolment": str(tmp_path / "models.csv")}}}
    folder = str(tmp_path / "run")
    verify(CountingEmbedder(), dict(NORM, output_folder=folder, eval_batch_size=8, seed=1),
           condition, {demo_corpus["target_eval"]: whole(demo_corpus["target_eval"])},
           {role: whole(demo_corpus[f"{role}_train"]) for role in ("source", "target")}, "cpu",
           "CKPT+test")
    embeddings = torch.load(glob.glob(os.path.join(folder, "embeddings_target_*.pt"))[0])
    report = os.path.join(folder, "verification")
    np.testing.assert_allclose(read_scores(score_file(report, "target"))["score"],
                               loop_scores(embeddings, models, trials), atol=1e-6)
    conditions = pd.read_csv(os.path.join(report, "target", "conditions.csv"))
    channels = conditions[conditions["condition"].str.startswith("channel")]
    assert channels[["condition", "value", "trials"]].values.tolist() == [
        ["channel", "telephone", len(trials)]]


def test_snorm_is_the_mean_of_the_znorm_and_tnorm_runs(verified, demo_corpus, tmp_path):
    """Z-norm and T-norm as settings: their systems, scored over the whole cohort (cohort_top_k
    is AS-norm's), average to S-norm's scores."""
    def scores(folder, system):
        return pd.read_csv(score_file(os.path.join(folder, "verification"), system), sep=" ",
                           header=None, names=["enrol", "test", "score", "label"])["score"]

    folders = {}
    for norm in ("znorm", "tnorm"):
        folders[norm], results, _ = verify_demo(demo_corpus, str(tmp_path / norm),
                                                score_norm=norm, cohort_top_k=1000)
        assert list(results) == ["source", f"source_{norm}", "target", f"target_{norm}"]
    # Each against the numpy computation from the run's caches: Z-norm by the enrolment side's
    # cohort statistics, T-norm by the test side's.
    for norm, side in (("znorm", "enrol"), ("tnorm", "test")):
        embeddings, cohort = (torch.load(glob.glob(os.path.join(folders[norm], pattern))[0])
                              for pattern in ("embeddings_target_*.pt",
                                              "embeddings_cohort_target50_*.pt"))
        cohort = np.stack([vector.numpy() for _, vector in sorted(cohort.items())])
        expected = numpy_norm(embeddings, {}, read_trials(demo_corpus["trials_target"]), cohort,
                              side)
        np.testing.assert_allclose(scores(folders[norm], f"target_{norm}"), expected, atol=1e-4)
    for trial_list in ("source", "target"):
        mean = (scores(folders["znorm"], f"{trial_list}_znorm")
                + scores(folders["tnorm"], f"{trial_list}_tnorm")) / 2
        snorm = scores(verified[0], f"{trial_list}_snorm")
        np.testing.assert_allclose(mean, snorm, atol=1e-5)
        assert np.abs(scores(folders["znorm"], f"{trial_list}_znorm") - snorm).max() > 0.1


def test_each_system_has_a_folder_and_the_report_names_the_best(verified):
    folder, results, _ = verified
    report = os.path.join(folder, "verification")
    assert sorted(os.listdir(report)) == sorted(["checkpoint.txt", "det.png", "report.md",
                                                 "summary.csv", *results])
    assert open(os.path.join(report, "checkpoint.txt")).read() == "CKPT+test\n"
    for system in results:
        assert sorted(os.listdir(os.path.join(report, system))) == [
            "conditions.csv", "conditions.md", "scores.txt"]
    text = open(os.path.join(report, "report.md"), encoding="utf-8").read()
    for trial_list in ("source", "target"):
        best = min((s for s in results if s.startswith(trial_list)),
                   key=lambda system: results[system]["eer"])
        assert f"{trial_list}: `{best}` ({100 * results[best]['eer']:.2f} %)" in text
        assert f"| **{best}** |" in text
    assert "](det.png)" in text


def test_the_figure_draws_cosine_the_default_backend_and_the_best_unless_all():
    systems = list_systems(["source", "target"], ["cosine", "whiten", "plda", "plda_pooled"],
                           "asnorm")
    eers = dict.fromkeys((s.name for s in systems), 0.3)
    eers.update(source_whiten_asnorm=0.1, target_plda_pooled=0.2, target_plda=0.2)
    results = {name: {"eer": value} for name, value in eers.items()}
    best = best_systems(systems, results)
    assert best == {"source": "source_whiten_asnorm", "target": "target_plda"}  # first on a tie
    drawn = drawn_systems(systems, best, {"det_systems": "default", "backend": ["plda_pooled"]})
    assert [s.name for s in drawn] == ["source", "source_whiten_asnorm", "source_plda_pooled",
                                       "target", "target_plda", "target_plda_pooled"]
    assert drawn_systems(systems, best, {"det_systems": "all", "backend": []}) == systems


def test_cohort_is_a_seeded_subset():
    ids = [f"u{i:02d}" for i in range(30)]
    first = cohort_subset(ids, 10, seed=3)
    assert first == cohort_subset(ids, 10, seed=3) != cohort_subset(ids, 10, seed=4)
    assert cohort_subset(ids[::-1], 10, seed=3) == first  # whatever the manifest's row order
    assert len(set(first)) == 10 and set(first) <= set(ids)


@pytest.mark.parametrize("change, message", [
    ({"score_norm": "z-norm"}, "score_norm must be null, snorm, asnorm, znorm or tnorm"),
    ({"cohort_domain": "both"}, "cohort_domain must be source or target"),
    ({"score_norm": "asnorm", "cohort_top_k": 100}, r"cohort_top_k \(100\) must be between 2"),
    ({"det_systems": "best"}, "det_systems must be default or all; got 'best'"),
    ({"cohort_size": 20.5}, r"cohort_size must be an integer >= 1; got 20.5"),
    ({"cohort_size": 0}, r"cohort_size must be an integer >= 1; got 0"),
    ({"score_norm": "snorm", "cohort_size": 1}, r"cohort_size must be an integer >= 2; got 1"),
    ({"backend_adaptation": "whiten", "cohort_size": 1},
     r"cohort_size must be an integer >= 2; got 1"),
])
def test_bad_score_norm_settings(change, message):
    with pytest.raises(ValueError, match=message):
        check_score_norm(dict(NORM, **change))
    check_score_norm(dict(NORM, score_norm="asnorm"))


@pytest.mark.parametrize("top_k", [2, 50])
def test_cohort_top_k_may_be_two_or_the_whole_cohort(top_k):
    """Both ends are accepted: the refusal's fix suggests cohort_size for a cohort under 200."""
    check_score_norm(dict(NORM, score_norm="asnorm", cohort_size=50, cohort_top_k=top_k))


@pytest.mark.parametrize("score_norm", ["snorm", "znorm", "tnorm"])
def test_cohort_top_k_is_read_by_asnorm_only(demo_corpus, score_norm):
    """Beyond cohort_size, or the cohort's utterances: refused for asnorm, unread by the others."""
    hparams = dict(NORM, score_norm=score_norm, cohort_top_k=1000)
    check_score_norm(hparams)
    check_cohort(hparams, {"source": whole(demo_corpus["source_train"]),
                           "target": whole(demo_corpus["target_train"])})


@pytest.mark.parametrize("rows, settings, message", [
    (None, {"score_norm": "asnorm", "cohort_size": 1000, "cohort_top_k": 300},
     "240 embeddings, fewer than the 300 that each trial side's"),
    (1, {"score_norm": "snorm"}, "1 embeddings, fewer than the 2 that each trial side's"),
    (1, {"score_norm": "znorm"}, "1 embeddings, fewer than the 2 that each trial side's"),
    (1, {"backend_adaptation": "whiten"},
     "1 embeddings, fewer than the 2 that a covariance to whiten by needs"),
    (16, {"backend_adaptation": "whiten", "whiten_ridge": 0},
     r"16 embeddings, fewer than the 17 that a covariance spanning their 16 dimensions needs\n"
     r"Fix: set whiten_ridge above 0, or raise cohort_size"),
    # A manifest of 240 utterances, a cohort_size of 10: the cohort drawn is 10.
    (None, {"backend_adaptation": "whiten", "whiten_ridge": 0, "cohort_size": 10},
     r"10 embeddings, fewer than the 17 that a covariance spanning their 16 dimensions needs"),
])
def test_too_small_a_cohort_fails_before_anything_is_embedded(demo_corpus, tmp_path, rows,
                                                             settings, message):
    target_train = tmp_path / "target_train.csv"
    pd.read_csv(demo_corpus["target_train"]).head(rows).to_csv(target_train, index=False)
    folder = tmp_path / "run"
    with pytest.raises(ManifestError, match=f"cohort: {message}"):
        verify_demo(demo_corpus, str(folder), str(target_train), **settings)
    assert not os.path.exists(folder)


@pytest.mark.parametrize("rows, settings, said", [
    (None, {"score_norm": "snorm"},
     "Cohort: 50 target training utterances, a random draw of cohort_size, for snorm."),
    # A manifest of fewer than cohort_size: all of it, a cohort the setting does not say.
    (30, {"score_norm": "asnorm", "backend_adaptation": "mean"},
     "Cohort: 30 target training utterances, all that embed whole (fewer than cohort_size, 50), "
     "for asnorm over each side's 10 closest and mean."),
    # Whitening alone (the default) draws the cohort too.
    (None, {"backend_adaptation": "whiten"},
     "Cohort: 50 target training utterances, a random draw of cohort_size, for whiten."),
])
def test_the_report_says_what_the_cohort_held(demo_corpus, tmp_path, rows, settings, said):
    target_train = tmp_path / "target_train.csv"
    pd.read_csv(demo_corpus["target_train"]).head(rows).to_csv(target_train, index=False)
    folder, _, _ = verify_demo(demo_corpus, str(tmp_path / "run"), str(target_train), **settings)
    text = open(os.path.join(folder, "verification", "report.md"), encoding="utf-8").read()
    assert said in text.splitlines()


def test_the_cohort_note_names_the_domain_the_cohort_is_drawn_from():
    hparams = {"cohort_domain": "source", "cohort_size": 1000, "score_norm": "znorm",
               "cohort_top_k": 200, "backend_adaptation": None}
    assert cohort_note(hparams, 1000) == (
        "Cohort: 1000 source training utterances, a random draw of cohort_size, for znorm.")


def test_a_report_without_a_cohort_names_none(demo_corpus, tmp_path):
    folder, _, _ = verify_demo(demo_corpus, str(tmp_path / "run"))
    text = open(os.path.join(folder, "verification", "report.md"), encoding="utf-8").read()
    assert "Cohort" not in text


@pytest.mark.parametrize("rows, ridge", [(17, 0), (2, 0.1)])
def test_a_cohort_that_can_be_whitened_passes_the_check_from_its_manifest(demo_corpus, tmp_path,
                                                                         rows, ridge):
    target_train = tmp_path / "target_train.csv"
    pd.read_csv(demo_corpus["target_train"]).head(rows).to_csv(target_train, index=False)
    hparams = dict(NORM, backend_adaptation="whiten", whiten_ridge=ridge)
    check_cohort(hparams, {"source": whole(demo_corpus["source_train"]),
                           "target": whole(str(target_train))})


class RecordingCache:
    """An embedding cache that records each draw and embeds nothing."""

    def __init__(self):
        self.draws = []

    def subset(self, name, dataset, size, manifest):
        self.draws.append((name, dataset.name, size))
        ids = dataset.data_ids[:size]
        return ids, torch.zeros(len(ids), 2)


@pytest.mark.parametrize("cohort_domain", ["source", "target"])
@pytest.mark.parametrize("oracle", [False, True])
def test_training_draws_take_their_domain_and_size_and_target_speakers_only_for_the_oracle(
        oracle, cohort_domain):
    source = DynamicItemDataset({f"s{i}": {"spk_id": f"a{i % 2}"} for i in range(6)})
    # Without the oracle, the target rows' spk_id is never read: these raise when it is.
    target = DynamicItemDataset({f"t{i}": (TargetRow(spk_id=f"b{i % 3}") if not oracle
                                           else {"spk_id": f"b{i % 3}"}) for i in range(9)})
    source.name, target.name = "source", "target"
    hparams = dict(NORM, cohort_domain=cohort_domain, cohort_size=4, backend_max_utterances=5,
                   pseudo_labels=PseudoLabels(offset=0, oracle=oracle))
    cache = RecordingCache()
    data = training_embeddings(cache, hparams, {"source": source, "target": target})
    assert len(data.cohort) == 4
    assert data.source[1] == ["a0", "a1", "a0", "a1", "a0"]
    assert data.target_draw[1] == (["b0", "b1", "b2", "b0", "b1"] if oracle else None)
    assert data.target_draw[2] == ["t0", "t1", "t2", "t3", "t4"]  # named in warnings
    assert cache.draws == [(f"cohort_{cohort_domain}", cohort_domain, 4),
                           ("backend_source", "source", 5), ("backend_target", "target", 5)]


def test_training_sets_of_no_utterance_within_the_embedding_limits_leave_their_backends_out(
        tmp_path):
    """Long recordings, over max_embed_seconds: nothing to embed, and nothing is embedded."""
    source, target = (DynamicItemDataset({f"{name}{i}": {
        "wav": f"{name}{i}.wav", "start": 0, "stop": 16000 * 700, "sample_rate": 16000,
        "spk_id": "a"} for i in range(count)}) for name, count in (("s", 12), ("t", 20)))
    hparams = dict(NORM, output_folder=str(tmp_path), eval_batch_size=4, seed=1,
                   pseudo_labels=PseudoLabels(offset=0))
    cache = verification.EmbeddingCache(None, hparams, "cpu", "CKPT")
    data = training_embeddings(cache, hparams, {"source": source, "target": target})
    backends, unscored = verification.build_backends(["plda", "plda_target"], data)
    assert backends == {}
    assert unscored == {name: f"none of the {count} utterances of the {domain} training "
                              "manifest is within min_embed_seconds and max_embed_seconds "
                              "(0.5-600 s), the lengths embedded whole; cut them into rows "
                              "(start, stop) of such lengths"
                        for name, domain, count in (("plda", "source", 12),
                                                    ("plda_target", "target", 20))}


def test_a_target_of_nothing_to_embed_is_refused_alike_by_the_pseudo_labels_and_the_backends(
        tmp_path):
    """Both refusals say the same of the same utterances: one wording, each its own exception."""
    import types

    from local.embedding import none_embeddable
    from local.model.dann_brain import DANNBrain

    target = DynamicItemDataset({f"t{i}": {"wav": f"t{i}.wav", "start": 0, "stop": 16000 * 700,
                                           "sample_rate": 16000} for i in range(3)})
    hparams = dict(NORM, output_folder=str(tmp_path), eval_batch_size=4, seed=1)
    with pytest.raises(verification.Unscorable) as unscorable:
        verification.EmbeddingCache(None, hparams, "cpu", "CKPT").subset(
            "backend_target", target, 5, "the target training manifest")
    brain = types.SimpleNamespace(target_utterances=target, embed_limits=lambda: (0.5, 600))
    with pytest.raises(ManifestError) as refused:
        DANNBrain.clustered_ids(brain)
    for subject, recordings, message in (
            ("3 utterances of the target training manifest", "them", str(unscorable.value)),
            ("3 target training utterances", "the target's recordings", str(refused.value))):
        reason, fix = none_embeddable(subject, recordings, 0.5, 600)
        assert reason == (f"none of the {subject} is within min_embed_seconds and "
                          "max_embed_seconds (0.5-600 s), the lengths embedded whole")
        assert reason in message and fix in message


class VectorCache(RecordingCache):
    """An embedding cache whose embedding of each utterance is given."""

    def __init__(self, vectors):
        super().__init__()
        self.vectors = vectors

    def subset(self, name, dataset, size, manifest):
        ids, _ = super().subset(name, dataset, size, manifest)
        return ids, torch.stack([self.vectors[utt] for utt in ids])


def test_a_speaker_phrase_run_trains_its_plda_on_speaker_phrase_classes():
    """A PLDA of speakers alone takes the phrase for within-speaker variation, as a
    text-dependent run's speaker head (speaker_label: spk_phrase) does not: it would
    score a speaker saying the wrong phrase (SdSV's TW) as a target."""
    generator = torch.Generator().manual_seed(0)
    speakers, phrases = torch.randn(12, 8, generator=generator), torch.randn(2, 8, generator=generator)
    rows, vectors = {}, {}
    for spk, phrase, take in itertools.product(range(12), range(2), range(6)):
        utt = f"s{spk}_{phrase}_{take}"
        rows[utt] = {"spk_id": f"spk{spk}", "phrase": f"0{phrase + 1}"}
        vectors[utt] = speakers[spk] + phrases[phrase] + 0.3 * torch.randn(8, generator=generator)
    source = DynamicItemDataset(rows)
    source.name = "source"
    hparams = dict(NORM, cohort_domain="source", speaker_label="spk_phrase",
                   pseudo_labels=PseudoLabels(offset=0))
    data = training_embeddings(VectorCache(vectors), hparams, {"source": source, "target": source})
    assert data.source[1][:7] == ["('spk0', '01')"] * 6 + ["('spk0', '02')"]
    # Each speaker's first take of phrase 01 against its other takes (TC) and its
    # takes of phrase 02 (TW).
    trials = pd.DataFrame([(f"s{spk}_0_0", f"s{spk}_{phrase}_{take}", int(phrase == 0))
                           for spk, phrase, take in itertools.product(range(12), range(2),
                                                                      range(1, 6))],
                          columns=["enrol", "test", "label"])
    scores = score_trials(vectors, trials, form=data.source_plda.score_form)
    assert eer(scores, trials["label"]) < 0.05


class TargetRow(dict):
    """A target manifest row whose speaker must not be read."""

    def __getitem__(self, key):
        if key == "spk_id":
            raise AssertionError("a target speaker label was read without pseudo_oracle")
        return super().__getitem__(key)
