"""The evaluation-batching benchmark's speed comparison runs on its synthetic list."""

import math
import os

import torch

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


def test_the_synthetic_list_is_embedded_both_ways(monkeypatch, capsys):
    monkeypatch.syspath_prepend(BENCHMARKS)  # the scripts import their common module
    from bench_eval_batching import compare_speed, synthetic_list

    dataset, lengths = synthetic_list(40)

    def embed(wavs, wav_lens):
        return torch.stack([wavs.mean(dim=1), wavs.std(dim=1)], dim=-1).unsqueeze(1)

    ratio = compare_speed("mean and deviation", embed, dataset, lengths, sample=16)
    assert math.isfinite(ratio) and ratio > 0
    assert " of 40 utterances" in capsys.readouterr().out
