"""Share of a training step spent waiting for the next batch, with the hparams' 2 workers.

Training epochs of ``dann_fbank.yaml`` on the demo corpus, built and loaded
exactly as ``train_dann.py`` does it (``train_dataloader_options``: batches of
16 source + 16 target crops of 2 s, 2 worker processes that read and resample
the audio), timing how long each ``next(batch)`` blocks against the whole
step. The filterbank model has the cheapest step of the recipe, so its
loading is the most exposed; the same model with the tests' small encoder
(``channels`` 32, 40 mel bands) shows a step that is cheaper still, with
torch's default threads (one per core) and with one thread, which on a
machine whose cores are busy with other jobs makes the step much faster
(idle threads spin while they wait for a core).

Run from the repository root (about 10 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/bench_dataloading.py

The last line prints the share of the time spent waiting for batches, after
the first batch of each epoch (the workers' start) and including it.
"""

import argparse
import tempfile

import torch

from common import TINY_ENCODER, build, epoch, loader, machine

EPOCHS = 2
SMALL = [*TINY_ENCODER, "--n_mels=40"]
# (name, options, torch threads: None keeps torch's default, one per core)
MODELS = [("dann_fbank.yaml", [], None), ("dann_fbank.yaml, small encoder", SMALL, None),
          ("dann_fbank.yaml, small encoder, 1 torch thread", SMALL, 1)]


def main(argv=None):
    """Run the measurements; the script takes no options."""
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help
    print(machine())
    shares = []
    with tempfile.TemporaryDirectory() as work:
        default_threads = torch.get_num_threads()
        for index, (model, options, threads) in enumerate(MODELS):
            torch.set_num_threads(threads or default_threads)
            brain, hparams, data = build("dann_fbank.yaml", work, f"run{index}", *options)
            totals, waits, starts, steps = 0.0, 0.0, 0.0, 0
            for _ in range(EPOCHS):
                total, waited = epoch(brain, loader(brain, hparams, data))
                # The first batch of an epoch includes starting the workers.
                totals, waits, starts = totals + total, waits + sum(waited), starts + waited[0]
                steps += len(waited)
            workers = hparams["train_dataloader_options"]["num_workers"]
            steady = (waits - starts) / (totals - starts)
            print(f"{model}: {EPOCHS} epochs, {steps} steps of {hparams['batch_size']} + "
                  f"{hparams['batch_size']} crops, {workers} workers, {totals:.1f} s; waiting for "
                  f"batches {waits:.2f} s ({100 * waits / totals:.1f}%), of which the first batch "
                  f"of each epoch {starts:.2f} s; after it {100 * steady:.1f}%")
            shares.append(f"{model} {100 * steady:.1f}% ({100 * waits / totals:.1f}% with the "
                          "first batches)")
    print("time waiting for batches: " + "; ".join(shares))


if __name__ == "__main__":
    main()
