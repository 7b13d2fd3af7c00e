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
them. Overrides of keys of either file work as in every SpeechBrain recipe.
Results go to ``results/<condition>/<model_name>/<seed>/``, the trained model,
in the layout SpeechBrain's ``SpeakerRecognition.from_hparams`` loads, to its
``model/`` (:mod:`local.export`).
"""

import gc
import os
import shutil
import sys

from local.environment import check_installation

# Before SpeechBrain's imports, which fail with an undefined symbol on a mismatched torch/torchaudio.
check_installation()

import speechbrain as sb
import torch
from hyperpyyaml import resolve_references
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import run_on_main

from local.data.dataio import (
    PairedDataset,
    SpeakerBatchSampler,
    add_crop_pipeline,
    add_speaker_labels,
    add_whole_pipeline,
    collate_pairs,
    manifest_dataset,
    speaker_classes,
    speaker_label,
)
from local.data.manifest_io import read_manifest
from local.data.ssl_cache import add_cached_crop_pipeline, cache_hidden_states
from local.data.validation import check_manifest_audio_once, validate
from local.errors import exit_on_bad_input
from local.evaluation.verification import check_score_norm, verify
from local.export import export_model
from local.model.dann_brain import DANNBrain
from local.model.distributed import unwrapped
from local.model.ssl_frontend import save_layer_weights
from local.provenance import write_provenance
from local.run_folder import accept_settings, hold_run_folder, release_run_folders
from local.settings import (
    check_device,
    check_trainable,
    load_condition,
    load_model_hparams,
    model_text,
    plain_values,
    run_settings,
)

def dataio_prep(hparams, condition, device="cpu"):
    """Paired training set, speaker label encoder, evaluation and cohort datasets.

    Every manifest, trial list and enrolment table is validated here, before
    any training, so that a bad trial list, or one that scores training
    speakers, fails in seconds.

    Arguments
    ---------
    hparams : dict
        Model hparams.
    condition : dict
        Condition hparams.
    device : str or torch.device
        Where the SSL model fills the feature cache (``cache_ssl_features``).

    Returns
    -------
    dict
        ``train_pairs`` (:class:`PairedDataset`; for a speaker head with a
        ``batch_layout`` (GE2E), its source parts follow a
        :class:`SpeakerBatchSampler`), ``label_encoder``, ``eval``
        (whole-utterance datasets keyed by evaluation manifest path) and
        ``training_utterances`` (``{"source": ..., "target": ...}``, whole
        utterances of the training manifests, for the score-normalisation
        cohort, the PLDA back-ends and the target's pseudo-labelling).
    """
    for spec in condition["evaluation"].values():
        validate(spec["manifest"], spec["trials"], spec.get("enrolment"), check_audio=False,
                 train_manifests=[condition["source_train"], condition["target_train"]],
                 allow_speaker_overlap=hparams["allow_speaker_overlap"],
                 embed_seconds=(hparams["min_embed_seconds"], hparams["max_embed_seconds"]))
    eval_manifests = dict.fromkeys(spec["manifest"] for spec in condition["evaluation"].values())
    if hparams["check_audio"]:
        # Once per manifest version, by the main process; the others wait for it.
        for path in dict.fromkeys([condition["source_train"], condition["target_train"],
                                   *eval_manifests]):
            run_on_main(check_manifest_audio_once, args=[path])
    eval_datasets = {path: manifest_dataset(path, check_audio=False) for path in eval_manifests}
    for dataset in eval_datasets.values():
        add_whole_pipeline(dataset)
    source = manifest_dataset(condition["source_train"], check_audio=False)
    target = manifest_dataset(condition["target_train"], check_audio=False)
    # Whole utterances of the same (already validated) training rows.
    utterances = {}
    for domain, dataset in (("source", source), ("target", target)):
        utterances[domain] = DynamicItemDataset(dataset.data)
        add_whole_pipeline(utterances[domain])
    for domain, dataset in (("source", source), ("target", target)):
        if hparams.get("cache_ssl_features"):
            run_on_main(cache_hidden_states, args=[
                hparams["frontend"], utterances[domain], hparams["ssl_features_folder"], device])
            add_cached_crop_pipeline(dataset, hparams["ssl_features_folder"],
                                     hparams["crop_seconds"])
        else:
            add_crop_pipeline(dataset, hparams["crop_seconds"])
    encoder = add_speaker_labels(source, os.path.join(hparams["save_folder"], "label_encoder.txt"),
                                 speaker_label(hparams))
    if len(encoder) != hparams["n_speakers"]:
        raise ValueError(
            f"The label encoder {hparams['save_folder']}/label_encoder.txt has {len(encoder)} "
            f"classes, the speaker head {hparams['n_speakers']}: it was made by a run with "
            "another speaker_label or source manifest. Remove it, or train into another "
            "output_folder.")
    source.set_output_keys(["id", "sig", "spk_id_encoded"])
    target.set_output_keys(["id", "sig"])
    speaker_batches = None
    layout = hparams["speaker_head"].batch_layout
    if layout is not None:
        # As many steps as the margin heads take at the same batch size: the
        # longer training set once per epoch.
        speaker_batches = SpeakerBatchSampler(
            [source.data[i]["spk_id"] for i in source.data_ids], *layout,
            max(len(source), len(target)) // hparams["batch_size"], hparams["seed"])
    return {"train_pairs": PairedDataset(source, target, hparams["seed"], speaker_batches),
            "label_encoder": encoder, "eval": eval_datasets,
            "training_utterances": utterances}


def prepare_experiment(argv=None, training=True):
    """Parse the command line, prepare the condition's data, and build the Brain.

    Before anything is written into the run's folder, its lock is taken and
    the settings are checked against those of its checkpoints
    (:mod:`local.run_folder`).

    Arguments
    ---------
    argv : list of str, optional
        Command line (default ``sys.argv[1:]``).
    training : bool
        True for a training run, whose settings become the run's
        (``hyperparams.yaml``); False for an evaluation of a trained run,
        which needs a checkpoint and writes its own (``evaluate_hyperparams.yaml``).

    Returns
    -------
    tuple
        ``(brain, hparams, condition, data)``, ``data`` as from :func:`dataio_prep`.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    check_device(run_opts.get("device"))
    sb.utils.distributed.ddp_init_group(run_opts)
    condition_file, condition, overrides = load_condition(overrides, hparams_file)
    for prepare in condition["prepare"]:
        run_on_main(prepare)
    overrides["condition"] = condition["condition"]
    # The speaker head has a row per class: per speaker, or per speaker and
    # phrase (speaker_label: spk_phrase).
    classes = speaker_classes(read_manifest(condition["source_train"]),
                              speaker_label({**plain_values(hparams_file), **overrides}),
                              condition["source_train"])
    overrides["n_speakers"] = len(set(classes))
    check_trainable(hparams_file, overrides, condition)
    hparams = load_model_hparams(hparams_file, overrides)
    check_score_norm(hparams)
    if not training and not hparams["checkpointer"].list_checkpoints():
        sys.exit(f"No checkpoint in {hparams['save_folder']}: train the system first "
                 "(python train_dann.py with the same hparams and overrides).")
    if sb.utils.distributed.if_main_process():
        hold_run_folder(hparams["output_folder"])
        accept_settings(hparams, run_settings(hparams_file, overrides), training)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    sb.utils.distributed.main_process_only(save_settings)(
        hparams_file, overrides, condition_file, hparams["output_folder"],
        "" if training else "evaluate_")
    sb.utils.distributed.main_process_only(write_provenance)(
        condition, hparams["output_folder"], os.path.dirname(os.path.abspath(__file__)))

    device = run_opts.get("device") or sb.utils.distributed.infer_device()
    data = dataio_prep(hparams, condition, device)
    brain = DANNBrain(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts=run_opts, checkpointer=hparams["checkpointer"],
        target_utterances=data["training_utterances"]["target"],
    )
    return brain, hparams, condition, data


def save_settings(hparams_file, overrides, condition_file, folder, prefix=""):
    """Write the whole model settings (``hyperparams.yaml``) and the ``condition.yaml`` of a command.

    Arguments
    ---------
    hparams_file : str
        The model hparams file, merged onto its bases.
    overrides : dict
        The model overrides, resolved into the saved file.
    condition_file : str
        The condition file, copied.
    folder : str
        The run's output folder.
    prefix : str
        Of the file names: ``""`` for the training run's own, ``"evaluate_"``
        for an evaluation's, which leaves the run's untouched.
    """
    resolved = resolve_references(model_text(hparams_file), overrides).getvalue()
    with open(os.path.join(folder, f"{prefix}hyperparams.yaml"), "w", encoding="utf-8") as out:
        out.write(f"# {os.path.abspath(hparams_file)} on its bases, with the run's overrides\n"
                  f"# yamllint disable\n{resolved}")
    shutil.copy(condition_file, os.path.join(folder, f"{prefix}condition.yaml"))


def train_loader_options(hparams, pairs):
    """The DataLoader options of the training pairs.

    With the GE2E head, the pairs are in speaker-major batches already: a
    batch sampler takes them in order, so that every batch is one of them,
    and in DDP SpeechBrain deals whole batches out to the processes.

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
        options["batch_sampler"] = torch.utils.data.BatchSampler(
            torch.utils.data.SequentialSampler(pairs), hparams["batch_size"], drop_last=True)
    return options


def evaluate(brain, hparams, condition, data):
    """Verify the system of the latest checkpoint on the condition's trial lists.

    Runs on the main process only; every process gets the results.

    Arguments
    ---------
    brain : DANNBrain
        With its latest checkpoint loaded.
    hparams : dict
        Model hparams.
    condition : dict
        Condition hparams.
    data : dict
        As from :func:`dataio_prep`.

    Returns
    -------
    dict
        ``{system: metrics}``, as from :func:`local.evaluation.verification.verify`.
    """
    def on_main():
        brain.modules.eval()
        checkpoint = os.path.basename(brain.checkpointer.find_checkpoint().path)
        results = verify(brain.embed, hparams, condition, data["eval"],
                         data["training_utterances"], brain.device, checkpoint)
        hparams["train_logger"].log_stats(
            stats_meta={"verification": "cosine"},
            test_stats={f"{system} EER": metrics["eer"] for system, metrics in results.items()})
        return results

    return sb.utils.distributed.main_process_only(on_main)()


def main(argv=None):
    """Prepare the condition, train, verify, and export the model (``<output_folder>/model``).

    The run's folder is locked from the start (:func:`prepare_experiment`) to the end.
    """
    try:
        brain, hparams, condition, data = prepare_experiment(argv)
        brain.fit(hparams["epoch_counter"], data["train_pairs"],
                  train_loader_kwargs=train_loader_options(hparams, data["train_pairs"]))
        layer_sum = getattr(unwrapped(brain.modules.frontend), "layer_sum", None)
        if layer_sum is not None:
            sb.utils.distributed.main_process_only(save_layer_weights)(
                layer_sum, hparams["output_folder"])
        results = evaluate(brain, hparams, condition, data)
        # After the evaluation, whose scores give the model its operating point.
        sb.utils.distributed.main_process_only(export_model)(
            hparams["output_folder"], checkpoints_dir=brain.checkpointer.checkpoints_dir,
            trial_lists=list(condition["evaluation"]))
    finally:
        release_run_folders()
    return results


if __name__ == "__main__":
    exit_on_bad_input(main)
    if torch.distributed.is_initialized():
        # Every process leaves the group before exiting, so that no process
        # exits while gloo's threads of another are still at work. The
        # Brain's DDP wrappers hold the group and outlive main() in reference
        # cycles: collected first, they let the group go here rather than in
        # whatever garbage collection runs during interpreter shutdown, where
        # gloo's threads were seen to abort a process ("terminate called
        # without an active exception").
        gc.collect()
        torch.distributed.destroy_process_group()
