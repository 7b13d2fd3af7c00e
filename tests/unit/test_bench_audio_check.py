"""The audio-check benchmark at a tiny size: every variant is timed, the ratios printed."""

import math
import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def test_every_variant_is_timed(monkeypatch, capsys):
    monkeypatch.syspath_prepend(BENCHMARKS)
    import bench_audio_check

    # --skip_before: the validator before is read from the git history.
    monkeypatch.setattr(sys, "argv", ["bench_audio_check.py", "--files", "150", "--skip_before"])
    bench_audio_check.main()
    lines = capsys.readouterr().out.splitlines()
    rows = {line[:34].strip(): line[34:].split() for line in lines[3:-1]}
    assert list(rows) == ["cold, 1 thread", "cold, thread pool", "warm (stamped)", "stat pass"]
    for wall, cpu, per_second in rows.values():
        assert wall.endswith("s") and cpu.endswith("s")
        assert all(math.isfinite(float(v)) for v in (wall[:-1], cpu[:-1], per_second.replace(",", "")))
    assert lines[-1].startswith("time ratios to the cold check (thread pool; wall, CPU): "
                                "warm (stamped) ")
