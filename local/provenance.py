"""What a result depends on, written beside it: the data files' hashes and the code version."""

import hashlib
import json
import os
import subprocess

from local.environment import installed_versions
from local.errors import fail
from local.whole_files import written_whole


def file_sha256(path):
    """SHA-256 of a file's bytes, read in 1 MiB blocks.

    Arguments
    ---------
    path : str
        Any file.

    Returns
    -------
    str
        The hex digest.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> _ = open(path, "w").write("abc")
    >>> file_sha256(path)[:12]
    'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def short_digest(value):
    """16 hex digits of the SHA-256 of ``value`` as JSON (keys sorted): a cache or file name's key.

    Arguments
    ---------
    value : object
        JSON-serialisable.

    Returns
    -------
    str
        The first 16 hex digits of the digest.

    Example
    -------
    >>> short_digest({"b": 1, "a": 2}) == short_digest({"a": 2, "b": 1})
    True
    """
    text = json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def code_version(folder):
    """The git commit of ``folder`` (with ``-dirty`` for uncommitted changes), or None.

    Arguments
    ---------
    folder : str
        A folder inside a git working tree.

    Returns
    -------
    str or None
        The 40-digit commit, None outside a git working tree or without git.

    Example
    -------
    >>> import tempfile
    >>> print(code_version(tempfile.mkdtemp()))
    None
    """
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"],
                                cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return commit.stdout.strip() if commit.returncode == 0 else None


def code_digest(package=os.path.dirname(os.path.abspath(__file__))):
    """A :func:`short_digest` of the code that computes a result: its sources and libraries.

    The bytes of every ``.py`` file under ``package`` (default the recipe's
    ``local/``) and the versions of torch, torchaudio, speechbrain and
    transformers (:func:`local.environment.installed_versions`). Cached embeddings
    are named with it, so that a recipe or a library changed since they were
    computed embeds again. Unlike :func:`code_version`, it needs no git and
    tells two uncommitted states apart.

    Arguments
    ---------
    package : str
        The folder of the sources.

    Returns
    -------
    str
        16 hex digits.

    Example
    -------
    >>> len(code_digest())
    16
    """
    sources = {os.path.relpath(os.path.join(root, name), package):
               file_sha256(os.path.join(root, name))
               for root, _, files in os.walk(package) for name in files if name.endswith(".py")}
    return short_digest({"sources": sources, "versions": installed_versions()})


def condition_files(condition):
    """``{role: path}`` of every data file a condition names.

    Arguments
    ---------
    condition : dict
        Condition hparams: ``source_train``, ``target_train`` and
        ``evaluation`` (``{name: {manifest, trials[, enrolment]}}``).

    Returns
    -------
    dict
        Roles such as ``source_train`` or ``evaluation/target/trials``.

    Example
    -------
    >>> files = condition_files({"source_train": "s.csv", "target_train": "t.csv",
    ...                          "evaluation": {"target": {"manifest": "e.csv", "trials": "tr.txt"}}})
    >>> list(files)
    ['source_train', 'target_train', 'evaluation/target/manifest', 'evaluation/target/trials']
    """
    files = {"source_train": condition["source_train"], "target_train": condition["target_train"]}
    for name, spec in condition["evaluation"].items():
        for key in ("manifest", "trials", "enrolment"):
            if spec.get(key):
                files[f"evaluation/{name}/{key}"] = spec[key]
    return files


def trained_by(output_folder):
    """The training commands of a run, in order, as its ``provenance.json`` records them.

    Arguments
    ---------
    output_folder : str
        The run's results folder.

    Returns
    -------
    list of dict
        ``{"code_version", "first_epoch"}`` per command that saved a
        checkpoint: its code version and the epoch of its first checkpoint,
        from which it trained. A record written before they were gives its
        one ``code_version``, that of the last command that wrote it, with
        ``first_epoch`` None; a run without a record gives none.

    Raises
    ------
    ManifestError
        When the record is no JSON, naming it.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> trained_by(folder)
    []
    >>> _ = open(os.path.join(folder, "provenance.json"), "w").write('{"code_version": "ab12"}')
    >>> trained_by(folder)
    [{'code_version': 'ab12', 'first_epoch': None}]
    >>> _ = open(os.path.join(folder, "provenance.json"), "w").write('{"code_version": ')
    >>> trained_by(folder)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: .../provenance.json: unreadable record of the run (...)
    Fix: restore it from a copy ...
    """
    path = os.path.join(output_folder, "provenance.json")
    if not os.path.isfile(path):
        return []
    try:
        with open(path, encoding="utf-8") as saved:
            record = json.load(saved)
    except ValueError as error:
        fail(path, f"unreadable record of the run ({error})",
             fix="restore it from a copy (the report's, verification/provenance.json), or "
                 "remove it: the commands that trained the run are then recorded from this one on")
    if "trained_by" in record:
        return record["trained_by"]
    return [{"code_version": record.get("code_version"), "first_epoch": None}]


def write_provenance(condition, output_folder, code_folder, prefix="", trained=None,
                     ssl_model=None, augmentation=None):
    """Write ``provenance.json``: each data file's path and hash, and the code versions.

    ``code_version`` is that of the command that writes it; ``trained_by``
    those of the commands that trained the run (:func:`trained_by`).

    Arguments
    ---------
    condition : dict
        Condition hparams (see :func:`condition_files`).
    output_folder : str
        The run's results folder.
    code_folder : str
        The recipe's folder, whose git commit is recorded.
    prefix : str
        Of the file name: ``""`` for the training run's own, ``"evaluate_"``
        for an evaluation's, which leaves the run's untouched.
    trained : list of dict, optional
        The run's training commands (:func:`trained_by`), recorded as
        ``trained_by``.
    ssl_model : str, optional
        The digest of an SSL front end's model files
        (:func:`local.model.ssl_frontend.ssl_fingerprint`), recorded as
        ``ssl_model_sha256``: the frozen model is not in the checkpoints.
    augmentation : dict, optional
        ``{key: path}`` of the noise and impulse-response CSVs a training
        run augments with (:func:`local.model.augmentation.data_files`),
        recorded with the data files under their key (``noise_csv``).

    Returns
    -------
    dict
        What was written.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("s.csv", "t.csv", "e.csv", "tr.txt"):
    ...     _ = open(os.path.join(folder, name), "w").write("abc")
    >>> condition = {"source_train": os.path.join(folder, "s.csv"),
    ...              "target_train": os.path.join(folder, "t.csv"),
    ...              "evaluation": {"target": {"manifest": os.path.join(folder, "e.csv"),
    ...                                        "trials": os.path.join(folder, "tr.txt")}}}
    >>> record = write_provenance(condition, folder, folder)
    >>> record["data"]["target_train"]["sha256"][:12], record["code_version"]
    ('ba7816bf8f01', None)
    >>> os.path.isfile(os.path.join(folder, "provenance.json"))
    True
    """
    files = {**condition_files(condition), **(augmentation or {})}
    record = {
        "code_version": code_version(code_folder),
        "data": {role: {"path": os.path.abspath(path), "sha256": file_sha256(path)}
                 for role, path in files.items()},
    }
    if trained is not None:
        record["trained_by"] = trained
    if ssl_model is not None:
        record["ssl_model_sha256"] = ssl_model
    with written_whole(os.path.join(output_folder, f"{prefix}provenance.json"),
                       encoding="utf-8") as out:
        json.dump(record, out, indent=1)
    return record
