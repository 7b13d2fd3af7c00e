"""Cost of waveform augmentation: a training step with ``--augment=True`` against one without.

An augmented step (``DANNBrain.fit_batch``) runs SpeechBrain's Augmenter on
the B source and B target crops and embeds them with their augmented copies,
2B + 2B crops; a step without embeds the B + B crops. Both are timed
alternately on the same batches (already in memory, so that no audio is
decoded) with one Brain, ``dann_fbank.yaml`` built as ``train_dann.py``
builds it with ``--augment=True``, after warm-up steps, and compared by
their median times. The ratio holds at any corpus size: an epoch has as many
steps either way.

Run from the repository root (about 3 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/bench_augment.py [--rounds 10] [--batch_size 16]

The last line prints the ratio augmented step / plain step.
"""

import argparse
import statistics
import tempfile

import torch

from common import build, loader, machine, step


def compare(brain, hparams, data, rounds, warmup=1):
    """Median (wall, CPU) seconds of plain and augmented steps on the same batches, alternately."""
    batches = list(loader(brain, hparams, data, num_workers=0))
    times = {False: [], True: []}
    for index in range(rounds + warmup):
        batch = batches[index % len(batches)]
        # Alternate which goes first, so that neither always follows the other.
        for augment in ((True, False) if index % 2 else (False, True)):
            brain.hparams.augment = augment
            elapsed = step(brain, batch)
            if index >= warmup:
                times[augment].append(elapsed)
    return {augment: [statistics.median(t[i] for t in values) for i in (0, 1)]
            for augment, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed steps of each kind")
    parser.add_argument("--batch_size", type=int, default=16, help="B, source utterances per step")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: CPU time is compute alone, without spinning)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    with tempfile.TemporaryDirectory() as work:
        brain, hparams, data = build("dann_fbank.yaml", work, "augment", "--augment=True",
                                     f"--batch_size={args.batch_size}")
        times = compare(brain, hparams, data, args.rounds)
    (plain, plain_cpu), (augmented, augmented_cpu) = times[False], times[True]
    print(f"dann_fbank, {args.batch_size} + {args.batch_size} crops of "
          f"{hparams['crop_seconds']} s: plain step {plain:.3f} s ({plain_cpu:.3f} s CPU), "
          f"augmented step {augmented:.3f} s ({augmented_cpu:.3f} s CPU), medians of "
          f"{args.rounds}")
    print(f"augmented step / plain step: {augmented / plain:.3f}x wall, "
          f"{augmented_cpu / plain_cpu:.3f}x CPU")


if __name__ == "__main__":
    main()
