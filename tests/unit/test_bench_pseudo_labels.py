"""The pseudo-label benchmark at a tiny size: one clustering with common.yaml's settings, scored."""

import math
import os

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def test_one_clustering_gives_every_figure(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    import bench_pseudo_labels
    from local.settings import plain_values

    common = plain_values(os.path.join(bench_pseudo_labels.ROOT, "hparams", "common.yaml"))
    settings = bench_pseudo_labels.recipe_settings(common)
    result = bench_pseudo_labels.measure(bench_pseudo_labels.ROOT, 500,
                                         {"name": "now", "settings": settings}, per_speaker=10)
    assert result["clusters"] > 1 and result["trained"] > 1
    for key in ("seconds", "cpu", "peak_gib", "before_gib", "nmi", "purity", "kept"):
        assert math.isfinite(result[key]), (key, result)
    assert 0 < result["kept"] <= 1 and 0 <= result["nmi"] <= 1 and 0 < result["purity"] <= 1
