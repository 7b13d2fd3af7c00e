"""A run's folder as a record: one writer at a time, and a resume on the run's own settings.

The lock is a file in the folder (``run.lock``: the holder's PID, host and
start time) with an exclusive ``flock`` on it, which the kernel drops when the
holder's process ends, however it ends. A lock file whose ``flock`` is free
was left by a run that ended without removing it (a kill): a run on the same
host takes it over with a warning. One left by another host is refused, as
nothing here can tell whether that run still goes on.

The settings record (``<save_folder>/run_settings.json``) is what
:func:`local.settings.run_settings` gives at the start of a run. A command on
a folder with a checkpoint (a resume, ``evaluate.py``) compares its settings
with the record before it writes anything, and refuses any difference but
those of :data:`FREE_KEYS` and of the keys it is told to accept
(``allow_changed``).
"""

import atexit
import contextlib
import datetime
import difflib
import fcntl
import json
import logging
import os
import socket

from local.errors import fail
from local.whole_files import written_whole

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
SETTINGS_RECORD = "run_settings.json"
# The settings that the trained weights never depend on: where files go, how
# data is loaded and checked (lengths, speaker overlap), and how the embeddings are scored. Any other
# setting is part of what a checkpoint is.
FREE_KEYS = frozenset({
    "output_folder", "save_folder", "train_log", "ssl_cache", "ssl_features_folder",
    "num_workers", "check_audio", "ssl_gradient_checkpointing", "allow_changed",
    "eval_batch_size", "score_norm", "cohort_domain", "cohort_size", "cohort_top_k",
    "backend_adaptation", "backend", "lda_dim", "plda_within_scale", "plda_between_scale",
    "backend_max_utterances", "det_systems", "min_embed_seconds", "max_embed_seconds",
    "allow_speaker_overlap",
})
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
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    handle = _locked(path, folder)
    previous = holder(path)
    if previous and previous.get("host") != socket.gethostname():
        handle.close()
        fail(folder, f"is locked by {_describe(previous)}, and whether that run still goes on "
                     "cannot be checked from this host",
             fix=f"remove {path} if that run has ended, or pass another --output_folder")
    if previous:
        logger.warning("Took over the lock of %s, which ended without releasing it (%s)",
                       _describe(previous), path)
    handle.seek(0)
    handle.truncate()
    json.dump({"pid": os.getpid(), "host": socket.gethostname(),
               "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")},
              handle)
    handle.flush()
    _HELD[key] = handle


def _locked(path, folder):
    """The lock file, open with its ``flock`` taken, or a failure naming its holder."""
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            fail(folder, f"another run writes into this folder: {_describe(holder(path))} "
                         f"holds {path}",
                 fix="wait until that run ends, or pass another --output_folder")
        # Its holder may have removed the file between the open and the flock.
        if os.path.exists(path) and os.path.samestat(os.stat(path), os.fstat(handle.fileno())):
            return handle
        handle.close()


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
        with contextlib.suppress(FileNotFoundError):  # the folder may be gone
            os.remove(os.path.join(folder, LOCK_FILE))  # while the flock is still held
        handle.close()


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


def changed_settings(recorded, settings, allowed, record_path):
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

    Returns
    -------
    dict
        ``{key: (old, new)}`` of the accepted changes.

    Raises
    ------
    ManifestError
        Listing every change not accepted, with its old and new value; or
        naming an ``allow_changed`` entry that is no setting.

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
    """
    allowed = [allowed] if isinstance(allowed, str) else list(allowed or [])
    unknown = [key for key in allowed if key not in settings]
    if unknown:
        close = {key: difflib.get_close_matches(key, settings, n=1) for key in unknown}
        fail(record_path, f"--allow_changed names {unknown}, which are no settings of the run",
             fix="; ".join(f"{key}: did you mean {match[0]}?" if match else f"{key}: remove it"
                           for key, match in close.items()))
    changes = {key: (recorded.get(key, _ABSENT), settings.get(key, _ABSENT))
               for key in dict.fromkeys([*recorded, *settings])
               if key not in FREE_KEYS
               and recorded.get(key, _ABSENT) != settings.get(key, _ABSENT)}
    refused = [key for key in changes if key not in allowed]
    if refused:
        listed = "\n".join(f"  {key}: {_shown(changes[key][0])} -> {_shown(changes[key][1])}"
                           for key in refused)
        fail(record_path, f"the run's checkpoints were trained with other settings:\n{listed}",
             fix="pass the run's values of these keys, or train into another --output_folder; "
                 "where a change is safe for this run, accept it with "
                 f"--allow_changed=[{', '.join(refused)}]")
    return changes


def _shown(value):
    return "(absent)" if value is _ABSENT else json.dumps(value)


def accept_settings(hparams, settings, training):
    """Check a command's settings against its run's record; a training run records them.

    Only a folder with a checkpoint is checked: a run that stopped before its
    first checkpoint starts again with any settings.

    Arguments
    ---------
    hparams : dict
        The loaded model hparams (``save_folder``, ``checkpointer``,
        ``allow_changed``).
    settings : dict
        The command's settings (:func:`local.settings.run_settings`).
    training : bool
        Whether the command trains (and so records the settings it accepts).

    Returns
    -------
    dict
        ``{key: (old, new)}`` of the accepted changes, as :func:`changed_settings`.
    """
    save_folder = hparams["save_folder"]
    recorded = recorded_settings(save_folder)
    changes = {}
    if hparams["checkpointer"].list_checkpoints():
        if recorded is None:
            logger.warning("%s has checkpoints but no %s: its settings are not checked",
                           save_folder, SETTINGS_RECORD)
        else:
            changes = changed_settings(recorded, settings, hparams["allow_changed"],
                                       os.path.join(save_folder, SETTINGS_RECORD))
    for key, (old, new) in changes.items():
        logger.warning("Setting changed from the run's, as allowed: %s: %s -> %s",
                       key, _shown(old), _shown(new))
    if training:
        record_settings(save_folder, settings)
    return changes
