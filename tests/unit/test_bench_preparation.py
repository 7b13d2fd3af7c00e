"""The preparation benchmark's smoke mode: every part runs on today's code and gives numbers."""

import math
import os
import re

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")
FIGURES = re.compile(r"^(.+?)\s+([\d.]+) s wall\s+([\d.]+) s CPU \+\s*([\d,]+) MiB peak$")


def test_smoke_mode_measures_every_part(monkeypatch, capsys):
    monkeypatch.syspath_prepend(BENCHMARKS)
    import bench_preparation

    bench_preparation.main(["--smoke"])
    lines = capsys.readouterr().out.splitlines()
    rows = [FIGURES.match(line) for line in lines[1:-1]]
    assert all(rows), lines
    names = [row[1].strip() for row in rows]
    assert names == ["walk, VoxCeleb2 tree of 400", "soundfile.info of its 1,200 files",
                     "chunking, 400 rows, 874 chunks: now", f"before ({bench_preparation.BEFORE})",
                     "dataset, 400 rows: now", f"before ({bench_preparation.BEFORE})",
                     "report, 400 trials, 115 rows", "DET figure, 400 trials, 3 systems",
                     "DET figure, 400 trials, 16 systems", "deepmine, 400 files, 872 trials",
                     "farsdat, 40 x 20 files"]
    assert all(math.isfinite(float(row[i].replace(",", ""))) for row in rows for i in (2, 3, 4))
    assert all(part in lines[-1] for part in ("walk: headers ", "chunking 400: ", "dataset 400: ",
                                             "DET 400: 16 / 3 systems "))
