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
import re
import shutil
import sys

from local.environment import check_installation

# Before SpeechBrain's imports, which fail with an undefined symbol on a mismatched torch/torchaudio.
check_installation()

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
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
from local.errors import exit_on_bad_input, fail
from local.evaluation.verification import check_score_norm, verify
from local.export import export_model
from local.model.dann_brain import DANNBrain, check_domain_settings, check_speaker_head, unwrapped
from local.model.ssl_frontend import save_layer_weights
from local.provenance import write_provenance

DEFAULT_CONDITION = os.path.join(os.path.dirname(__file__), "recipes", "demo", "condition.yaml")
# A number in exponent notation without a dot (1e30, 5e-4): a float in YAML
# 1.2 and to Python, a string to the YAML 1.1 that hyperpyyaml reads.
EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def load_condition(overrides, hparams_file):
    """Split the command-line overrides into the condition's and the model's.

    The two files share no key but ``condition``, so that every override has
    one destination; overrides of numbers and switches are checked against
    their defaults (:func:`typed_overrides`).

    Arguments
    ---------
    overrides : str
        YAML overrides from ``sb.parse_arguments``; ``condition`` names the
        condition file.
    hparams_file : str
        The model hparams file.

    Returns
    -------
    tuple
        ``(condition_path, condition_hparams, model_overrides)``.
    """
    overrides = yaml.safe_load(overrides) or {}
    path = overrides.pop("condition", DEFAULT_CONDITION)
    if not os.path.isfile(path):
        sys.exit(f"Condition file {path} does not exist: pass --condition=recipes/<name>/condition.yaml")
    keys = set(_untagged(path))
    shared = sorted(keys & set(_untagged(hparams_file)) - {"condition"})
    if shared:
        fail(path, f"defines {shared}, which {hparams_file} defines too, so that an override "
                   "of them could reach only one of the files",
             fix="rename them in the condition file (and in its !ref <...> references)")
    mine = typed_overrides(path, {k: v for k, v in overrides.items() if k in keys})
    with open(path, encoding="utf-8") as fin:
        condition = load_hyperpyyaml(fin, mine)
    model = typed_overrides(hparams_file, {k: v for k, v in overrides.items() if k not in keys})
    return path, condition, model


def typed_overrides(path, overrides):
    """Overrides of a file's numbers and switches, checked against the types of its defaults.

    For a key whose default is a number, a string in exponent notation
    without a dot (``--lr=1e30``, which YAML 1.1 reads as text) is the number
    it means (an integer where the default is one and it is whole); nothing
    else is converted, so that a value is never guessed. Any other value
    that is not a number is refused, as is a value other than True or False
    for a key whose default is one of them. Keys without such a default
    (null, lists, tagged values) pass unchecked.

    Arguments
    ---------
    path : str
        The hparams or condition file whose keys the overrides set.
    overrides : dict
        ``{key: value}``, as the YAML of the command line read them.

    Returns
    -------
    dict
        The overrides, exponent-notation strings converted.

    Raises
    ------
    ManifestError
        Naming the key, its value and what it needs.

    Example
    -------
    >>> typed_overrides("hparams/dann_fbank.yaml", {"lr": "1e-3", "score_norm": "asnorm"})
    {'lr': 0.001, 'score_norm': 'asnorm'}
    """
    defaults = _untagged(path)
    checked = dict(overrides)
    for key, value in overrides.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                fail(path, f"--{key}={value} is not True or False (its default is {default})",
                     fix=f"pass --{key}=True or --{key}=False")
        elif isinstance(default, (int, float)):
            if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
                value = float(value)
                if isinstance(default, int) and value.is_integer():
                    value = int(value)
                checked[key] = value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(path, f"--{key}={value} is not a number (its default is {default})",
                     fix=f"pass a number, such as --{key}={default}")
    return checked


class _KeysOnly(yaml.SafeLoader):
    """Reads a hyperpyyaml file's top-level keys, ignoring its tags."""


_KeysOnly.add_multi_constructor("!", lambda loader, suffix, node: None)


def _untagged(path):
    """A hyperpyyaml file's top-level ``{key: value}``, tagged values None."""
    with open(path, encoding="utf-8") as fin:
        return yaml.load(fin, Loader=_KeysOnly) or {}


def plain_settings(hparams_file, overrides):
    """The untagged top-level values of a model hparams file, overrides applied.

    For what must be known before the file is loaded: ``n_speakers``, which
    the file needs, depends on ``speaker_label``.

    Arguments
    ---------
    hparams_file : str
        Model hparams file.
    overrides : dict
        Command-line overrides of its keys.

    Returns
    -------
    dict
        ``{key: value}``; tagged values (``!ref``, ``!new:``...) are None.
    """
    return {**_untagged(hparams_file), **overrides}


def dataio_prep(hparams, condition, device="cpu"):
    """Paired training set, speaker label encoder, evaluation and cohort datasets.

    Every manifest, trial list and enrolment table is validated here, before
    any training, so that a bad trial list fails in seconds.

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
        ``train_pairs`` (:class:`PairedDataset`; with the GE2E head, its
        source parts follow a :class:`SpeakerBatchSampler`), ``label_encoder``, ``eval``
        (whole-utterance datasets keyed by evaluation manifest path) and
        ``training_utterances`` (``{"source": ..., "target": ...}``, whole
        utterances of the training manifests, for the score-normalisation
        cohort, the PLDA back-ends and the target's pseudo-labelling).
    """
    for spec in condition["evaluation"].values():
        validate(spec["manifest"], spec["trials"], spec.get("enrolment"), check_audio=False)
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
    if "ge2e_loss" in hparams:
        # As many steps as the margin heads take at the same batch size: the
        # longer training set once per epoch.
        speaker_batches = SpeakerBatchSampler(
            [source.data[i]["spk_id"] for i in source.data_ids], hparams["ge2e_speakers"],
            hparams["ge2e_utterances"],
            max(len(source), len(target)) // hparams["batch_size"], hparams["seed"])
    return {"train_pairs": PairedDataset(source, target, hparams["seed"], speaker_batches),
            "label_encoder": encoder, "eval": eval_datasets,
            "training_utterances": utterances}


def prepare_experiment(argv=None):
    """Parse the command line, prepare the condition's data, and build the Brain.

    Arguments
    ---------
    argv : list of str, optional
        Command line (default ``sys.argv[1:]``).

    Returns
    -------
    tuple
        ``(brain, hparams, condition, data)``, ``data`` as from :func:`dataio_prep`.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    condition_file, condition, overrides = load_condition(overrides, hparams_file)
    for prepare in condition["prepare"]:
        run_on_main(prepare)
    overrides["condition"] = condition["condition"]
    # The speaker head has a row per class: per speaker, or per speaker and
    # phrase (speaker_label: spk_phrase).
    classes = speaker_classes(read_manifest(condition["source_train"]),
                              speaker_label(plain_settings(hparams_file, overrides)),
                              condition["source_train"])
    overrides["n_speakers"] = len(set(classes))
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    check_score_norm(hparams)
    check_speaker_head(hparams)
    check_domain_settings(hparams)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    shutil.copy(condition_file, os.path.join(hparams["output_folder"], "condition.yaml"))
    sb.utils.distributed.main_process_only(write_provenance)(
        condition, hparams["output_folder"], os.path.dirname(os.path.abspath(__file__)))

    brain = DANNBrain(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts=run_opts, checkpointer=hparams["checkpointer"],
    )
    data = dataio_prep(hparams, condition, brain.device)
    brain.train_pairs = data["train_pairs"]
    brain.target_utterances = data["training_utterances"]["target"]
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    speaker_batches = data["train_pairs"].source_batches
    if speaker_batches is None:
        brain.steps_per_epoch = len(data["train_pairs"]) // (hparams["batch_size"] * world)
    else:
        # Whole batches are dealt out to the processes, padded to a multiple of them.
        brain.steps_per_epoch = -(-len(speaker_batches) // world)
    return brain, hparams, condition, data


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
    """Prepare the condition, train, verify, and export the model (``<output_folder>/model``)."""
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
