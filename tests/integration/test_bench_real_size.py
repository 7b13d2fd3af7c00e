"""The real-size benchmark's smoke mode: every measurement runs and gives a number."""

import importlib
import math
import os

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def test_smoke_mode_fills_every_row_with_finite_positive_numbers(demo_corpus, monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)  # the scripts import their common module
    bench = importlib.import_module("bench_real_size")
    tables = bench.main(["--smoke", f"--data_folder={os.path.dirname(demo_corpus['eval'])}"])
    training = next(rows for title, rows in tables.items() if title.startswith("training"))
    assert set(training) == {*bench.CONFIGURATIONS, bench.PEER}
    assert set(tables["checkpoint"]) == {"frozen", "frozen, whole front end (before)",
                                         "fine-tuned"}
    assert len(tables["SSL forward"]) == 2
    for rows in tables.values():
        for name, row in rows.items():
            assert row and all(math.isfinite(v) and v > 0 for v in row.values()), (name, row)
    # Frozen, the checkpoint leaves out the SSL model that the whole front end holds.
    assert tables["checkpoint"]["frozen"]["MB"] < tables["checkpoint"][
        "frozen, whole front end (before)"]["MB"]
