#!/usr/bin/env python3
"""Domain-adversarial speaker embeddings on a mismatch condition.

Usage::

    python train_dann.py hparams/dann_fbank.yaml
    python train_dann.py hparams/dann_wavlm.yaml --condition=recipes/demo/condition.yaml \\
        --adv_weight=0 --seed=3
    python train_dann.py hparams/ge2e_fbank.yaml   # GE2E speaker head, no classifier

The model hparams file says what is trained; the condition file (default
``recipes/demo/condition.yaml``) says on what: the source and target training
manifests, the evaluation manifest and its trial lists, and how to prepare
them. Overrides of keys of either file work as in every SpeechBrain recipe
(``--key=value``; ``hparams/common.yaml`` explains each shared key), beside
SpeechBrain's run options below.
Results go to ``results/<condition>/<model_name>/<seed>/``, the trained model,
in the layout SpeechBrain's ``SpeakerRecognition.from_hparams`` loads, to its
``model/`` (:mod:`local.export`).
"""

from local.environment import check_installation

# Before SpeechBrain's imports, which fail with an undefined symbol on a mismatched torch/torchaudio.
check_installation()

import speechbrain as sb

from local.data.dataio import collate_pairs
from local.cli import describe_on_help
from local.errors import checked_on_main, exit_on_bad_input
from local.experiment import evaluate, prepare_experiment
from local.export import export_model
from local.model.distributed import leave_process_group, unwrapped
from local.model.ssl_frontend import save_layer_weights
from local.run_folder import release_run_folders


def create_run_folder(folder):
    """SpeechBrain's experiment folder ``folder``, with this script (its caller's file) copied in."""
    sb.create_experiment_directory(experiment_directory=folder)


def train_loader_options(hparams, pairs):
    """The DataLoader options of the training pairs.

    With the GE2E head, the pairs are in speaker-major batches already: a
    batch sampler takes this process's batches of them whole
    (``PairedDataset.process_batches``: in DDP, every process its own), and
    the Brain leaves it as it is.

    Arguments
    ---------
    hparams : dict
        Model hparams (``train_dataloader_options``, ``batch_size``).
    pairs : PairedDataset
        The training pairs.

    Returns
    -------
    dict
        Keyword arguments of the training DataLoader.
    """
    options = dict(hparams["train_dataloader_options"], collate_fn=collate_pairs)
    if pairs.source_batches is not None:
        # A batch sampler excludes the loader's own batching options.
        options.pop("batch_size", None)
        options.pop("drop_last", None)
        options["batch_sampler"] = pairs.process_batches(hparams["batch_size"])
    return options


def main(argv=None):
    """Prepare the condition, train, verify, and export the model (``<output_folder>/model``).

    The run's folder is locked from the start (:func:`prepare_experiment`) to the end.
    """
    describe_on_help(argv, __doc__)
    try:
        brain, hparams, condition, data = prepare_experiment(argv, create_folder=create_run_folder)
        brain.fit(hparams["epoch_counter"], data["train_pairs"],
                  train_loader_kwargs=train_loader_options(hparams, data["train_pairs"]))
        layer_sum = getattr(unwrapped(brain.modules.frontend), "layer_sum", None)
        if layer_sum is not None:
            checked_on_main(save_layer_weights, layer_sum, hparams["output_folder"])
        results = evaluate(brain, hparams, condition, data)
        # After the evaluation, whose scores give the model its operating point.
        checked_on_main(
            export_model, hparams["output_folder"], checkpoints_dir=brain.checkpointer.checkpoints_dir,
            trial_lists=list(condition["evaluation"]), save_folder=hparams["save_folder"])
    finally:
        release_run_folders()
    return results


if __name__ == "__main__":
    try:
        exit_on_bad_input(main)
    finally:
        leave_process_group()
