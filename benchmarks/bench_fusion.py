"""Score fusion of several runs at real size.

``python -m local.evaluation.fusion`` on the score files of ``--systems`` runs
(default 4: the four GAN adversaries) of ``--trials`` trials each (default
10^6, about VoxCeleb1-H's 550,000 twice), each in a run-shaped report
(``<run>/verification/target/scores.txt`` beside ``checkpoint.txt`` and
``provenance.json``), every other run's trials shuffled so that the
alignment by trial is measured. Trials pair utterance IDs of VoxCeleb's
form (``id10001/1zcIwhmdeo4/00001.wav``) among 100,000 utterances.

Each fusion runs in-process after the files are written; the figures are
wall and CPU time and the peak resident memory above the process's before
the call (``VmHWM``, :mod:`resident`): the fusion into a fused folder
(``--summary``), the same with a DET figure (``--det``), the reading and
alignment alone (``load_systems``), and a seed table of the fused folder
(``python -m local.evaluation.seed_table``, which hashes again each score
file the fused row was fused from, to refuse a row whose inputs changed).

Run from the repository root::

    .venv/bin/python benchmarks/bench_fusion.py [--trials 1000000] [--systems 4]
"""

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from resident import peak_resident_mib, reset_peak_resident

# The package measured is the checkout's, not an installed one.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from local.evaluation.fusion import load_systems, main  # noqa: E402
from local.evaluation.report import write_scores  # noqa: E402
from local.evaluation.seed_table import main as seed_table_main  # noqa: E402

UTTERANCES = 100_000


def simulated_runs(folder, trials, systems, seed=0):
    """Write ``systems`` run reports scoring the same ``trials`` trials; return their score files."""
    rng = np.random.default_rng(seed)
    names = np.array([f"id{10000 + i // 100}/{i % 97:011d}/{i % 100:05d}.wav"
                      for i in range(UTTERANCES)])
    pairs = rng.integers(0, UTTERANCES, size=(2 * trials, 2))
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)[:trials]
    table = pd.DataFrame({"enrol": names[pairs[:, 0]], "test": names[pairs[:, 1]],
                          "label": rng.integers(0, 2, len(pairs))})
    truth = rng.normal(size=len(table)) + 2.0 * table["label"].to_numpy()
    paths = []
    for system in range(systems):
        report = os.path.join(folder, f"run{system}", "verification")
        order = rng.permutation(len(table)) if system % 2 else np.arange(len(table))
        scores = truth + rng.normal(size=len(table))
        paths.append(os.path.join(report, "target", "scores.txt"))
        write_scores(paths[-1], table.iloc[order], scores[order])
        with open(os.path.join(report, "checkpoint.txt"), "w", encoding="utf-8") as out:
            out.write(f"CKPT+{system}\n")
        with open(os.path.join(report, "provenance.json"), "w", encoding="utf-8") as out:
            json.dump({"data": {"evaluation/target/trials": {"path": "t", "sha256": "t1"},
                                "evaluation/target/manifest": {"path": "m", "sha256": "m1"}}},
                      out)
    return paths


def measured(function, *args):
    """``(wall s, CPU s, peak MiB above the start)`` of ``function(*args)``."""
    reset_peak_resident()
    start_memory = peak_resident_mib()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        function(*args)
    return (time.perf_counter() - start_wall, time.process_time() - start_cpu,
            peak_resident_mib() - start_memory)


def fuse(argv):
    """The fusion command on ``argv``; a refusal (its message on stderr) stops the benchmark."""
    if main(argv):
        raise RuntimeError("the fusion refused: " + " ".join(argv))


def seed_table(argv):
    """The seed table command on ``argv``; a refusal stops the benchmark."""
    if seed_table_main(argv):
        raise RuntimeError("the seed table refused: " + " ".join(argv))


def bench(trials, systems):
    with tempfile.TemporaryDirectory() as folder:
        paths = simulated_runs(folder, trials, systems)
        size = sum(os.path.getsize(path) for path in paths) / 2**20
        print(f"{systems} runs of {trials:,} trials, {size:.0f} MiB of score files")
        fused = os.path.join(folder, "average", "verification")
        rows = {
            "load_systems (read, align)": (load_systems, paths),
            "fusion, --summary": (fuse, ["--scores", *paths,
                                         "--out", os.path.join(fused, "target", "scores.txt"),
                                         "--summary", os.path.join(fused, "summary.csv"),
                                         "--system", "target"]),
            "fusion, --summary and --det": (fuse, ["--scores", *paths,
                                                   "--out", os.path.join(fused, "target",
                                                                         "scores.txt"),
                                                   "--summary", os.path.join(fused, "summary.csv"),
                                                   "--system", "target",
                                                   "--det", os.path.join(fused, "det.png")]),
            "seed table of the fused run": (seed_table, ["--runs", "fused",
                                                         os.path.dirname(fused),
                                                         "--lists", "target"]),
        }
        results = {}
        for name, (function, argument) in rows.items():
            results[name] = measured(function, argument)
            wall, cpu, peak = results[name]
            print(f"{name:<30} {wall:7.1f} s wall {cpu:7.1f} s CPU  +{peak:,.0f} MiB peak")
        base = results["fusion, --summary"]
        print(f"ratios: reading and alignment {results['load_systems (read, align)'][1] / base[1]:.2f}"
              f" of the fusion's CPU time; DET figure "
              f"{results['fusion, --summary and --det'][1] / base[1]:.2f} ×; seed table "
              f"{results['seed table of the fused run'][1] / base[1]:.2f} of the fusion's")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10**6)
    parser.add_argument("--systems", type=int, default=4)
    options = parser.parse_args()
    bench(options.trials, options.systems)
