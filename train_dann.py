#!/usr/bin/env python3
"""Domain-adversarial speaker embeddings on a mismatch condition.

Usage::

    python train_dann.py hparams/dann_fbank.yaml
    python train_dann.py hparams/dann_wavlm.yaml --condition=recipes/demo/condition.yaml \\
        --adv_weight=0 --seed=3

The model hparams file says what is trained; the condition file (default
``recipes/demo/condition.yaml``) says on what: the source and target training
manifests, the evaluation manifest and its trial lists, and how to prepare
them. Overrides of keys of either file work as in every SpeechBrain recipe.
Results go to ``results/<condition>/<model_name>/<seed>/``.
"""

import os
import shutil
import sys

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from data_prep.manifest import read_manifest, read_trials, validate
from local.dann_brain import DANNBrain, unwrapped
from local.dataio import (
    PairedDataset,
    add_crop_pipeline,
    add_speaker_labels,
    add_whole_pipeline,
    collate_pairs,
    manifest_dataset,
)
from local.embed import compute_embeddings
from local.provenance import write_provenance
from local.ssl_frontend import save_layer_weights

DEFAULT_CONDITION = os.path.join(os.path.dirname(__file__), "recipes", "demo", "condition.yaml")


def load_condition(overrides):
    """Split the command-line overrides into the condition's and the model's.

    Arguments
    ---------
    overrides : str
        YAML overrides from ``sb.parse_arguments``; ``condition`` names the
        condition file.

    Returns
    -------
    tuple
        ``(condition_path, condition_hparams, model_overrides)``.
    """
    overrides = yaml.safe_load(overrides) or {}
    path = overrides.pop("condition", DEFAULT_CONDITION)
    if not os.path.isfile(path):
        sys.exit(f"Condition file {path} does not exist: pass --condition=recipes/<name>/condition.yaml")
    with open(path, encoding="utf-8") as fin:
        keys = set(yaml.load(fin, Loader=_KeysOnly) or {})
    mine = {k: v for k, v in overrides.items() if k in keys}
    with open(path, encoding="utf-8") as fin:
        condition = load_hyperpyyaml(fin, mine)
    model = {k: v for k, v in overrides.items() if k not in keys}
    return path, condition, model


class _KeysOnly(yaml.SafeLoader):
    """Reads a hyperpyyaml file's top-level keys, ignoring its tags."""


_KeysOnly.add_multi_constructor("!", lambda loader, suffix, node: None)


def dataio_prep(hparams, condition):
    """Paired training set, speaker label encoder and evaluation datasets.

    Every manifest, trial list and enrolment table is validated here, before
    any training, so that a bad trial list fails in seconds.

    Arguments
    ---------
    hparams : dict
        Model hparams.
    condition : dict
        Condition hparams.

    Returns
    -------
    tuple
        ``(train_pairs, label_encoder, eval_datasets)``, the last keyed by
        evaluation manifest path.
    """
    eval_datasets = {}
    for spec in condition["evaluation"].values():
        validate(spec["manifest"], spec["trials"], spec.get("enrolment"), check_audio=False)
        if spec["manifest"] not in eval_datasets:
            dataset = manifest_dataset(spec["manifest"], hparams["check_audio"])
            add_whole_pipeline(dataset)
            eval_datasets[spec["manifest"]] = dataset
    source = manifest_dataset(condition["source_train"], hparams["check_audio"])
    target = manifest_dataset(condition["target_train"], hparams["check_audio"])
    for dataset in (source, target):
        add_crop_pipeline(dataset, hparams["crop_seconds"])
    encoder = add_speaker_labels(source, os.path.join(hparams["save_folder"], "label_encoder.txt"))
    source.set_output_keys(["id", "sig", "spk_id_encoded"])
    target.set_output_keys(["id", "sig"])
    return PairedDataset(source, target, hparams["seed"]), encoder, eval_datasets


def verify(brain, hparams, condition, eval_datasets):
    """Embed the evaluation utterances once and report EER per trial list.

    Arguments
    ---------
    brain : DANNBrain
        Trained system.
    hparams : dict
        Model hparams.
    condition : dict
        Condition hparams (``evaluation``).
    eval_datasets : dict
        Whole-utterance datasets keyed by manifest path, from :func:`dataio_prep`.

    Returns
    -------
    dict
        ``{trial list name: EER}``.
    """
    brain.modules.eval()
    # Caches are named after the checkpoint, so a retrained model never reuses them.
    checkpoint = os.path.basename(brain.checkpointer.find_checkpoint().path)
    embeddings = {}
    for manifest, dataset in eval_datasets.items():
        stem = os.path.splitext(os.path.basename(manifest))[0]
        cache = os.path.join(hparams["output_folder"], f"embeddings_{stem}_{checkpoint}.pt")
        embeddings[manifest] = compute_embeddings(
            brain.embed, dataset, hparams["eval_batch_size"], brain.device, cache_path=cache
        )
    results = {}
    for name, spec in condition["evaluation"].items():
        vectors = embeddings[spec["manifest"]]
        trials = read_trials(spec["trials"])
        enrol = torch.stack([vectors[i] for i in trials["enrol"]])
        test = torch.stack([vectors[i] for i in trials["test"]])
        scores = torch.nn.functional.cosine_similarity(enrol, test)
        labels = torch.tensor(trials["label"].to_numpy())
        eer, _ = sb.utils.metric_stats.EER(scores[labels == 1], scores[labels == 0])
        results[name] = float(eer)
    summary = ", ".join(f"{name} EER {100 * eer:.2f}%" for name, eer in results.items())
    hparams["train_logger"].log_stats(stats_meta={"verification": "cosine"}, test_stats=results)
    print(f"Verification ({hparams['condition']}): {summary}")
    return results


def main(argv=None):
    """Prepare the condition, train, and verify."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    condition_file, condition, overrides = load_condition(overrides)
    for prepare in condition["prepare"]:
        run_on_main(prepare)
    overrides["condition"] = condition["condition"]
    overrides["n_speakers"] = int(read_manifest(condition["source_train"])["spk_id"].nunique())
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    shutil.copy(condition_file, os.path.join(hparams["output_folder"], "condition.yaml"))
    sb.utils.distributed.main_process_only(write_provenance)(
        condition, hparams["output_folder"], os.path.dirname(os.path.abspath(__file__)))

    train_pairs, label_encoder, eval_datasets = dataio_prep(hparams, condition)
    brain = DANNBrain(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts=run_opts, checkpointer=hparams["checkpointer"],
    )
    brain.train_pairs = train_pairs
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    brain.steps_per_epoch = len(train_pairs) // (hparams["batch_size"] * world)
    loader_options = dict(hparams["train_dataloader_options"], collate_fn=collate_pairs)
    brain.fit(hparams["epoch_counter"], train_pairs, train_loader_kwargs=loader_options)
    layer_sum = getattr(unwrapped(brain.modules.frontend), "layer_sum", None)
    if layer_sum is not None:
        sb.utils.distributed.main_process_only(save_layer_weights)(
            layer_sum, hparams["output_folder"])
    # Verification runs on the main process; every process gets its results.
    return sb.utils.distributed.main_process_only(verify)(brain, hparams, condition, eval_datasets)


if __name__ == "__main__":
    main()
