"""Mean and logistic-regression score fusion, and its command line."""

import json
import logging
import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from speechbrain.utils.metric_stats import EER

from local.errors import ManifestError
from local.evaluation import fusion
from local.evaluation.fusion import (
    load_systems,
    main,
    mean_fusion,
    train_logistic_fusion,
    update_summary,
)
from local.evaluation.metrics import (
    SDSV_DCF,
    VOXCELEB_DCF,
    calibration_metrics,
    compute_metrics,
    eer,
)
from local.evaluation.report import plot_det, read_scores, write_scores
from local.evaluation.seed_table import collect, seed_table
from local.evaluation.seed_table import main as seed_table_main
from local.experiment import save_settings

N = 4000


def noisy_systems(seed, noise, shift=(0.0, 0.0), scale=(1.0, 1.0), prefix=""):
    """Trials, labels and one noisy copy of a common underlying score per noise level."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, N)
    truth = rng.normal(size=N) + 2.0 * labels
    trials = pd.DataFrame({"label": labels, "enrol": [f"{prefix}e{i % 50}" for i in range(N)],
                           "test": [f"{prefix}t{i}" for i in range(N)]})
    scores = [s * (truth + n * rng.normal(size=N)) + b for n, b, s in zip(noise, shift, scale)]
    return trials, np.stack(scores, axis=1)


def write_systems(folder, name, trials, scores):
    paths = []
    for system in range(scores.shape[1]):
        paths.append(str(folder / f"{name}{system}.txt"))
        write_scores(paths[-1], trials, scores[:, system])
    return paths


def test_fusing_two_noisy_copies_beats_each(tmp_path, capsys):
    # Different offsets and scales: standardisation puts them on one footing.
    trials, scores = noisy_systems(0, noise=(1.0, 1.0), shift=(0.0, 5.0), scale=(1.0, 0.1))
    labels = trials["label"]
    fused = mean_fusion(scores)
    assert eer(fused, labels) < 0.9 * min(eer(scores[:, 0], labels), eer(scores[:, 1], labels))
    paths = write_systems(tmp_path, "sys", trials, scores)
    main(["--scores", *paths, "--out", str(tmp_path / "fused.txt"),
          "--det", str(tmp_path / "det.png")])
    written = read_scores(tmp_path / "fused.txt")
    np.testing.assert_allclose(written["score"], fused)
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["system", "EER", "(%)", "min_dcf_0.01", "min_dcf_0.001"]
    assert [line.split()[0] for line in lines[1:4]] == ["sys0.txt", "sys1.txt", "fusion"]
    assert float(lines[3].split()[2]) == pytest.approx(100 * eer(fused, labels), abs=0.005)
    # The key of the short names: each system's score file, once.
    assert [line.split() for line in lines[4:6]] == [["sys0.txt", "is", paths[0]],
                                                     ["sys1.txt", "is", paths[1]]]
    # Standardised scores are no log-likelihood ratios: no actDCF or Cllr.
    assert lines[-1].startswith("fusion (mean): no actDCF or Cllr")


def _fused_with_figure(monkeypatch, capsys, paths, out):
    """The printed rows, the key under them, the DET legend and title of fusing ``paths``."""
    figures = []
    monkeypatch.setattr(fusion, "plot_det",
                        lambda *args, **kwargs: figures.append(plot_det(*args, **kwargs)))
    assert main(["--scores", *paths, "--out", str(out / "fused.txt"),
                 "--det", str(out / "det.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("  ")[0] for line in lines[1:len(paths) + 2]]
    key = [line.split() for line in lines[len(paths) + 2:2 * len(paths) + 2]]
    axes = figures[0].axes[0]
    legend = [line.get_label().split(" (EER")[0] for line in axes.get_lines()]
    return rows, key, legend, axes.get_title()


def test_the_table_and_the_det_legend_name_each_system_by_the_end_of_its_path(
        tmp_path, monkeypatch, capsys):
    """The table named each system by its full path, and the DET panel's title was --out's."""
    trials, scores = noisy_systems(0, noise=(1.0, 1.0, 1.0), shift=(0,) * 3, scale=(1,) * 3)
    paths = [str(tmp_path / "results" / run / seed / "verification" / system / "scores.txt")
             for run, seed, system in (("default", "1", "target_plda_pooled"),
                                       ("default", "2", "target_plda_pooled"),
                                       ("baseline", "1", "target_plda_pooled"))]
    for path, column in zip(paths, scores.T):
        write_scores(path, trials, column)
    rows, key, legend, title = _fused_with_figure(monkeypatch, capsys, paths, tmp_path)
    names = ["default/1/verification/target_plda_pooled",
             "default/2/verification/target_plda_pooled",
             "baseline/1/verification/target_plda_pooled"]
    assert legend == rows == [*names, "fusion (mean)"]
    assert key == [[name, "is", path] for name, path in zip(names, paths)]
    assert title == f"{N:,} trials"  # no report names the list


def test_the_det_title_names_the_trial_list_the_reports_scored(tmp_path, monkeypatch, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0), shift=(0, 0), scale=(1, 1))
    paths = [write_run(tmp_path / "vanilla", trials, scores[:, 0]),
             write_run(tmp_path / "coral", trials, scores[:, 1], system="target_asnorm")]
    rows, _, legend, title = _fused_with_figure(monkeypatch, capsys, paths, tmp_path)
    assert legend == rows == ["target", "target_asnorm", "fusion (mean)"]
    assert title == f"trial list target: trials.txt ({N:,} trials)"
    # Reports of two lists: the trials alone.
    write_run(tmp_path / "coral", trials, scores[:, 1], system="target_asnorm")
    record = tmp_path / "coral" / "verification" / "provenance.json"
    record.write_text(record.read_text().replace("target", "target_hard"))
    paths[1] = str(tmp_path / "coral" / "verification" / "target_hard" / "scores.txt")
    write_scores(paths[1], trials, scores[:, 1])
    assert _fused_with_figure(monkeypatch, capsys, paths, tmp_path)[3] == f"{N:,} trials"
    # A score file of no report beside one of a report: no list that every report names.
    paths[1] = str(tmp_path / "plain.txt")
    write_scores(paths[1], trials, scores[:, 1])
    assert _fused_with_figure(monkeypatch, capsys, paths, tmp_path)[3] == f"{N:,} trials"


def test_mean_fusion_by_hand():
    scores = np.array([[0.0, 10.0], [1.0, 30.0], [2.0, 20.0]])
    # System 1: mean 1, std sqrt(2/3); system 2: mean 20, std sqrt(200/3).
    z = np.sqrt(1.5)
    np.testing.assert_allclose(mean_fusion(scores), [(-z - z) / 2, (0 + z) / 2, (z + 0) / 2])
    with pytest.raises(ManifestError, match=r"^system 1: gives every trial the same score"):
        mean_fusion(np.array([[0.0, 1.0], [1.0, 1.0]]))
    # Whatever the score: the std of ten scores of 0.7 is 1e-16, not 0.
    with pytest.raises(ManifestError, match=r"^system 1: gives every trial the same score"):
        mean_fusion(np.column_stack([np.arange(10.0), np.full(10, 0.7)]))


@pytest.mark.parametrize("constant", [0.0, 0.7])
def test_a_system_of_one_development_score_has_no_weight(constant):
    # Its std on the development trials is 0 or a rounding error (1e-16 for 0.7):
    # not a unit to scale it by, which once gave it a weight of 1e13, offset by the bias.
    dev_trials, dev_scores = noisy_systems(1, noise=(0.5,), shift=(0.0,), scale=(1.0,))
    alone = train_logistic_fusion(dev_scores, dev_trials["label"])
    weights, bias = train_logistic_fusion(
        np.column_stack([dev_scores, np.full(N, constant)]), dev_trials["label"])
    assert weights[0] == pytest.approx(alone[0][0], rel=1e-6)
    assert abs(weights[1]) < 1e-9 and bias == pytest.approx(alone[1], rel=1e-6)


def test_logistic_fusion_weights_the_better_system_more(tmp_path, capsys):
    dev_trials, dev_scores = noisy_systems(1, noise=(0.5, 1.5), prefix="dev_")
    trials, scores = noisy_systems(2, noise=(0.5, 1.5))
    weights, bias = train_logistic_fusion(dev_scores, dev_trials["label"])
    assert weights[0] > 3 * weights[1] > 0
    fused = scores @ weights + bias
    assert eer(fused, trials["label"]) < eer(mean_fusion(scores), trials["label"])
    paths = write_systems(tmp_path, "eval", trials, scores)
    dev = write_systems(tmp_path, "dev", dev_trials, dev_scores)
    main(["--scores", *paths, "--out", str(tmp_path / "fused.txt"), "--dev", *dev])
    np.testing.assert_allclose(read_scores(tmp_path / "fused.txt")["score"], fused)
    printed = capsys.readouterr().out
    assert printed.startswith(f"weights {weights[0]:.4f} {weights[1]:.4f}, bias {bias:.4f}\n")


@pytest.mark.parametrize("p_target", [0.5, 0.1])
def test_logistic_fusion_learns_the_log_likelihood_ratio(p_target):
    # Targets N(1, 1), non-targets N(-1, 1): the log-likelihood ratio is 2 s,
    # whatever prior the training is weighted for.
    rng = np.random.default_rng(3)
    labels = rng.random(40000) < 0.3
    scores = (rng.normal(size=40000) + np.where(labels, 1.0, -1.0))[:, None]
    weights, bias = train_logistic_fusion(scores, labels, p_target)
    assert weights[0] == pytest.approx(2.0, abs=0.06) and bias == pytest.approx(0.0, abs=0.06)


@pytest.mark.parametrize("p_target", [0.5, 0.1])
@pytest.mark.parametrize("separation, unit, shift", [
    (1.0, 0.05, 0.3), (2.3, 0.05, 0.3), (3.0, 0.05, 0.3), (2.3, 1.0, 0.0), (3.0, 40.0, -80.0)])
def test_the_fusion_of_scores_in_any_unit_is_the_unpenalised_regression(
        p_target, separation, unit, shift):
    # Targets N(a, 1), non-targets N(-a, 1) of x (EER 16, 1 and 0.1 %), as
    # scores in a cosine's unit (0.3 + 0.05 x), as they are, or in a PLDA's
    # (-80 + 40 x): one calibration, in weights 20 times larger or 40 times
    # smaller. Each is scikit-learn's prior-weighted logistic regression of x
    # without a penalty, which only keeps separable trials' weights finite.
    rng = np.random.default_rng(3)
    labels = rng.random(40000) < 0.3
    x = rng.normal(size=40000) + np.where(labels, separation, -separation)
    weights, bias = train_logistic_fusion((shift + unit * x)[:, None], labels, p_target)
    prior = np.where(labels, p_target / labels.sum(), (1 - p_target) / (~labels).sum())
    regression = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(
        x[:, None], labels, sample_weight=prior * len(labels))
    assert weights[0] * unit == pytest.approx(regression.coef_[0, 0], rel=2e-3)
    assert bias + shift * weights[0] + logit(p_target) == pytest.approx(
        regression.intercept_[0], abs=0.02)


def test_systems_are_aligned_by_trial(tmp_path):
    trials, scores = noisy_systems(4, noise=(1.0, 1.0))
    write_scores(tmp_path / "a.txt", trials, scores[:, 0])
    order = np.random.default_rng(0).permutation(N)
    write_scores(tmp_path / "b.txt", trials.iloc[order], scores[order, 1])
    aligned_trials, aligned = load_systems([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
    pd.testing.assert_frame_equal(aligned_trials, trials[["enrol", "test", "label"]])
    np.testing.assert_array_equal(aligned, scores)


def test_mismatched_trial_lists_are_refused(tmp_path):
    trials, scores = noisy_systems(5, noise=(1.0, 1.0))
    write_scores(tmp_path / "a.txt", trials, scores[:, 0])
    other = trials.copy()
    other.loc[3, "test"] = "elsewhere"
    write_scores(tmp_path / "b.txt", other.iloc[1:], scores[1:, 1])
    with pytest.raises(ManifestError) as error:
        load_systems([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
    assert str(error.value).startswith(
        f"{tmp_path / 'b.txt'}: does not list the same trials as {tmp_path / 'a.txt'} "
        "(2 missing, 1 extra)\n  missing: e0 t0\n  missing: e3 t3\n  extra: e3 elsewhere\n"
        "Fix: score every system on the same trial list")
    flipped = trials.copy()
    flipped.loc[7, "label"] = 1 - flipped.loc[7, "label"]
    write_scores(tmp_path / "c.txt", flipped, scores[:, 1])
    with pytest.raises(ManifestError, match=r"c.txt: labels differ from .*a.txt\n  e7 t7\n"):
        load_systems([str(tmp_path / "a.txt"), str(tmp_path / "c.txt")])


def test_command_line_reports_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--scores", "a.txt", "b.txt", "--out", "f.txt", "--dev", "a_dev.txt"])
    assert "2 --scores files but 1 --dev files" in capsys.readouterr().err
    missing = str(tmp_path / "none.txt")
    assert main(["--scores", missing, "--out", str(tmp_path / "f.txt")]) == 1
    assert capsys.readouterr().err.startswith(f"{missing}: score file does not exist")
    assert not (tmp_path / "f.txt").exists()
    trials, scores = noisy_systems(0, noise=(1.0, 1.0), shift=(0.0, 0.0), scale=(1.0, 0.0))
    paths = write_systems(tmp_path, "sys", trials, scores)
    assert main(["--scores", *paths, "--out", str(tmp_path / "f.txt")]) == 1
    assert capsys.readouterr().err.startswith(f"{paths[1]}: gives every trial the same score")
    assert not (tmp_path / "f.txt").exists()


def test_a_score_file_given_twice_is_refused_before_anything_is_written(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 2.0))
    paths = write_systems(tmp_path, "sys", trials, scores)
    dev = write_systems(tmp_path, "dev", *noisy_systems(1, noise=(1.0, 2.0), prefix="d"))
    # Another spelling of the same file (pathlib would drop the "."), and a link to it.
    again = os.path.join(str(tmp_path), ".", "sys0.txt")
    os.symlink(paths[0], tmp_path / "link.txt")
    assert main(["--scores", *paths, str(tmp_path / "link.txt"),
                 "--out", str(tmp_path / "f.txt")]) == 1
    assert capsys.readouterr().err.startswith(
        f"{tmp_path / 'link.txt'}: is given twice (as {paths[0]})")
    for extra in ([], ["--dev", dev[0], dev[0], dev[1]]):
        assert main(["--scores", *paths, again, "--out", str(tmp_path / "f.txt"), *extra]) == 1
        assert capsys.readouterr().err.startswith(f"{again}: is given twice (as {paths[0]})")
    assert main(["--scores", *paths, "--out", str(tmp_path / "f.txt"),
                 "--dev", dev[0], dev[0]]) == 1
    assert capsys.readouterr().err.startswith(f"{dev[0]}: is given twice (as {dev[0]})")
    assert not (tmp_path / "f.txt").exists()


def test_development_trials_among_the_fused_ones_are_refused(tmp_path, capsys):
    """A fusion trained on the trials it reports gives their EER as if held out."""
    trials, scores = noisy_systems(0, noise=(0.5, 1.5))
    paths = write_systems(tmp_path, "sys", trials, scores)
    out = str(tmp_path / "f.txt")
    assert main(["--scores", *paths, "--out", out, "--dev", *paths]) == 1
    assert capsys.readouterr().err.startswith(
        f"{paths[0]}: {N} of its {N} trials are trials of {paths[0]}, which the fusion "
        "trained on them would report\n  e0 t0\n")
    # A part of them, with the sides swapped: the same trials.
    swapped = trials[::7].rename(columns={"enrol": "test", "test": "enrol"})
    dev = write_systems(tmp_path, "dev", swapped, scores[::7])
    assert main(["--scores", *paths, "--out", out, "--dev", *dev]) == 1
    assert f"{dev[0]}: {len(swapped)} of its {len(swapped)} trials are trials of {paths[0]}" \
        in capsys.readouterr().err
    assert not os.path.exists(out)


def test_development_trials_of_one_label_are_refused(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(0.5, 1.0))
    paths = write_systems(tmp_path, "sys", trials, scores)
    nontarget = trials["label"] == 0
    dev = write_systems(tmp_path, "dev", trials[nontarget], scores[nontarget.to_numpy()])
    out = str(tmp_path / "f.txt")
    assert main(["--scores", *paths, "--out", out, "--dev", *dev]) == 1
    assert capsys.readouterr().err.startswith(
        f"{dev[0]}: has {nontarget.sum()} trials of one label, and the logistic regression "
        "is trained on target and non-target trials\nFix: pass score files of a trial list "
        "with both\n")
    assert not os.path.exists(out)


def test_trials_of_one_label_are_refused_before_anything_is_written(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(0.5, 1.0))
    target = (trials["label"] == 1).to_numpy()
    paths = write_systems(tmp_path, "sys", trials[target], scores[target])
    out = str(tmp_path / "f.txt")
    assert main(["--scores", *paths, "--out", out]) == 1
    assert capsys.readouterr().err.startswith(
        f"{paths[0]}: has {target.sum()} trials of one label, and EER and minDCF are taken "
        "over target and non-target trials\nFix: pass score files of a trial list with both\n")
    assert not os.path.exists(out)


def test_fused_systems_are_tabulated_over_seeds_like_runs(tmp_path, capsys, caplog):
    for seed in (1, 2):
        fused_run = tmp_path / "fused" / str(seed)
        for trial_list, noise in (("source", 0.5), ("target", 1.5)):
            trials, scores = noisy_systems(seed, noise=(noise, noise))
            paths = write_systems(tmp_path, f"{trial_list}{seed}_", trials, scores)
            out = fused_run / "verification" / trial_list / "scores.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            assert main(["--scores", *paths, "--out", str(out), "--summary",
                         str(fused_run / "verification" / "summary.csv"),
                         "--system", trial_list]) == 0
    summary = pd.read_csv(tmp_path / "fused" / "1" / "verification" / "summary.csv")
    assert summary["system"].tolist() == ["source", "target"]
    trials, scores = noisy_systems(1, noise=(1.5, 1.5))
    assert summary["eer_percent"][1] == pytest.approx(
        100 * eer(mean_fusion(scores), trials["label"]), abs=0.005)
    with caplog.at_level(logging.WARNING, logger="local.evaluation.seed_table"):
        table = seed_table({"fusion": collect(str(tmp_path / "fused" / "*"))},
                           ["source", "target"], ["eer_percent"])
    assert table.shape[0] == 1
    # A fused folder has no settings record to name; its score files lie in no
    # run's report, whose settings could be compared: the warning says so.
    assert "hyperparams.yaml" not in caplog.text
    assert (f"{tmp_path / 'fused' / '1'}, {tmp_path / 'fused' / '2'}: row 'target' fused score "
            "files of no run's report, whose runs' settings are not compared with those of "
            "the other fused folders of 'fusion'") in caplog.text


@pytest.mark.parametrize("alone", [["--summary", "s.csv"], ["--system", "target"]])
def test_summary_needs_a_system_name(tmp_path, capsys, alone):
    out = tmp_path / "f.txt"
    with pytest.raises(SystemExit) as exit_:
        main(["--scores", "a.txt", "--out", str(out), *alone])
    assert exit_.value.code == 2
    assert "error: --summary and --system go together" in capsys.readouterr().err
    assert not out.exists()


def test_a_fusion_that_fails_while_writing_leaves_the_files_before_it(tmp_path, monkeypatch):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0))
    paths = write_systems(tmp_path, "sys", trials, scores)
    out, summary = tmp_path / "fused.txt", tmp_path / "verification" / "summary.csv"
    main(["--scores", *paths, "--out", str(out), "--summary", str(summary), "--system", "t"])
    before = out.read_bytes(), summary.read_bytes()
    to_csv = pd.DataFrame.to_csv

    def full_disk(table, handle, **options):
        to_csv(table.iloc[:1], handle, **options)  # a part written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(OSError):
        main(["--scores", *paths[::-1], "--out", str(out)])
    with pytest.raises(OSError):
        update_summary(str(summary), "other", {"trials": 1, "eer": 0.5})
    assert (out.read_bytes(), summary.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        [*(os.path.basename(p) for p in paths), "fused.txt", "summary.csv", "provenance.json"])


def test_a_fusion_whose_last_file_fails_leaves_every_file_of_the_fusion_before_it(
        tmp_path, monkeypatch):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0, 2.0), shift=(0.0,) * 3, scale=(1.0,) * 3)
    paths = write_systems(tmp_path, "sys", trials, scores)
    out, det = tmp_path / "fused.txt", tmp_path / "det.png"
    summary = tmp_path / "verification" / "summary.csv"
    written = (out, det, summary, summary.parent / "provenance.json")
    main(["--scores", *paths[:2], "--out", str(out), "--det", str(det),
          "--summary", str(summary), "--system", "t"])
    before = [path.read_bytes() for path in written]
    dump = json.dump

    def full_disk(record, handle, **options):
        dump(record, handle, **options)
        raise OSError(28, "No space left on device")

    # The record of the fusion, written after its scores, figure and row.
    monkeypatch.setattr(json, "dump", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        main(["--scores", *paths, "--out", str(out), "--det", str(det),
              "--summary", str(summary), "--system", "t"])
    assert [path.read_bytes() for path in written] == before
    assert not list(tmp_path.rglob("*.partial"))


def test_a_fusion_is_not_written_over_its_inputs_or_into_a_runs_report(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0))
    report = tmp_path / "run" / "verification"
    paths = [str(report / "target" / "scores.txt"), str(tmp_path / "other.txt")]
    for path, column in zip(paths, scores.T):
        write_scores(path, trials, column)
    (report / "checkpoint.txt").write_text("CKPT+1\n")
    (report / "summary.csv").write_text("system,trials,eer_percent\ntarget,4000,30.0\n")
    before = {path: open(path, "rb").read() for path in [*paths, str(report / "summary.csv")]}
    refused = [
        (["--out", paths[0]], f"{paths[0]}: is one of the score files fused"),
        (["--out", str(report / "fused" / "scores.txt")],
         f"{report / 'fused' / 'scores.txt'}: lies in a run's own verification report"),
        (["--out", str(tmp_path / "f.txt"), "--summary", str(report / "summary.csv"),
          "--system", "target"], f"{report / 'summary.csv'}: lies in a run's own verification"),
    ]
    for options, message in refused:
        assert main(["--scores", *paths, *options]) == 1
        assert capsys.readouterr().err.startswith(message)
    assert {path: open(path, "rb").read() for path in before} == before
    assert not (report / "fused").exists() and not (tmp_path / "f.txt").exists()


def test_a_fusion_writes_no_file_into_a_runs_folder(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0))
    run = tmp_path / "run"
    paths = [write_run(run, trials, scores[:, 0]), str(tmp_path / "other.txt")]
    write_scores(paths[1], trials, scores[:, 1])
    for name in ("hyperparams.yaml", "provenance.json"):  # the run's record
        (run / name).write_text("{}\n")
    (run / "verification" / "det.png").write_bytes(b"png")
    os.symlink(run, tmp_path / "linked")
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    refused = [
        (["--out", str(run / "hyperparams.yaml")], rf"{run}/hyperparams.yaml: lies in the "
                                                   rf"folder of a run, {run} \(it holds"),
        (["--out", str(tmp_path / "linked" / "fused.txt")], r".*/linked/fused.txt: lies in the "
                                                            rf"folder of a run, {run} "),
        (["--out", str(run / "verification" / "summary.csv")],
         r".*/summary.csv: lies in a run's own verification report"),
        (["--out", str(tmp_path / "f.txt"), "--det", str(run / "verification" / "det.png")],
         r".*/det.png: lies in a run's own verification report"),
        (["--out", str(tmp_path / "f.txt"), "--summary", str(run / "summary.csv"),
          "--system", "target"], r".*/summary.csv: lies in the folder of a run"),
        (["--out", str(tmp_path / "f.txt"), "--det", paths[1]],
         r".*/other.txt: is a score file of this fusion"),
        # The figure, drawn after the fused scores are written, would replace them.
        (["--out", str(tmp_path / "f.txt"), "--det", str(tmp_path / "f.txt")],
         r".*/f.txt: is a score file of this fusion \(fused, or --out\)"),
    ]
    for options, message in refused:
        assert main(["--scores", *paths, *options]) == 1
        assert re.match(message, capsys.readouterr().err), options
    assert {p: p.read_bytes() for p in files} == before
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files


def write_run(run, trials, scores, manifest_hash="m1", checkpoint="CKPT+1", system="target"):
    """A run's report holding one system's scores, the checkpoint and the list's hashes."""
    report = run / "verification"
    write_scores(report / system / "scores.txt", trials, scores)
    (report / "checkpoint.txt").write_text(f"{checkpoint}\n")
    data = {"evaluation/target/trials": {"path": "trials.txt", "sha256": "t1"},
            "evaluation/target/manifest": {"path": "eval.csv", "sha256": manifest_hash}}
    (report / "provenance.json").write_text(json.dumps({"data": data}))
    (report / "summary.csv").write_text(f"system,trials,eer_percent\n{system},{len(trials)},30.0\n")
    return str(report / system / "scores.txt")


def test_systems_scored_on_other_data_are_refused_and_the_fusion_records_its_data(
        tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0, 1.0), shift=(0,) * 3, scale=(1,) * 3)
    paths = [write_run(tmp_path / "vanilla", trials, scores[:, 0]),
             write_run(tmp_path / "least_squares", trials, scores[:, 1], checkpoint="CKPT+2",
                       system="target_plda_pooled"),
             write_run(tmp_path / "relativistic", trials, scores[:, 2], manifest_hash="m2")]
    fused = tmp_path / "average" / "verification"
    out = ["--out", str(fused / "target" / "scores.txt"),
           "--summary", str(fused / "summary.csv"), "--system", "target"]
    assert main(["--scores", *paths, *out]) == 1
    assert capsys.readouterr().err.startswith(
        f"{paths[2]}: scored on other data than {paths[0]}\n"
        f"  {paths[0]}: manifest m1\n  {paths[2]}: manifest m2\n")
    assert not (tmp_path / "average").exists()
    assert main(["--scores", *paths[:2], *out]) == 0
    record = json.loads((fused / "provenance.json").read_text())
    assert record["data"] == {"evaluation/target/trials": {"sha256": "t1"},
                              "evaluation/target/manifest": {"sha256": "m1"}}
    assert [(i["path"], i["system"], i["checkpoint"]) for i in record["fusion"]["target"]["scores"]] \
        == [(paths[0], "target", "CKPT+1"), (paths[1], "target_plda_pooled", "CKPT+2")]
    # The fused folder's hashes are compared with other runs' as a run's are.
    with pytest.raises(ManifestError, match="'target' scored on other data"):
        seed_table({"average": collect(str(tmp_path / "average")),
                    "relativistic": collect(str(tmp_path / "relativistic"))},
                   ["target"], ["eer_percent"])
    # The row fused again from score files of no report: its data are no longer recorded.
    plain = write_systems(tmp_path, "plain", trials, scores[:, :2])
    assert main(["--scores", *plain, *out]) == 0
    assert json.loads((fused / "provenance.json").read_text())["data"] == {}


def test_seed_table_refuses_a_fused_row_whose_runs_were_scored_again(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0, 1.0), shift=(0,) * 3, scale=(1,) * 3)
    paths = [write_run(tmp_path / "vanilla", trials, scores[:, 0]),
             write_run(tmp_path / "least_squares", trials, scores[:, 1])]
    fused = tmp_path / "average" / "verification"
    assert main(["--scores", *paths, "--out", str(fused / "target" / "scores.txt"),
                 "--summary", str(fused / "summary.csv"), "--system", "target"]) == 0
    table = ["--runs", "average", str(tmp_path / "average"), "--lists", "target",
             "--metrics", "eer_percent"]
    assert seed_table_main(table) == 0
    write_scores(paths[1], trials, scores[:, 2])  # least_squares scored again
    capsys.readouterr()
    assert seed_table_main(table) == 1
    assert capsys.readouterr().err.startswith(
        f"{fused / 'provenance.json'}: row 'target' was fused from score files that have "
        f"changed since (a run scored again): its figures are not their fusion\n  {paths[1]}\n"
        f"Fix: fuse 'target' again")


def fuse_seed(tmp_path, seed, systems=("target_plda_pooled", "target_asnorm"), dev=False,
              p_target=(), fused="fused", run_folder="default", extra=(), **settings):
    """Fuse the systems of run ``<run_folder>/<seed>`` (and the score files ``extra``) into
    ``<fused>/<seed>``; the exit code.

    Each run's report holds the scores of ``systems`` and, with ``settings``,
    the run's settings records (``hparams/dann_fbank.yaml`` on the demo with
    those overrides), as train_dann.py writes them.
    """
    trials, scores = noisy_systems(0, noise=(1.0,) * len(systems))  # one list, scored by each seed
    scores = scores + np.random.default_rng(seed).normal(size=scores.shape)
    run = tmp_path / run_folder / str(seed)
    paths = [write_run(run, trials, column, system=system)
             for system, column in zip(systems, scores.T)]
    for where in (run, run / "verification") if settings else ():
        save_settings("hparams/dann_fbank.yaml", {"condition": "demo", "n_speakers": 24,
                                                  "output_folder": str(run), "seed": seed,
                                                  **settings},
                      "recipes/demo/condition.yaml", str(where))
    options = []
    if dev:
        dev_trials, dev_scores = noisy_systems(seed + 10, noise=(1.0,) * len(systems),
                                               prefix="dev_")
        options = ["--dev", *write_systems(tmp_path, f"dev{seed}_", dev_trials, dev_scores),
                   *p_target]
    report = tmp_path / fused / str(seed) / "verification"
    return main(["--scores", *paths, *extra, "--out", str(report / "target" / "scores.txt"),
                 *options,
                 "--summary", str(report / "summary.csv"), "--system", "target"])


def fused_table(tmp_path, fused="fused"):
    return seed_table_main(["--runs", "fusion", str(tmp_path / fused / "*"), "--lists", "target",
                            "--metrics", "eer_percent"])


def test_fused_folders_of_one_system_must_be_one_fusion(tmp_path, capsys):
    for seed in (1, 2):
        assert fuse_seed(tmp_path, seed) == 0
    # The same systems given in another order: the same fusion.
    assert fuse_seed(tmp_path, 3, systems=("target_asnorm", "target_plda_pooled")) == 0
    assert fused_table(tmp_path) == 0
    capsys.readouterr()
    record = tmp_path / "fused" / "3" / "verification" / "provenance.json"
    for options, difference in (
            ({"systems": ("target_plda_pooled", "target")},
             '  systems: ["target_asnorm", "target_plda_pooled"] in '
             f'{tmp_path / "fused" / "1"}, {tmp_path / "fused" / "2"}; '
             f'["target", "target_plda_pooled"] in {tmp_path / "fused" / "3"}\n'),
            ({"dev": True},
             f'  method: "mean" in {tmp_path / "fused" / "1"}, {tmp_path / "fused" / "2"}; '
             f'"logistic" in {tmp_path / "fused" / "3"}\n')):
        for path in record.parent.rglob("*"):
            path.unlink() if path.is_file() else None
        assert fuse_seed(tmp_path, 3, **options) == 0
        assert fused_table(tmp_path) == 1
        err = capsys.readouterr().err
        assert err.startswith(
            f"{record}: row 'target' is another fusion than that of {tmp_path / 'fused' / '1'}: "
            "the fused folders of 'fusion' are not seeds of one fusion\n"), options
        assert difference in err, options
        assert "\nFix: fuse the runs of every seed by one method (and --p_target)" in err
    # Logistic fusions calibrated at other priors.
    for seed, p_target in ((1, ["--p_target", "0.01"]), (2, [])):
        assert fuse_seed(tmp_path, seed, dev=True, p_target=p_target, fused="logistic") == 0
    assert fused_table(tmp_path, "logistic") == 1
    assert (f"  --p_target: 0.01 in {tmp_path / 'logistic' / '1'}; 0.5 in "
            f"{tmp_path / 'logistic' / '2'}\n") in capsys.readouterr().err


def test_the_runs_fused_in_each_seed_must_be_seeds_of_one_setting(tmp_path, capsys, caplog):
    for seed in (1, 2, 3):
        assert fuse_seed(tmp_path, seed, number_of_epochs=4) == 0
    with caplog.at_level(logging.WARNING, logger="local.evaluation.seed_table"):
        assert fused_table(tmp_path) == 0
    assert "not compared" not in caplog.text  # every run fused has its settings record
    capsys.readouterr()
    assert fuse_seed(tmp_path, 3, number_of_epochs=8) == 0  # seed 3 trained longer
    assert fused_table(tmp_path) == 1
    run = tmp_path / "default"
    assert capsys.readouterr().err.startswith(
        f"{run / '3' / 'verification' / 'hyperparams.yaml'}: a run fused as 'target_asnorm' into "
        f"row 'target' of 'fusion' made with other settings than {run / '1'}: its figures are "
        f"not another seed's\n  number_of_epochs: 4 in {run / '1'}, {run / '2'}; 8 in "
        f"{run / '3'}\nFix: fuse the runs of one setting in every seed's folder")
    # A fused folder whose runs have no settings record is compared with a warning.
    for name in ("hyperparams.yaml", "verification/hyperparams.yaml"):
        (run / "3" / name).unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="local.evaluation.seed_table"):
        assert fused_table(tmp_path) == 0
    assert (f"No settings record (evaluate_hyperparams.yaml or hyperparams.yaml) in the report "
            f"of {run / '3'}: its settings are not compared with those of the runs fused as "
            "'target_asnorm' into row 'target' of the other fused folders of 'fusion'"
            ) in caplog.text


def fuse_into(tmp_path, fused, seed, paths, dev=()):
    """Fuse ``paths`` (trained on ``dev``) into ``<fused>/<seed>``; the exit code."""
    report = tmp_path / fused / str(seed) / "verification"
    return main(["--scores", *map(str, paths), *(["--dev", *map(str, dev)] if dev else []),
                 "--out", str(report / "target" / "scores.txt"),
                 "--summary", str(report / "summary.csv"), "--system", "target"])


def test_fused_folders_trained_on_other_development_systems_are_no_seeds(tmp_path, capsys):
    dev_trials, dev_scores = noisy_systems(10, noise=(1.0, 1.0), prefix="dev_")
    for seed, dev_systems in ((1, ("source_plda_pooled", "source_asnorm")),
                              (2, ("source_plda_pooled", "source"))):
        assert fuse_seed(tmp_path, seed) == 0
        paths = [tmp_path / "default" / str(seed) / "verification" / system / "scores.txt"
                 for system in ("target_plda_pooled", "target_asnorm")]
        dev = [write_run(tmp_path / "dev" / str(seed), dev_trials, column, system=system)
               for system, column in zip(dev_systems, dev_scores.T)]
        assert fuse_into(tmp_path, "logistic", seed, paths, dev) == 0
    capsys.readouterr()
    assert fused_table(tmp_path, "logistic") == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"{tmp_path / 'logistic' / '2' / 'verification' / 'provenance.json'}: row 'target' is "
        f"another fusion than that of {tmp_path / 'logistic' / '1'}")
    assert (f'  development systems: ["source_asnorm", "source_plda_pooled"] in '
            f'{tmp_path / "logistic" / "1"}; ["source", "source_plda_pooled"] in '
            f'{tmp_path / "logistic" / "2"}\n') in err


def test_fused_folders_trained_on_another_seeds_development_scores_are_no_seeds(
        tmp_path, capsys):
    """Each seed's fusion is trained on its own run's scores of a development list; a fusion
    trained on seed 1's is no seed 2's, nor is a row whose development scores changed since."""
    dev_trials, dev_scores = noisy_systems(10, noise=(1.0, 1.0), prefix="dev_")
    dev = {}
    for seed in (1, 2):
        assert fuse_seed(tmp_path, seed) == 0
        dev[seed] = [write_run(tmp_path / "default" / str(seed), dev_trials, column + seed,
                               system=system)
                     for system, column in zip(("source_plda_pooled", "source_asnorm"),
                                               dev_scores.T)]
    paths = {seed: [tmp_path / "default" / str(seed) / "verification" / system / "scores.txt"
                    for system in ("target_plda_pooled", "target_asnorm")] for seed in (1, 2)}
    for seed in (1, 2):
        assert fuse_into(tmp_path, "logistic", seed, paths[seed], dev[seed]) == 0
    capsys.readouterr()
    assert fused_table(tmp_path, "logistic") == 0
    # Seed 1's development scores scored again: its row is no longer their fusion.
    write_scores(dev[1][0], dev_trials, dev_scores[:, 0])
    assert fused_table(tmp_path, "logistic") == 1
    assert capsys.readouterr().err.startswith(
        f"{tmp_path / 'logistic' / '1' / 'verification' / 'provenance.json'}: row 'target' was "
        f"fused from score files that have changed since (a run scored again): its figures are "
        f"not their fusion\n  {dev[1][0]}\n")
    assert fuse_into(tmp_path, "logistic", 1, paths[1], dev[1]) == 0
    # Seed 2 fused again, trained on seed 1's development scores.
    assert fuse_into(tmp_path, "logistic", 2, paths[2], dev[1]) == 0
    capsys.readouterr()
    assert fused_table(tmp_path, "logistic") == 1
    assert capsys.readouterr().err.startswith(
        f"{tmp_path / 'logistic' / '2' / 'verification' / 'provenance.json'}: row 'target' "
        f"fused runs of {tmp_path / 'logistic' / '1'}: the fused folders of 'fusion' are not "
        f"seeds of one fusion\n  {tmp_path / 'default' / '1'}\n")


def test_the_runs_of_one_system_are_paired_by_their_settings_whatever_the_order_fused(
        tmp_path, capsys):
    """Each seed fuses a baseline run and a DANN run, both scored as 'target'."""
    for seed in (1, 2):
        for run_folder, epochs in (("baseline", 4), ("dann", 8)):
            assert fuse_seed(tmp_path, seed, systems=("target",), fused=f"{run_folder}_alone",
                             run_folder=run_folder, number_of_epochs=epochs) == 0
        paths = [tmp_path / run_folder / str(seed) / "verification" / "target" / "scores.txt"
                 for run_folder in ("baseline", "dann")]
        assert fuse_into(tmp_path, "pair", seed, paths[::-1] if seed == 2 else paths) == 0
    capsys.readouterr()
    assert fused_table(tmp_path, "pair") == 0


def test_the_runs_fused_beside_files_of_no_report_are_compared_with_each_other(
        tmp_path, capsys):
    """Each seed fuses its run with a score file of no report, in folders whose names sort
    before and after the run's system: the runs take the same place in each fusion."""
    trials, scores = noisy_systems(0, noise=(2.0,))
    for seed, (folder, epochs) in enumerate((("a_baseline", 4), ("z_baseline", 8)), 1):
        plain = str(tmp_path / folder / "scores.txt")
        write_scores(plain, trials, scores[:, 0] + seed)
        assert fuse_seed(tmp_path, seed, systems=("target_asnorm",), extra=[plain],
                         number_of_epochs=epochs) == 0
    capsys.readouterr()
    assert fused_table(tmp_path) == 1
    run = tmp_path / "default"
    assert capsys.readouterr().err.startswith(
        f"{run / '2' / 'verification' / 'hyperparams.yaml'}: a run fused as 'target_asnorm' into "
        f"row 'target' of 'fusion' made with other settings than {run / '1'}")


def test_fused_folders_that_share_a_run_or_sit_among_runs_are_no_seeds(tmp_path, capsys):
    for seed in (1, 2):
        assert fuse_seed(tmp_path, seed) == 0
    # Seed 2's folder fused again from seed 1's run (a pasted command).
    paths = [str(tmp_path / "default" / "1" / "verification" / system / "scores.txt")
             for system in ("target_plda_pooled", "target_asnorm")]
    report = tmp_path / "fused" / "2" / "verification"
    assert main(["--scores", *paths, "--out", str(report / "target" / "scores.txt"),
                 "--summary", str(report / "summary.csv"), "--system", "target"]) == 0
    capsys.readouterr()
    assert fused_table(tmp_path) == 1
    assert capsys.readouterr().err.startswith(
        f"{report / 'provenance.json'}: row 'target' fused runs of {tmp_path / 'fused' / '1'}: "
        f"the fused folders of 'fusion' are not seeds of one fusion\n"
        f"  {tmp_path / 'default' / '1'}\n")
    # Seed 2's folder fused from its own PLDA system and seed 1's AS-norm one: seed 1's
    # run is in both folders, but from other score files than a fixed system would be.
    paths[0] = str(tmp_path / "default" / "2" / "verification" / "target_plda_pooled" /
                   "scores.txt")
    for path in report.rglob("*"):
        path.unlink() if path.is_file() else None
    assert main(["--scores", *paths, "--out", str(report / "target" / "scores.txt"),
                 "--summary", str(report / "summary.csv"), "--system", "target"]) == 0
    capsys.readouterr()
    assert fused_table(tmp_path) == 1
    assert capsys.readouterr().err.startswith(
        f"{report / 'provenance.json'}: row 'target' fused runs of {tmp_path / 'fused' / '1'}: "
        f"the fused folders of 'fusion' are not seeds of one fusion\n"
        f"  {tmp_path / 'default' / '1'}\n")
    # A fused folder and a run under one --runs: each is fine under its own.
    trials, scores = noisy_systems(3, noise=(1.0,))
    write_run(tmp_path / "plain" / "1", trials, scores[:, 0])
    table = ["--lists", "target", "--metrics", "eer_percent"]
    assert seed_table_main(["--runs", "fusion", str(tmp_path / "fused" / "1"), "--runs", "plain",
                            str(tmp_path / "plain" / "1"), *table]) == 0
    capsys.readouterr()
    assert seed_table_main(["--runs", "mixed", str(tmp_path / "[fp]*" / "1"), *table]) == 1
    assert "a fused folder among runs of 'mixed' that are not fused" in capsys.readouterr().err
    # A baseline fused with each seed's run is a system fixed over the seeds;
    # a run that only some of the folders fused is another seed's.
    trials, scores = noisy_systems(0, noise=(2.0,))
    baseline = write_run(tmp_path / "mfcc", trials, scores[:, 0], system="target")
    for seed in (1, 2, 3):
        assert fuse_seed(tmp_path, seed, fused="fixed", run_folder="dann", extra=[baseline]) == 0
    assert fused_table(tmp_path, "fixed") == 0
    capsys.readouterr()
    report = tmp_path / "fixed" / "3" / "verification"
    assert main(["--scores", baseline, *(str(tmp_path / "dann" / seed / "verification" / system /
                                             "scores.txt")
                                         for seed, system in (("2", "target_plda_pooled"),
                                                              ("3", "target_asnorm"))),
                 "--out", str(report / "target" / "scores.txt"),
                 "--summary", str(report / "summary.csv"), "--system", "target"]) == 0
    capsys.readouterr()
    assert fused_table(tmp_path, "fixed") == 1
    assert capsys.readouterr().err.startswith(
        f"{report / 'provenance.json'}: row 'target' fused runs of {tmp_path / 'fixed' / '2'}: "
        f"the fused folders of 'fusion' are not seeds of one fusion\n"
        f"  {tmp_path / 'dann' / '2'}\nFix: ")


def test_a_second_fusion_does_not_mix_with_the_first_in_its_folder(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0, 1.0), shift=(0,) * 3, scale=(1,) * 3)
    runs = {}
    for name, column in zip(("vanilla", "least_squares", "relativistic"), scores.T):
        runs[name] = tmp_path / name / "verification"
        for trial_list in ("source", "target"):
            write_scores(runs[name] / trial_list / "scores.txt", trials, column)
    fused = tmp_path / "average" / "verification"

    def fuse(names, trial_list):
        return main(["--scores", *(str(runs[n] / trial_list / "scores.txt") for n in names),
                     "--out", str(fused / trial_list / "scores.txt"),
                     "--summary", str(fused / "summary.csv"), "--system", trial_list])

    for trial_list in ("source", "target"):
        assert fuse(["vanilla", "least_squares"], trial_list) == 0
    assert fuse(["vanilla", "least_squares"], "target") == 0  # the same fusion again
    assert fuse(["least_squares", "vanilla"], "target") == 0  # in another order
    capsys.readouterr()
    before = {p: p.read_bytes() for p in fused.rglob("*") if p.is_file()}
    assert fuse(["vanilla", "relativistic"], "target") == 1
    assert capsys.readouterr().err.startswith(
        f"{fused / 'summary.csv'}: row 'source' is the mean fusion of other systems than this "
        f"mean fusion's\n  'source': {runs['vanilla']}, {runs['least_squares']}\n"
        f"  this fusion: {runs['vanilla']}, {runs['relativistic']}\n")
    # A run scored again after the fusion: the other list's row is stale.
    write_scores(runs["least_squares"] / "source" / "scores.txt", trials, scores[:, 2])
    assert fuse(["vanilla", "least_squares"], "target") == 1
    assert capsys.readouterr().err.startswith(
        f"{fused / 'summary.csv'}: row 'source' was fused from score files that have changed "
        f"since\n  {runs['least_squares'] / 'source' / 'scores.txt'}\n")
    assert {p: p.read_bytes() for p in fused.rglob("*") if p.is_file()} == before
    (fused / "provenance.json").unlink()
    assert fuse(["vanilla", "least_squares"], "target") == 1
    assert capsys.readouterr().err.startswith(
        f"{fused / 'summary.csv'}: has no record of the fusion its rows come from")


def test_the_fused_eer_is_speechbrains_on_the_averaged_scores(tmp_path):
    trials, scores = noisy_systems(6, noise=(1.0, 1.5, 2.0), shift=(0.0, 3.0, -1.0),
                                   scale=(1.0, 0.2, 5.0))
    paths = write_systems(tmp_path, "gan", trials, scores)
    summary = tmp_path / "average" / "verification" / "summary.csv"
    assert main(["--scores", *paths, "--out", str(tmp_path / "fused.txt"),
                 "--summary", str(summary), "--system", "target"]) == 0
    standardised = (scores - scores.mean(axis=0)) / scores.std(axis=0)
    averaged = torch.from_numpy(standardised.mean(axis=1))
    labels = torch.from_numpy(trials["label"].to_numpy() == 1)
    expected, _ = EER(averaged[labels], averaged[~labels])
    assert pd.read_csv(summary)["eer_percent"][0] == pytest.approx(100 * expected, abs=1e-6)


def test_a_fusion_is_scored_at_the_minDCF_settings_of_its_systems_reports(tmp_path, capsys):
    # An SdSV list's reports score minDCF at (0.01, 10, 1): the fused row must
    # carry that column, which the seed table compares with the runs'.
    trials, scores = noisy_systems(0, noise=(1.0, 1.0), shift=(0, 0), scale=(1, 1))
    paths = []
    for name, column in zip(("vanilla", "relativistic"), scores.T):
        path = write_run(tmp_path / name, trials, column)
        dcf = compute_metrics(column, trials["label"], SDSV_DCF)["min_dcf_0.01_10_1"]
        (tmp_path / name / "verification" / "summary.csv").write_text(
            f"system,trials,eer_percent,min_dcf_0.01_10_1\ntarget,{N},30.0,{dcf}\n")
        paths.append(path)
    fused = tmp_path / "average" / "verification"
    assert main(["--scores", *paths, "--out", str(fused / "target" / "scores.txt"),
                 "--summary", str(fused / "summary.csv"), "--system", "target"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "system", "EER", "(%)", "min_dcf_0.01_10_1"]
    row = pd.read_csv(fused / "summary.csv").iloc[0]
    assert list(row.index) == ["system", "trials", "eer_percent", "min_dcf_0.01_10_1"]
    expected = compute_metrics(mean_fusion(scores), trials["label"], SDSV_DCF)
    assert row["min_dcf_0.01_10_1"] == pytest.approx(expected["min_dcf_0.01_10_1"])
    assert seed_table_main(["--runs", "vanilla", str(tmp_path / "vanilla"),
                            "--runs", "average", str(tmp_path / "average"), "--lists", "target",
                            "--metrics", "eer_percent", "min_dcf_0.01_10_1"]) == 0
    # Systems whose reports scored them at other settings are not fused.
    (tmp_path / "relativistic" / "verification" / "summary.csv").write_text(
        "system,trials,eer_percent,min_dcf_0.01\ntarget,4000,30.0,0.5\n")
    assert main(["--scores", *paths, "--out", str(tmp_path / "f.txt")]) == 1
    assert capsys.readouterr().err.startswith(
        f"{paths[1]}: was scored at other minDCF settings than {paths[0]}\n"
        f"  {paths[0]}: [(0.01, 10.0, 1.0)]\n  {paths[1]}: [(0.01, 1.0, 1.0)]\n")


def test_score_files_of_no_report_are_scored_at_the_minDCF_settings_asked_for(
        tmp_path, capsys):
    dev_trials, dev_scores = noisy_systems(1, noise=(0.5, 1.5), prefix="dev_")
    trials, scores = noisy_systems(2, noise=(0.5, 1.5))
    paths = write_systems(tmp_path, "eval", trials, scores)
    dev = write_systems(tmp_path, "dev", dev_trials, dev_scores)
    fused = tmp_path / "logistic" / "verification"
    settings = [(0.05, 1, 1), (0.01, 10, 1)]  # VoxSRC's and SdSV's

    def fuse(trial_list, *min_dcf):
        return main(["--scores", *paths, "--dev", *dev,
                     "--out", str(fused / trial_list / "scores.txt"),
                     "--summary", str(fused / "summary.csv"), "--system", trial_list,
                     *(word for setting in min_dcf for word in ("--min_dcf", *map(str, setting)))])

    assert fuse("target", *settings) == 0
    out = capsys.readouterr().out
    weights, bias = train_logistic_fusion(dev_scores, dev_trials["label"])
    expected = compute_metrics(scores @ weights + bias, trials["label"], settings)
    calibration = calibration_metrics(scores @ weights + bias, trials["label"], settings)
    assert out.splitlines()[1].split() == ["system", "EER", "(%)", "min_dcf_0.05",
                                           "min_dcf_0.01_10_1"]
    assert list(printed_calibration(out)) == ["act_dcf_0.05", "act_dcf_0.01_10_1", "cllr",
                                              "min_cllr"]
    row = pd.read_csv(fused / "summary.csv").iloc[0]
    assert list(row.index) == ["system", "trials", "eer_percent", "min_dcf_0.05",
                               "min_dcf_0.01_10_1", *calibration]
    for name, value in {**expected, **calibration}.items():
        assert row.get(name, row["eer_percent"] / 100) == pytest.approx(value)
    record = json.loads((fused / "provenance.json").read_text())["fusion"]["target"]
    assert record["min_dcf"] == [list(setting) for setting in settings]
    # Another list of the folder keeps its own settings, as in a run's summary
    # (a DeepMine list's beside VoxCeleb's).
    assert fuse("source") == 0
    rows = pd.read_csv(fused / "summary.csv").set_index("system")
    assert rows.loc["source", ["min_dcf_0.01", "min_dcf_0.001"]].notna().all()
    assert rows.loc["source", ["min_dcf_0.05", "min_dcf_0.01_10_1"]].isna().all()
    assert rows.loc["target", ["min_dcf_0.05", "min_dcf_0.01_10_1"]].notna().all()
    assert fuse("source", *settings[::-1]) == 0
    # No DCF: refused by the command line.
    for setting in ((1.5, 1, 1), (0.01, 0, 1), (0.01, float("inf"), 1)):
        with pytest.raises(SystemExit) as exit_:
            fuse("source", setting)
        assert exit_.value.code == 2
        assert "p_target must lie in (0, 1) and both costs above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fuse("source", settings[0], settings[0])
    assert "--min_dcf 0.05 1 1 is given twice" in capsys.readouterr().err
    # Two settings of one column (min_dcf_0.05): the second would overwrite the first.
    with pytest.raises(SystemExit):
        fuse("source", settings[0], (0.0500000001, 1, 1))
    assert ("--min_dcf 0.0500000001 1 1 is given twice (as --min_dcf 0.05 1 1: both are the "
            "column min_dcf_0.05)") in capsys.readouterr().err


def test_the_minDCF_settings_asked_for_must_be_those_of_the_systems_reports(tmp_path, capsys):
    trials, scores = noisy_systems(0, noise=(1.0, 1.0), shift=(0, 0), scale=(1, 1))
    paths = [write_run(tmp_path / name, trials, column)
             for name, column in zip(("vanilla", "relativistic"), scores.T)]
    for name in ("vanilla", "relativistic"):
        (tmp_path / name / "verification" / "summary.csv").write_text(
            f"system,trials,eer_percent,min_dcf_0.01_10_1\ntarget,{N},30.0,0.5\n")
    out = ["--out", str(tmp_path / "fused.txt")]
    assert main(["--scores", *paths, *out, "--min_dcf", "0.05", "1", "1"]) == 1
    assert capsys.readouterr().err.startswith(
        f"{paths[0]}: was scored at other minDCF settings than --min_dcf asks for\n"
        f"  {paths[0]}: [(0.01, 10.0, 1.0)]\n  --min_dcf: [(0.05, 1.0, 1.0)]\n")
    assert not os.path.exists(out[1])
    assert main(["--scores", *paths, *out, "--min_dcf", "0.01", "10", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == "min_dcf_0.01_10_1"
    # The same settings in another order than the reports' are theirs.
    for name in ("vanilla", "relativistic"):
        (tmp_path / name / "verification" / "summary.csv").write_text(
            f"system,trials,eer_percent,min_dcf_0.01,min_dcf_0.001\ntarget,{N},30.0,0.5,0.6\n")
    assert main(["--scores", *paths, *out, "--min_dcf", "0.001", "1", "1",
                 "--min_dcf", "0.01", "1", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-2:] == ["min_dcf_0.01",
                                                                    "min_dcf_0.001"]


def printed_calibration(out):
    """The calibration table a logistic fusion prints last, as ``{column: value}``."""
    header, row = out.splitlines()[-2:]
    assert header.split()[0] == "calibration" and row.startswith("fusion (logistic)")
    return dict(zip(header.split()[1:], map(float, row[len("fusion (logistic)"):].split())))


def test_a_logistic_fusion_prints_and_writes_its_calibration(tmp_path, capsys):
    dev_trials, dev_scores = noisy_systems(1, noise=(0.5, 1.5), prefix="dev_")
    trials, scores = noisy_systems(2, noise=(0.5, 1.5))
    paths = write_systems(tmp_path, "eval", trials, scores)
    dev = write_systems(tmp_path, "dev", dev_trials, dev_scores)
    fused = tmp_path / "logistic" / "verification"
    assert main(["--scores", *paths, "--dev", *dev, "--out", str(fused / "target" / "scores.txt"),
                 "--summary", str(fused / "summary.csv"), "--system", "target"]) == 0
    weights, bias = train_logistic_fusion(dev_scores, dev_trials["label"])
    expected = calibration_metrics(scores @ weights + bias, trials["label"], VOXCELEB_DCF)
    printed = printed_calibration(capsys.readouterr().out)
    assert list(printed) == ["act_dcf_0.01", "act_dcf_0.001", "cllr", "min_cllr"]
    for name, value in expected.items():
        assert printed[name] == pytest.approx(value, abs=5e-5)
    # Trained on trials like these, the fused ratios are calibrated: little
    # of their Cllr is left to a better monotonic map.
    assert expected["min_cllr"] < expected["cllr"] < expected["min_cllr"] + 0.02
    row = pd.read_csv(fused / "summary.csv").iloc[0]
    assert list(row.index) == ["system", "trials", "eer_percent", "min_dcf_0.01",
                               "min_dcf_0.001", *expected]
    for name, value in expected.items():
        assert row[name] == pytest.approx(value)
    # The seed table reads them as it reads a run's minDCF, to 3 decimals.
    assert seed_table_main(["--runs", "logistic", str(tmp_path / "logistic"), "--lists", "target",
                            "--metrics", "eer_percent", "act_dcf_0.01", "cllr"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split("|")[4:6] == [
        f" {expected['act_dcf_0.01']:.3f} ", f" {expected['cllr']:.3f} "]


def unequal_variances(seed, prefix=""):
    """One system whose targets N(2.5, 1.8) and non-targets N(0, 0.6) have no linear
    log-likelihood ratio: a linear map is calibrated near the prior it is fitted at."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 20000)
    scores = np.where(labels, rng.normal(2.5, 1.8, 20000), rng.normal(0.0, 0.6, 20000))
    trials = pd.DataFrame({"label": labels, "enrol": [f"{prefix}e{i % 50}" for i in range(20000)],
                           "test": [f"{prefix}t{i}" for i in range(20000)]})
    return trials, scores[:, None]


def test_a_logistic_fusion_is_calibrated_at_the_prior_asked_for(tmp_path, capsys):
    dev_trials, dev_scores = unequal_variances(1, prefix="dev_")
    trials, scores = unequal_variances(2)
    paths = write_systems(tmp_path, "eval", trials, scores)
    dev = write_systems(tmp_path, "dev", dev_trials, dev_scores)
    fused = tmp_path / "logistic" / "verification"

    def fuse(trial_list, *p_target):
        return main(["--scores", *paths, "--dev", *dev, "--min_dcf", "0.01", "1", "1",
                     "--out", str(fused / trial_list / "scores.txt"), *p_target,
                     "--summary", str(fused / "summary.csv"), "--system", trial_list])

    def row(trial_list):
        return pd.read_csv(fused / "summary.csv").set_index("system").loc[trial_list]

    # Fitted at 0.5, the ratios overstate the targets' odds at p_target 0.01:
    # the Bayes threshold accepts too many trials, costing 0.3 above the minDCF.
    assert fuse("target") == 0
    default = row("target")
    assert default["act_dcf_0.01"] > default["min_dcf_0.01"] + 0.2
    (fused / "provenance.json").unlink()
    (fused / "summary.csv").unlink()
    assert fuse("target", "--p_target", "0.01") == 0
    calibrated = row("target")
    weights, bias = train_logistic_fusion(dev_scores, dev_trials["label"], 0.01)
    assert capsys.readouterr().out.count(f"weights {weights[0]:.4f}, bias {bias:.4f}\n") == 1
    assert calibrated["min_dcf_0.01"] == pytest.approx(default["min_dcf_0.01"])
    assert calibrated["act_dcf_0.01"] < calibrated["min_dcf_0.01"] + 0.06
    np.testing.assert_allclose(read_scores(fused / "target" / "scores.txt")["score"],
                               scores[:, 0] * weights[0] + bias)
    record = json.loads((fused / "provenance.json").read_text())["fusion"]["target"]
    assert record["p_target"] == 0.01
    # Another list of that folder calibrated at another prior would not be the same fusion.
    assert fuse("source") == 1
    assert ("row 'target' was calibrated at another target prior than this fusion\n"
            "  'target': --p_target 0.01\n  this fusion: --p_target 0.5\n"
            ) in capsys.readouterr().err
    assert fuse("source", "--p_target", "0.01") == 0
    # A mean fusion is calibrated at no prior; a prior lies in (0, 1).
    for options, message in ((["--p_target", "0.01"], "it goes with --dev"),
                             (["--p_target", "1", "--dev", *dev], "--p_target 1 is no prior"),
                             (["--p_target", "0", "--dev", *dev], "--p_target 0 is no prior")):
        with pytest.raises(SystemExit) as exit_:
            main(["--scores", *paths, "--out", str(tmp_path / "f.txt"), *options])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_mean_fusion_writes_no_calibration(tmp_path, capsys):
    trials, scores = noisy_systems(2, noise=(0.5, 1.5))
    paths = write_systems(tmp_path, "eval", trials, scores)
    summary = tmp_path / "mean" / "verification" / "summary.csv"
    assert main(["--scores", *paths, "--out", str(tmp_path / "fused.txt"),
                 "--summary", str(summary), "--system", "target"]) == 0
    assert "cllr" not in capsys.readouterr().out
    assert list(pd.read_csv(summary).columns) == ["system", "trials", "eer_percent",
                                                  "min_dcf_0.01", "min_dcf_0.001"]


def test_one_system_with_development_scores_is_calibrated(tmp_path, capsys):
    # Scores of an arbitrary scale and offset: 0.3 x (N(0, 1) + 2 label) + 5.
    dev_trials, dev_scores = noisy_systems(1, noise=(0.0,), shift=(5.0,), scale=(0.3,),
                                           prefix="dev_")
    trials, scores = noisy_systems(2, noise=(0.0,), shift=(5.0,), scale=(0.3,))
    paths = write_systems(tmp_path, "eval", trials, scores)
    dev = write_systems(tmp_path, "dev", dev_trials, dev_scores)
    raw = calibration_metrics(scores[:, 0], trials["label"])
    assert raw["cllr"] > 3 and raw["act_dcf_0.01"] > 20  # nearly every trial accepted
    assert main(["--scores", *paths, "--dev", *dev, "--out", str(tmp_path / "calibrated.txt")]) == 0
    out = capsys.readouterr().out
    # Its log-likelihood ratio is 2 x - 2 of x = (s - 5) / 0.3.
    weights, bias = (float(v) for v in re.match(r"weights (\S+), bias (\S+)\n", out).groups())
    assert weights == pytest.approx(2 / 0.3, rel=0.05) and bias == pytest.approx(
        -2 - 10 / 0.3, rel=0.05)
    calibrated = read_scores(tmp_path / "calibrated.txt")["score"]
    expected = calibration_metrics(calibrated, trials["label"])
    assert printed_calibration(out) == pytest.approx(expected, abs=5e-5)
    assert expected["cllr"] < expected["min_cllr"] + 0.02
    assert expected["act_dcf_0.01"] < 1 and expected["act_dcf_0.001"] < 1
