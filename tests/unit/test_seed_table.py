"""The table over seeds: figures of the run folders, their mean and spread, and bad folders."""

import json
import logging
import os
import statistics

import pandas as pd
import pytest

from local.errors import ManifestError
from local.evaluation.seed_table import collect, list_hashes, main, seed_table
from local.evaluation.verification import summary_table
from local.experiment import save_settings


def make_run(folder, eers, dcfs=(0.9, 0.8)):
    os.makedirs(os.path.join(folder, "verification"))
    pd.DataFrame({"system": ["source", "target"], "trials": [10, 10], "eer_percent": eers,
                  "min_dcf_0.01": dcfs}).to_csv(
        os.path.join(folder, "verification", "summary.csv"), index=False)


@pytest.fixture
def runs(tmp_path):
    eers = {"base": [(17.0, 31.0), (18.5, 29.0), (16.0, 33.5)], "dann": [(17.0, 30.0)]}
    for system, per_seed in eers.items():
        for seed, pair in enumerate(per_seed, 1):
            make_run(tmp_path / f"{system}_s{seed}", pair)
    return tmp_path, eers


def test_mean_and_spread_over_the_runs_of_each_system(runs, capsys):
    folder, eers = runs
    out = folder / "table.md"
    assert main(["--runs", "baseline", str(folder / "base_s*"), "--runs", "DANN",
                 str(folder / "dann_s*"), "--lists", "target", "--out", str(out)]) == 0
    targets = [t for _, t in eers["base"]]
    expected = f"{statistics.mean(targets):.2f} ± {statistics.stdev(targets):.2f}"
    lines = out.read_text().splitlines()
    assert lines[0] == "| system | runs | target eer_percent | target min_dcf_0.01 |"
    assert lines[2] == f"| baseline | 3 | {expected} | 0.800 ± 0.000 |"
    assert lines[3] == "| DANN | 1 | 30.00 | 0.800 |"
    assert capsys.readouterr().out == out.read_text()


def test_a_table_that_fails_to_be_written_leaves_the_one_before(runs, monkeypatch):
    """A full disk or a kill while the table is written leaves the earlier table whole."""
    folder, _ = runs
    out = folder / "table.md"
    assert main(["--runs", "baseline", str(folder / "base_s*"), "--out", str(out)]) == 0
    before, files = out.read_text(), sorted(os.listdir(folder))

    class Unwritable:  # printed, but refused by the file's write(), as a full disk would
        def __str__(self):
            return "partial"

    monkeypatch.setattr("local.evaluation.seed_table.markdown_table", lambda *_: Unwritable())
    with pytest.raises(TypeError):
        main(["--runs", "baseline", str(folder / "base_s*"), "--out", str(out)])
    assert out.read_text() == before
    assert sorted(os.listdir(folder)) == files  # no partial file left beside it


def test_the_table_is_not_written_into_a_runs_folder(runs, capsys):
    folder, _ = runs
    run = folder / "base_s1"
    for name in ("hyperparams.yaml", "provenance.json"):  # the run's record
        (run / name).write_text("{}\n")
    (run / "verification" / "checkpoint.txt").write_text("CKPT+1\n")
    for out in (run / "hyperparams.yaml", run / "verification" / "summary.csv"):
        before = out.read_bytes()
        assert main(["--runs", "baseline", str(folder / "base_s*"), "--out", str(out)]) == 1
        assert capsys.readouterr().err.startswith(f"{out}: lies in {out.parent}, a run's ")
        assert out.read_bytes() == before


def test_a_pattern_without_runs_or_a_run_without_a_summary_is_named(runs, capsys):
    folder, _ = runs
    assert main(["--runs", "x", str(folder / "nothing_*")]) == 1
    assert capsys.readouterr().err == (f"{folder / 'nothing_*'}: no run folder matches\n"
                                       "Fix: check the pattern (quote it for the shell)\n")
    os.makedirs(folder / "base_s4")
    with pytest.raises(ManifestError, match=r"base_s4/verification/summary.csv: run without a "
                                            r"verification summary\nFix: let the training "
                                            r"finish, or run evaluate.py on it$"):
        collect(str(folder / "base_s*"))


def test_a_run_without_a_list_is_named(runs):
    folder, _ = runs
    with pytest.raises(ManifestError, match=r"base_s1: no 'target_whiten' list(.|\n)*"
                                            r"Fix: choose among its lists: source, target;"):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target_whiten"],
                   ["eer_percent"])


def write_provenance(folder, name="provenance.json", manifest="m1", lists=("source", "target")):
    data = {}
    for scored in lists:
        data[f"evaluation/{scored}/trials"] = {"path": f"/d/{scored}.txt", "sha256": f"t-{scored}"}
        data[f"evaluation/{scored}/manifest"] = {"path": f"/d/{scored}.csv",
                                                 "sha256": f"{manifest}-{scored}"}
    with open(os.path.join(folder, "verification", name), "w", encoding="utf-8") as out:
        json.dump({"code_version": None, "data": data}, out)


def test_runs_scored_on_different_trial_counts_are_refused(runs, capsys):
    folder, _ = runs
    summary = folder / "dann_s1" / "verification" / "summary.csv"
    pd.read_csv(summary).assign(trials=[10, 9]).to_csv(summary, index=False)
    assert main(["--runs", "baseline", str(folder / "base_s*"), "--runs", "DANN",
                 str(folder / "dann_s*"), "--lists", "target"]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'dann_s1'}: 'target' scored on other data than {folder / 'base_s1'}" in err
    assert "9 trials" in err and "10 trials" in err and "Fix: evaluate every run" in err
    # Within one system too; the source list, of equal counts, is still accepted.
    make_run(folder / "dann_s2", (17.5, 30.5))
    with pytest.raises(ManifestError, match="'target' scored on other data"):
        seed_table({"DANN": collect(str(folder / "dann_s*"))}, ["target"], ["eer_percent"])
    assert seed_table({"DANN": collect(str(folder / "dann_s*"))}, ["source"],
                      ["eer_percent"])["runs"].tolist() == [2]


def test_runs_of_other_data_files_are_refused(runs, capsys):
    folder, _ = runs
    for run in ("base_s1", "base_s2", "base_s3"):
        write_provenance(folder / run)
    # A report of evaluate.py holds its own record, here of another manifest.
    write_provenance(folder / "dann_s1", "evaluate_provenance.json", manifest="m2")
    arguments = ["--runs", "baseline", str(folder / "base_s*"), "--runs", "DANN",
                 str(folder / "dann_s*"), "--metrics", "eer_percent"]
    # target_whiten is scored on the target list: its files' hashes are those compared.
    for run in ("base_s1", "base_s2", "base_s3", "dann_s1"):
        summary = folder / run / "verification" / "summary.csv"
        table = pd.read_csv(summary)
        pd.concat([table, table.iloc[[1]].assign(system="target_whiten")]).to_csv(
            summary, index=False)
    assert main(arguments + ["--lists", "target_whiten"]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'dann_s1'}: 'target_whiten' scored on other data" in err
    assert f"{folder / 'base_s1'}, {folder / 'base_s2'}, {folder / 'base_s3'}: manifest m1-target" \
        in err
    assert f"{folder / 'dann_s1'}: manifest m2-target" in err
    write_provenance(folder / "dann_s1", "evaluate_provenance.json")
    assert main(arguments + ["--lists", "target_whiten"]) == 0
    assert "| DANN | 1 | 30.00 |" in capsys.readouterr().out


def test_a_system_is_compared_by_the_files_of_the_longest_list_name_it_starts_with():
    """target_tc_whiten is a system of the list target_tc, not of target."""
    data = {f"evaluation/{scored}/{role}": {"path": f"/d/{scored}.{role}",
                                            "sha256": f"{role}-{scored}"}
            for scored in ("target", "target_tc") for role in ("trials", "manifest")}
    tc = {"trials": "trials-target_tc", "manifest": "manifest-target_tc"}
    assert list_hashes(data, "target_tc") == list_hashes(data, "target_tc_whiten_asnorm") == tc
    assert list_hashes(data, "target_whiten") == {"trials": "trials-target",
                                                  "manifest": "manifest-target"}
    assert list_hashes(data, "targets") is None


def test_a_run_without_a_provenance_record_is_compared_by_its_trials_with_a_warning(runs, caplog):
    folder, _ = runs
    for run in ("base_s1", "base_s2"):
        write_provenance(folder / run)
    with caplog.at_level(logging.WARNING, logger="local.evaluation.seed_table"):
        table = seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"],
                           ["eer_percent"])
    assert table["runs"].tolist() == [3]
    assert f"No provenance record in the report of {folder / 'base_s3'}:" in caplog.text


def write_settings(folder, prefix="", processes=1, **overrides):
    """A run's settings records (hparams/dann_fbank.yaml on the demo), as the scripts write them.

    ``prefix=""``: train_dann.py's, into the run and its report, with the
    training's run options; ``"evaluate_"``: evaluate.py's, into the report only.
    ``processes``: the command's DDP processes.
    """
    values = {"condition": "demo", "n_speakers": 24, "output_folder": str(folder),
              "precision": "fp32", **overrides}
    if prefix:
        values.pop("precision")
    for where in [folder / "verification"] + ([] if prefix else [folder]):
        save_settings("hparams/dann_fbank.yaml", values, "recipes/demo/condition.yaml",
                      str(where), prefix, processes)


def test_runs_of_one_system_made_with_other_settings_are_refused(runs, capsys):
    folder, _ = runs
    # Seeds and folders differ, and what leaves the figures alone.
    for seed, workers in ((1, 0), (2, 4), (3, 0)):
        write_settings(folder / f"base_s{seed}", seed=seed, num_workers=workers)
    arguments = ["--runs", "baseline", str(folder / "base_s*"), "--lists", "target"]
    assert main(arguments) == 0
    capsys.readouterr()
    # The oracle back-end on one of the seeds, evaluated in place.
    write_settings(folder / "base_s3", "evaluate_", seed=3, pseudo_oracle=True,
                   allow_changed=["pseudo_oracle"])
    assert main(arguments) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"{folder / 'base_s3' / 'verification' / 'evaluate_hyperparams.yaml'}: a run of "
        f"'baseline' made with other settings than {folder / 'base_s1'}")
    assert f"\n  pseudo_oracle: false in {folder / 'base_s1'}, {folder / 'base_s2'}; true in " \
           f"{folder / 'base_s3'}\nFix: give the runs of each setting a --runs of their own" in err
    # Systems of other settings are what a table compares.
    assert main(["--runs", "baseline", str(folder / "base_s[12]"), "--runs", "oracle",
                 str(folder / "base_s3"), "--lists", "target"]) == 0
    # The odd run is named wherever it lies among the others.
    (folder / "base_s3" / "verification" / "evaluate_hyperparams.yaml").unlink()
    write_settings(folder / "base_s2", "evaluate_", seed=2, pseudo_oracle=True,
                   allow_changed=["pseudo_oracle"])
    assert main(arguments) == 1
    assert capsys.readouterr().err.startswith(
        f"{folder / 'base_s2' / 'verification' / 'evaluate_hyperparams.yaml'}: a run of "
        f"'baseline' made with other settings than {folder / 'base_s1'}")


def test_a_setting_that_an_older_record_lacks_is_not_compared(runs):
    """A setting added to the recipe after a seed was run: that seed ran its default."""
    folder, _ = runs
    for seed in (1, 2, 3):
        write_settings(folder / f"base_s{seed}", seed=seed)
    for record in (folder / "base_s3" / "hyperparams.yaml",
                   folder / "base_s3" / "verification" / "hyperparams.yaml"):
        assert "\naugment: false\n" in record.read_text()
        record.write_text(record.read_text().replace("\naugment: false\n", "\n"))
    table = seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"],
                       ["eer_percent"])
    assert table.loc[0, "runs"] == 3


def test_the_training_run_options_an_evaluation_does_not_record_are_the_runs(runs):
    folder, _ = runs
    for seed in (1, 2):
        write_settings(folder / f"base_s{seed}", seed=seed)
    write_settings(folder / "base_s3", seed=3, precision="bf16")
    write_settings(folder / "base_s3", "evaluate_", seed=3)
    with pytest.raises(ManifestError, match=r"precision: \"fp32\" in .*; \"bf16\" in .*base_s3"):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"], ["eer_percent"])


def test_seeds_trained_in_other_numbers_of_ddp_processes_are_refused(runs):
    # Each process takes batch_size crops a step: seed 3, trained in two, trained with
    # twice the batch and half the steps, and was tabled with the others as another seed.
    folder, _ = runs
    for seed in (1, 2):
        write_settings(folder / f"base_s{seed}", seed=seed)
    write_settings(folder / "base_s3", seed=3, processes=2)
    refused = r"\n  ddp_processes: 1 in .*base_s1, .*base_s2; 2 in .*base_s3\n"
    with pytest.raises(ManifestError, match=refused):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"], ["eer_percent"])
    # Evaluated again in one process: the processes that trained it are the run's.
    write_settings(folder / "base_s3", "evaluate_", seed=3)
    with pytest.raises(ManifestError, match=refused):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"], ["eer_percent"])
    # Those of an evaluation, or of a record that does not name them, are free.
    write_settings(folder / "base_s3", seed=3)
    write_settings(folder / "base_s3", "evaluate_", seed=3, processes=2)
    for record in (folder / "base_s2" / "hyperparams.yaml",
                   folder / "base_s2" / "verification" / "hyperparams.yaml"):
        lines = record.read_text().splitlines(keepends=True)
        assert lines[1] == "# ddp_processes: 1 (torchrun --nproc_per_node)\n"
        record.write_text("".join(lines[:1] + lines[2:]))
    table = seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"],
                       ["eer_percent"])
    assert table.loc[0, "runs"] == 3


def test_an_argument_of_the_model_file_that_differs_is_named(runs):
    folder, _ = runs
    for seed in (1, 2, 3):
        write_settings(folder / f"base_s{seed}", seed=seed)
    # Seed 3 evaluated with an edited model file: no setting differs, an object does.
    record = folder / "base_s3" / "verification" / "hyperparams.yaml"
    record.write_text(record.read_text().replace("kernel_sizes: [5, 3, 3, 3, 1]",
                                                 "kernel_sizes: [5, 5, 3, 3, 1]"))
    with pytest.raises(ManifestError, match=r"\n  embedding_model.kernel_sizes: \[5, 3, 3, 3, 1\] "
                                            r"in .*base_s2; \[5, 5, 3, 3, 1\] in .*base_s3\n"):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"], ["eer_percent"])


def test_a_run_without_a_settings_record_is_compared_by_its_data_with_a_warning(runs, caplog):
    folder, _ = runs
    for seed in (1, 2):
        write_settings(folder / f"base_s{seed}", seed=seed)
    with caplog.at_level(logging.WARNING, logger="local.evaluation.seed_table"):
        table = seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"],
                           ["eer_percent"])
    assert table["runs"].tolist() == [3]
    assert f"No settings record (evaluate_hyperparams.yaml or hyperparams.yaml) in the report " \
           f"of {folder / 'base_s3'}:" in caplog.text


def test_an_unreadable_settings_record_is_named(runs):
    folder, _ = runs
    record = folder / "base_s2" / "verification" / "evaluate_hyperparams.yaml"
    record.write_text("lr: [0.1\nseed: 2\n")
    with pytest.raises(ManifestError, match=rf"{record}: unreadable settings record"):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"], ["eer_percent"])


def test_an_unknown_metric_is_named_with_the_columns_there_are(runs, capsys):
    folder, _ = runs
    assert main(["--runs", "baseline", str(folder / "base_s*"), "--lists", "target",
                 "--metrics", "eer"]) == 1
    err = capsys.readouterr().err
    assert "no 'eer' column in its verification summary" in err
    assert "Fix: choose among the metrics: trials, eer_percent, min_dcf_0.01" in err


def test_a_metric_a_list_was_not_scored_at_is_named_with_the_metrics_it_has(tmp_path, capsys):
    # An SdSV list is scored at its own minDCF setting: its VoxCeleb columns are empty.
    for seed in (1, 2):
        os.makedirs(tmp_path / f"s{seed}" / "verification")
        pd.DataFrame({"system": ["voxceleb1_o", "deepmine"], "trials": [10, 20],
                      "eer_percent": [5.0, 20.0 + seed], "min_dcf_0.01": [0.5, None],
                      "min_dcf_0.01_10_1": [None, 0.9]}).to_csv(
            tmp_path / f"s{seed}" / "verification" / "summary.csv", index=False)
    arguments = ["--runs", "sdsv", str(tmp_path / "s*"), "--lists", "voxceleb1_o", "deepmine"]
    assert main(arguments) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 's1'}: 'deepmine' was not scored at 'min_dcf_0.01'" in err
    assert "Fix: choose among the metrics of 'deepmine': trials, eer_percent, min_dcf_0.01_10_1" \
        in err
    assert main(arguments + ["--metrics", "eer_percent"]) == 0
    assert "| sdsv | 2 | 5.00 ± 0.00 | 21.50 ± 0.71 |" in capsys.readouterr().out


def test_a_run_without_a_figure_is_named_rather_than_left_out_of_the_mean(runs):
    folder, _ = runs
    summary = folder / "base_s2" / "verification" / "summary.csv"
    pd.read_csv(summary).assign(**{"min_dcf_0.01": [0.9, None]}).to_csv(summary, index=False)
    with pytest.raises(ManifestError, match=r"base_s2: 'target' was not scored at 'min_dcf_0.01'"):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target"],
                   ["eer_percent", "min_dcf_0.01"])


def test_a_system_named_twice_is_refused_rather_than_losing_its_first_runs(runs, capsys):
    folder, _ = runs
    assert main(["--runs", "baseline", str(folder / "base_s1"), "--runs", "baseline",
                 str(folder / "base_s2"), "--lists", "target"]) == 1
    err = capsys.readouterr().err
    assert "--runs baseline: a system named by more than one --runs" in err
    assert "Fix: give each --runs a name of its own" in err


def test_mindcf_keeps_the_third_decimal_that_good_systems_differ_by(tmp_path):
    for system, dcfs in (("a", (0.991, 0.993, 0.989)), ("b", (0.982, 0.979, 0.985))):
        for seed, dcf in enumerate(dcfs, 1):
            make_run(tmp_path / f"{system}_s{seed}", (17.0, 30.0 + seed), (0.9, dcf))
    table = seed_table({name: collect(str(tmp_path / f"{name}_s*")) for name in "ab"},
                       ["target"], ["eer_percent", "min_dcf_0.01"])
    assert table["target min_dcf_0.01"].tolist() == ["0.991 ± 0.002", "0.982 ± 0.003"]
    assert table["target eer_percent"].tolist() == ["32.00 ± 1.00"] * 2


def test_calibration_figures_keep_the_third_decimal_as_a_mindcf(tmp_path):
    # A logistic fusion's row (local.evaluation.fusion) with its actDCF, Cllr and min Cllr.
    calibration = {"act_dcf_0.01": (0.2514, 0.2486), "cllr": (0.3121, 0.3179),
                   "min_cllr": (0.3004, 0.3036)}
    for seed in (0, 1):
        make_run(tmp_path / f"s{seed}", (17.0, 30.0))
        summary = tmp_path / f"s{seed}" / "verification" / "summary.csv"
        row = {name: values[seed] for name, values in calibration.items()}
        pd.read_csv(summary).assign(**row).to_csv(summary, index=False)
    table = seed_table({"x": collect(str(tmp_path / "s*"))}, ["target"], list(calibration))
    assert [table[f"target {name}"][0] for name in calibration] == [
        f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
        for values in calibration.values()]
    assert table["target min_cllr"][0] == "0.302 ± 0.002"


def test_the_mean_is_that_of_the_figures_unrounded(tmp_path):
    # Rounded to 0.01 before the mean, these gave 10.01 ± 0.01.
    eers = [0.100061, 0.100061, 0.100021]
    for seed, value in enumerate(eers, 1):
        os.makedirs(tmp_path / f"s{seed}" / "verification")
        summary_table({"target": {"trials": 10, "eer": value, "min_dcf_0.01": 0.5}}).to_csv(
            tmp_path / f"s{seed}" / "verification" / "summary.csv", index=False)
    table = seed_table({"x": collect(str(tmp_path / "s*"))}, ["target"], ["eer_percent"])
    percent = [100 * value for value in eers]
    assert table["target eer_percent"].tolist() == [
        f"{statistics.mean(percent):.2f} ± {statistics.stdev(percent):.2f}"]
    assert table["target eer_percent"].tolist() == ["10.00 ± 0.00"]
