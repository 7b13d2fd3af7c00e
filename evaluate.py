#!/usr/bin/env python3
"""Verification of a trained system, without training.

Usage::

    python evaluate.py hparams/dann_fbank.yaml [--condition=recipes/<name>/condition.yaml] \\
        [--output_folder=results/...] [--score_norm=asnorm --cohort_domain=target] \\
        [--backend_adaptation=whiten]

Takes the same hparams, condition and overrides as ``train_dann.py`` and the
latest checkpoint of the run they name (``output_folder``), embeds the
condition's evaluation utterances once and writes the report of every trial
list: score files, per-condition tables, the DET figure and a summary in
``<output_folder>/verification/``, with and without score normalisation and
back-end adaptation when these are set. Any trial list in the manifest schema can
be scored by overriding the condition's ``evaluation`` entry.
"""

import sys

from local.errors import exit_on_bad_input
from train_dann import evaluate, prepare_experiment


def main(argv=None):
    """Load the latest checkpoint of a run and verify it."""
    brain, hparams, condition, data = prepare_experiment(argv)
    if brain.checkpointer.recover_if_possible() is None:
        sys.exit(f"No checkpoint in {hparams['save_folder']}: train the system first "
                 "(python train_dann.py with the same hparams and overrides).")
    return evaluate(brain, hparams, condition, data)


if __name__ == "__main__":
    exit_on_bad_input(main)
