"""A trained run as a model folder that SpeechBrain's inference classes load.

Usage::

    python -m local.export results/demo/dann_fbank/1986 [--model_folder DIR]

writes (by default into ``<run folder>/model``) what
``speechbrain.inference.speaker.SpeakerRecognition.from_hparams(source=DIR)``
reads, laid out as SpeechBrain's own speaker models (``spkrec-ecapa-voxceleb``):
an inference ``hyperparams.yaml``, one ``<name>.ckpt`` per module its
``pretrainer`` loads (the front end's trained parameters, the encoder, the
speaker classifier's rows of the source speakers, without those of the target
pseudo-speakers) and the label encoder of the source speakers. The folder
is written whole beside its place and then takes it
(:func:`local.whole_files.staged_folder`): it holds one export, and an
export that fails or is killed leaves the one before it as it was. A run
without a classifier (the GE2E head) exports neither the classifier nor the
label encoder: ``SpeakerRecognition`` embeds and verifies with the encoder
alone. ``train_dann.py`` writes it at the end of every run, after the
evaluation.

The run's operating point goes with it: ``thresholds.csv`` holds the EER
threshold and the EER in percent (``eer_percent``, as in ``summary.csv``) of
each trial list the run's evaluation scored (its
``verification/<list>/scores.txt``; set on those trials, so no held-out
error rate of it), and ``hyperparams.yaml`` the first
list's as ``threshold`` (the source domain's list, where a condition has
one), which the loaded model's ``hparams`` carry, to pass to
``verify_batch(..., threshold=...)`` or to compare the score of
``verify_files`` with: SpeechBrain's own default, 0.25, is no operating
point of any trained model.

A waveform shorter than the run's ``min_embed_seconds`` or longer than its
``max_embed_seconds`` is refused with a message (``LengthGuard`` of
:mod:`local.evaluation.embed`): too short for the encoder's padding, or too
long to embed in bounded memory. The front end and the encoder fill the
``embedding_model`` slot of ``encode_batch`` together
(``FrameLengthEmbedder``), which embeds the waveforms of each length of a
padded batch without the padding, as the recipe embeds them, and in the
precision the run's report embedded in (``eval_precision``).

The modules are defined exactly as the run defined them (the nodes of its
saved ``hyperparams.yaml``, values resolved), so the SSL front end refers to
its SSL model by the hub ID or folder the run used, a folder and the hub
cache by their absolute paths, so that the model loads from any working
directory (on another machine, ``from_hparams`` names them with
``overrides={"frontend": {"source": ..., "save_path": ...}}``). A frozen SSL model is the
one that reference loads, so only the learned layer weights are saved, with
the fingerprint of the files the run was trained with, which the front end
checks when it loads them; a fine-tuned one is saved whole.
"""

import io
import json
import os
import shutil

import pandas as pd
import ruamel.yaml
import torch
from hyperpyyaml import dump_hyperpyyaml, load_hyperpyyaml
from speechbrain.utils.logger import get_logger

from local.cli import command, option
from local.errors import exit_on_bad_input, fail, failing_on_full_disk
from local.evaluation.metrics import eer, eer_threshold
from local.evaluation.report import CHECKPOINT_FILE, read_scores, score_file, scored_checkpoint
from local.evaluation.seed_table import report_settings
from local.model.checkpoints import CompleteCheckpointer, checkpoint_identity
from local.run_folder import (
    SSL_MODEL_KEY,
    check_results_in_place,
    hold_run_folder,
    other_save_folder,
    recorded_settings,
    release_run_folders,
)
from local.settings import training_processes
from local.whole_files import staged_folder

logger = get_logger(__name__)

# The modules of the training hparams that inference needs, as named there
# (the classifier when the run has one).
MODULES = ("frontend", "embedding_model", "classifier")
# The files of a model folder besides its <name>.ckpt.
EXPORT_FILES = ("hyperparams.yaml", "thresholds.csv")

HEADER = """\
# Inference hparams of {model_name}, trained by train_dann.py on the {condition}
# condition (checkpoint {checkpoint}). Load with
#   from speechbrain.inference.speaker import SpeakerRecognition
#   model = SpeakerRecognition.from_hparams(source="<this folder>")
# The modules below are those of the run, with the values it resolved.

"""

WIRING = """
# The EER threshold of the {threshold_list} trial list (thresholds.csv: of every
# list the run scored), set on that list's own trials (on other speakers' its
# error rates are not that EER), an attribute of the loaded model's hparams.
# A trial is accepted when its cosine score is above it:
#   score, _ = model.verify_files(enrol_wav, test_wav)
#   accepted = score > threshold
threshold: {threshold!r}

# EncoderClassifier.encode_batch runs compute_features(wavs), then
# mean_var_norm(features, wav_lens), then embedding_model(features, wav_lens).
# The recipe's front end normalises by itself, and the embedder runs it and
# the encoder on the waveforms of each length of a batch without the padding,
# as the recipe embeds them, so both fill the embedding_model slot (embedder);
# compute_features passes the waveform through, and mean_var_norm refuses a
# waveform shorter or longer than the run's min_embed_seconds and
# max_embed_seconds, each of a batch by its own length: too short for the
# encoder, or too long for bounded memory. The embeddings are those of
# DANNBrain.embed, in the precision the report scored in (--eval_precision), and
# verify_batch's cosine score is local.evaluation.scoring's.
compute_features: !new:torch.nn.Identity
mean_var_norm: !new:local.evaluation.embed.LengthGuard
    shortest: {shortest}
    longest: {longest}
embedder: !new:local.evaluation.embed.FrameLengthEmbedder
    frontend: !ref <frontend>
    encoder: !ref <embedding_model>
    precision: {precision}
{label_encoder}
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedder>
{classifier_module}
# Each loadable is read from <source>/<name>.ckpt.
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        {frontend_part}: !ref <{frontend_ref}>
        embedding_model: !ref <embedding_model>
{classifier_loadables}"""
# The lines of WIRING for a run with a classifier.
CLASSIFIER_WIRING = dict(
    label_encoder="label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder\n",
    classifier_module="    classifier: !ref <classifier>\n",
    classifier_loadables="        classifier: !ref <classifier>\n"
                         "        label_encoder: !ref <label_encoder>\n",
)


def _absolute_ssl_folders(frontend):
    """Name an SSL front end's local model folder and hub cache by absolute paths.

    The run gave them relative to its working directory (``--ssl_source=DIR``,
    ``ssl_cache: pretrained_models``); the model folder is loaded from any.
    A ``source`` that is no folder here is a hub ID, and stays one.
    """
    if "save_path" in frontend:
        frontend["save_path"] = os.path.abspath(frontend["save_path"])
    if os.path.isdir(frontend.get("source", "")):
        frontend["source"] = os.path.abspath(frontend["source"])


def _pin_ssl_model(frontend, settings):
    """Name, in a frozen SSL front end, the SSL model files the run was trained on.

    Its checkpoint holds the layer weights alone: the SSL model is the one
    ``source`` loads, here or on another machine. Given the fingerprint of
    the run's files (its settings record; none before the record held it),
    the front end refuses other files, as an evaluation of the run does.
    """
    digest = (settings or {}).get(SSL_MODEL_KEY)
    if digest is not None and frontend.get("freeze", True):
        frontend["trained_fingerprint"] = digest


def _dumped(name, node):
    """``name: node`` as YAML text, tags kept, without the training file's comments."""
    text = io.StringIO()
    dump_hyperpyyaml({name: _without_comments(node)}, text)
    return text.getvalue()


def _without_comments(node):
    """Drop the comments ruamel keeps with a node (they describe the training file)."""
    if isinstance(node, (ruamel.yaml.comments.CommentedMap, ruamel.yaml.comments.CommentedSeq)):
        node.ca.items.clear()
        node.ca.end = None
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            _without_comments(child)
    return node


def trained_frontend(frontend):
    """The front end's trained parameters: its name in the model folder and its module.

    Arguments
    ---------
    frontend : torch.nn.Module
        A front end of the recipe.

    Returns
    -------
    tuple
        ``("frontend", frontend)``, or ``("layer_sum", frontend.layer_sum)``
        for an SSL front end whose SSL model is frozen (the one its source
        loads, so that it need not be saved again).

    Example
    -------
    >>> from local.model.fbank_frontend import FbankFrontend
    >>> trained_frontend(FbankFrontend(n_mels=40))[0]
    'frontend'
    """
    ssl = getattr(frontend, "ssl", None)
    if ssl is not None and ssl.freeze:
        return "layer_sum", frontend.layer_sum
    return "frontend", frontend


def check_report_checkpoint(run_folder, checkpoint):
    """Refuse thresholds scored with another checkpoint than the one exported.

    A resume that saved a newer checkpoint and stopped before its report
    leaves the report of the checkpoint before it.

    Arguments
    ---------
    run_folder : str
        Output folder of a ``train_dann.py`` run.
    checkpoint : Checkpoint
        The checkpoint exported, compared by its
        :func:`~local.model.checkpoints.checkpoint_identity`: another of the
        same name is another checkpoint.

    Raises
    ------
    ManifestError
        When the report names another checkpoint, or was set aside by an
        evaluation killed while replacing it
        (:func:`~local.run_folder.check_results_in_place`).
    """
    report = os.path.join(run_folder, "verification")
    check_results_in_place(report)
    scored, exported = scored_checkpoint(report), checkpoint_identity(checkpoint)
    if scored is None:
        logger.warning("%s does not name the checkpoint it scored (a report from before "
                       "%s): its thresholds are taken as those of %s", report, CHECKPOINT_FILE,
                       exported)
    elif scored == os.path.basename(checkpoint.path):
        logger.warning("%s names the checkpoint it scored without its save time (a report "
                       "from before it held one), as the latest is named: its thresholds are "
                       "taken as those of %s", report, exported)
    elif scored != exported:
        fail(os.path.join(report, CHECKPOINT_FILE),
             f"the report scored checkpoint {scored}, but the latest is {exported}: its "
             "thresholds are not the exported model's",
             fix="evaluate the run again (python evaluate.py with its hparams and "
                 "overrides), then export it")


def operating_points(run_folder, trial_lists):
    """The EER threshold and the EER of each trial list, from the run's score files.

    Arguments
    ---------
    run_folder : str
        Output folder of a ``train_dann.py`` run that was evaluated.
    trial_lists : list of str
        Names of the trial lists (the condition's ``evaluation`` entries).

    Returns
    -------
    pandas.DataFrame
        Columns ``trial_list, threshold, eer_percent``, in the order given;
        the EER in percent, as ``summary.csv`` gives it.

    Raises
    ------
    ManifestError
        When a list's score file is missing.
    """
    rows = []
    for name in trial_lists:
        path = score_file(os.path.join(run_folder, "verification"), name)
        if not os.path.isfile(path):
            fail(path, f"missing: the operating point of trial list {name!r} comes from it",
                 fix="evaluate the run first (python evaluate.py with its hparams and "
                     "overrides), or name the lists it scored with --trial_lists")
        scores = read_scores(path)
        rows.append({"trial_list": name,
                     "threshold": eer_threshold(scores["score"], scores["label"]),
                     "eer_percent": 100 * eer(scores["score"], scores["label"])})
    return pd.DataFrame(rows)


def scored_precision(run_folder, run):
    """The precision the run's report embedded in, which its thresholds were set on.

    Arguments
    ---------
    run_folder : str
        Output folder of a ``train_dann.py`` run.
    run : dict
        The run's ``hyperparams.yaml``, for a report without a record of its
        settings.

    Returns
    -------
    str
        The report's ``eval_precision`` (``fp32`` for a run from before the setting).
    """
    record = report_settings(run_folder)
    return (record[1] if record else run).get("eval_precision", "fp32")


def condition_trial_lists(run_folder):
    """The names of the trial lists of the condition a run saved (its ``condition.yaml``).

    Arguments
    ---------
    run_folder : str
        Output folder of a ``train_dann.py`` run.

    Returns
    -------
    list of str
        The keys of the condition's ``evaluation``, in order.
    """
    with open(os.path.join(run_folder, "condition.yaml"), encoding="utf-8") as fin:
        return list(ruamel.yaml.YAML().load(fin)["evaluation"])


def check_replaceable(model_folder):
    """Refuse to replace a folder that holds more than an export: the export replaces it whole.

    Arguments
    ---------
    model_folder : str
        Where the model is exported.

    Raises
    ------
    ManifestError
        Naming the entries that no export writes.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "thresholds.csv"), "w").write("trial_list")
    >>> check_replaceable(folder)
    >>> os.mkdir(os.path.join(folder, "save"))
    >>> check_replaceable(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: ...: holds ['save'], which no export writes: ...
    """
    if not os.path.isdir(model_folder):
        return
    others = sorted(name for name in os.listdir(model_folder)
                    if not (name.endswith(".ckpt") or name in EXPORT_FILES))
    if others:
        fail(model_folder, f"holds {others}, which no export writes: an export replaces the "
                           "folder whole",
             fix="pass an empty or new --model_folder, or one an earlier export wrote")


def _run_folder_fix(run_folder, save_folder):
    """The fix for a run folder without a file of a finished run: where the run
    recorded another save_folder (trained with --save_folder), to pass that."""
    recorded = other_save_folder(run_folder, save_folder)
    if recorded:
        return f"pass the run's --save_folder {recorded}, as its hyperparams.yaml records"
    return "pass the output_folder of a run (results/<condition>/<model>/<seed>)"


def export_model(run_folder, model_folder=None, checkpoints_dir=None, trial_lists=None,
                 save_folder=None):
    """Write the model of a run's latest checkpoint in SpeechBrain's inference layout.

    Arguments
    ---------
    run_folder : str
        Output folder of a ``train_dann.py`` run (``hyperparams.yaml`` and
        ``save/`` with its checkpoints and ``label_encoder.txt``).
    model_folder : str, optional
        Where to write (default ``<run_folder>/model``): the export is written
        whole beside it and then takes its place
        (:func:`local.whole_files.staged_folder`), so that it holds one export
        only, and one that fails or is killed leaves the export before it as
        it was. A folder holding anything else is refused
        (:func:`check_replaceable`).
    checkpoints_dir : str, optional
        Where the run's checkpoints are (default ``<run_folder>/save``; a
        ``--debug`` run keeps them in a temporary folder).
    trial_lists : list of str, optional
        The trial lists whose EER thresholds are recorded, the first as the
        model's ``threshold`` (default: those of the run's ``condition.yaml``).
    save_folder : str, optional
        The run's ``save_folder``, with its ``label_encoder.txt`` and, unless
        ``checkpoints_dir`` says otherwise, its checkpoints (default
        ``<run_folder>/save``).

    Returns
    -------
    str
        The model folder.

    Raises
    ------
    ManifestError
        When the run folder has no saved hparams, checkpoint or label encoder,
        or the model folder holds more than an export.
    """
    model_folder = model_folder or os.path.join(run_folder, "model")
    hparams_path = os.path.join(run_folder, "hyperparams.yaml")
    save_folder = save_folder or os.path.join(run_folder, "save")
    label_encoder = os.path.join(save_folder, "label_encoder.txt")
    for needed in (hparams_path, label_encoder, os.path.join(run_folder, "condition.yaml")):
        if not os.path.isfile(needed):
            fail(needed, "missing: this is not the folder of a finished train_dann.py run",
                 fix=_run_folder_fix(run_folder, save_folder))
    with open(hparams_path, encoding="utf-8") as fin:
        run = ruamel.yaml.YAML().load(fin)
    _absolute_ssl_folders(run["frontend"])
    _pin_ssl_model(run["frontend"], recorded_settings(save_folder))
    # A model file removes a module of its base by setting it to null (GE2E: no classifier).
    definitions = "\n".join(_dumped(name, run[name]) for name in MODULES
                            if run.get(name) is not None)
    modules = load_hyperpyyaml(definitions)
    checkpoints_dir = checkpoints_dir or save_folder
    checkpoint = CompleteCheckpointer(checkpoints_dir, recoverables=modules).recover_if_possible()
    if checkpoint is None:
        fail(checkpoints_dir, "no checkpoint to export",
             fix="train the system first (python train_dann.py with the run's hparams)")

    check_report_checkpoint(run_folder, checkpoint)
    points = operating_points(run_folder, trial_lists or condition_trial_lists(run_folder))
    part, frontend = trained_frontend(modules["frontend"])
    trained = {part: frontend, **{name: module for name, module in modules.items()
                                  if name != "frontend"}}
    classifier = "classifier" in modules
    header = HEADER.format(model_name=run["model_name"], condition=run["condition"],
                           checkpoint=os.path.basename(checkpoint.path))
    wiring = WIRING.format(
        threshold_list=points["trial_list"][0], threshold=float(points["threshold"][0]),
        frontend_part=part, frontend_ref="frontend" if part == "frontend" else f"frontend.{part}",
        # null (no limit) for a run from before the settings existed.
        shortest=json.dumps(run.get("min_embed_seconds")),
        longest=json.dumps(run.get("max_embed_seconds")),
        precision=scored_precision(run_folder, run),
        **(CLASSIFIER_WIRING if classifier else dict.fromkeys(CLASSIFIER_WIRING, "")))
    check_replaceable(model_folder)
    # A full disk is named before the staged model is removed.
    with staged_folder(model_folder) as staged, failing_on_full_disk(
            model_folder, "the exported model",
            "and export the run again (python -m local.export); the model exported before it "
            "and the run are intact"):
        for name, module in trained.items():
            state = module.state_dict()
            if name == "classifier":
                # The rows of the label encoder's source speakers; the target
                # pseudo-speakers' rows after them have no label to decode. A
                # copy: torch.save writes the whole storage of a view.
                state["weight"] = state["weight"][:run["n_speakers"]].clone()
            torch.save(state, os.path.join(staged, f"{name}.ckpt"))
        if classifier:
            shutil.copy(label_encoder, os.path.join(staged, "label_encoder.ckpt"))
        points.to_csv(os.path.join(staged, "thresholds.csv"), index=False)
        with open(os.path.join(staged, "hyperparams.yaml"), "w", encoding="utf-8") as fout:
            fout.write(header + definitions + wiring)
    return model_folder


def _print_export(run_folder, model_folder, trial_lists, save_folder):
    """The command line's :func:`export_model`: print where the model folder is.

    It holds the locks of the run folder and of its checkpoints' folder, as
    a run does, so that a run still training or evaluating there, or another
    export, is refused rather than exported half-way (a folder that does not
    exist is left to ``export_model`` to name, not created). Under torchrun,
    every process is refused: each would export the same run into the same
    folder, the first taking the lock and the others refused as another run.
    """
    processes = training_processes()
    if processes > 1:
        fail(run_folder, f"exported by {processes} processes at once (torchrun "
                         "--nproc_per_node), each into the same model folder",
             fix="run python -m local.export in one process, without torchrun")
    for folder in (run_folder, save_folder):
        if folder and os.path.isdir(folder):
            hold_run_folder(folder)
    try:
        print(export_model(run_folder, model_folder, trial_lists=trial_lists,
                           save_folder=save_folder))
    finally:
        release_run_folders()


main = command(
    _print_export, __doc__,
    option("run_folder", help="output folder of a train_dann.py run"),
    option("--model_folder", help="where to write (default <run_folder>/model)"),
    option("--trial_lists", nargs="+",
           help="the scored trial lists whose EER thresholds to record, the "
                "model's own first (default: those of the run's condition.yaml)"),
    option("--save_folder", help="the run's --save_folder (default <run_folder>/save)"),
)


if __name__ == "__main__":
    exit_on_bad_input(main)
