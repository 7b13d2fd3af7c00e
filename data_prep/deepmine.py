"""DeepMine as released for the SdSV Challenge: task 1 (text-dependent) and task 2.

Each task's archives extract to a folder of their own::

    data_folder/                        one task; which one is read from docs/
        docs/model_enrollment.txt       task 1: model_00000 07 enr_007492 enr_023277 enr_012882
                                        task 2: model_15005 enr_188426 enr_303480 ...
        docs/train_labels.txt           task 1: trn_000001 spk_000001 09
                                        task 2: trn_101064 spk_001000
        docs/trials.txt                 model_00000 evl_000018 (no labels)
        wav/train/trn_000001.wav        16 kHz
        wav/enrollment/enr_007492.wav
        wav/evaluation/evl_000018.wav

Each docs file starts with a header line; a first line whose first field ends
in ``id`` (``model-id``, ``train-file-id``) is taken for one and skipped. Task 1
lines carry a phrase ID: ``01``-``05`` are Persian phrases, ``06``-``10``
English ones. A task 2 model has any number of enrolment files.

The challenge gave no trial labels; its keys came after the evaluation.
With ``key_file`` they are read in either of two forms:

* ``model_00000 evl_000018 TC``, one trial a line; it must label exactly the
  trials of ``docs/trials.txt``. A trial on two lines with the same label is
  taken once; with different labels the key is refused;
* ``1``, a label alone on each line, in the order of ``docs/trials.txt``: the
  form of the ``keys.txt`` that the challenge's CodaLab scoring read.

Either may start with a header line (one whose last field is not a label,
e.g. ``model-id evaluation-file-id trial-type``), which is skipped. A label
is an SdSV trial type ``TC``, ``TW``, ``IC`` or ``IW`` (target or impostor
speaker, correct or wrong phrase; only ``TC`` is a target trial),
``target``/``nontarget``, ``tgt``/``imp``, or ``1``/``0``, in any case.
Outputs in ``save_folder``::

    train.csv       the training files (or ``seg_dur`` chunks), with speaker and phrase
    eval.csv        every enrolment file of a model and evaluation file of a trial, whole
    enrolment.csv   model_id,utt_ids[,phrase]
    trials.txt      with ``key_file`` only: ``label model-id evaluation-file-id [trial type]``

Without a key no trial list is written, since the repository's trial lists
carry labels; ``docs/trials.txt`` itself is the list to score for a
challenge submission.

Utterance IDs are the challenge's file IDs (``trn_000001``, ``enr_007492``,
``evl_000018``); columns are ``domain=deepmine``, ``phrase`` (task 1) and
``lang``: for task 1 ``fa`` or ``en`` from the phrase; for task 2 ``fa`` for
training and enrolment files (DeepMine's text-independent part is Persian).
Evaluation files have empty ``lang`` (and ``phrase``): a task 1 trial may test
a wrong phrase, and task 2 tests are Persian or English, which the files do
not say. ``spk_id`` is empty in eval.csv: the challenge names no speaker of
an enrolment or evaluation file. ``channel`` (the recording device) is not in
the challenge files: it comes from ``channel_table``, a CSV ``utt,channel``
made by whoever has the full corpus's metadata, and is empty otherwise.

Command line::

    python -m data_prep.deepmine --data_folder /data/sdsv/task1 \\
        --save_folder data/deepmine_task1 [--key_file task1_key.txt] \\
        [--channel_table channels.csv] [--seg_dur 3.0]

Example
-------
>>> import tempfile
>>> main(["--data_folder", tempfile.mkdtemp(), "--save_folder", tempfile.mkdtemp()])
1
"""

import collections
import functools
import logging
import os
import re
import sys

import numpy as np
import pandas as pd

from data_prep.preparation import (
    check_seg_dur,
    corpus_folder,
    preparation_command,
    prepare_corpus,
)
from local.cli import option
from local.data.manifest_io import numbered_lines, read_csv_table, read_fields
from local.data.schema import REST, SDSV_TRIAL_LABELS, TRIAL_COLUMNS, utterance_row
from local.errors import fail

logger = logging.getLogger(__name__)

DOMAIN = "deepmine"
PERSIAN = "fa"
ENGLISH = "en"
PHRASE = re.compile(r"^(0[1-9]|10)$")
LAST_PERSIAN_PHRASE = 5
DOCS = ("model_enrollment.txt", "train_labels.txt", "trials.txt")
# The wav/ subfolder of each kind of file.
WAV_FOLDERS = ("train", "enrollment", "evaluation")
TRAIN_FORM = {1: "train-file-id speaker-id phrase-id", 2: "train-file-id speaker-id"}
ENROL_FORM = {1: "model-id phrase-id enroll-file-id ...", 2: "model-id enroll-file-id ..."}
# Key label (lower case) -> (trial label, trial type).
KEY_LABELS = {
    **{kind.lower(): (label, kind) for kind, label in SDSV_TRIAL_LABELS.items()},
    "target": (1, ""), "nontarget": (0, ""), "tgt": (1, ""), "imp": (0, ""),
    "1": (1, ""), "0": (0, ""),
}
KEY_COLUMNS = ["model", "test", "label"]
SEPARATE_TASKS = ("extract each task's archives to a folder of its own, so that its "
                  "docs/ and wav/ come from that task only")


def prepare_deepmine(data_folder, save_folder, key_file=None, channel_table=None,
                     seg_dur=None):
    """Write the manifests, enrolment table and (with a key) trial list of an SdSV task.

    Does nothing when ``save_folder`` already holds them, made with the same
    arguments. Whether the folder is task 1 or task 2 is read from its docs/.

    Arguments
    ---------
    data_folder : str
        One SdSV task as extracted, holding ``docs/`` and ``wav/``.
    save_folder : str
        Where the manifests, enrolment table and trial list go.
    key_file : str, optional
        Trial labels: ``model-id evaluation-file-id label`` lines, or one
        label a line in ``docs/trials.txt`` order; without it no trial list
        is written.
    channel_table : str, optional
        CSV ``utt,channel`` giving the channel of some of the task's files.
    seg_dur : float, optional
        Cut training files into chunks of this many seconds; None keeps them
        whole.

    Returns
    -------
    dict
        Paths of the written files, keyed ``train``, ``eval``, ``enrolment``
        and, with ``key_file``, ``trials``.

    Raises
    ------
    ManifestError
        When the folder is not an SdSV task, a docs file, key or channel
        table is malformed, or an audio file is missing, naming the path and
        the fix.
    OptionError
        When ``seg_dur`` is outside its range, before any work.

    Example
    -------
    >>> prepare_deepmine("/data/sdsv/task1", "data/deepmine_task1",
    ...                  key_file="/data/sdsv/task1_key.txt")  # doctest: +SKIP
    """
    check_seg_dur(seg_dur)
    data_folder = corpus_folder(data_folder, "DeepMine",
                                "pass as data_folder the folder that an SdSV task's archives "
                                "extract to (it holds docs/ and wav/)")
    docs = _docs(data_folder)
    key_file = os.path.abspath(key_file) if key_file else None
    channel_table = os.path.abspath(channel_table) if channel_table else None
    options = dict(data_folder=data_folder, key_file=key_file,
                   channel_table=channel_table, seg_dur=seg_dur)
    outputs = ["train.csv", "eval.csv", "enrolment.csv", *(["trials.txt"] if key_file else [])]
    read = functools.partial(_read, data_folder, docs, key_file, channel_table)
    return prepare_corpus("DeepMine", save_folder, options, outputs, read,
                          inputs=[*docs.values(), key_file, channel_table])


def _read(data_folder, docs, key_file, channel_table):
    """The manifests, enrolment table and trials; every check first, as reading the audio is slow."""
    task, train = _read_train_labels(docs["train_labels.txt"])
    models = _read_enrolment(docs["model_enrollment.txt"], task, docs["train_labels.txt"])
    pairs = _read_trials(docs["trials.txt"], models)
    trials = _read_key(key_file, pairs) if key_file else None
    enrol_phrase = {utt: phrase for phrase, utts in models.values() for utt in utts}
    test_files = list(pairs["test"].unique())
    wavs = _wav_files(data_folder, [[utt for utt, _, _ in train], list(enrol_phrase),
                                    test_files])
    channels = _read_channels(channel_table, wavs) if channel_table else {}

    logger.info("DeepMine task %d: %d files to read", task, len(wavs))
    unknown_phrase = "" if task == 1 else None

    # The rows read the audio headers: prepare_corpus makes them once the
    # trial list and the enrolment table passed their checks.
    def train_rows():
        return [_row(wavs[utt], utt, spk, phrase, channels) for utt, spk, phrase in train]

    def eval_rows():
        return ([_row(wavs[utt], utt, "", phrase, channels)
                 for utt, phrase in enrol_phrase.items()]
                + [_row(wavs[utt], utt, "", unknown_phrase, channels, lang="")
                   for utt in test_files])

    enrolment = []
    for model, (phrase, utts) in models.items():
        enrolment.append({"model_id": model, "utt_ids": utts})
        if phrase is not None:
            enrolment[-1]["phrase"] = phrase
    return {"train": train_rows, "eval": eval_rows, "enrolment": enrolment, "trials": trials}


def language(phrase):
    """Language of an SdSV task 1 phrase: ``01``-``05`` Persian, ``06``-``10`` English.

    Arguments
    ---------
    phrase : str
        Phrase ID as in the docs files ("" when unknown).

    Returns
    -------
    str
        ``fa``, ``en``, or "" for an unknown phrase.

    Example
    -------
    >>> language("03"), language("07"), language("")
    ('fa', 'en', '')
    """
    if not phrase:
        return ""
    return PERSIAN if int(phrase) <= LAST_PERSIAN_PHRASE else ENGLISH


def _docs(data_folder):
    """``{name: path}`` of the task's docs files; refuse a folder without them."""
    paths = {name: os.path.join(data_folder, "docs", name) for name in DOCS}
    missing = [f"docs/{name}" for name, path in paths.items() if not os.path.isfile(path)]
    if missing:
        fail(data_folder, "not an SdSV task folder: it lacks " + ", ".join(missing),
             fix="extract an SdSV task's archives here, so that docs/model_enrollment.txt, "
             "docs/train_labels.txt, docs/trials.txt and wav/ exist; " + SEPARATE_TASKS)
    return paths


def _entries(path, columns, fix):
    """:func:`read_fields` of ``path`` without its header line; refuse an empty file."""
    if not os.path.isfile(path):
        fail(path, "file does not exist", fix=fix)
    table = read_fields(path, columns)
    if len(table) and table.iloc[0, 0].lower().endswith("id"):
        table = table.iloc[1:]
    if table.empty:
        fail(path, "has no entries", fix=fix)
    return table


def _lines(path, fix):
    """``(line number, fields)`` of the non-empty lines of ``path``, without a header."""
    table = _entries(path, ["first"], fix)
    return [(number, [first] + rest.split())
            for number, first, rest in zip(table.index, table["first"], table[REST])]


def _shown(number, fields):
    return f"line {number}: {' '.join(fields)}"


def _task_of(lines, task1_line):
    """The task (1 or 2) whose form most of ``lines`` have, and in words how many have it.

    Read from every line, not the first alone: a malformed first line is named
    as the others are, and does not make every well-formed line look wrong.
    ``task1_line(fields)`` says whether a line has task 1's form; a tie is task 2.
    """
    ones = sum(task1_line(fields) for _, fields in lines)
    task, count = (1, ones) if ones > len(lines) - ones else (2, len(lines) - ones)
    return task, f"{count} of its {len(lines)} lines"


def _read_train_labels(path):
    """The task (1 or 2) and ``(file, speaker, phrase or None)`` of each training file, once."""
    lines = _lines(path, fix="use docs/train_labels.txt as extracted")
    task, share = _task_of(lines, lambda fields: len(fields) == 3)
    train, bad, listed = [], [], set()
    for number, fields in lines:
        if len(fields) == len(TRAIN_FORM[task].split()) and (
                task == 2 or PHRASE.match(fields[2])) and fields[0] not in listed:
            train.append((fields[0], fields[1], fields[2] if task == 1 else None))
            listed.add(fields[0])
        else:
            bad.append(_shown(number, fields))
    if bad:
        fail(path, f"lines not of the form '{TRAIN_FORM[task]}' (task {task}, as {share} "
             f"are){' with phrase-id 01 to 10' if task == 1 else ''}, or files listed twice",
             rows=bad,
             fix="use docs/train_labels.txt as extracted; " + SEPARATE_TASKS)
    return task, train


def _read_enrolment(path, task, train_labels):
    """``{model: (phrase or None, [enrolment file, ...])}``; the task must be ``task``."""
    lines = _lines(path, fix="use docs/model_enrollment.txt as extracted")
    # A task 1 line's second field is a phrase ID, a number (which the lines'
    # check below holds to 01-10); a task 2 line's is an enrolment file ID.
    own, share = _task_of(lines, lambda fields: len(fields) > 1 and fields[1].isdigit())
    if own != task:
        fail(path, f"is task {own}'s ({share} are of its form) but {train_labels} is task "
             f"{task}'s", fix=SEPARATE_TASKS)
    models, bad = {}, []
    for number, fields in lines:
        has_phrase = len(fields) > 1 and bool(PHRASE.match(fields[1]))
        files = fields[2:] if task == 1 else fields[1:]
        if not files or has_phrase != (task == 1) or fields[0] in models:
            bad.append(_shown(number, fields))
        else:
            models[fields[0]] = (fields[1] if task == 1 else None, files)
    if bad:
        fail(path, f"lines not of the form '{ENROL_FORM[task]}' (task {task})"
             f"{' with phrase-id 01 to 10' if task == 1 else ''}, or models listed twice",
             rows=bad, fix="use docs/model_enrollment.txt as extracted; "
             + SEPARATE_TASKS)
    _check_one_phrase_per_file(path, models)
    return models


def _check_one_phrase_per_file(path, models):
    """Refuse an enrolment file that enrols models of two phrases: its manifest row has one."""
    phrase_of, clashes = {}, []
    for model, (phrase, files) in models.items():
        for utt in files:
            first = phrase_of.setdefault(utt, (phrase, model))
            if first[0] != phrase:
                clashes.append(f"{utt}: phrase {first[0]} in {first[1]}, {phrase} in {model}")
    if clashes:
        fail(path, "enrolment files of models of different phrases", rows=clashes,
             fix="use docs/model_enrollment.txt as extracted: each enrolment file "
             "says one phrase")


def _read_trials(path, models):
    """Table ``model, test`` of the trials, indexed by line; every model must be enrolled."""
    table = _entries(path, ["model", "test"], fix="use docs/trials.txt as extracted")
    bad = (table["test"] == "") | (table[REST] != "")
    if bad.any():
        fail(path, "lines not of the form 'model-id evaluation-file-id'",
             rows=numbered_lines(table[bad]), fix="use docs/trials.txt as extracted")
    unknown = ~table["model"].isin(list(models))
    if unknown.any():
        fail(path, "trials name models that are not in docs/model_enrollment.txt",
             rows=numbered_lines(table[unknown]), fix="use the docs/ files of one task, as "
             "extracted; " + SEPARATE_TASKS)
    return table[["model", "test"]]


def _read_key(path, pairs):
    """Trial table (:data:`TRIAL_COLUMNS`) of ``pairs`` (as from :func:`_read_trials`), from the key.

    A first line whose last field is not a label is a header and skipped. A
    trial labelled twice alike is taken once; labelled differently, refused.
    """
    fix = ("give one line 'model-id evaluation-file-id label' per trial of docs/trials.txt, "
           "or one label a line in its order, with label TC, TW, IC, IW, target, "
           "nontarget, tgt, imp, 1 or 0")
    if not os.path.isfile(path):
        fail(path, "file does not exist", fix=fix)
    key = read_fields(path, KEY_COLUMNS)
    if len(key) and " ".join(key.iloc[0]).split()[-1].lower() not in KEY_LABELS:
        key = key.iloc[1:]
    if key.empty:
        fail(path, "has no entries", fix=fix)
    count = sum((key[column] != "").astype(int) for column in KEY_COLUMNS + [REST])
    form = 1 if count.iloc[0] == 1 else 3
    label = key["model" if form == 1 else "label"].str.lower()
    bad = (count != form) | ~label.isin(list(KEY_LABELS))
    if bad.any():
        fail(path, f"key lines not of the form of line {key.index[0]} "
             f"('{'label' if form == 1 else 'model-id evaluation-file-id label'}') with "
             "a known label", rows=numbered_lines(key[bad]), fix=fix)
    if form == 1:
        if len(key) != len(pairs):
            fail(path, f"{len(key)} labels for the {len(pairs)} trials of docs/trials.txt",
                 fix="use the key of this task's docs/trials.txt: " + fix)
        labels = label.to_numpy()
    else:
        trial_pairs, key_pairs = _pair_codes(pairs, key)
        labelled = _without_repeats(path, key, label, key_pairs)
        position = pd.Index(key_pairs[labelled]).get_indexer(trial_pairs)
        unlabelled = pairs[position < 0]
        extra = key[labelled & ~np.isin(key_pairs, trial_pairs)]
        if len(unlabelled) or len(extra):
            fail(path, "does not label exactly the trials of docs/trials.txt",
                 rows=list("not in the key: " + unlabelled["model"] + " " + unlabelled["test"])
                 + sorted("not in docs/trials.txt: " + extra["model"] + " " + extra["test"]),
                 fix="use the key of this task's docs/trials.txt: " + fix)
        labels = label.to_numpy()[labelled][position]
    labels = pd.Series(labels)
    return pd.DataFrame({
        TRIAL_COLUMNS[0]: labels.map({k: v[0] for k, v in KEY_LABELS.items()}).to_numpy(),
        TRIAL_COLUMNS[1]: pairs["model"].to_numpy(),
        TRIAL_COLUMNS[2]: pairs["test"].to_numpy(),
        TRIAL_COLUMNS[3]: labels.map({k: v[1] for k, v in KEY_LABELS.items()}).to_numpy(),
    })


def _pair_codes(pairs, key):
    """One integer per (model, test) of ``pairs`` and of ``key``, equal for equal pairs."""
    codes = [pd.factorize(pd.concat([pairs[c], key[c]], ignore_index=True))[0]
             for c in ("model", "test")]
    both = codes[0].astype(np.int64) * (codes[1].max() + 1) + codes[1]
    return both[: len(pairs)], both[len(pairs):]


def _without_repeats(path, key, label, key_pairs):
    """Mask of the key lines to keep, each trial once; refuse a trial labelled two ways."""
    first = ~pd.Series(key_pairs).duplicated().to_numpy()
    if first.all():
        return first
    repeated = pd.Series(key_pairs).duplicated(keep=False).to_numpy()
    meaning = label[repeated].map(KEY_LABELS).to_numpy()
    ways = pd.Series(meaning).groupby(key_pairs[repeated]).transform("nunique").to_numpy()
    if (ways > 1).any():
        lines = key[repeated][ways > 1].sort_values(["model", "test"], kind="stable")
        fail(path, "labels the same trial differently on different lines",
             rows=numbered_lines(lines),
             fix="keep one line per trial, with its true label")
    return first


def _wav_files(data_folder, files):
    """``{file: wav path}`` of the train, enrolment and evaluation files; all must exist."""
    wavs, missing = {}, []
    for folder, names in zip(WAV_FOLDERS, files):
        root = os.path.join(data_folder, "wav", folder)
        present = set(os.listdir(root)) if os.path.isdir(root) else set()
        for name in names:
            if f"{name}.wav" in present:
                wavs[name] = os.path.join(root, f"{name}.wav")
            else:
                missing.append(f"wav/{folder}/{name}.wav")
    if missing:
        fail(data_folder, f"{len(missing)} files named in docs/ are missing", rows=missing,
             fix="extract all of the task's audio archives here, into wav/train, "
             "wav/enrollment and wav/evaluation")
    return wavs


def _read_channels(path, known):
    """``{file: channel}`` from a CSV ``utt,channel``; every file must be one of ``known``."""
    fix = "a channel table is a CSV with the header utt,channel, one row per file ID"
    if not os.path.isfile(path):
        fail(path, "channel table does not exist", fix=fix)
    table = read_csv_table(path, "channel table", "utt,channel")
    missing = [c for c in ("utt", "channel") if c not in table.columns]
    if missing:
        fail(path, f"missing columns {missing}; found {list(table.columns)}", fix=fix)
    rows = list(zip(table["utt"], table["channel"]))
    repeated = [utt for utt, count in collections.Counter(u for u, _ in rows).items()
                if count > 1]
    if repeated:
        fail(path, "files listed more than once", rows=repeated, fix=fix)
    unknown = [utt for utt, _ in rows if utt not in known]
    if unknown:
        fail(path, f"{len(unknown)} files are not in this task's docs/", rows=unknown,
             fix="name the task's file IDs (trn_..., enr_..., evl_...) as in its docs/")
    return dict(rows)


def _row(wav, utt, spk_id, phrase, channels, lang=PERSIAN):
    """Manifest row of one file; ``phrase`` is None for task 2 (no phrase column)."""
    columns = {"lang": lang, "channel": channels.get(utt, "")}
    if phrase is not None:
        columns.update(lang=language(phrase), phrase=phrase)
    return utterance_row(utt, wav, spk_id, DOMAIN, **columns)


main = preparation_command(
    prepare_deepmine, __doc__,
    option("--data_folder", required=True,
           help="one SdSV task's folder (docs/ and wav/)"),
    option("--save_folder", required=True, help="where the manifests and trial lists go"),
    option("--key_file", help="trial labels; without it no trial list is written"),
    option("--channel_table", help="CSV utt,channel"),
    option("--seg_dur", type=float, help="training chunk length in seconds"),
)


if __name__ == "__main__":
    sys.exit(main())
