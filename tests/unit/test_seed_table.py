"""The table over seeds: figures of the run folders, their mean and spread, and bad folders."""

import os
import statistics

import pandas as pd
import pytest

from local.errors import ManifestError
from local.evaluation.seed_table import collect, main, seed_table


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
    assert lines[2] == f"| baseline | 3 | {expected} | 0.80 ± 0.00 |"
    assert lines[3] == "| DANN | 1 | 30.00 | 0.80 |"
    assert capsys.readouterr().out == out.read_text()


def test_a_pattern_without_runs_or_a_run_without_a_summary_is_named(runs, capsys):
    folder, _ = runs
    assert main(["--runs", "x", str(folder / "nothing_*")]) == 1
    assert "no run folder matches" in capsys.readouterr().err
    os.makedirs(folder / "base_s4")
    with pytest.raises(ManifestError, match=r"base_s4/verification/summary.csv: run without"):
        collect(str(folder / "base_s*"))


def test_a_run_without_a_list_is_named(runs):
    folder, _ = runs
    with pytest.raises(ManifestError, match=r"base_s1: no 'target_whiten' list"):
        seed_table({"baseline": collect(str(folder / "base_s*"))}, ["target_whiten"],
                   ["eer_percent"])
