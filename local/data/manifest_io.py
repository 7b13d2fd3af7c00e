"""Reading and writing manifests, trial lists and enrolment tables, refusing malformed ones.

The formats are those of :mod:`local.data.schema`. Every reader raises a
:class:`~local.errors.ManifestError` naming the file, the offending lines and
the fix. Every writer writes its file whole (:func:`local.whole_files.written_whole`):
a run that reads a manifest while another run writes it again finds the one
before, not the first rows of the new one.
"""

import csv
import os
import shlex
import warnings

import numpy as np
import pandas as pd

from local.data.schema import (
    ENROLMENT_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    REST,
    SAMPLE_RATE,
    SDSV_TRIAL_LABELS,
    TRIAL_COLUMNS,
    TRIAL_LABELS,
)
from local.errors import fail
from local.whole_files import written_whole

# The third field of Kaldi's trial lists (``enrol test target``), refused with its conversion.
KALDI_TRIAL_LABELS = ("target", "nontarget")
EXTRA_FIELDS_FIX = ("give every row as many comma-separated fields as the header has; "
                    "put a field that holds a comma in double quotes")


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
    with written_whole(path, encoding="utf-8", newline="") as out:
        table[REQUIRED_COLUMNS + extra + others].to_csv(out, index=False)


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
        When the file is not UTF-8, is empty, repeats a column of its
        header, or has a row with more or fewer fields than the header,
        naming the line.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "enrolment.csv")
    >>> _ = open(path, "w").write("model_id,utt_ids\\nm1,u1 u2,u3\\n")
    >>> read_csv_table(path, "enrolment table", "model_id,utt_ids")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: .../enrolment.csv: line 2 has 3 fields, the header 2
    Fix: ...
    """
    try:
        _check_fields(path)
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        number, line = _first_non_utf8_line(path)
        fail(path, f"{kind} is not UTF-8 text", rows=[f"line {number}: {line}"],
             fix="convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8 IN.csv > OUT.csv "
                 "(LATIN1 being the encoding it was written in)")
    except pd.errors.EmptyDataError:
        article = "an" if kind[0] in "aeiou" else "a"
        fail(path, f"{kind} is empty, without even a header line",
             fix=f"{article} {kind} starts with the header line {header}")
    except pd.errors.ParserError as err:
        fail(path, f"not a well-formed CSV ({str(err).strip()})", fix=EXTRA_FIELDS_FIX)
    return table


def _check_fields(path):
    """Refuse a header that repeats a column, and a row with more or fewer fields than it.

    pandas would read a repeated column as ``spk_id.1``, which nothing reads,
    fill the missing fields of a short row with "", and make the first
    column the index where every row has one field too many. Blank lines
    are skipped, as pandas skips them; an empty file passes, for pandas to
    refuse.
    """
    with open(path, encoding="utf-8-sig", newline="") as lines:
        rows = csv.reader(lines)
        header = next((row for row in rows if row), None)
        if header is None:
            return
        repeated = sorted({column for column in header if header.count(column) > 1})
        if repeated:
            fail(path, f"repeated columns {repeated}",
                 fix="keep one column of each name, the one whose values are meant "
                     "(pandas would read the others as <name>.1 and nothing would read them)")
        for row in rows:
            if row and len(row) != len(header):
                fail(path, f"line {rows.line_num} has {len(row)} fields, the header "
                           f"{len(header)}", fix=EXTRA_FIELDS_FIX)


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
    check_names(path, table["ID"], "IDs", "give every row an ID without spaces")
    dup = table["ID"][table["ID"].duplicated()]
    if len(dup):
        fail(path, "duplicated IDs", rows=dup.unique(), fix="IDs must be unique")
    numeric = ["duration", "start", "stop"] + (
        ["sample_rate"] if "sample_rate" in table.columns else []
    )
    for column in numeric:
        values = pd.to_numeric(table[column], errors="coerce")
        # Sample indices and rates are counts: 0.5 would be truncated silently.
        whole = column != "duration"
        bad = table["ID"][values.isna() | (values < 0) | (whole & (values % 1 != 0))
                          | ((column == "sample_rate") & (values == 0))]
        if len(bad):
            kind = ("a positive whole number" if column == "sample_rate"
                    else "a non-negative whole number" if whole else "a non-negative number")
            fail(
                path,
                f"column '{column}' is not {kind} in rows",
                rows=[f"row {i + 2}: ID {table['ID'][i]}: {table[column][i]!r}"
                      for i in bad.index],
                fix=f"give every row's {column} as {kind} (a manifest written by the data "
                    "preparation has them: re-run it)",
            )
        table[column] = values
    bad = table.index[table["stop"] <= table["start"]]
    if len(bad):
        fail(
            path,
            "stop must be greater than start",
            rows=[f"row {i + 2}: ID {table['ID'][i]}" for i in bad],
            fix="start and stop are the row's first sample and the one after its last: give "
                "each row at least one sample (an empty audio file has none: replace it, or "
                "take it out of the corpus)",
        )
    if "sample_rate" not in table.columns:
        table["sample_rate"] = SAMPLE_RATE
    table[["start", "stop", "sample_rate"]] = table[
        ["start", "stop", "sample_rate"]
    ].astype(np.int64)
    return table


def check_names(path, names, what, fix):
    """Refuse empty names and names holding whitespace: a trial list could not name them.

    Arguments
    ---------
    path : str
        The table, named in the error.
    names : pandas.Series
        Its ID column, strings.
    what : str
        What the names are, for the message.
    fix : str
        How to fix it.

    Example
    -------
    >>> check_names("train.csv", pd.Series(["u1", "u 2", ""]), "IDs", "no spaces")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: train.csv: IDs empty or holding whitespace
      row 3: 'u 2'
      row 4: ''
    Fix: no spaces
    """
    bad = names[(names == "") | names.str.contains(r"\s")]
    if len(bad):
        fail(path, f"{what} empty or holding whitespace",
             rows=[f"row {i + 2}: {name!r}" for i, name in bad.items()], fix=fix)


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
    with written_whole(path, encoding="utf-8") as out:
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
    return read_numbered_trials(path)[0]


def read_numbered_trials(path):
    """:func:`read_trials`'s table, the file's line number of each row, and its sides.

    For checks that name the offending lines (:mod:`local.data.validation`).

    Arguments
    ---------
    path : str
        Trial list in ``label enrol test [trial_type]`` form.

    Returns
    -------
    tuple
        ``(table, lines, sides)``: the table of :func:`read_trials`, the
        numpy array of each row's line number in the file, and
        ``{"enrol": (codes, uniques), "test": ...}`` of ``pd.factorize``, so
        that each check looks up every distinct ID once.
    """
    if not os.path.isfile(path):
        fail(path, "trial list does not exist", fix="run the data preparation first")
    fields = read_fields(path, TRIAL_COLUMNS)
    bad = (fields["test"] == "") | (fields[REST] != "") | ~fields["label"].isin(TRIAL_LABELS)
    if bad.any():
        problem = "lines not of the form 'label enrol test [trial_type]' with label 0 or 1"
        fix = "write one trial a line, e.g. '1 spk1_utt1 spk1_utt2'"
        if fields.loc[bad, "test"].isin(KALDI_TRIAL_LABELS).all() and \
                (fields.loc[bad, "trial_type"] == "").all():
            problem += "; they are Kaldi's 'enrol test target|nontarget' form"
            fix = ("convert the list: awk '{print ($3 == \"target\"), $1, $2}' "
                   f"{shlex.quote(str(path))} > trials.txt")
        fail(path, problem, rows=numbered_lines(fields[bad]), fix=fix)
    if fields.empty:
        fail(path, "trial list is empty", fix="check the data preparation")
    # Another type (``tc``, ``XX``) would escape both the check of its label
    # against the speakers of its sides and those of the SdSV types.
    unknown = ~fields["trial_type"].isin(["", *SDSV_TRIAL_LABELS])
    if unknown.any():
        fail(path, "trial types that are not SdSV's",
             rows=numbered_lines(fields[unknown]),
             fix="write the trial type as TC, TW, IC or IW, in upper case, or leave it out")
    # The per-type rows of the report (TC vs IC, ...) take the label of each trial.
    sdsv_label = fields["trial_type"].map(SDSV_TRIAL_LABELS)
    contradicted = sdsv_label.notna() & (sdsv_label != fields["label"].astype(int))
    if contradicted.any():
        fail(path, "labels disagree with the SdSV trial types (only TC is a target trial)",
             rows=numbered_lines(fields[contradicted]),
             fix="label TC trials 1 and TW, IC and IW trials 0")
    lines = fields.index.to_numpy()
    table = fields[TRIAL_COLUMNS].reset_index(drop=True)
    table["label"] = (table["label"].to_numpy() == "1").astype(np.int64)
    sides = {side: pd.factorize(table[side]) for side in ("enrol", "test")}
    pair = sides["enrol"][0].astype(np.int64) * len(sides["test"][1]) + sides["test"][0]
    dup = pd.Series(pair).duplicated(keep="first").to_numpy()
    if dup.any():
        # factorize numbers the pairs in the order of their first lines, the lines not repeats.
        first = lines[np.flatnonzero(~dup)[pd.factorize(pair)[0][dup]]]
        fail(
            path,
            "duplicated trials",
            rows=pd.Series(numbered_trial_lines(table[dup], lines))
            + " (repeats line " + first.astype(str) + ")",
            fix="remove the repeated lines",
        )
    same = table["enrol"] == table["test"]
    if same.any():
        fail(
            path,
            "trials compare an utterance with itself",
            rows=numbered_trial_lines(table[same], lines),
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


def numbered_trial_lines(trials, lines):
    """``line N: label enrol test [type]`` of rows of a trial table, to name them in a message.

    Arguments
    ---------
    trials : pandas.DataFrame
        Rows of a table of :func:`read_numbered_trials`, its index kept.
    lines : numpy.ndarray
        The line numbers of that whole table.

    Returns
    -------
    list of str
        One line a row.
    """
    return list("line " + pd.Series(lines[trials.index], index=trials.index).astype(str)
                + ": " + trials["label"].astype(str) + " " + trials["enrol"] + " "
                + trials["test"] + (" " + trials["trial_type"]).str.rstrip())


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
    with written_whole(path, encoding="utf-8", newline="") as out:
        table.to_csv(out, index=False)


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
    table = read_csv_table(path, "enrolment table", ",".join(ENROLMENT_COLUMNS))
    missing = [c for c in ENROLMENT_COLUMNS if c not in table.columns]
    if missing:
        fail(path, f"missing columns {missing}", fix="header must start with model_id,utt_ids")
    check_names(path, table["model_id"], "model_ids", "give every model a model_id without spaces")
    empty = table["model_id"][table["utt_ids"].str.strip() == ""]
    if len(empty):
        fail(path, "enrolment models without utterances", rows=empty)
    repeated = table["model_id"][table["model_id"].duplicated()]
    if len(repeated):
        fail(path, "enrolment models listed more than once", rows=repeated.unique(),
             fix="give each model_id one row, with all of its utterances in utt_ids")
    models = {m: u.split() for m, u in zip(table["model_id"], table["utt_ids"])}
    return models, table
