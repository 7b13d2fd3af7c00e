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
be scored by overriding the condition's ``evaluation`` entry. Settings that
the trained weights depend on must be the run's (``--allow_changed`` accepts
a difference); the evaluation's own are written to
``<output_folder>/evaluate_hyperparams.yaml``, and the run's ``hyperparams.yaml``
is left as it is.
"""

from local.errors import exit_on_bad_input
from local.run_folder import release_run_folders
from train_dann import evaluate, prepare_experiment


def main(argv=None):
    """Load the latest checkpoint of a run and verify it."""
    try:
        brain, hparams, condition, data = prepare_experiment(argv, training=False)
        brain.checkpointer.recover_if_possible()
        return evaluate(brain, hparams, condition, data)
    finally:
        release_run_folders()


if __name__ == "__main__":
    exit_on_bad_input(main)
