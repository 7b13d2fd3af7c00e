"""The fusion benchmark at a tiny size: its lines, and a refused fusion is not timed."""

import json
import math
import os

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


@pytest.fixture
def bench_fusion(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)  # the scripts import their resident module
    import bench_fusion

    return bench_fusion


def test_every_row_is_measured(bench_fusion, capsys):
    bench_fusion.bench(500, 2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 runs of 500 trials, ")
    rows = {line[:30].strip(): line[30:].split() for line in lines[1:5]}
    assert list(rows) == ["load_systems (read, align)", "fusion, --summary",
                          "fusion, --summary and --det", "seed table of the fused run"]
    for words in rows.values():
        # "<wall> s wall <CPU> s CPU +<peak> MiB peak"
        assert words[1:3] == ["s", "wall"] and words[4:6] == ["s", "CPU"]
        assert all(math.isfinite(float(word.lstrip("+").replace(",", "")))
                   for word in (words[0], words[3], words[6]))
    assert lines[5].startswith("ratios: reading and alignment ")
    assert lines[5].endswith(" of the fusion's")


def test_a_refused_fusion_stops_the_benchmark(bench_fusion, monkeypatch, capsys):
    simulated_runs = bench_fusion.simulated_runs

    def other_trials_in_the_second_run(folder, trials, systems):
        paths = simulated_runs(folder, trials, systems)
        provenance = os.path.join(os.path.dirname(os.path.dirname(paths[1])), "provenance.json")
        with open(provenance, encoding="utf-8") as fin:
            record = json.load(fin)
        record["data"]["evaluation/target/trials"]["sha256"] = "t2"
        with open(provenance, "w", encoding="utf-8") as out:
            json.dump(record, out)
        return paths

    monkeypatch.setattr(bench_fusion, "simulated_runs", other_trials_in_the_second_run)
    with pytest.raises(RuntimeError, match="the fusion refused"):
        bench_fusion.bench(500, 2)
    assert "fusion, --summary " not in capsys.readouterr().out
