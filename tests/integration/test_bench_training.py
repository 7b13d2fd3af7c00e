"""The training benchmarks' measurements, each run once at its smallest on the demo corpus."""

import functools
import importlib
import math
import os
import re

import pytest
import torch

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")


@pytest.fixture
def bench_module(demo_corpus, monkeypatch):
    """``bench_module(name)``: the script's module, building its runs on the tests' demo corpus,
    with one torch thread as the scripts set."""
    monkeypatch.syspath_prepend(BENCHMARKS)  # the scripts import their common module
    common = importlib.import_module("common")
    build = functools.partial(common.build, data_folder=os.path.dirname(demo_corpus["eval"]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def load(name):
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "build", build)
        return module
    yield load
    torch.set_num_threads(threads)


def finite_positive(*values):
    return all(math.isfinite(value) and value > 0 for value in values)


def test_adversarial_steps_are_timed_against_the_baseline(bench_module, tmp_path):
    bench = bench_module("bench_adversarial")
    common = importlib.import_module("common")
    brain, hparams, data = bench.build("dann_fbank.yaml", str(tmp_path), "run",
                                       *common.TINY_ENCODER, "--batch_size=2")
    times = bench.compare(brain, hparams, data, rounds=1)
    assert set(times) == {"dann", "baseline"}
    assert all(finite_positive(*pair) for pair in times.values()), times


def test_each_adversary_is_timed_against_gradient_reversal_with_more_classes(bench_module, tmp_path,
                                                                           capsys):
    bench = bench_module("bench_adversarial")
    bench.adversaries(str(tmp_path), rounds=1, batch_size=2, classes=50)
    lines = capsys.readouterr().out.strip().splitlines()
    heading, ratios = lines[-1].split(": ", 1)
    ratios = dict(part.rsplit(" ", 1) for part in ratios.removesuffix("x").split("x, "))
    assert heading == "step / grl step, 50 classes (CPU time)"
    assert list(ratios) == [*bench.ADVERSARIES, "grl, 24 classes"], lines[-1]
    assert ratios["grl"] == "1.000" and finite_positive(*map(float, ratios.values()))


def test_the_adversaries_runs_train_on_their_classes(bench_module, tmp_path):
    bench = bench_module("bench_adversarial")
    brain, hparams, data = bench.build("dann_fbank.yaml", str(tmp_path), "run",
                                       "--adversary=auxiliary_classifier", "--batch_size=2")
    source, target = next(iter(bench.loader(brain, hparams, data, num_workers=0)))
    bench.with_classes(brain, 50, target.id)
    head = brain.modules.speaker_head
    assert head.classifier.weight.shape[0] == 50
    assert (head.pseudo_labels.lookup(target.id) >= hparams["n_speakers"]).all()
    assert brain.modules.domain_discriminator.mlp[-1].out_features == 52
    assert finite_positive(*bench.step(brain, (source, target)))


def test_dataloading_prints_the_share_waiting_for_batches(bench_module, monkeypatch, capsys):
    bench = bench_module("bench_dataloading")
    monkeypatch.setattr(bench, "EPOCHS", 1)
    monkeypatch.setattr(bench, "MODELS", bench.MODELS[-1:])
    bench.main([])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    shares = re.fullmatch(r"time waiting for batches: (.+) ([\d.]+)% \(([\d.]+)% with the first "
                          r"batches\)", last)
    assert shares and shares[1] == bench.MODELS[0][0], last
    assert 0 <= float(shares[2]) <= float(shares[3]) <= 100


def test_batched_embeddings_match_the_loop(bench_module, tmp_path):
    bench = bench_module("bench_embed")
    brain, _, data = bench.build("dann_fbank.yaml", str(tmp_path), "run")
    brain.modules.eval()
    dataset = bench.evaluation_sets(data)["first 0.7 s"]
    reference = bench.one_at_a_time(brain.embed, dataset)
    ours = bench.compute_embeddings(brain.embed, dataset, bench.BATCH)
    assert set(ours) == set(reference) and bench.largest_cosine_distance(ours, reference) < 1e-4


def test_the_frozen_front_end_keeps_fewer_activations(bench_module, monkeypatch, tmp_path, capsys):
    bench = bench_module("bench_frozen_ssl")
    monkeypatch.setattr(bench, "ROUNDS", 1)
    bench.frozen_vs_fine_tuned(str(tmp_path))
    lines = capsys.readouterr().out.strip().splitlines()
    kept = {line.split(":")[0]: float(line.split(" keeps ")[1].split()[0])
            for line in lines if " keeps " in line}
    assert set(kept) == {"tiny WavLM frozen", "tiny WavLM fine-tuned"}
    assert 0 < kept["tiny WavLM frozen"] < kept["tiny WavLM fine-tuned"]
    ratio = float(lines[-1].split(": ")[1].rstrip("x"))
    assert lines[-1].startswith("fine-tuned / frozen step time: ") and finite_positive(ratio)


def test_augmented_steps_are_timed_against_plain_ones(bench_module, tmp_path):
    bench = bench_module("bench_augment")
    common = importlib.import_module("common")
    brain, hparams, data = bench.build("dann_fbank.yaml", str(tmp_path), "run",
                                       *common.TINY_ENCODER, "--augment=True", "--batch_size=2")
    times = bench.compare(brain, hparams, data, rounds=1)
    assert set(times) == {False, True}
    assert all(finite_positive(*pair) for pair in times.values()), times
