"""What every corpus preparation shares: option checks, the skeleton, chunking, selection, the exit status.

The preparations follow SpeechBrain's ``prepare_*`` convention: a pure
function of its options that writes manifests in the schema of
:mod:`local.data.schema` and does nothing when re-run with the same options.
:func:`prepare_corpus` is that convention, once; a corpus module checks its
options and input folders, then gives it a function that reads its tree.
"""

import contextlib
import errno
import functools
import json
import logging
import math
import numbers
import os
import shutil
import sys

import numpy as np
import pandas as pd

from local.cli import command
from local.data.manifest_io import (
    read_enrolment,
    read_manifest,
    read_numbered_trials,
    write_enrolment,
    write_manifest,
    write_trials,
)
from local.data.schema import SAMPLE_RATE
from local.data.validation import PREPARED_MARKER, validate
from local.errors import ManifestError, fail
from local.provenance import file_sha256
from local.whole_files import release_lock, taken_lock, written_whole

logger = logging.getLogger(__name__)

# Where a preparation sets the earlier preparation's files aside until its own pass (_replacing).
PREVIOUS = "prepare.previous"


class OptionError(ManifestError):
    """A data preparation option outside its allowed range."""


# The allowed ranges of the preparations' numeric options.
POSITIVE = pd.Interval(0, math.inf, closed="neither")
AT_LEAST_ONE = pd.Interval(1, math.inf, closed="left")
AT_LEAST_TWO = pd.Interval(2, math.inf, closed="left")


def check_option(name, value, allowed, why, integer=False):
    """Raise an :class:`OptionError` unless ``value`` is a number in ``allowed``.

    Arguments
    ---------
    name : str
        The option, named alike in Python, condition files and ``--name`` on
        the command line.
    value : object
        Its value.
    allowed : pandas.Interval
        The allowed range.
    why : str
        What the option means, or why the range is what it is.
    integer : bool
        Whether the value must be an integer.

    Raises
    ------
    OptionError
        Naming the option, its value and the allowed range.

    Example
    -------
    >>> check_option("n_eval_speakers", 20, AT_LEAST_TWO, "the held-out speakers", integer=True)
    >>> check_option("n_eval_speakers", 1, AT_LEAST_TWO,
    ...              "the held-out speakers (non-target trials need two)", integer=True)
    Traceback (most recent call last):
      ...
    data_prep.preparation.OptionError: n_eval_speakers is 1: not an integer in [2, inf), the held-out speakers (non-target trials need two)
    Fix: choose n_eval_speakers in [2, inf) (--n_eval_speakers on the command line)
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, kind) and not isinstance(value, bool) and value in allowed:
        return
    raise OptionError(
        f"{name} is {value!r}: not {'an integer' if integer else 'a number'} in {allowed}, {why}\n"
        f"Fix: choose {name} in {allowed} (--{name} on the command line)")


def speaker_genders(path, listed):
    """``{speaker: gender}`` from a speaker table's ``(line, speaker, gender)``; refuse contradictions.

    A speaker listed twice with the same gender is kept once; listed with two
    genders, the table is refused rather than the last line silently kept.

    Arguments
    ---------
    path : str
        The table, named in the error.
    listed : iterable of tuple
        ``(line number, speaker, gender)`` of each of its lines.

    Returns
    -------
    dict
        ``{speaker: gender}``.

    Example
    -------
    >>> speaker_genders("meta.csv", [(2, "id1", "m"), (3, "id2", "f"), (4, "id1", "m")])
    {'id1': 'm', 'id2': 'f'}
    >>> speaker_genders("meta.csv", [(2, "id1", "m"), (3, "id1", "f")])
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: meta.csv: speakers listed with two genders
      line 3: id1 is f, line 2 said m
    Fix: keep one line per speaker, with its gender
    """
    genders, lines, conflicts = {}, {}, []
    for number, speaker, gender in listed:
        if genders.setdefault(speaker, gender) != gender:
            conflicts.append(f"line {number}: {speaker} is {gender}, "
                             f"line {lines[speaker]} said {genders[speaker]}")
        lines.setdefault(speaker, number)
    if conflicts:
        fail(path, "speakers listed with two genders", rows=conflicts,
             fix="keep one line per speaker, with its gender")
    return genders


def check_seg_dur(seg_dur):
    """:func:`check_option` for ``seg_dur``, the training chunk length (None: whole utterances).

    Arguments
    ---------
    seg_dur : float or None
        Chunk length in seconds.

    Example
    -------
    >>> check_seg_dur(None); check_seg_dur(3.0)
    >>> check_seg_dur(0)
    Traceback (most recent call last):
      ...
    data_prep.preparation.OptionError: seg_dur is 0: not a number in (0, inf), the training chunk length in seconds (None keeps utterances whole)
    Fix: choose seg_dur in (0, inf) (--seg_dur on the command line)
    """
    if seg_dur is not None:
        check_option("seg_dur", seg_dur, POSITIVE,
                     "the training chunk length in seconds (None keeps utterances whole)")


def corpus_folder(folder, corpus, fix):
    """The resolved path of a corpus's input folder; refuse one that does not exist.

    Resolved (symbolic links followed), so that the corpus reached through
    another path is recognised as prepared rather than prepared again.

    Arguments
    ---------
    folder : str
        The folder as given.
    corpus : str
        The corpus, as the message names it.
    fix : str
        What to pass instead.

    Returns
    -------
    str
        The absolute path, links resolved.

    Raises
    ------
    ManifestError
        When ``folder`` is not a directory.

    Example
    -------
    >>> corpus_folder("nowhere", "VoxCeleb1", "pass the folder that holds wav/")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: /.../nowhere: VoxCeleb1 folder does not exist
    Fix: pass the folder that holds wav/
    """
    folder = os.path.realpath(folder)
    if not os.path.isdir(folder):
        fail(folder, f"{corpus} folder does not exist", fix=fix)
    return folder


def prepare_corpus(corpus, save_folder, options, outputs, read, training=("train",), inputs=(),
                   generated=False):
    """SpeechBrain's ``prepare_*`` around one corpus: skip, read, write, check, record.

    Does nothing when ``save_folder`` holds ``outputs`` made with the same
    ``options`` from the same ``inputs`` (:func:`skip_if_prepared`).
    Otherwise ``read()`` makes the tables, and the outputs take the place of
    the files of an earlier preparation once they pass their checks
    (:func:`_replacing`; those that these ``outputs`` do not name are
    removed then). A refused preparation (a missing folder, a tree or file
    that ``read()`` or the checks refuse) leaves ``save_folder`` as it was:
    one it made is removed again (:func:`_preparing`), an earlier
    preparation's files stay, and still skip a rerun with their options
    (but for a ``generated`` corpus's). The trial
    lists and the enrolment table are written and checked first
    (:func:`~local.data.manifest_io.read_numbered_trials`,
    :func:`~local.data.manifest_io.read_enrolment`: empty, duplicated or
    one-class lists, self-trials), so that what the text alone shows is
    refused before a manifest's rows read their audio headers; then each
    manifest is made and written (those of ``training`` cut into
    ``options["seg_dur"]`` chunks, when set), every trial list is checked
    against ``eval.csv`` and the enrolment table, every other manifest is
    checked as training checks it (columns, duplicated IDs, numbers,
    ``stop`` after ``start``; not the audio), and ``options`` are recorded
    for the next run.

    All this under ``save_folder/prepare.lock``: a second preparation of the
    folder meanwhile (two runs of a condition started at once) waits for the
    first to end, then finds the folder prepared, rather than rewriting the
    files (a generated corpus's audio) that the first writes and reads.

    Arguments
    ---------
    corpus : str
        The corpus, as the log names it.
    save_folder : str
        Where the outputs go.
    options : dict
        JSON-serialisable arguments that determine the outputs
        (:func:`skip_if_prepared`).
    outputs : list of str
        File names, in the order of the returned paths: ``eval.csv`` and the
        other manifests, ``enrolment.csv`` (an enrolment table), and trial
        lists ``*.txt``.
    read : callable
        ``read()`` returns ``{file name without extension: rows}`` for every
        output: manifest rows, enrolment models or trials, as
        :mod:`local.data.manifest_io` writes them. A manifest's rows may be
        a function returning them, called once the trial lists and the
        enrolment table passed their checks: where the rows read the audio
        headers, a bad trial list is refused without reading any.
    training : tuple of str
        The manifests cut into ``seg_dur`` chunks; the others stay whole.
    inputs : list of str
        The files besides the audio that the outputs are read from (meta and
        key files, tables, trial lists; None entries are left out): their
        SHA-256 is recorded with ``options``, so that one changed in place
        is prepared again rather than its stale outputs kept.
    generated : bool
        Whether ``read()`` writes the corpus's audio into ``save_folder`` (a
        generated corpus): the earlier preparation's record of its options
        is then removed before ``read()`` runs, as the audio it vouched for
        is written over, so that a generation that fails is run again.

    Returns
    -------
    dict
        ``{file name without extension: path}``.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"ID": f"u{i}", "duration": 1.0, "wav": f"u{i}.wav", "start": 0,
    ...          "stop": 16000, "spk_id": f"s{i // 2}", "domain": "d"} for i in range(4)]
    >>> read = lambda: {"eval": rows, "trials": [(1, "u0", "u1"), (0, "u0", "u2")]}
    >>> folder = tempfile.mkdtemp()
    >>> sorted(prepare_corpus("Toy", folder, {"seed": 1}, ["eval.csv", "trials.txt"], read))
    ['eval', 'trials']
    >>> sorted(os.listdir(folder))
    ['eval.csv', 'prepare_options.json', 'trials.txt']
    """
    paths = {os.path.splitext(name)[0]: os.path.join(save_folder, name) for name in outputs}
    inputs = [path for path in inputs if path]
    if inputs:
        # One that is missing is named by read(), which refuses it.
        options = {**options, "inputs_sha256": {path: file_sha256(path) for path in inputs
                                                if os.path.isfile(path)}}
    # Named whole: a relative save_folder is read from the working directory.
    where = os.path.abspath(save_folder)
    with _preparing(save_folder, corpus, where):
        if skip_if_prepared(save_folder, list(paths.values()), options):
            logger.info("%s already prepared in %s, skipping", corpus, where)
            return paths
        logger.info("%s: preparing in %s", corpus, where)
        if generated:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(save_folder, PREPARED_MARKER))
        tables = read()
        with _replacing(save_folder, outputs):
            _write_checked(paths, tables, options.get("seg_dur"), training)
        # Once the earlier files are gone: a kill before leaves them to be put back.
        mark_prepared(save_folder, options, outputs)
        logger.info("%s prepared in %s: %s", corpus, where,
                    ", ".join(f"{name} {len(tables[name])}" for name in paths))
        return paths


def _write_checked(paths, tables, seg_dur, training):
    """Write the outputs of :func:`prepare_corpus` and check them, the trial lists first."""
    manifests = []
    for name, path in paths.items():
        if path.endswith(".txt"):
            write_trials(tables[name], path)
            read_numbered_trials(path)
        elif name == "enrolment":
            write_enrolment(tables[name], path)
            read_enrolment(path)
        else:
            manifests.append(name)
    for name in manifests:
        rows = pd.DataFrame(tables[name]() if callable(tables[name]) else tables[name])
        if seg_dur and name in training:
            rows = chunk_rows(rows, seg_dur)
        tables[name] = rows
        write_manifest(rows, paths[name])
    trial_lists = [path for path in paths.values() if path.endswith(".txt")]
    for trials in trial_lists or [None]:
        validate(paths["eval"], trials, paths.get("enrolment"), check_audio=False)
    for name in manifests:
        if name != "eval":  # the training manifests (and the others), as training reads them
            validate(paths[name], check_audio=False)


@contextlib.contextmanager
def _preparing(save_folder, corpus, where):
    """Hold ``save_folder/prepare.lock``, once another preparation of the folder let go of it.

    The folder (and its missing parents) is made for the lock; a preparation
    that then fails removes the folders it made, with what it wrote in them,
    so that a refused preparation leaves nothing behind. Earlier files that a
    preparation killed while replacing them set aside are put back first
    (:func:`_replacing`).
    """
    lock = os.path.join(save_folder, "prepare.lock")
    while True:
        made = _made_folders(save_folder)
        try:
            handle = taken_lock(lock)
            if handle is None:
                logger.info("%s: another process prepares %s; waiting until it ends",
                            corpus, where)
                handle = taken_lock(lock, wait=True)
            break
        except FileNotFoundError:  # the folder, made by a preparation refused meanwhile, is gone
            continue
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # A folder this process may not write (a shared corpus, read-only) is
            # read as it is: prepared, or refused at the preparation's first write.
            handle = None
            break
    if handle is None:
        yield
        return
    try:
        # Made here, and empty but for the lock: not a folder another preparation filled.
        made = made if os.listdir(save_folder) == [os.path.basename(lock)] else []
        _put_back(save_folder)
        yield
    except BaseException:
        _remove_made(made)
        raise
    finally:
        release_lock(lock, handle)


def _made_folders(folder):
    """Make ``folder`` and its missing parents; return the absolute paths made, ``folder`` first."""
    made = []
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        made.append(path)
        path = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    return made


def _remove_made(made):
    """Remove the folders :func:`_made_folders` made, the first with what it holds."""
    if made:
        shutil.rmtree(made[0], ignore_errors=True)
    for parent in made[1:]:
        try:
            os.rmdir(parent)
        except OSError:  # another writer's files are in it
            break


@contextlib.contextmanager
def _replacing(save_folder, outputs):
    """A block that replaces the files of the earlier preparation of ``save_folder`` by ``outputs``.

    The earlier files (its record of the options, the outputs it recorded,
    any file named as one of ``outputs``) are set aside into
    ``save_folder/prepare.previous`` first. When the block raises (a bad
    audio file, a refused trial list), the ``outputs`` written meanwhile are
    removed and the earlier files put back: the folder is as it was, and an
    earlier preparation still skips a rerun with its options. When the block
    ends, the earlier files are removed, among them those that ``outputs``
    no longer name (a trial list no longer asked for).
    """
    previous = os.path.join(save_folder, PREVIOUS)
    earlier = {PREPARED_MARKER, *_recorded(save_folder)["outputs"], *outputs}
    os.makedirs(previous)
    for name in earlier:
        with contextlib.suppress(FileNotFoundError):
            os.replace(os.path.join(save_folder, name), os.path.join(previous, name))
    try:
        yield
    except BaseException:
        for name in outputs:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(save_folder, name))
        _put_back(save_folder)
        raise
    # The record first: what a kill leaves set aside vouches for nothing when put back.
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(previous, PREPARED_MARKER))
    shutil.rmtree(previous)


def _put_back(save_folder):
    """Put back the files that :func:`_replacing` set aside, the record of their options last."""
    previous = os.path.join(save_folder, PREVIOUS)
    if not os.path.isdir(previous):
        return
    for name in sorted(os.listdir(previous), key=lambda name: name == PREPARED_MARKER):
        os.replace(os.path.join(previous, name), os.path.join(save_folder, name))
    os.rmdir(previous)


def chunk_rows(rows, chunk_seconds):
    """Cut manifest rows into consecutive fixed-length chunks.

    The chunk IDs are ``<ID>_<start>_<stop>`` in samples, as in SpeechBrain's
    VoxCeleb preparation; a last chunk shorter than ``chunk_seconds`` is dropped
    only when the utterance is longer than one chunk, so short utterances stay.
    Done on whole columns, not row by row: VoxCeleb2's million recordings
    make about three million chunks (``benchmarks/bench_preparation.py``).

    Arguments
    ---------
    rows : pandas.DataFrame
        Manifest rows (as from :func:`utterance_row`); a row without a
        ``sample_rate`` is at 16 kHz.
    chunk_seconds : float
        Chunk length in seconds.

    Returns
    -------
    pandas.DataFrame
        The chunk rows, those of each row in its place; a row one chunk
        long or shorter as it is.

    Example
    -------
    >>> rows = pd.DataFrame([{"ID": "u", "duration": 2.5, "wav": "u.wav", "start": 0,
    ...                       "stop": 40000, "spk_id": "s", "domain": "d", "sample_rate": 16000}])
    >>> list(chunk_rows(rows, 1.0)["ID"])
    ['u_0_16000', 'u_16000_32000']
    >>> list(chunk_rows(rows, 2.5)["ID"])  # one chunk long: the row as it is
    ['u']
    """
    if rows.empty:  # no columns either where there were no rows: nothing to cut
        return rows
    rate = (rows["sample_rate"].fillna(SAMPLE_RATE) if "sample_rate" in rows.columns
            else pd.Series(SAMPLE_RATE, index=rows.index)).astype(np.int64).to_numpy()
    # The chunk length in samples and in seconds at each rate, rounded as Python rounds.
    rates, of_rate = np.unique(rate, return_inverse=True)
    sizes = [int(round(chunk_seconds * int(r))) for r in rates]
    size = np.array(sizes, dtype=np.int64)[of_rate]
    seconds = np.array([round(s / int(r), 4) for s, r in zip(sizes, rates)])[of_rate]
    start = rows["start"].astype(np.int64).to_numpy()
    length = rows["stop"].astype(np.int64).to_numpy() - start
    # Each row once, or once per whole chunk of it.
    counts = np.where(length > size, length // size, 1)
    row = np.repeat(np.arange(len(rows)), counts)
    chunks = rows.iloc[row].reset_index(drop=True)
    cut = (length > size)[row]
    # The chunk's place in its row: 0, 1, ... counts - 1.
    place = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    begin = (start[row] + place * size[row])[cut]
    end = begin + size[row][cut]
    chunks.loc[cut, "ID"] = (chunks["ID"][cut].astype(str) + "_" + begin.astype(str) + "_"
                             + end.astype(str))
    chunks.loc[cut, "start"] = begin
    chunks.loc[cut, "stop"] = end
    chunks.loc[cut, "duration"] = seconds[row][cut]
    return chunks


def select_rows(manifest_path, save_path, column, values):
    """Write the rows of a manifest whose ``column`` has one of ``values``.

    A condition's preparation step, e.g. one channel of a corpus as the source
    domain and another as the target. The log says how many rows were kept
    and how many left out, among them those whose ``column`` is empty.

    Arguments
    ---------
    manifest_path : str
        Manifest to select from.
    save_path : str
        Output manifest.
    column : str
        Column to select on (``channel``, ``lang``, ...).
    values : list of str
        Values to keep.

    Returns
    -------
    pandas.DataFrame
        The selected rows.

    Raises
    ------
    ManifestError
        When the column is missing, or a value is one that no row has.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rows = [{"ID": f"u{i}", "duration": 1.0, "wav": f"u{i}.wav", "start": 0, "stop": 16000,
    ...          "spk_id": "s1", "domain": "demo", "channel": channel}
    ...         for i, channel in enumerate(["wireless", "telephone", "wireless"])]
    >>> write_manifest(rows, os.path.join(folder, "train.csv"))
    >>> selected = select_rows(os.path.join(folder, "train.csv"),
    ...                        os.path.join(folder, "train_wireless.csv"), "channel", ["wireless"])
    >>> list(selected["ID"])
    ['u0', 'u2']
    """
    manifest = read_manifest(manifest_path)
    if column not in manifest.columns:
        fail(manifest_path, f"has no column '{column}' to select on",
             fix="prepare the corpus with the metadata that fills it (e.g. a channel table)")
    values = [str(value) for value in values]
    present = sorted(manifest[column].unique())
    absent = [value for value in values if value not in present]
    selected = manifest[manifest[column].isin(values)]
    if absent or selected.empty:
        fail(manifest_path, f"no row has {column} in {absent or values}; its values are {present}",
             fix=f"choose {column} values the corpus has (a misspelt one selects nothing)")
    left_out = manifest[~manifest[column].isin(values)]
    logger.info("%s: %d rows with %s in %s kept, %d left out (%d of them without a %s)",
                save_path, len(selected), column, values, len(left_out),
                (left_out[column] == "").sum(), column)
    write_manifest(selected, save_path)
    return selected


def skip_if_prepared(save_folder, outputs, options):
    """True when ``outputs`` exist and were made with the same ``options``.

    SpeechBrain's ``prepare_*`` convention: re-running a preparation with the
    same arguments does nothing. The options are stored beside the outputs,
    with the outputs' names (:func:`mark_prepared`). Nothing is removed here:
    a preparation with other options replaces the earlier files once its own
    have passed their checks (:func:`prepare_corpus`).

    Arguments
    ---------
    save_folder : str
        Where the preparation writes.
    outputs : list of str
        Files the preparation produces.
    options : dict
        JSON-serialisable arguments that determine the outputs.

    Returns
    -------
    bool
        Whether the work can be skipped.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> skip_if_prepared(folder, [], {"seed": 1})
    False
    >>> mark_prepared(folder, {"seed": 1}, ["trials.txt"])
    >>> _ = open(os.path.join(folder, "trials.txt"), "w")
    >>> skip_if_prepared(folder, [os.path.join(folder, "trials.txt")], {"seed": 1})
    True
    >>> skip_if_prepared(folder, [], {"seed": 2})
    False
    """
    recorded = _recorded(save_folder)
    return (recorded["options"] == json.loads(json.dumps(options))
            and all(os.path.isfile(p) for p in outputs))


def _recorded(save_folder):
    """``{"options": ..., "outputs": [...]}`` of the earlier preparation (None and none: no record)."""
    marker = os.path.join(save_folder, PREPARED_MARKER)
    if not os.path.isfile(marker):
        return {"options": None, "outputs": []}
    with open(marker, encoding="utf-8") as saved:
        recorded = json.load(saved)
    if "outputs" not in recorded:  # a marker of the options alone, as written before
        recorded = {"options": recorded, "outputs": []}
    return recorded


def mark_prepared(save_folder, options, outputs):
    """Record ``options`` and ``outputs`` so that :func:`skip_if_prepared` can skip next time.

    Arguments
    ---------
    save_folder : str
        Where the preparation wrote.
    options : dict
        The options passed to :func:`skip_if_prepared`.
    outputs : list of str
        The names of the files the preparation wrote in ``save_folder``.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> mark_prepared(folder, {"seed": 1}, ["train.csv"])
    >>> os.listdir(folder)
    ['prepare_options.json']
    """
    # Whole or not at all: a half-written marker would fail the next preparation.
    with written_whole(os.path.join(save_folder, PREPARED_MARKER),
                       encoding="utf-8") as out:
        json.dump({"options": options, "outputs": sorted(outputs)}, out, indent=1,
                  sort_keys=True)


def run_preparation(prepare, **arguments):
    """Run a corpus preparation for its command line and return the exit status.

    Prints the written files, or the :class:`ManifestError` (a bad file or
    option, with its fix) or the ``OSError`` (a folder that cannot be read or
    written) to stderr and returns 1, so that a user sees the message, not a
    traceback.

    Arguments
    ---------
    prepare : callable
        A ``prepare_*`` function returning ``{name: path}``.
    **arguments
        Its arguments.

    Returns
    -------
    int
        0 on success, 1 on a :class:`ManifestError` or ``OSError``.

    Example
    -------
    >>> run_preparation(lambda save_folder: {"train": f"{save_folder}/train.csv"},
    ...                 save_folder="data/corpus")
    train: data/corpus/train.csv
    0
    >>> run_preparation(read_manifest, path="missing.csv")
    1
    """
    try:
        paths = prepare(**arguments)
    except ManifestError as err:
        print(err, file=sys.stderr)
        return 1
    except OSError as err:  # a folder that cannot be read or written, a full disk
        print(f"{err}\nFix: check that the folders exist and that save_folder is writable",
              file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def preparation_command(prepare, description, *options):
    """The ``main(argv=None)`` of a corpus preparation: :func:`run_preparation` of the options.

    Arguments
    ---------
    prepare : callable
        A ``prepare_*`` function returning ``{name: path}``.
    description : str
        The ``--help`` description (the module docstring).
    *options : tuple
        The command-line options, as :func:`local.cli.option` returns them.

    Returns
    -------
    callable
        ``main(argv=None)``, returning the exit status.
    """
    return command(functools.partial(run_preparation, prepare), description, *options)
