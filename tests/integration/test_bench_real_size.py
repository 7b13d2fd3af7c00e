"""The real-size benchmark's smoke mode: every measurement runs and gives a number."""

import gc
import importlib
import math
import os

from local.model.dann_brain import DANNBrain

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def smoke_argv(demo_corpus):
    return ["--smoke", f"--data_folder={os.path.dirname(demo_corpus['eval'])}"]


def benchmark(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)  # the scripts import their common module
    return importlib.import_module("bench_real_size")


def live_brains():
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, DANNBrain)]


def test_smoke_mode_fills_every_row_with_finite_positive_numbers(demo_corpus, monkeypatch):
    bench = benchmark(monkeypatch)
    alongside = []
    peer_step = bench.peer_step

    def watched_peer_step(*args, **kwargs):
        run = peer_step(*args, **kwargs)

        def watched(batch):
            alongside.append(len(live_brains()))
            return run(batch)
        return watched

    monkeypatch.setattr(bench, "peer_step", watched_peer_step)
    tables = bench.main(smoke_argv(demo_corpus))
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
    # The peer's steps, and so its peak memory, run with no DANN run in memory.
    assert alongside and not any(alongside)


def test_skipped_rows_leave_out_their_ratios(demo_corpus, monkeypatch, capsys):
    bench = benchmark(monkeypatch)
    skipped = list(bench.CONFIGURATIONS)[1:]
    tables = bench.main([*smoke_argv(demo_corpus), "--skip", *skipped])
    training = next(rows for title, rows in tables.items() if title.startswith("training"))
    assert set(training) == {"frozen", bench.PEER}
    ratios = capsys.readouterr().out.strip().splitlines()[-1]
    assert ratios.startswith("checkpoint before / after:") and "peer / frozen" in ratios
