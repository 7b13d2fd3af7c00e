"""The metrics benchmark at a tiny size: both comparisons agree with the references and give ratios,
and the calibration metrics are timed."""

import math
import os

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def test_both_comparisons_run_and_agree(monkeypatch, capsys):
    monkeypatch.syspath_prepend(BENCHMARKS)
    import bench_metrics

    for name, value in dict(TRIALS=2000, SUBSETS=[200, 400], UTTERANCES=300, COHORT=100,
                            TOP_K=20, LOOP_TRIALS=50).items():
        monkeypatch.setattr(bench_metrics, name, value)
    ratios = [bench_metrics.bench_asnorm(), bench_metrics.bench_metrics(),
              bench_metrics.bench_calibration()]
    assert all(math.isfinite(ratio) and ratio > 0 for ratio in ratios)
    out = capsys.readouterr().out
    gaps = [float(line.split("largest difference from ours ")[1].split()[0].rstrip(")"))
            for line in out.splitlines() if "largest difference" in line]
    assert all(f" {norm} " in out for norm in ("snorm", "znorm", "tnorm", "asnorm"))
    assert len(gaps) == 3 and max(gaps) < 1e-4  # the numpy loop and SpeechBrain at 200 and 400
    calibration = next(line for line in out.splitlines() if line.startswith("calibration, "))
    assert all(f" {name} " in calibration for name in ("eer", "calibration_metrics", "cllr",
                                                        "min_cllr", "act_dcf_0.001"))
