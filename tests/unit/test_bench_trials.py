"""The trial-list benchmark at a tiny size: each part measured on today's code."""

import math
import os

import numpy as np

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def test_every_part_is_measured_on_todays_code(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(BENCHMARKS)
    import bench_trials

    for name, value in dict(UTTERANCES=400, SPEAKERS=20, MODELS=30, TEST_FILES=100,
                            TRAIN_ROWS=500).items():
        monkeypatch.setattr(bench_trials, name, value)
    rng = np.random.default_rng(0)
    for kind, write in (("validate", bench_trials.write_corpus),
                        ("sdsv key", bench_trials.write_sdsv),
                        ("overlap", bench_trials.write_overlap)):
        files, trials = write(str(tmp_path), 300, rng)
        assert 0 < trials <= 300
        figures = bench_trials.measure(bench_trials.ROOT, kind, files, bench_trials.VALIDATOR)
        assert set(figures) == {"seconds", "cpu", "peak_mib"}
        assert all(math.isfinite(value) for value in figures.values()), (kind, figures)
