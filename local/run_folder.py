"""A run's folder as a record: one writer at a time, and a resume on the run's own settings.

The lock is a file in the folder (``run.lock``: the holder's PID, host and
start time) with an exclusive ``flock`` on it, which the kernel drops when the
holder's process ends, however it ends. A lock file whose ``flock`` is free
was left by a run that ended without removing it (a kill): a run on the same
host takes it over with a warning. One left by another host is refused, as
nothing here can tell whether that run still goes on.

The settings record (``<save_folder>/run_settings.json``) is what
:func:`local.settings.run_settings` gives, with the hashes of the
condition's training manifests (:func:`data_settings`), of the noise and
impulse-response CSVs a run augments with and, for an SSL front
end, the digest of the SSL model's files (``ssl_model_sha256``: a frozen
model is not in the checkpoints). A command on a folder
with a checkpoint (a resume, ``evaluate.py``) compares its settings with the
record before it writes anything, and refuses any difference but those of
:data:`FREE_KEYS` and of the keys it is told to accept (``allow_changed``).
``evaluate.py`` accepts other training data, with a warning: they change the
cohort and the back-ends, not the weights. A run records its settings when
it starts, but a resume that changes them does so with its first
checkpoint, so that one that stops before it leaves the record of the
checkpoints there are.

A folder holds one run: :func:`check_one_run` refuses a training run that
would write over the results of another, and a ``--debug`` smoke test into a
folder that holds a run; :func:`check_own_checkpoints` a resume or an
evaluation of another run's checkpoints into it.
"""

import atexit
import datetime
import difflib
import json
import logging
import os
import socket

from local.errors import fail, failing_on_full_disk
from local.provenance import file_sha256, short_digest
from local.settings import PROCESSES_KEY, TRAINING_RUN_OPTIONS, plain_values
from local.whole_files import (
    release_lock,
    set_aside,
    taken_lock,
    written_together,
    written_whole,
)

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
SETTINGS_RECORD = "run_settings.json"
# The settings that the trained weights never depend on: where files go, how
# data is loaded and checked (speaker overlap), and how the embeddings are scored. Any other
# setting is part of what a checkpoint is.
FREE_KEYS = frozenset({
    "output_folder", "save_folder", "train_log", "ssl_cache", "ssl_features_folder",
    "num_workers", "check_audio", "ssl_gradient_checkpointing", "allow_changed",
    "eval_batch_size", "score_norm", "cohort_domain", "cohort_size", "cohort_top_k",
    "backend_adaptation", "backend", "lda_dim", "plda_within_scale", "plda_between_scale",
    "backend_max_utterances", "det_systems", "allow_speaker_overlap",
})
# Free for an evaluation only: in training they choose the target utterances
# that the pseudo-labels embed, and so the speaker head's classes; and the
# run options of the training, which an evaluation does not record.
EVALUATION_FREE_KEYS = ("min_embed_seconds", "max_embed_seconds", *TRAINING_RUN_OPTIONS,
                        PROCESSES_KEY)
# What a run writes into its output folder after training: a folder that has
# one of them, or one set aside by a writer killed while replacing it
# (local.whole_files.set_aside), holds a run's results.
RESULTS = ("verification", "model")
# The command that writes each of them again, putting back what was set aside first.
RESULTS_WRITERS = {
    "verification": "evaluate the run again (python evaluate.py with its hparams and overrides)",
    "model": "export the run again (python -m local.export)",
}
# The condition's files that the trained weights depend on: the record has
# the hash of each as the setting <file>_sha256. The evaluation's manifests
# and trial lists are only scored.
TRAINING_DATA = ("source_train", "target_train")
# The settings that are the hashes of the augmentation's data files
# (--augment=True; local.model.augmentation.DATA_KEYS), of each a run augments
# with; an evaluation does not read them.
AUGMENTATION_DATA = ("noise_csv_sha256", "rir_csv_sha256")
PROVENANCE = "provenance.json"
# The setting that is the digest of an SSL front end's model files
# (local.model.ssl_frontend.ssl_fingerprint); records from before it lack it.
SSL_MODEL_KEY = "ssl_model_sha256"
# The kinds of a changed setting: how the checkpoints were trained, and what to
# pass instead (a digest is no option: its files are what can be passed).
CHANGE_KINDS = (
    ("setting", "with other settings", "the run's values of these keys"),
    ("data", "on other data", "the data files the run was trained on"),
    ("model", "with other SSL model files",
     "the SSL model files the run was trained with (ssl_source)"),
)
# The locks this process holds: {real path of the folder: open lock file}.
_HELD = {}
_ABSENT = object()


def hold_run_folder(folder):
    """Take the lock of a run folder for this process, until :func:`release_run_folders` or exit.

    A second call for a folder this process holds does nothing.

    Arguments
    ---------
    folder : str
        The run's output folder, made if absent.

    Raises
    ------
    ManifestError
        When another process holds the lock, naming it.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> hold_run_folder(folder)
    >>> holder(os.path.join(folder, LOCK_FILE))["pid"] == os.getpid()
    True
    >>> release_run_folders()
    >>> os.path.exists(os.path.join(folder, LOCK_FILE))
    False
    """
    key = os.path.realpath(folder)
    if key in _HELD:
        return
    path = os.path.join(folder, LOCK_FILE)
    with failing_on_full_disk(folder, f"the lock file {LOCK_FILE}",
                              "and run the command again, or give it a folder on another "
                              "disk; the files already in the folder are as they were"):
        os.makedirs(folder, exist_ok=True)
        handle = _locked(path, folder)
        previous = holder(path)
        if previous and previous.get("host") != socket.gethostname():
            handle.close()
            fail(folder, f"is locked by {_describe(previous)} and whether that run still goes "
                         "on cannot be checked from this host",
                 fix=f"remove {path} if that run has ended, or pass another --output_folder")
        if previous:
            logger.warning("Took over the lock of %s which ended without releasing it (%s)",
                           _describe(previous), path)
        try:
            handle.seek(0)
            handle.truncate()
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now().astimezone().isoformat(
                           timespec="seconds")}, handle)
            handle.flush()
        except OSError:
            release_lock(path, handle)
            raise
    _HELD[key] = handle


def _locked(path, folder):
    """The lock file, open with its ``flock`` taken, or a failure naming its holder."""
    handle = taken_lock(path)
    if handle is None:
        fail(folder, f"another run writes into this folder: {_describe(holder(path))} "
                     f"holds {path}",
             fix="wait until that run ends, or pass another --output_folder")
    return handle


def holder(path):
    """``{pid, host, started}`` of a lock file, or None when it is empty or unreadable.

    Arguments
    ---------
    path : str
        A lock file.

    Returns
    -------
    dict or None
        What its holder wrote.
    """
    try:
        with open(path, encoding="utf-8") as lock:
            return json.load(lock)
    except (OSError, ValueError):
        return None


def _describe(record):
    if not record:
        return "a run"
    return f"the run of PID {record['pid']} on {record['host']}, started {record['started']},"


def release_run_folders():
    """Remove and release every lock that this process holds (at the end of a command, and at exit)."""
    while _HELD:
        folder, handle = _HELD.popitem()
        release_lock(os.path.join(folder, LOCK_FILE), handle)


atexit.register(release_run_folders)


def recorded_settings(save_folder):
    """The settings record of a run, or None when it has none.

    Arguments
    ---------
    save_folder : str
        The run's checkpoint folder.

    Returns
    -------
    dict or None
        As :func:`record_settings` wrote it.
    """
    path = os.path.join(save_folder, SETTINGS_RECORD)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as record:
        return json.load(record)


def record_settings(save_folder, settings):
    """Write the settings record of a run (:func:`local.settings.run_settings`).

    Arguments
    ---------
    save_folder : str
        The run's checkpoint folder.
    settings : dict
        The run's settings.
    """
    os.makedirs(save_folder, exist_ok=True)
    path = os.path.join(save_folder, SETTINGS_RECORD)
    with written_whole(path, encoding="utf-8") as record:
        json.dump(settings, record, indent=1)


def changed_settings(recorded, settings, allowed, record_path, files=None):
    """The settings that differ from the run's record, once every difference is accepted.

    Arguments
    ---------
    recorded : dict
        The run's record.
    settings : dict
        The settings of this command.
    allowed : list of str or str
        Keys whose change is accepted (``allow_changed``).
    record_path : str
        The record's file, for the messages.
    files : dict, optional
        ``{key: path}`` of the settings that are a data file's hash
        (:func:`data_settings`), named in the messages.

    Returns
    -------
    dict
        ``{key: (old, new)}`` of the accepted changes.

    Raises
    ------
    ManifestError
        Listing every change not accepted, with its old and new value; or
        naming an ``allow_changed`` entry that neither the record nor the command has.

    Example
    -------
    >>> changed_settings({"lr": 0.1, "seed": 1}, {"lr": 0.1, "seed": 2}, ["seed"], "r.json")
    {'seed': (1, 2)}
    >>> changed_settings({"lr": 0.1, "seed": 1}, {"lr": 0.2, "seed": 2}, [], "r.json")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: r.json: the run's checkpoints were trained with other settings:
      lr: 0.1 -> 0.2
      seed: 1 -> 2
    Fix: pass the run's values of these keys, or train into another --output_folder; where a change is safe for this run, accept it with --allow_changed=[lr, seed]
    >>> changed_settings({"source_train_sha256": "ab12"}, {"source_train_sha256": "cd34"}, [],
    ...                  "r.json", {"source_train_sha256": "data/source_train.csv"})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: r.json: the run's checkpoints were trained on other data:
      source_train_sha256 (data/source_train.csv): "ab12" -> "cd34"
    Fix: pass the data files the run was trained on, or train into another --output_folder; where a change is safe for this run, accept it with --allow_changed=[source_train_sha256]
    """
    allowed = _key_list(allowed)
    # A setting the run had and the command has not is a change to accept too.
    names = {**recorded, **settings}
    unknown = [key for key in allowed if key not in names]
    if unknown:
        close = {key: difflib.get_close_matches(key, names, n=1) for key in unknown}
        fail(record_path, f"--allow_changed names {unknown}, which are no settings of the run",
             fix="; ".join(f"{key}: did you mean {match[0]}?" if match else f"{key}: remove it"
                           for key, match in close.items()))
    changes = {key: (recorded.get(key, _ABSENT), settings.get(key, _ABSENT))
               for key in dict.fromkeys([*recorded, *settings])
               if key not in FREE_KEYS
               and recorded.get(key, _ABSENT) != settings.get(key, _ABSENT)}
    refused = [key for key in changes if key not in allowed]
    if refused:
        files = files or {}
        listed = "\n".join(f"  {_named(key, files)}: {_shown(changes[key][0])} -> "
                           f"{_shown(changes[key][1])}" for key in refused)
        kinds = {_change_kind(key, files) for key in refused}
        trained = " and ".join(how for kind, how, _ in CHANGE_KINDS if kind in kinds)
        passed = " and ".join(what for kind, _, what in CHANGE_KINDS if kind in kinds)
        fail(record_path, f"the run's checkpoints were trained {trained}:\n{listed}",
             fix=f"pass {passed}, or train into another --output_folder; "
                 "where a change is safe for this run, accept it with "
                 f"--allow_changed=[{', '.join(refused)}]")
    return changes


def _key_list(allowed):
    """``allow_changed`` as a list: one key may be given alone, none as None."""
    return [allowed] if isinstance(allowed, str) else list(allowed or [])


def _change_kind(key, files):
    """Which of :data:`CHANGE_KINDS` a changed ``key`` is."""
    return "data" if key in files else "model" if key == SSL_MODEL_KEY else "setting"


def _named(key, files):
    if key == PROCESSES_KEY:
        return f"{key} (torchrun --nproc_per_node)"
    return f"{key} ({files[key]})" if key in files else key


def _shown(value):
    return "(absent)" if value is _ABSENT else json.dumps(value)


def data_settings(condition):
    """The settings of a run's training data: the hash of each file of :data:`TRAINING_DATA`.

    Arguments
    ---------
    condition : dict
        Condition hparams (``source_train``, ``target_train``).

    Returns
    -------
    dict
        ``{"<file>_sha256": hex digest}``, such as ``source_train_sha256``.
    """
    return {f"{role}_sha256": file_sha256(condition[role]) for role in TRAINING_DATA}


def _with_recorded_data(recorded, settings, output_folder, record_path):
    """The record, with the training data's hashes that a record written before they were has not.

    They are taken from the run's ``provenance.json``, written at the start
    of its training; where it has none, the data are not checked.
    """
    missing = [role for role in TRAINING_DATA if f"{role}_sha256" not in recorded]
    if not missing:
        return recorded
    path = os.path.join(output_folder, PROVENANCE)
    try:
        with open(path, encoding="utf-8") as provenance:
            data = json.load(provenance)["data"]
    except (OSError, ValueError, KeyError, TypeError):
        data = {}
    recorded = dict(recorded)
    for role in missing:
        key = f"{role}_sha256"
        if isinstance(data.get(role), dict) and "sha256" in data[role]:
            recorded[key] = data[role]["sha256"]
        else:
            logger.warning("%s records no hash of %s, nor does %s: its training data are not "
                           "checked", record_path, role, path)
            recorded[key] = settings[key]
    return recorded


def trained_manifests(output_folder, settings):
    """The training manifests of a run that an evaluation on other training data does not read.

    An evaluation may draw its cohort and back-ends from other training
    manifests than the run's, but its trial lists must still share no speaker
    with what the weights were trained on: the manifests at the paths the
    run's ``provenance.json`` records, when they still have the recorded
    hash. One that has changed since, or a run without the record, cannot be
    checked, and a warning says so.

    Arguments
    ---------
    output_folder : str
        The run's results folder.
    settings : dict
        The evaluation's settings, with the hash of each of its training
        manifests (:func:`data_settings`).

    Returns
    -------
    list of str
        Paths of the run's training manifests whose content is none of the
        evaluation's.
    """
    path = os.path.join(output_folder, PROVENANCE)
    try:
        with open(path, encoding="utf-8") as provenance:
            data = dict(json.load(provenance)["data"])
    except (OSError, ValueError, KeyError, TypeError):
        data = {}
    read = {settings[f"{role}_sha256"] for role in TRAINING_DATA}
    manifests = []
    for role in TRAINING_DATA:
        entry = data.get(role)
        if not (isinstance(entry, dict) and {"path", "sha256"} <= set(entry)):
            logger.warning("%s records no %s: the trial lists are not checked against the "
                           "speakers the run was trained on", path, role)
        elif entry["sha256"] in read:
            continue
        elif os.path.isfile(entry["path"]) and file_sha256(entry["path"]) == entry["sha256"]:
            manifests.append(entry["path"])
        else:
            logger.warning("The run's %s, %s, has changed or gone since it was trained: the "
                           "trial lists are not checked against the speakers the run was "
                           "trained on", role, entry["path"])
    return manifests


def model_settings(frontend):
    """``{SSL_MODEL_KEY: digest}`` of a front end that loads an SSL model, else ``{}``.

    Arguments
    ---------
    frontend : torch.nn.Module
        The run's front end (an SSL one has a ``fingerprint``).

    Returns
    -------
    dict
        The setting, or none.
    """
    fingerprint = getattr(frontend, "fingerprint", None)
    return {} if fingerprint is None else {SSL_MODEL_KEY: fingerprint}


def _with_recorded_model(recorded, settings, record_path):
    """The record, with the SSL model's digest of ``settings`` where one written before it has none."""
    if SSL_MODEL_KEY in recorded or SSL_MODEL_KEY not in settings:
        return recorded
    logger.warning("%s records no digest of the SSL model's files: that the resume loads the "
                   "run's SSL model is not checked", record_path)
    return {**recorded, SSL_MODEL_KEY: settings[SSL_MODEL_KEY]}


def _with_recorded_augmentation(recorded, settings):
    """The record, read as without augmentation where it was written before ``augment`` was.

    Such a run trained on clean crops: ``augment: False`` and no noise or
    impulse responses, its ``wav_augment`` unused whatever it is.
    """
    if "augment" in recorded or "augment" not in settings:
        return recorded
    before = {"augment": False, "noise_csv": None, "rir_csv": None,
              "wav_augment": settings.get("wav_augment")}
    return {**{key: value for key, value in before.items() if key in settings}, **recorded}


def _with_recorded_augmentation_data(recorded, settings, record_path):
    """The record, whose augmentation data's hashes are compared where ``settings`` has them too.

    Where one of them augments without that file, the change of its setting
    (``noise_csv``, ``augment``) is the difference. A record of the same
    file written before its hash was recorded is not checked for it, with a
    warning.
    """
    recorded = dict(recorded)
    for key in AUGMENTATION_DATA:
        if key not in settings:
            recorded.pop(key, None)
        elif key not in recorded:
            option = key.removesuffix("_sha256")
            if recorded.get(option) == settings.get(option):
                logger.warning("%s records no hash of %s: that its content is the run's is not "
                               "checked", record_path, option)
            recorded[key] = settings[key]
    return recorded


def _with_recorded_run_options(recorded, settings, record_path):
    """The record, with this command's run options and processes where one written before has none.

    Those are not checked, with a warning.
    """
    missing = [key for key in (*TRAINING_RUN_OPTIONS, PROCESSES_KEY)
               if key in settings and key not in recorded]
    if missing:
        logger.warning("%s records no %s: their values are not checked", record_path,
                       ", ".join(missing))
    return {**{key: settings[key] for key in missing}, **recorded}


def accept_settings(hparams, settings, training, condition, augmentation=None):
    """Check a command's settings and training data with its run's record.

    Only a folder with a checkpoint is checked: a run that stopped before its
    first checkpoint starts again with any settings. A checkpoint that this
    model file's modules cannot load (another model file's) counts: the
    difference is named, rather than the checkpoints taken for absent. A record written before
    the training data's hashes were recorded is compared with those of the
    run's ``provenance.json``; one written before ``augment`` as a run
    without augmentation; one written before the SSL model's digest
    (:func:`model_settings`) was recorded is not checked for it, with a
    warning. A training run compares the hashes of the noise and
    impulse-response CSVs it augments with too
    (:func:`_with_recorded_augmentation_data`). An evaluation accepts other
    training data, with a warning: they change the cohort and the back-ends,
    not the weights; it reads no augmentation data; another SSL model
    changes the weights and is refused, as by a resume.

    Arguments
    ---------
    hparams : dict
        The loaded model hparams (``save_folder``, ``output_folder``,
        ``checkpointer``, ``allow_changed``, ``frontend``).
    settings : dict
        The command's settings (:func:`local.settings.run_settings`).
    training : bool
        Whether the command trains (and so records the settings it accepts).
    condition : dict
        Condition hparams: the files of :data:`TRAINING_DATA`, whose hashes
        are compared and recorded with the settings (:func:`data_settings`).
    augmentation : dict, optional
        ``{key: path}`` of the augmentation's data files of a training run
        (:func:`local.model.augmentation.data_files`), whose hashes are
        compared and recorded as ``<key>_sha256`` (:data:`AUGMENTATION_DATA`).

    Returns
    -------
    tuple
        ``(settings, changes)``: the settings that a training run records
        (:func:`record_settings`), ``settings`` with the training data's
        hashes (and, in training, the augmentation data's) and the SSL
        model's digest; and ``{key: (old, new)}`` of the accepted changes, as
        :func:`changed_settings`.
    """
    save_folder = hparams["save_folder"]
    record_path = os.path.join(save_folder, SETTINGS_RECORD)
    recorded = recorded_settings(save_folder)
    augmentation = {f"{key}_sha256": path for key, path in (augmentation or {}).items()}
    settings = {**settings, **data_settings(condition),
                **{key: file_sha256(path) for key, path in augmentation.items()},
                **model_settings(hparams["frontend"])}
    files = {**{f"{role}_sha256": condition[role] for role in TRAINING_DATA}, **augmentation}
    allowed = _key_list(hparams["allow_changed"])
    changes = {}
    if hparams["checkpointer"].holds_checkpoints():
        if recorded is None:
            logger.warning("%s has checkpoints but no %s: its settings are not checked",
                           save_folder, SETTINGS_RECORD)
        else:
            recorded = _with_recorded_data(recorded, settings, hparams["output_folder"],
                                           record_path)
            recorded = _with_recorded_model(recorded, settings, record_path)
            recorded = _with_recorded_augmentation(recorded, settings)
            recorded = _with_recorded_augmentation_data(recorded, settings, record_path)
            if training:
                recorded = _with_recorded_run_options(recorded, settings, record_path)
            changes = changed_settings(
                recorded, settings,
                allowed if training else [*allowed, *files, *EVALUATION_FREE_KEYS],
                record_path, files)
    for key, (old, new) in changes.items():
        if key in files and not training:
            logger.warning("Training data differ from the run's: %s (%s): %s -> %s; the cohort "
                           "and the back-ends are drawn from them", key, files[key],
                           _shown(old), _shown(new))
        elif key not in EVALUATION_FREE_KEYS or training:
            logger.warning("Setting changed from the run's, as allowed: %s: %s -> %s",
                           _named(key, files), _shown(old), _shown(new))
    return settings, changes


def embedding_key(settings):
    """A digest of the settings that a checkpoint's embeddings may depend on, for cache names.

    Every setting but those the weights never depend on (:data:`FREE_KEYS`),
    those that only choose which utterances are embedded or how a run trains
    (:data:`EVALUATION_FREE_KEYS`) and the training and augmentation data's hashes: the
    model's definition, with any change that ``--allow_changed`` accepted,
    and the SSL model's digest.

    Arguments
    ---------
    settings : dict
        As :func:`accept_settings` returns them.

    Returns
    -------
    str
        Their :func:`~local.provenance.short_digest`.

    Example
    -------
    >>> settings = {"emb_dim": 32, "score_norm": None, "source_train_sha256": "ab12"}
    >>> key = embedding_key(settings)
    >>> key == embedding_key({**settings, "score_norm": "snorm", "source_train_sha256": "cd34"})
    True
    >>> key == embedding_key({**settings, "emb_dim": 64})
    False
    """
    ignored = {*FREE_KEYS, *EVALUATION_FREE_KEYS, *AUGMENTATION_DATA,
               *(f"{role}_sha256" for role in TRAINING_DATA)}
    kept = {key: value for key, value in settings.items() if key not in ignored}
    return short_digest(kept)


def check_one_run(hparams, training, debug=False):
    """Refuse a command that would write over the results of a run its checkpoints are not of.

    A ``--debug`` smoke test trains a few batches from scratch (SpeechBrain
    keeps its checkpoints in a temporary folder), so it is refused into a
    folder that holds a run, and ``evaluate.py`` refuses it: it would find no
    checkpoint to verify. A training run whose ``save_folder`` has no
    checkpoint starts anew, so it is refused into a folder that holds the
    results (:func:`held_results`) of a run, or whose ``hyperparams.yaml`` keeps
    that run's checkpoints in another ``save_folder``, one with checkpoints
    (as ``--save_folder`` pointed elsewhere would do).

    Arguments
    ---------
    hparams : dict
        The loaded model hparams (``output_folder``, ``save_folder``, ``checkpointer``).
    training : bool
        Whether the command trains.
    debug : bool
        SpeechBrain's ``--debug``.

    Raises
    ------
    ManifestError
        Naming the folder and what it holds.
    """
    output, save_folder = hparams["output_folder"], hparams["save_folder"]
    resumes = bool(hparams["checkpointer"].list_checkpoints())
    results = held_results(output)
    if debug and not training:
        fail("--debug", "evaluate.py verifies the checkpoints of a trained run, which "
                        "SpeechBrain's debug mode replaces with a temporary folder",
             fix="leave out --debug")
    if debug and (resumes or results):
        fail(output, "holds a run, whose results a --debug smoke test (a few batches trained "
                     "from scratch) would replace",
             fix="pass --output_folder= a new folder for the smoke test")
    if not training or resumes:
        return
    if results:
        fail(output, f"holds the results ({', '.join(results)}) of a run whose checkpoints are "
                     f"not in {save_folder}: a new run would replace them",
             fix="train into another --output_folder, pass the --save_folder of that run, or "
                 f"remove {output} if its results are not needed (those of a --debug smoke "
                 "test, whose checkpoints were temporary)")
    other = other_save_folder(output, save_folder)
    if other and _holds_checkpoints(other):
        fail(output, f"holds a run whose checkpoints are in {other}, not in {save_folder}: a "
                     "new run would replace its record",
             fix=f"pass --save_folder={other} to resume it, or train into another "
                 "--output_folder")


def check_own_checkpoints(output, save_folder):
    """Refuse the checkpoints of one run for the folder of another.

    A resume or an evaluation writes its record and report into ``output``
    as those of the checkpoints it loads from ``save_folder``. Where the
    ``hyperparams.yaml`` of ``output`` keeps its run's checkpoints in
    another folder, those of ``save_folder`` are another run's when that
    folder holds checkpoints and ``save_folder`` lies outside ``output`` (a
    run folder copied whole names the original's and has its own in
    ``<output>/save``), or when the folder that holds ``save_folder`` is a
    run's folder whose ``hyperparams.yaml`` names it. Checkpoints moved
    away, whose recorded folder holds none, are the run's; a folder that
    holds no run yet may take any run's.

    Arguments
    ---------
    output : str
        The command's output folder.
    save_folder : str
        The command's checkpoint folder.

    Raises
    ------
    ManifestError
        Naming both folders and the fix.

    Example
    -------
    >>> import tempfile
    >>> runs = [tempfile.mkdtemp() for _ in range(2)]
    >>> for run in runs:
    ...     os.makedirs(os.path.join(run, "save", "CKPT+1"))
    ...     with open(os.path.join(run, "hyperparams.yaml"), "w") as record:
    ...         _ = record.write(f"save_folder: {os.path.join(run, 'save')}")
    >>> check_own_checkpoints(runs[0], os.path.join(runs[0], "save"))
    >>> check_own_checkpoints(runs[0], os.path.join(runs[1], "save"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: ...: holds the run whose checkpoints its hyperparams.yaml keeps in .../save, not in .../save, ...
    """
    recorded = other_save_folder(output, save_folder)
    owner = os.path.dirname(os.path.realpath(save_folder))
    if recorded is None or not _holds_checkpoints(save_folder) or \
            owner == os.path.realpath(output):
        return
    claimed = os.path.isfile(os.path.join(owner, "hyperparams.yaml")) and \
        other_save_folder(owner, save_folder) is None
    if not (claimed or _holds_checkpoints(recorded)):
        return
    output_fix = f"--output_folder={owner}" if claimed else "the --output_folder"
    fail(output, f"holds the run whose checkpoints its hyperparams.yaml keeps in {recorded}, not "
                 f"in {save_folder}{', those of the run in ' + owner if claimed else ''}: a "
                 "resume or an evaluation would write the record and report of another run's "
                 "checkpoints here as this run's",
         fix=f"pass --save_folder={recorded} for the run of {output}, or {output_fix} for the "
             f"run whose checkpoints are in {save_folder}")


def held_results(output):
    """The results (:data:`RESULTS`) that a run folder holds, each by its name there.

    A results folder that a writer killed while replacing it left set aside
    (:func:`local.whole_files.set_aside`) is still the run's: the next writer
    of it puts it back.

    Arguments
    ---------
    output : str
        A run's output folder.

    Returns
    -------
    list of str
        ``verification`` or ``verification.previous``, ``model`` or ``model.previous``,
        of those there.

    Example
    -------
    >>> import tempfile
    >>> output = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(output, "verification.previous"))
    >>> held_results(output)
    ['verification.previous']
    """
    held = []
    for name in RESULTS:
        folder = os.path.join(output, name)
        there = [path for path in (folder, set_aside(folder)) if os.path.exists(path)]
        if there:
            held.append(os.path.basename(there[0]))
    return held


def check_results_in_place(path):
    """Refuse to read ``path`` in a run's results that a writer killed while replacing them set aside.

    Between the two renames of :func:`local.whole_files.staged_folder`, a
    run's ``verification/`` (or ``model/``) is absent and its earlier
    results are whole in ``verification.previous``: a reader told only that
    ``path`` is missing would take them for lost.

    Arguments
    ---------
    path : str
        A path in a run's results, or the results folder itself
        (``<run>/verification/summary.csv``, ``<run>/verification``).

    Raises
    ------
    ManifestError
        Naming the set-aside folder and how to get it back, where ``path``
        lies in a results folder that is absent and set aside.

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> check_results_in_place(os.path.join(run, "verification", "summary.csv"))
    >>> os.makedirs(os.path.join(run, "verification.previous"))
    >>> check_results_in_place(os.path.join(run, "verification", "summary.csv"))
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: ...verification.previous: holds the run's earlier results, set aside by a command killed while it replaced ...verification, which is absent
    Fix: evaluate the run again (python evaluate.py with its hparams and overrides), which puts them back before it writes its own, or rename ...verification.previous to ...verification to read them as they were
    """
    folder = os.path.normpath(path)
    while folder and os.path.basename(folder) not in RESULTS:
        parent = os.path.dirname(folder)
        folder = parent if parent != folder else ""
    previous = folder and set_aside(folder)
    if not folder or os.path.isdir(folder) or not os.path.isdir(previous):
        return
    fail(previous, "holds the run's earlier results, set aside by a command killed while it "
                   f"replaced {folder}, which is absent",
         fix=f"{RESULTS_WRITERS[os.path.basename(folder)]}, which puts them back before it "
             f"writes its own, or rename {previous} to {folder} to read them as they were")


def other_save_folder(output, save_folder):
    """The ``save_folder`` that a run folder's ``hyperparams.yaml`` names, where it is not ``save_folder``.

    Arguments
    ---------
    output : str
        A run's output folder.
    save_folder : str
        The save folder a command was given.

    Returns
    -------
    str or None
        The recorded ``save_folder`` of a run trained with another one; None
        where the record names ``save_folder``, or none.
    """
    path = os.path.join(output, "hyperparams.yaml")
    if not os.path.isfile(path):
        return None
    value = plain_values(path).get("save_folder")
    if not isinstance(value, str) or os.path.realpath(value) == os.path.realpath(save_folder):
        return None
    return value


def _holds_checkpoints(folder):
    """Whether ``folder`` holds a checkpoint (``CKPT+...``)."""
    try:
        return any(name.startswith("CKPT+") for name in os.listdir(folder))
    except OSError:
        return False


def record_run(save_folder, settings, write_records, output_folder):
    """Write a training run's record: its settings (:func:`record_settings`) and settings files.

    Arguments
    ---------
    save_folder : str
        The run's checkpoint folder.
    settings : dict
        As :func:`accept_settings` returns them.
    write_records : callable
        ``write_records(output_folder)`` writes ``hyperparams.yaml``,
        ``condition.yaml`` and ``provenance.json``.
    output_folder : str
        The run's folder.
    """
    # Together: a full disk while one is written leaves the record of the
    # settings the checkpoints were trained with, not new settings beside them.
    with written_together(), failing_on_full_disk(
            output_folder, "the run's record (hyperparams.yaml, condition.yaml, provenance.json "
                           f"and {os.path.join(save_folder, SETTINGS_RECORD)})",
            "and run the command again; the record before it and the checkpoints are as they "
            "were"):
        record_settings(save_folder, settings)
        write_records(output_folder)
