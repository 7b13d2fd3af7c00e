#!/usr/bin/env python3
"""Verification of a trained system, without training.

Usage::

    python evaluate.py hparams/dann_fbank.yaml [--condition=recipes/<name>/condition.yaml] \\
        [--output_folder=results/...] [--score_norm=asnorm --cohort_domain=target] \\
        [--backend_adaptation=whiten]

Takes the same hparams, condition and overrides as ``train_dann.py`` and the
latest checkpoint of the run they name (``output_folder``; a training that
stopped before its last epoch ended is refused), embeds the
condition's evaluation utterances once and writes the report of every trial
list: score files, per-condition tables, the DET figure and a summary in
``<output_folder>/verification/``, with and without score normalisation and
back-end adaptation when these are set. Any trial list in the manifest schema can
be scored by overriding the condition's ``evaluation`` entry. Settings that
the trained weights depend on must be the run's (``--allow_changed`` accepts
a difference); other training manifests are accepted with a warning (the
cohort and the back-ends are drawn from them), and the trial lists are
checked for shared speakers against the run's own as well. The evaluation's own settings
are written into its report, ``<output_folder>/verification/``:
``evaluate_hyperparams.yaml``, ``evaluate_condition.yaml`` and (its data
files' hashes) ``evaluate_provenance.json``, which take the place of the
report before it with it, so that an evaluation that fails or is killed
leaves that report and its settings as they were. The run's
``hyperparams.yaml`` and ``provenance.json`` are left as they are.
"""

from local.environment import check_installation

# Before SpeechBrain's imports, which fail with an undefined symbol on a mismatched torch/torchaudio.
check_installation()

import speechbrain as sb

from local.cli import describe_on_help
from local.errors import exit_on_bad_input
from local.experiment import check_trained, evaluate, prepare_experiment
from local.model.distributed import leave_process_group
from local.run_folder import release_run_folders


def create_run_folder(folder):
    """SpeechBrain's experiment folder ``folder``, with this script (its caller's file) copied in.

    The run's ``env.log``, the environment it was trained in, is left as it is.
    """
    sb.create_experiment_directory(experiment_directory=folder, save_env_desc=False)


def main(argv=None):
    """Load the latest checkpoint of a run and verify it."""
    describe_on_help(argv, __doc__)
    try:
        brain, hparams, condition, data = prepare_experiment(
            argv, training=False, create_folder=create_run_folder)
        checkpoint = brain.checkpointer.recover_if_possible()
        check_trained(checkpoint, hparams["epoch_counter"])
        return evaluate(brain, hparams, condition, data)
    finally:
        release_run_folders()


if __name__ == "__main__":
    try:
        exit_on_bad_input(main)
    finally:
        leave_process_group()
