"""The back-ends benchmark at a tiny size: every back-end trains or is named with its reason."""

import math
import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def test_a_cap_too_small_for_a_back_end_prints_the_others_and_its_reason(monkeypatch, capsys):
    monkeypatch.syspath_prepend(BENCHMARKS)  # the scripts import their common module
    import bench_backends
    from local.evaluation.backends import BACKENDS

    def in_process(cap, seed, search, set_size=None):
        return bench_backends.measure(cap, seed, search, set_size, evaluation=2000, trials=4000)

    monkeypatch.setattr(bench_backends, "run_child", in_process)
    monkeypatch.setattr(sys, "argv", ["bench_backends.py", "--caps", "700", "1000"])
    bench_backends.main()
    lines = capsys.readouterr().out.splitlines()
    # At a cap of 700, 117 target utterances of 24 pseudo-speakers: too few for plda_target.
    cap_700 = lines[lines.index(next(line for line in lines if "backend_max_utterances 700" in line)):]
    assert any(line.split()[:3] == ["plda_target", "not", "trained:"] for line in cap_700)
    for name in BACKENDS:
        rows = [line for line in lines if line.split()[:1] == [name]]
        assert len(rows) == 2, (name, rows)
        for row in rows:
            if "not trained:" not in row:
                eers = [float(row.split("EER")[1].split()[0]),
                        float(row.split("AS-norm")[-1].split()[0])]
                assert all(math.isfinite(e) and 0 <= e <= 100 for e in eers), row
    ratios = lines[-1]
    assert ratios.startswith("cap 1000 against 700: cosine EER ")
    assert "plda_target" not in ratios and "clustering time" in ratios
