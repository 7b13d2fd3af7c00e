"""Mean and spread over seeds of the verification results of several systems.

Usage::

    python -m local.evaluation.seed_table --runs baseline 'results/demo/dann_fbank/base_s*' \\
        --runs DANN 'results/demo/dann_fbank/dann_s*' [--lists target target_whiten] \\
        [--metrics eer_percent min_dcf_0.01] [--out table.md]

Each ``--runs NAME PATTERN`` names a system and the run folders of its seeds
(a glob); each run's ``verification/summary.csv`` gives its figures. The
table has a row per system and, per scored list and metric, the mean ± the
standard deviation (with n - 1) over the runs, and the number of runs.
"""

import glob
import os
import sys

import pandas as pd

from local.cli import command, option
from local.errors import fail
from local.evaluation.report import markdown_table


def collect(pattern):
    """The summaries of every run folder matching ``pattern``, stacked.

    Arguments
    ---------
    pattern : str
        Glob of run folders (``output_folder`` of ``train_dann.py``).

    Returns
    -------
    pandas.DataFrame
        The rows of each run's ``verification/summary.csv``, with a ``run``
        column.

    Raises
    ------
    ManifestError
        When no folder matches, or one has no verification summary.
    """
    folders = sorted(glob.glob(pattern))
    if not folders:
        fail(pattern, "no run folder matches", fix="check the pattern (quote it for the shell)")
    tables = []
    for folder in folders:
        path = os.path.join(folder, "verification", "summary.csv")
        if not os.path.isfile(path):
            fail(path, "run without a verification summary",
                 fix="let the training finish, or run evaluate.py on it")
        tables.append(pd.read_csv(path).assign(run=folder))
    return pd.concat(tables, ignore_index=True)


def seed_table(systems, lists, metrics):
    """Mean ± standard deviation over runs, a row per system.

    Arguments
    ---------
    systems : dict
        ``{name: summaries}``, as :func:`collect` returns.
    lists : list of str
        Scored lists (``system`` values of the summaries) to report.
    metrics : list of str
        Summary columns to report.

    Returns
    -------
    pandas.DataFrame
        ``system``, ``runs`` and one ``<list> <metric>`` column per pair,
        formatted ``mean ± std``.

    Raises
    ------
    ManifestError
        When a run lacks one of the lists.

    Example
    -------
    >>> summaries = pd.DataFrame({"system": ["target"] * 3, "eer_percent": [30.0, 32.0, 34.0],
    ...                           "run": ["s1", "s2", "s3"]})
    >>> seed_table({"baseline": summaries}, ["target"], ["eer_percent"]).to_dict("records")
    [{'system': 'baseline', 'runs': 3, 'target eer_percent': '32.00 ± 2.00'}]
    """
    rows = []
    for name, summaries in systems.items():
        row = {"system": name, "runs": summaries["run"].nunique()}
        for scored in lists:
            chosen = summaries[summaries["system"] == scored]
            missing = sorted(set(summaries["run"]) - set(chosen["run"]))
            if missing:
                fail(missing[0], f"no '{scored}' list in its verification summary",
                     fix="score it again with the same score_norm/backend_adaptation")
            for metric in metrics:
                values = chosen[metric]
                row[f"{scored} {metric}"] = f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" \
                    if len(values) > 1 else f"{values.mean():.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def print_seed_table(runs, lists, metrics, out=None):
    """Print (and optionally write) the table of the systems named on the command line.

    Arguments
    ---------
    runs : list of (str, str)
        Each system's name and the glob of its run folders.
    lists : list of str
        The trial lists, as in :func:`seed_table`.
    metrics : list of str
        The metrics, as in :func:`seed_table`.
    out : str, optional
        Also write the table here, as markdown.

    Returns
    -------
    int
        0 when the table was made, 1 when a run folder is missing or incomplete.
    """
    try:
        table = seed_table({name: collect(pattern) for name, pattern in runs}, lists, metrics)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    text = markdown_table(list(table.columns), table.astype(str).values.tolist())
    print(text, end="")
    if out:
        with open(out, "w", encoding="utf-8") as fout:
            fout.write(text)
    return 0


main = command(
    print_seed_table, __doc__,
    option("--runs", nargs=2, action="append", required=True,
           metavar=("NAME", "PATTERN"), help="a system and the glob of its runs"),
    option("--lists", nargs="+", default=["source", "target"]),
    option("--metrics", nargs="+", default=["eer_percent", "min_dcf_0.01"]),
    option("--out", help="also write the table here, as markdown"),
)


if __name__ == "__main__":
    sys.exit(main())
