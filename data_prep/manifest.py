"""The one manifest schema every corpus is turned into, and its validator.

A *manifest* is a SpeechBrain CSV with one row per utterance (or chunk)::

    ID,duration,wav,start,stop,spk_id,domain[,lang,channel,phrase,gender,session,sample_rate]

``start``/``stop`` are sample indices into ``wav`` at the file's own rate,
``duration`` is ``(stop - start) / sample_rate`` in seconds and ``sample_rate``
(optional, default 16000) is the rate the file is stored at; the data pipeline
resamples anything else to 16 kHz on the fly. ``spk_id`` may be empty for
utterances whose speaker is unknown (unlabelled target data, evaluation
utterances of a challenge without a key).

A *trial list* has VoxCeleb's form, one trial a line: ``label enrol test``
(``1`` target, ``0`` non-target), optionally followed by a trial type such as
DeepMine's ``TC``/``TW``/``IC``/``IW``. ``enrol`` is a manifest ID or the ID of
an enrolment model listed in an *enrolment table*: a CSV
``model_id,utt_ids[,spk_id,phrase]`` with space-separated utterance IDs.

:func:`validate` checks the three against each other and against the audio,
and is what training and evaluation call before they start.
"""

import argparse
import csv
import json
import logging
import math
import numbers
import os
import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import soundfile

from local.provenance import file_sha256

REQUIRED_COLUMNS = ["ID", "duration", "wav", "start", "stop", "spk_id", "domain"]
OPTIONAL_COLUMNS = ["lang", "channel", "phrase", "gender", "session", "sample_rate"]
TRIAL_COLUMNS = ["label", "enrol", "test", "trial_type"]
TRIAL_LABELS = ("0", "1")
# The column of read_fields that holds what follows the expected fields.
REST = "rest"
ENROLMENT_COLUMNS = ["model_id", "utt_ids"]
DEFAULT_SAMPLE_RATE = 16000
# A duration may differ from (stop - start) / sample_rate by rounding only.
DURATION_TOLERANCE_S = 0.01
EXTRA_FIELDS_FIX = ("give every row as many comma-separated fields as the header has; "
                    "put a field that holds a comma in double quotes")
# Never accept more than this many offending rows into one message.
MAX_REPORTED = 5

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """Bad manifest, trial list, enrolment table or audio, with the fix."""


def fail(path, problem, rows=None, fix=None):
    """Raise a :class:`ManifestError` naming ``path``, the first ``rows`` and the ``fix``.

    Arguments
    ---------
    path : str
        The file the problem is in.
    problem : str
        What is wrong with it.
    rows : sequence of str, optional
        The offending rows (a list, a pandas Series, a numpy array...); the
        first ``MAX_REPORTED`` are shown.
    fix : str, optional
        How to fix it.

    Raises
    ------
    ManifestError
        Always.

    Example
    -------
    >>> fail("train.csv", "duplicated IDs", rows=["u1"], fix="IDs must be unique")
    Traceback (most recent call last):
      ...
    data_prep.manifest.ManifestError: train.csv: duplicated IDs
      u1
    Fix: IDs must be unique
    """
    lines = [f"{path}: {problem}"]
    rows = [] if rows is None else list(rows)
    if rows:
        shown = rows[:MAX_REPORTED]
        lines += [f"  {row}" for row in shown]
        if len(rows) > len(shown):
            lines.append(f"  ... and {len(rows) - len(shown)} more")
    if fix:
        lines.append(f"Fix: {fix}")
    raise ManifestError("\n".join(lines))


class OptionError(ManifestError):
    """A data preparation option outside its allowed range."""


# The allowed ranges of the preparations' numeric options.
POSITIVE = pd.Interval(0, math.inf, closed="neither")
NON_NEGATIVE = pd.Interval(0, math.inf, closed="left")
AT_LEAST_ONE = pd.Interval(1, math.inf, closed="left")
AT_LEAST_TWO = pd.Interval(2, math.inf, closed="left")
FRACTION = pd.Interval(0, 1, closed="left")


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
    >>> check_option("dev_ratio", 0.1, FRACTION, "a fraction")
    >>> check_option("dev_ratio", 1.5, FRACTION,
    ...              "the fraction of each speaker's recordings held out")
    Traceback (most recent call last):
      ...
    data_prep.manifest.OptionError: dev_ratio is 1.5: not a number in [0, 1), the fraction of each speaker's recordings held out
    Fix: choose dev_ratio in [0, 1) (--dev_ratio on the command line)
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, kind) and not isinstance(value, bool) and value in allowed:
        return
    raise OptionError(
        f"{name} is {value!r}: not {'an integer' if integer else 'a number'} in {allowed}, {why}\n"
        f"Fix: choose {name} in {allowed} (--{name} on the command line)")


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
    data_prep.manifest.OptionError: seg_dur is 0: not a number in (0, inf), the training chunk length in seconds (None keeps utterances whole)
    Fix: choose seg_dur in (0, inf) (--seg_dur on the command line)
    """
    if seg_dur is not None:
        check_option("seg_dur", seg_dur, POSITIVE,
                     "the training chunk length in seconds (None keeps utterances whole)")


def audio_info(path):
    """Return ``(sample_rate, num_frames)`` of an audio file.

    Arguments
    ---------
    path : str
        Audio file readable by libsndfile (wav, flac, ...).

    Returns
    -------
    tuple of int
        The sample rate and the number of frames.

    Raises
    ------
    ManifestError
        When the file is missing or unreadable.

    Example
    -------
    >>> import os, tempfile
    >>> wav = os.path.join(tempfile.mkdtemp(), "u1.wav")
    >>> soundfile.write(wav, np.zeros(8000), 8000)
    >>> audio_info(wav)
    (8000, 8000)
    """
    if not os.path.isfile(path):
        where = ("" if os.path.isabs(path) else
                 f" (a relative path: looked for in the current directory {os.getcwd()})")
        fail(path, f"audio file does not exist{where}", fix="check the corpus folder")
    try:
        info = soundfile.info(path)
    except Exception as err:  # libsndfile raises several types
        fail(
            path,
            f"cannot read audio ({err})",
            fix="convert it to wav or flac (e.g. ffmpeg -i IN -ar 16000 OUT.wav)",
        )
    return info.samplerate, info.frames


def utterance_row(utt_id, wav, spk_id, domain, **columns):
    """Manifest row for a whole audio file, reading its length from the header.

    Arguments
    ---------
    utt_id : str
        Unique utterance ID.
    wav : str
        Path to the audio file.
    spk_id : str
        Speaker label ("" if unknown).
    domain : str
        Domain name (``voxceleb``, ``deepmine``, ...).
    **columns
        Optional schema columns (``lang``, ``channel``, ...).

    Returns
    -------
    dict
        One manifest row.

    Example
    -------
    >>> import os, tempfile
    >>> wav = os.path.join(tempfile.mkdtemp(), "u1.wav")
    >>> soundfile.write(wav, np.zeros(4000), 8000)
    >>> row = utterance_row("u1", wav, "spk1", "demo", lang="l1")
    >>> row["duration"], row["stop"], row["sample_rate"], row["lang"]
    (0.5, 4000, 8000, 'l1')
    """
    sample_rate, frames = audio_info(wav)
    row = {
        "ID": utt_id,
        "duration": round(frames / sample_rate, 4),
        "wav": wav,
        "start": 0,
        "stop": frames,
        "spk_id": spk_id,
        "domain": domain,
    }
    row.update(columns)
    row["sample_rate"] = sample_rate
    return row


def chunk_rows(row, chunk_seconds):
    """Cut one manifest row into consecutive fixed-length chunks.

    The chunk IDs are ``<ID>_<start>_<stop>`` in samples, as in SpeechBrain's
    VoxCeleb preparation; a last chunk shorter than ``chunk_seconds`` is dropped
    only when the utterance is longer than one chunk, so short utterances stay.

    Arguments
    ---------
    row : dict
        A manifest row (as from :func:`utterance_row`).
    chunk_seconds : float
        Chunk length in seconds.

    Returns
    -------
    list of dict
        The chunk rows.

    Example
    -------
    >>> row = {"ID": "u", "duration": 2.5, "wav": "u.wav", "start": 0,
    ...        "stop": 40000, "spk_id": "s", "domain": "d", "sample_rate": 16000}
    >>> [r["ID"] for r in chunk_rows(row, 1.0)]
    ['u_0_16000', 'u_16000_32000']
    """
    rate = int(row.get("sample_rate", DEFAULT_SAMPLE_RATE))
    size = int(round(chunk_seconds * rate))
    start, stop = int(row["start"]), int(row["stop"])
    if stop - start <= size:
        return [dict(row)]
    chunks = []
    for begin in range(start, stop - size + 1, size):
        chunk = dict(row)
        chunk.update(
            ID=f"{row['ID']}_{begin}_{begin + size}",
            start=begin,
            stop=begin + size,
            duration=round(size / rate, 4),
        )
        chunks.append(chunk)
    return chunks


def write_manifest(rows, path):
    """Write manifest rows as a schema CSV (required columns first).

    Arguments
    ---------
    rows : list of dict or pandas.DataFrame
        The utterances.
    path : str
        Output CSV.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> write_manifest([{"lang": "l1", "ID": "u1", "duration": 1.0, "wav": "u1.wav",
    ...                  "start": 0, "stop": 16000, "spk_id": "s1", "domain": "demo"}], path)
    >>> open(path).read().splitlines()
    ['ID,duration,wav,start,stop,spk_id,domain,lang', 'u1,1.0,u1.wav,0,16000,s1,demo,l1']
    """
    table = pd.DataFrame(rows)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: manifest rows lack columns {missing}")
    extra = [c for c in OPTIONAL_COLUMNS if c in table.columns]
    others = [c for c in table.columns if c not in REQUIRED_COLUMNS + extra]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table[REQUIRED_COLUMNS + extra + others].to_csv(path, index=False)


def read_csv_table(path, kind, header):
    """Read a CSV of strings ("" for an empty field), a file pandas cannot parse as a message.

    Arguments
    ---------
    path : str
        An existing CSV file (manifest, enrolment table).
    kind : str
        What the file is, for the messages ("manifest").
    header : str
        The header line such a file starts with, for the fix of an empty file.

    Returns
    -------
    pandas.DataFrame
        The table, every column a string column.

    Raises
    ------
    ManifestError
        When the file is not UTF-8, is empty, or has a row with more fields
        than the header, naming the line.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "enrolment.csv")
    >>> _ = open(path, "w").write("model_id,utt_ids\\nm1,u1 u2,u3\\n")
    >>> read_csv_table(path, "enrolment table", "model_id,utt_ids")
    Traceback (most recent call last):
      ...
    data_prep.manifest.ManifestError: .../enrolment.csv: line 2 has 3 fields, the header 2
    Fix: ...
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        number, line = _first_non_utf8_line(path)
        fail(path, f"{kind} is not UTF-8 text", rows=[f"line {number}: {line}"],
             fix="convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8 IN.csv > OUT.csv "
                 "(LATIN1 being the encoding it was written in)")
    except pd.errors.EmptyDataError:
        fail(path, f"{kind} is empty, without even a header line",
             fix=f"a {kind} starts with the header line {header}")
    except pd.errors.ParserError as err:
        # pandas names the line in its text only: "Expected 7 fields in line 3, saw 8".
        counts = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        problem = (f"line {counts[2]} has {counts[3]} fields, the header {counts[1]}" if counts
                   else f"not a well-formed CSV ({str(err).strip()})")
        fail(path, problem, fix=EXTRA_FIELDS_FIX)
    if not isinstance(table.index, pd.RangeIndex):
        # pandas makes the first column the index when the rows have one field more than the header.
        header = len(table.columns)
        fail(path, f"line 2 has {header + 1} fields, the header {header}", fix=EXTRA_FIELDS_FIX)
    return table


def _first_non_utf8_line(path):
    """``(number, text)`` of the first line of ``path`` that is not UTF-8, text escaped."""
    with open(path, "rb") as data:
        for number, line in enumerate(data, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number, line.decode("utf-8", "backslashreplace").rstrip()


def read_manifest(path):
    """Read a manifest CSV and check its structure (not its audio).

    Arguments
    ---------
    path : str
        Manifest CSV.

    Returns
    -------
    pandas.DataFrame
        One row per utterance, indexed by nothing; ``spk_id`` and the text
        columns are strings ("" when empty).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> write_manifest([{"ID": "u1", "duration": 1.0, "wav": "u1.wav", "start": 0,
    ...                  "stop": 16000, "spk_id": "", "domain": "demo"}], path)
    >>> table = read_manifest(path)
    >>> table["spk_id"][0], int(table["sample_rate"][0])
    ('', 16000)
    """
    if not os.path.isfile(path):
        fail(path, "manifest does not exist", fix="run the data preparation first")
    table = read_csv_table(path, "manifest", ",".join(REQUIRED_COLUMNS))
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        fail(
            path,
            f"missing columns {missing}; found {list(table.columns)}",
            fix=f"a manifest needs the header {','.join(REQUIRED_COLUMNS)}",
        )
    if table.empty:
        fail(path, "manifest has no rows", fix="check the data preparation")
    dup = table["ID"][table["ID"].duplicated()]
    if len(dup):
        fail(path, "duplicated IDs", rows=dup.unique(), fix="IDs must be unique")
    numeric = ["duration", "start", "stop"] + (
        ["sample_rate"] if "sample_rate" in table.columns else []
    )
    for column in numeric:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table["ID"][values.isna() | (values < 0)]
        if len(bad):
            fail(
                path,
                f"column '{column}' is not a non-negative number in rows",
                rows=[f"row {i + 2}: ID {table['ID'][i]}" for i in bad.index],
            )
        table[column] = values
    bad = table.index[table["stop"] <= table["start"]]
    if len(bad):
        fail(
            path,
            "stop must be greater than start",
            rows=[f"row {i + 2}: ID {table['ID'][i]}" for i in bad],
        )
    if "sample_rate" not in table.columns:
        table["sample_rate"] = DEFAULT_SAMPLE_RATE
    table[["start", "stop", "sample_rate"]] = table[
        ["start", "stop", "sample_rate"]
    ].astype(np.int64)
    return table


def select_rows(manifest_path, save_path, column, values):
    """Write the rows of a manifest whose ``column`` has one of ``values``.

    A condition's preparation step, e.g. one channel of a corpus as the source
    domain and another as the target.

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
        When the column is missing or no row has any of the values.

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
    selected = manifest[manifest[column].isin(values)]
    if selected.empty:
        present = sorted(manifest[column].unique())
        fail(manifest_path, f"no row has {column} in {values}; its values are {present}",
             fix=f"choose {column} values the corpus has")
    write_manifest(selected, save_path)
    return selected


def write_trials(trials, path):
    """Write a trial list: ``label enrol test [trial_type]`` per line.

    Arguments
    ---------
    trials : pandas.DataFrame or list of tuple
        Rows of (label, enrol, test[, trial_type]).
    path : str
        Output text file.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "trials.txt")
    >>> write_trials([(1, "m1", "u1", "TC"), (0, "m1", "u2", "IC")], path)
    >>> open(path).read().splitlines()
    ['1 m1 u1 TC', '0 m1 u2 IC']
    """
    table = pd.DataFrame(trials)
    if not isinstance(trials, pd.DataFrame):
        table.columns = TRIAL_COLUMNS[: table.shape[1]]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    columns = [c for c in TRIAL_COLUMNS if c in table.columns]
    with open(path, "w", encoding="utf-8") as out:
        for row in table[columns].itertuples(index=False):
            out.write(" ".join(str(v) for v in row if v != "") + "\n")


def read_fields(path, columns):
    """The whitespace-separated fields of each non-blank line of a text file.

    Read by pandas' C parser, so that trial lists and keys of millions of
    lines take seconds. Missing fields are ""; what follows the last of
    ``columns`` on a line is kept, joined by spaces, in a last column
    ``rest``, for the caller to refuse. A UTF-8 byte order mark is ignored.

    Arguments
    ---------
    path : str
        UTF-8 text file.
    columns : list of str
        Names of the fields expected on a line.

    Returns
    -------
    pandas.DataFrame
        ``columns`` + ``rest``, all strings, indexed by the 1-based line number.

    Raises
    ------
    ManifestError
        When the file is not UTF-8 text, naming its first such lines.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "key.txt")
    >>> with open(path, "w") as key:
    ...     _ = key.write("m1 e1 TC\\n\\nm1 e2 IW extra words\\n")
    >>> read_fields(path, ["model", "test", "label"]).to_dict("index")[3]
    {'model': 'm1', 'test': 'e2', 'label': 'IW', 'rest': 'extra words'}
    """
    names = list(columns) + [REST]
    try:
        with warnings.catch_warnings():
            # A first line with more fields than names is a warning, not an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(
                path, sep=r"\s+", header=None, names=names, index_col=False, dtype=str,
                keep_default_na=False, skip_blank_lines=False, quoting=csv.QUOTE_NONE,
                encoding="utf-8-sig", engine="c",
            )
    except UnicodeDecodeError:
        _fail_not_utf8(path)
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        # Some line has more fields than names, which the C parser cannot
        # keep: read line by line instead (only files that will be refused).
        table = _fields_line_by_line(path, names)
    table.index += 1
    return table[table[names[0]] != ""]


def _fields_line_by_line(path, names):
    rows = []
    with open(path, encoding="utf-8-sig") as lines:
        for line in lines:
            fields = line.split()
            head = fields[: len(names) - 1]
            rows.append(head + [""] * (len(names) - 1 - len(head))
                        + [" ".join(fields[len(names) - 1:])])
    return pd.DataFrame(rows, columns=names, dtype=str)


def _fail_not_utf8(path):
    bad = []
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(f"line {number}: {line.decode('utf-8', 'replace').strip()}")
    fail(path, "is not UTF-8 text", rows=bad,
         fix=f"convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8 {path} > converted.txt")


def numbered_lines(fields):
    """``line N: field field ...`` for each row of a :func:`read_fields` table.

    Arguments
    ---------
    fields : pandas.DataFrame
        Rows of :func:`read_fields`'s table (indexed by line number).

    Returns
    -------
    list of str
        The lines as a message shows them.

    Example
    -------
    >>> numbered_lines(pd.DataFrame({"a": ["1"], "b": ["x"], "rest": [""]}, index=[7]))
    ['line 7: 1 x']
    """
    text = fields.iloc[:, 0]
    for column in fields.columns[1:]:
        text = text.str.cat(fields[column], sep=" ")
    return list("line " + fields.index.astype(str) + ": " + text.str.strip())


def read_trials(path):
    """Read and structurally check a trial list.

    Arguments
    ---------
    path : str
        Trial list in ``label enrol test [trial_type]`` form.

    Returns
    -------
    pandas.DataFrame
        Columns ``label`` (int 0/1), ``enrol``, ``test``, ``trial_type``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "trials.txt")
    >>> with open(path, "w") as trials:
    ...     _ = trials.write("1 u1 u2\\n0 u1 u3\\n")
    >>> list(read_trials(path).itertuples(index=False, name=None))
    [(1, 'u1', 'u2', ''), (0, 'u1', 'u3', '')]
    """
    return _read_numbered_trials(path)[0]


def _read_numbered_trials(path):
    """:func:`read_trials`'s table, the file's line number of each row, and its sides.

    The sides are ``{"enrol": (codes, uniques), "test": ...}`` of
    ``pd.factorize``: each check looks up every distinct ID once.
    """
    if not os.path.isfile(path):
        fail(path, "trial list does not exist", fix="run the data preparation first")
    fields = read_fields(path, TRIAL_COLUMNS)
    bad = (fields["test"] == "") | (fields[REST] != "") | ~fields["label"].isin(TRIAL_LABELS)
    if bad.any():
        fail(
            path,
            "lines not of the form 'label enrol test [trial_type]' with label 0 or 1",
            rows=numbered_lines(fields[bad]),
            fix="write one trial a line, e.g. '1 spk1_utt1 spk1_utt2'",
        )
    if fields.empty:
        fail(path, "trial list is empty", fix="check the data preparation")
    lines = fields.index.to_numpy()
    table = fields[TRIAL_COLUMNS].reset_index(drop=True)
    table["label"] = (table["label"].to_numpy() == "1").astype(np.int64)
    sides = {side: pd.factorize(table[side]) for side in ("enrol", "test")}
    pair = sides["enrol"][0].astype(np.int64) * len(sides["test"][1]) + sides["test"][0]
    dup = pd.Series(pair).duplicated(keep="first")
    if dup.any():
        fail(
            path,
            "duplicated trials",
            rows=table["enrol"][dup] + " " + table["test"][dup],
            fix="remove the repeated lines",
        )
    same = table["enrol"] == table["test"]
    if same.any():
        fail(
            path,
            "trials compare an utterance with itself",
            rows=_trial_lines(table[same], lines),
            fix="remove these lines: a trial's enrol and test must be different IDs",
        )
    if table["label"].nunique() < 2:
        kind = "target" if table["label"].iloc[0] == 1 else "non-target"
        fail(
            path,
            f"all {len(table)} trials are {kind} trials",
            fix="EER and minDCF need both target and non-target trials",
        )
    return table, lines, sides


def _trial_lines(trials, lines):
    """``line N: label enrol test`` of rows of a trial table; ``lines`` of the whole table."""
    return list("line " + pd.Series(lines[trials.index], index=trials.index).astype(str)
                + ": " + trials["label"].astype(str) + " " + trials["enrol"] + " "
                + trials["test"])


def write_enrolment(models, path):
    """Write an enrolment table ``model_id,utt_ids[,...]``.

    Arguments
    ---------
    models : list of dict or pandas.DataFrame
        Rows with ``model_id`` and ``utt_ids`` (a list or a space-separated string).
    path : str
        Output CSV.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "enrolment.csv")
    >>> write_enrolment([{"model_id": "m1", "utt_ids": ["u1", "u2"], "phrase": "03"}], path)
    >>> open(path).read().splitlines()
    ['model_id,utt_ids,phrase', 'm1,u1 u2,03']
    """
    table = pd.DataFrame(models)
    table["utt_ids"] = [
        u if isinstance(u, str) else " ".join(u) for u in table["utt_ids"]
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table.to_csv(path, index=False)


def read_enrolment(path):
    """Read an enrolment table into ``{model_id: [utt_id, ...]}`` plus the table.

    Arguments
    ---------
    path : str
        Enrolment CSV.

    Returns
    -------
    tuple
        ``(models, table)``: the mapping and the pandas table.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "enrolment.csv")
    >>> write_enrolment([{"model_id": "m1", "utt_ids": "u1 u2"}], path)
    >>> models, table = read_enrolment(path)
    >>> models
    {'m1': ['u1', 'u2']}
    """
    if not os.path.isfile(path):
        fail(path, "enrolment table does not exist", fix="run the data preparation first")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ENROLMENT_COLUMNS if c not in table.columns]
    if missing:
        fail(path, f"missing columns {missing}", fix="header must start with model_id,utt_ids")
    empty = table["model_id"][table["utt_ids"].str.strip() == ""]
    if len(empty):
        fail(path, "enrolment models without utterances", rows=empty)
    models = {m: u.split() for m, u in zip(table["model_id"], table["utt_ids"])}
    return models, table


def check_manifest_audio(manifest, path, workers=None):
    """Open every audio file of a manifest and compare it with its rows; record a pass.

    Every file exists, is readable, has the declared sample rate and is long
    enough for every row's ``stop``; every ``duration`` is
    ``(stop - start) / sample_rate``. A relative ``wav`` is read from the
    current directory, as SpeechBrain's data loader reads it. The files are opened by ``workers``
    threads (libsndfile releases the GIL while it reads a header, and a
    network or cold disk answers many requests at once). A pass is recorded
    in the stamp ``<manifest>.audio_ok`` with the manifest's SHA-256, which
    :func:`check_manifest_audio_once` reads.

    Arguments
    ---------
    manifest : pandas.DataFrame
        The manifest, as :func:`read_manifest` returns it.
    path : str
        Its CSV file.
    workers : int, optional
        Threads opening files (default: the thread pool's, ``min(32, CPUs + 4)``).

    Raises
    ------
    ManifestError
        Naming the first offending rows and how to fix them.
    """
    digest = file_sha256(path)
    wavs = manifest["wav"].unique()  # in order of first appearance
    with ThreadPoolExecutor(workers) as pool:
        headers = list(pool.map(_audio_header, wavs))
    files = pd.DataFrame(headers, columns=["rate", "frames", "error"], index=wavs)
    first = ~manifest["wav"].duplicated()
    files["declared"] = manifest[first].set_index("wav")["sample_rate"]
    files["order"] = np.arange(len(wavs))
    rows = manifest[["ID", "wav", "stop"]].join(files, on="wav")
    readable = rows["error"] == ""
    wrong_rate = readable & (rows["rate"] != rows["declared"])
    # A file's problems in order of its first row, its rows in manifest order.
    rows = rows[(first & ~readable) | (first & wrong_rate)
                | (readable & ~wrong_rate & (rows["stop"] > rows["frames"]))]
    problems = [_file_problem(r) for r in rows.sort_values("order", kind="stable").itertuples()]
    expected = (manifest["stop"] - manifest["start"]) / manifest["sample_rate"]
    off = manifest[(manifest["duration"] - expected).abs() > DURATION_TOLERANCE_S]
    problems += [
        f"{r.ID}: duration {r.duration} s but (stop - start) / sample_rate is "
        f"{(r.stop - r.start) / r.sample_rate:.4f} s"
        for r in off.itertuples()
    ]
    if problems:
        fail(path, "manifest does not match its audio", rows=problems,
             fix="re-run the data preparation for this corpus; in a manifest written by hand, "
                 "correct these rows: wav an absolute path or one relative to the directory "
                 f"you run from (now {os.getcwd()}), not to the manifest's folder; "
                 "sample_rate, start, stop and duration as soundfile.info(wav) gives them")
    _write_stamp(path, digest)


def _file_problem(row):
    """The message of a manifest row joined with its file's header, as selected above."""
    if row.error:
        return f"{row.ID}: {row.error}"
    if row.rate != row.declared:
        return (f"{row.ID}: {row.wav} is {row.rate} Hz but the manifest says {row.declared} Hz "
                "(add or fix the sample_rate column)")
    return f"{row.ID}: stop {row.stop} beyond the file's {row.frames} samples"


def _audio_header(wav):
    """``(sample_rate, frames, "")`` of a file, or ``(0, 0, the first line of its error)``."""
    try:
        return (*audio_info(wav), "")
    except ManifestError as err:
        return 0, 0, str(err).splitlines()[0]


def _stamp_path(manifest_path):
    return f"{manifest_path}.audio_ok"


def _write_stamp(manifest_path, digest):
    """Record that the manifest whose SHA-256 is ``digest`` passed :func:`check_manifest_audio`."""
    stamp = _stamp_path(manifest_path)
    try:
        with open(f"{stamp}.tmp", "w", encoding="utf-8") as out:
            json.dump({"manifest_sha256": digest}, out)
        os.replace(f"{stamp}.tmp", stamp)  # concurrent runs never read half a stamp
    except OSError as err:
        logger.warning("%s: could not record the passed audio check (%s); the next run "
                       "checks the audio again", manifest_path, err)


def check_manifest_audio_once(manifest_path, workers=None):
    """:func:`check_manifest_audio` unless this version of the manifest already passed it.

    The version is the manifest's SHA-256, recorded beside it in
    ``<manifest>.audio_ok`` by a passed check; a failed check records nothing.
    The stamp vouches for the audio as it was when checked: after moving or
    changing audio files under an unchanged manifest, delete the stamp (or run
    ``python -m data_prep.manifest MANIFEST``, which always checks).

    Arguments
    ---------
    manifest_path : str
        Manifest CSV.
    workers : int, optional
        Threads opening files (see :func:`check_manifest_audio`).

    Returns
    -------
    bool
        Whether the audio was checked (False: the stamp matched).

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> wav = os.path.join(folder, "u1.wav")
    >>> soundfile.write(wav, np.zeros(8000), 16000)
    >>> path = os.path.join(folder, "m.csv")
    >>> write_manifest([utterance_row("u1", wav, "s1", "demo")], path)
    >>> check_manifest_audio_once(path), check_manifest_audio_once(path)
    (True, False)
    """
    stamp = _stamp_path(manifest_path)
    if os.path.isfile(stamp) and os.path.isfile(manifest_path):
        with open(stamp, encoding="utf-8") as saved:
            if json.load(saved).get("manifest_sha256") == file_sha256(manifest_path):
                logger.info("%s: audio already checked (%s)", manifest_path, stamp)
                return False
    manifest = read_manifest(manifest_path)
    check_manifest_audio(manifest, manifest_path, workers)
    logger.info("%s: audio of %d rows checked", manifest_path, len(manifest))
    return True


def validate(manifest_path, trials_path=None, enrolment_path=None, check_audio=True):
    """Check a manifest, optionally a trial list and enrolment table, and the audio.

    Arguments
    ---------
    manifest_path : str
        Manifest CSV.
    trials_path : str, optional
        Trial list whose IDs must be in the manifest (or enrolment table).
    enrolment_path : str, optional
        Enrolment table whose utterances must be in the manifest.
    check_audio : bool
        Also open every audio file: it exists, is readable, has the declared
        sample rate, and is long enough for every row's ``stop``
        (:func:`check_manifest_audio`, which records a pass).

    Returns
    -------
    pandas.DataFrame
        The manifest, as :func:`read_manifest` returns it.

    Raises
    ------
    ManifestError
        Naming the file, the first offending rows and the fix.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rows = []
    >>> for utt, spk in [("u1", "a"), ("u2", "a"), ("u3", "b")]:
    ...     soundfile.write(os.path.join(folder, f"{utt}.wav"), np.zeros(8000), 16000)
    ...     rows.append(utterance_row(utt, os.path.join(folder, f"{utt}.wav"), spk, "demo"))
    >>> write_manifest(rows, os.path.join(folder, "eval.csv"))
    >>> write_trials([(1, "u1", "u2"), (0, "u1", "u3")], os.path.join(folder, "trials.txt"))
    >>> len(validate(os.path.join(folder, "eval.csv"), os.path.join(folder, "trials.txt")))
    3
    >>> write_trials([(0, "u1", "u2"), (0, "u1", "u3"), (1, "u2", "u3")],
    ...              os.path.join(folder, "wrong.txt"))
    >>> validate(os.path.join(folder, "eval.csv"), os.path.join(folder, "wrong.txt"))
    Traceback (most recent call last):
      ...
    data_prep.manifest.ManifestError: .../wrong.txt: labels disagree with the manifest's spk_id
      line 1: 0 u1 u2
      line 3: 1 u2 u3
    Fix: label is 1 exactly when both sides have the same speaker
    """
    manifest = read_manifest(manifest_path)
    if check_audio:
        check_manifest_audio(manifest, manifest_path)
    known = set(manifest["ID"])
    models = {}
    if enrolment_path:
        models, _ = read_enrolment(enrolment_path)
        unknown = [f"{m}: {u}" for m, utts in models.items() for u in utts if u not in known]
        if unknown:
            fail(enrolment_path, f"utterances not in {manifest_path}", rows=unknown,
                  fix="prepare the enrolment utterances into the same manifest")
    if trials_path:
        trials, lines, sides = _read_numbered_trials(trials_path)
        _check_trial_ids(trials, lines, sides, trials_path, manifest, models, manifest_path)
    return manifest


def _check_trial_ids(trials, lines, sides, trials_path, manifest, models, manifest_path):
    """Every trial side is known; labels agree with the speakers of both sides.

    ``lines`` and ``sides`` are as from :func:`_read_numbered_trials`.
    """
    ids = pd.Index(manifest["ID"])
    known = ids.append(pd.Index(list(models), dtype=ids.dtype))
    speakers, speaker_names = pd.factorize(manifest["spk_id"])
    speakers[(speaker_names == "")[speakers]] = -1
    unknown, speaker = [], {}
    for side in ("enrol", "test"):
        codes, uniques = sides[side]
        rows = np.flatnonzero(~uniques.isin(known)[codes])
        unknown.append(pd.DataFrame({"line": lines[rows], "side": side,
                                     "ident": trials[side].to_numpy()[rows]}))
        position = ids.get_indexer(uniques)
        speaker[side] = np.where(position >= 0, speakers[position], -1)[codes]
    unknown = pd.concat(unknown).sort_values("line", kind="stable")
    if len(unknown):
        fail(trials_path, f"trials name IDs that are not in {manifest_path}",
             rows="line " + unknown["line"].astype(str) + ": " + unknown["side"] + " '"
             + unknown["ident"] + "'",
             fix="use the manifest's ID column (or an enrolment model ID)")
    # Where both sides have a known speaker, the label must agree with them.
    # Typed (text-dependent) trials are exempt: a same-speaker, wrong-phrase
    # trial is a non-target.
    left, right = speaker["enrol"], speaker["test"]
    wrong = ((trials["trial_type"].to_numpy() == "") & (left >= 0) & (right >= 0)
             & ((left == right) != (trials["label"].to_numpy() == 1)))
    if wrong.any():
        fail(trials_path, "labels disagree with the manifest's spk_id",
             rows=_trial_lines(trials[wrong], lines),
             fix="label is 1 exactly when both sides have the same speaker")


def skip_if_prepared(save_folder, outputs, options):
    """True when ``outputs`` exist and were made with the same ``options``.

    SpeechBrain's ``prepare_*`` convention: re-running a preparation with the
    same arguments does nothing. The options are stored beside the outputs.

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
    >>> mark_prepared(folder, {"seed": 1})
    >>> skip_if_prepared(folder, [], {"seed": 1})
    True
    >>> skip_if_prepared(folder, [], {"seed": 2})
    False
    """
    marker = os.path.join(save_folder, "prepare_options.json")
    if not os.path.isfile(marker):
        return False
    with open(marker, encoding="utf-8") as saved:
        same = json.load(saved) == json.loads(json.dumps(options))
    if same and all(os.path.isfile(p) for p in outputs):
        return True
    # The preparation is about to rewrite the outputs: should it die halfway,
    # an old marker must not vouch for the half-written files.
    os.remove(marker)
    return False


def mark_prepared(save_folder, options):
    """Record ``options`` so that :func:`skip_if_prepared` can skip next time.

    Arguments
    ---------
    save_folder : str
        Where the preparation wrote.
    options : dict
        The options passed to :func:`skip_if_prepared`.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> mark_prepared(folder, {"seed": 1})
    >>> os.listdir(folder)
    ['prepare_options.json']
    """
    with open(os.path.join(save_folder, "prepare_options.json"), "w", encoding="utf-8") as out:
        json.dump(options, out, indent=1, sort_keys=True)


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


def main(argv=None):
    """Command line: ``python -m data_prep.manifest MANIFEST [--trials T] [--enrolment E]``.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when the files are valid, 1 otherwise (the problem printed to stderr).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> write_manifest([{"ID": "u1", "duration": 1.0, "wav": "u1.wav", "start": 0,
    ...                  "stop": 16000, "spk_id": "s1", "domain": "demo"}], path)
    >>> main([path, "--no-audio"])
    /.../train.csv: 1 rows, 1 speakers, OK
    0
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--trials")
    parser.add_argument("--enrolment")
    parser.add_argument("--no-audio", action="store_true", help="skip opening the audio")
    args = parser.parse_args(argv)
    try:
        manifest = validate(args.manifest, args.trials, args.enrolment, not args.no_audio)
    except ManifestError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{args.manifest}: {len(manifest)} rows, {manifest['spk_id'].nunique()} speakers, OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
