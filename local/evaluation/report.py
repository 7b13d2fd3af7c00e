"""Reports of a verification run: score files, DET curves, per-condition tables.

A *score file* has one trial a line, ``enrol test score label``, with the
score written to full precision (reading it back gives the same floats).

The *per-condition table* splits the trials by the manifest columns in
:data:`CONDITION_COLUMNS`: one row per value both sides of a trial share
(``channel = telephone``), one per ordered cross pair (``channel = wireless /
telephone``: enrolment side wireless, test side telephone), and, for trial
lists with trial types (SdSV's ``TC``, ``TW``, ``IC``, ``IW``), one per
pair of a target type with a non-target type (``TC vs IC``), since a type
alone holds one class of trials. Where only one side carries a value (an
SdSV test file's phrase is not known, its model's is), the trials are
grouped by it (``phrase (enrolment) = 07``, ``phrase (test) = 02``), and the
trials of neither side's value make a row of their own (``phrase (neither
side) = unknown``). An enrolment model whose utterances have several values
has the value ``mixed`` (``channel = mixed / telephone``). So the rows of
each column hold every trial once: their trial counts add up to the ``all``
row's. A group of one class has no EER: its row says ``n/a: one-sided``.
"""

import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from local.data.manifest_io import numbered_lines, read_fields
from local.data.schema import REST
from local.errors import fail
from local.evaluation.metrics import VOXCELEB_DCF, compute_metrics, dcf_name, eer, error_rates
from local.run_folder import check_results_in_place
from local.whole_files import written_whole

SCORE_COLUMNS = ["enrol", "test", "score", "label"]
# Manifest columns whose values define conditions.
CONDITION_COLUMNS = ["lang", "channel", "gender", "phrase", "domain"]
ONE_SIDED = "n/a: one-sided"
# condition_table's value of an enrolment model whose utterances have several
# values of a column, and that of the trials neither of whose sides has one.
MIXED = "mixed"
UNKNOWN = "unknown"
# In a report folder: the checkpoint whose model it scored, its name and save time
# (local.model.checkpoints.checkpoint_identity).
CHECKPOINT_FILE = "checkpoint.txt"
# What a run's folder holds from its start (local/experiment.py): the fusion
# and the seed table write no file under a folder that holds both.
RUN_RECORD = ("hyperparams.yaml", "provenance.json")
# DET axes: candidate ticks in error probability (NIST's), of which
# det_ticks keeps those far enough apart; the axes run from the candidate at
# or below the smallest non-zero error rate of the curves up to DET_TOP.
# DET_TOP leaves room for the curves of hard (cross-domain) trial lists,
# whose EER can be above 30%.
DET_TICKS = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4,
             0.6, 0.8]
DET_TOP = 0.9
# Closest two tick labels may be, as a fraction of the axis length: on the
# 5.5-inch figure, room for a label such as "0.05" at the default font size.
DET_MIN_TICK_GAP = 0.07
# Under the report's table: what its figures are (local.evaluation.metrics), so
# that they are compared with other tools' for what they are.
METRICS_NOTE = (
    "EER: `(p_miss + p_fa) / 2` at the threshold where the two are closest (tied scores "
    "never split). minDCF `p_target[, C_miss, C_fa]` (costs 1 where not named): the lowest "
    "detection cost, normalised by that of the better trivial system, "
    "`min(C_miss p_target, C_fa (1 - p_target))`, as VoxSRC's and SdSV's scoring report it "
    "(SpeechBrain's `minDCF` is the cost itself)."
)


def _checked_scores(trials, scores):
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(trials),):
        raise ValueError(f"{scores.size} scores for {len(trials)} trials")
    return scores


def write_scores(path, trials, scores):
    """Write a score file, ``enrol test score label`` per trial.

    Arguments
    ---------
    path : str
        Output text file.
    trials : pandas.DataFrame
        With ``enrol``, ``test`` and ``label`` columns.
    scores : array-like
        One score per trial, in the order of ``trials``.

    Example
    -------
    >>> import tempfile
    >>> trials = pd.DataFrame({"enrol": ["u1", "u1"], "test": ["u2", "u3"], "label": [1, 0]})
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.txt")
    >>> write_scores(path, trials, [0.75, 0.1])
    >>> open(path).read().splitlines()
    ['u1 u2 0.75 1', 'u1 u3 0.1 0']
    """
    table = pd.DataFrame({
        "enrol": trials["enrol"].to_numpy(),
        "test": trials["test"].to_numpy(),
        "score": _checked_scores(trials, scores),
        "label": trials["label"].to_numpy(),
    })
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # pandas writes float64 with repr, the shortest text that reads back exactly.
    with written_whole(path, encoding="utf-8") as out:  # a kill leaves the file before it
        table.to_csv(out, sep=" ", header=False, index=False)


def read_scores(path):
    """Read a score file written by :func:`write_scores`.

    Fields are separated by any whitespace; blank lines, Windows line ends
    and a UTF-8 byte order mark are ignored, as in a trial list.

    Arguments
    ---------
    path : str
        Score file.

    Returns
    -------
    pandas.DataFrame
        Columns ``enrol``, ``test``, ``score`` (float) and ``label`` (int).

    Raises
    ------
    ManifestError
        For a missing, empty or non-UTF-8 file, malformed lines or repeated
        trials.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.txt")
    >>> with open(path, "w") as scores:
    ...     _ = scores.write("u1 u2 0.75 1\\nu1 u3 -0.1 0\\n")
    >>> list(read_scores(path).itertuples(index=False, name=None))
    [('u1', 'u2', 0.75, 1), ('u1', 'u3', -0.1, 0)]
    """
    if not os.path.isfile(path):
        check_results_in_place(path)
        fail(path, "score file does not exist", fix="score the trial list first")
    fields = read_fields(path, SCORE_COLUMNS)
    if fields.empty:
        fail(path, "score file is empty", fix="score the trial list first")
    score = pd.to_numeric(fields["score"], errors="coerce")
    bad = ~np.isfinite(score) | ~fields["label"].isin(["0", "1"]) | (fields[REST] != "")
    if bad.any():
        fail(path, "lines must be 'enrol test score label' with a finite score and label 0 or 1",
             rows=numbered_lines(fields[bad]),
             fix="write one trial a line, its label 1 for a target trial and 0 for a non-target")
    repeated = fields.duplicated(["enrol", "test"])
    if repeated.any():
        fail(path, "trials listed more than once",
             rows=numbered_lines(fields.loc[repeated, ["enrol", "test"]]))
    table = fields[SCORE_COLUMNS].reset_index(drop=True)
    return table.assign(score=score.to_numpy(), label=table["label"].astype(int))


def plot_det(panels, path, styles=None):
    """Draw DET curves (probit axes) in one PNG: a panel each, its legend below it.

    Arguments
    ---------
    panels : dict
        ``{title: {name: (scores, labels)}}``: a panel per title, side by
        side, a curve per system, labelled with its EER.
    path : str
        Output PNG.
    styles : dict, optional
        ``{name: line properties}`` (``color``, ``linestyle``) of some or all
        curves; the others take matplotlib's colour cycle.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, an axes per panel.

    Example
    -------
    >>> import tempfile
    >>> systems = {"baseline": ([0.8, 0.3, 0.7, 0.6, 0.1], [1, 0, 0, 1, 0])}
    >>> figure = plot_det({"target": systems}, os.path.join(tempfile.mkdtemp(), "det.png"))
    >>> [line.get_label() for line in figure.axes[0].get_lines()]
    ['baseline (EER 41.67%)']
    """
    # A bare Figure with an Agg canvas: no pyplot state, no window, no backend switch.
    figure = Figure(figsize=(5.5 * len(panels), 5.5))
    FigureCanvasAgg(figure)
    for axes, (title, systems) in zip(figure.subplots(1, len(panels), squeeze=False)[0],
                                      panels.items()):
        _det_axes(axes, systems, styles or {})
        axes.set_title(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # A full disk leaves the figure before it; the format is the name's, as
    # savefig takes it from a path (png where the name has no suffix).
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    with written_whole(path, "wb") as out:
        figure.savefig(out, format=suffix or "png", dpi=120, bbox_inches="tight")
    return figure


def _det_axes(axes, systems, styles):
    smallest = DET_TOP
    for name, (scores, labels) in systems.items():
        _, p_miss, p_fa = error_rates(scores, labels)
        rates = np.concatenate([p_miss, p_fa])
        smallest = min(smallest, rates[rates > 0].min())
        # Rates of 0 and 1 are -inf and inf on the probit scale: clip them to
        # far outside the axes so that the curve runs off the plot.
        probit = [norm.ppf(np.clip(p, 1e-12, 1 - 1e-12)) for p in (p_fa, p_miss)]
        axes.plot(*probit, label=f"{name} (EER {100 * eer(scores, labels):.2f}%)",
                  **styles.get(name, {}))
    bottom = max([tick for tick in DET_TICKS if tick <= smallest], default=DET_TICKS[0])
    ticks = det_ticks(bottom, DET_TOP)
    for set_ticks, set_limits in ((axes.set_xticks, axes.set_xlim),
                                  (axes.set_yticks, axes.set_ylim)):
        set_ticks(norm.ppf(ticks), [f"{100 * tick:g}" for tick in ticks])
        set_limits(norm.ppf(bottom), norm.ppf(DET_TOP))
    axes.set_xlabel("False acceptance rate (%)")
    axes.set_ylabel("False rejection rate (%)")
    axes.grid(True, alpha=0.4)
    # Below the axes and their labels, where no legend hides a curve.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize="small")


def det_ticks(bottom, top):
    """The ticks of a DET axis from ``bottom`` to ``top``, no two labels overlapping.

    Candidates are :data:`DET_TICKS` within the axis. They are kept in order
    of roundness (1, 10, 0.1 %... first, then 5, 4, 6, 8, then 2 as the
    leading digit), each only if it is at least :data:`DET_MIN_TICK_GAP`
    times the axis length away, on the probit scale, from every tick kept
    before it; so a long axis keeps its decades and drops the crowded 2s and
    5s between them.
    Matplotlib's own locators do not know the probit scale of these axes.

    Arguments
    ---------
    bottom : float
        Lowest error probability on the axis.
    top : float
        Highest error probability on the axis.

    Returns
    -------
    list of float
        Increasing error probabilities.

    Example
    -------
    >>> [f"{100 * tick:g}" for tick in det_ticks(0.0001, 0.9)]
    ['0.01', '0.1', '1', '5', '10', '20', '40', '60', '80']
    >>> [f"{100 * tick:g}" for tick in det_ticks(0.05, 0.9)]
    ['5', '10', '20', '40', '60', '80']
    """
    least = DET_MIN_TICK_GAP * (norm.ppf(top) - norm.ppf(bottom))
    candidates = [tick for tick in DET_TICKS if bottom <= tick <= top]
    # Leading digit 1 first, 2 last.
    roundness = {"1": 0, "2": 2}
    kept = []
    for tick in sorted(candidates, key=lambda t: roundness.get(f"{t:e}"[0], 1)):
        if all(abs(norm.ppf(tick) - norm.ppf(other)) >= least for other in kept):
            kept.append(tick)
    return sorted(kept)


def _attributes(manifest, enrolment):
    """Condition values of the enrolment and the test side IDs (NaN when unknown, :data:`MIXED`
    for a model whose utterances disagree)."""
    columns = [c for c in CONDITION_COLUMNS if c in manifest.columns]
    utterances = manifest.set_index("ID")[columns].replace("", np.nan)
    if enrolment is None:
        return utterances, utterances
    members = enrolment[["model_id"]].assign(ID=enrolment["utt_ids"].str.split()).explode("ID")
    values = members.join(utterances, on="ID").groupby("model_id")[columns]
    agreed = values.first().mask(values.nunique() > 1, MIXED)
    own = enrolment.set_index("model_id").reindex(columns=columns).replace("", np.nan)
    models = own.fillna(agreed)
    # A model ID that is also an utterance ID is the model on the enrolment side.
    return pd.concat([utterances.drop(models.index, errors="ignore"), models]), utterances


def _breakdown(column, enrol, test):
    """``(condition, value, trial indices)`` of each row of ``column``; each trial in one row.

    Trials whose two sides have values are grouped by their pair (shared
    values first), those of one known side by its value (``<column>
    (enrolment)``, ``<column> (test)``), and those of neither side make one
    row, ``<column> (neither side)``. A column that no trial's side has a
    value of has no rows.
    """
    both = enrol.notna() & test.notna()
    groups = pd.DataFrame({"enrol": enrol[both], "test": test[both]}).groupby(
        ["enrol", "test"]).groups
    same = sorted(key for key in groups if key[0] == key[1])
    rows = [(column, key[0] if key in same else f"{key[0]} / {key[1]}", groups[key].to_numpy())
            for key in same + sorted(set(groups) - set(same))]
    # Where one side alone has a value (SdSV: the phrase of the model, not of
    # the test file), the trials are grouped by it.
    for side, values, other in (("enrolment", enrol, test), ("test", test, enrol)):
        alone = values[other.isna()].dropna()
        rows += [(f"{column} ({side})", value, index.to_numpy())
                 for value, index in sorted(alone.groupby(alone).groups.items())]
    neither = np.flatnonzero(enrol.isna() & test.isna())
    if rows and neither.size:
        rows.append((f"{column} (neither side)", UNKNOWN, neither))
    return rows


def _row(condition, value, scores, labels, dcf):
    targets = int(labels.sum())
    row = {"condition": condition, "value": value, "trials": len(labels), "targets": targets,
           "nontargets": len(labels) - targets}
    if 0 < targets < len(labels):
        return {**row, **compute_metrics(scores, labels, dcf), "note": ""}
    names = ["eer"] + [dcf_name(*setting) for setting in dcf]
    return {**row, **dict.fromkeys(names, np.nan), "note": ONE_SIDED}


def condition_table(trials, scores, manifest, enrolment=None, dcf=VOXCELEB_DCF):
    """EER and minDCF of all trials and of each condition.

    Arguments
    ---------
    trials : pandas.DataFrame
        As from :func:`local.data.manifest_io.read_trials` (``trial_type`` optional).
    scores : array-like
        One score per trial.
    manifest : pandas.DataFrame
        The manifest the trial IDs are in, as from
        :func:`local.data.manifest_io.read_manifest`.
    enrolment : pandas.DataFrame, optional
        Enrolment table (the second item :func:`local.data.manifest_io.read_enrolment`
        returns). A model takes a condition value from its own column in the
        table if there is one, else from its utterances when they agree
        (utterances whose value is unknown do not count: ``en``, ``""``,
        ``en`` is ``en``), and is ``mixed`` when they do not (``wireless``,
        ``telephone``): its trials are then in rows of their own
        (``mixed / telephone``) rather than in none of the column's, which
        would leave them counted by ``all`` alone without a reader of the
        column's rows knowing.
    dcf : list of tuple
        ``(p_target, c_miss, c_fa)`` settings.

    Returns
    -------
    pandas.DataFrame
        Columns ``condition, value, trials, targets, nontargets, eer,
        min_dcf_..., note``; the first row is ``all``. The rows of each
        condition column hold every trial once: the trials of one known side
        are grouped by it (``channel (enrolment)``, ``channel (test)``), those
        of neither make ``channel (neither side)``, so that the trials of a
        column's rows add up to those of ``all`` (the trial type pairs share
        their target trials). One-sided groups have NaN metrics and the
        note ``n/a: one-sided``; the counts beside the others say how far
        their figures can be trusted (in a condition of 5 target trials the
        miss rate moves in steps of 20 %).

    Example
    -------
    >>> manifest = pd.DataFrame({"ID": ["a1", "a2", "b1", "b2"],
    ...                          "channel": ["mic", "tel", "mic", "tel"]})
    >>> trials = pd.DataFrame({"label": [1, 0, 0, 1, 0],
    ...                        "enrol": ["a1", "a1", "a1", "b1", "a2"],
    ...                        "test": ["a2", "b1", "b2", "b2", "b2"]})
    >>> table = condition_table(trials, [0.8, 0.3, 0.7, 0.6, 0.1], manifest)
    >>> print(table[["condition", "value", "targets", "nontargets", "eer"]].round(3).to_string(index=False))
    condition     value  targets  nontargets   eer
          all       all        2           3 0.417
      channel       mic        0           1   NaN
      channel       tel        0           1   NaN
      channel mic / tel        2           1 0.750
    """
    scores = _checked_scores(trials, scores)
    labels = trials["label"].to_numpy()
    rows = [_row("all", "all", scores, labels, dcf)]
    enrol_values, test_values = _attributes(manifest, enrolment)
    enrol = enrol_values.reindex(trials["enrol"].to_numpy()).reset_index(drop=True)
    test = test_values.reindex(trials["test"].to_numpy()).reset_index(drop=True)
    for column in enrol.columns:
        for condition, value, index in _breakdown(column, enrol[column], test[column]):
            rows.append(_row(condition, value, scores[index], labels[index], dcf))
    types = trials.get("trial_type", pd.Series("", index=trials.index)).to_numpy()
    for target in sorted(set(types[labels == 1]) - {""}):
        for other in sorted(set(types[labels == 0]) - {"", target}):
            index = np.flatnonzero(np.isin(types, [target, other]))
            rows.append(
                _row("trial_type", f"{target} vs {other}", scores[index], labels[index], dcf))
    return pd.DataFrame(rows)


def markdown_table(header, rows):
    """A markdown table of string cells.

    Written here because pandas' ``DataFrame.to_markdown`` needs the optional
    tabulate package, which is not a dependency.

    Arguments
    ---------
    header : list of str
        Column titles.
    rows : list of list of str
        Cells, a list per row.

    Returns
    -------
    str
        The table, ending with a newline.

    Example
    -------
    >>> print(markdown_table(["system", "EER (%)"], [["baseline", "30.1"]]), end="")
    | system | EER (%) |
    | --- | --- |
    | baseline | 30.1 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def _dcf_title(column):
    return "minDCF " + column[len("min_dcf_"):].replace("_", ", ")


def _markdown(table):
    metrics = [c for c in table.columns if c == "eer" or c.startswith("min_dcf_")]
    header = ["condition", "value", "trials", "targets", "non-targets", "EER (%)"] + [
        _dcf_title(c) for c in metrics[1:]
    ]
    rows = []
    for row in table.to_dict("records"):
        cells = [row["condition"], row["value"],
                 *(str(row[count]) for count in ("trials", "targets", "nontargets"))]
        if row["note"]:
            cells += [row["note"]] + [""] * (len(metrics) - 1)
        else:
            cells += [f"{100 * row['eer']:.2f}"] + [f"{row[c]:.4f}" for c in metrics[1:]]
        rows.append(cells)
    return markdown_table(header, rows)


def write_summary_report(path, title, summary, best, det_systems, checkpoint, unscored=None,
                         notes=()):
    """Write the report a person reads first: the summary, the DET figure, where the rest is.

    Arguments
    ---------
    path : str
        The markdown file (``<run>/verification/report.md``), beside
        ``summary.csv`` and ``det.png``.
    title : str
        Its heading.
    summary : pandas.DataFrame
        As from :func:`local.evaluation.verification.summary_table`.
    best : dict
        ``{trial list: system}``, the system of lowest EER of each list.
    det_systems : str
        Which systems the DET figure draws, in words.
    checkpoint : str
        The checkpoint scored (:data:`CHECKPOINT_FILE`), given under the heading.
    unscored : dict, optional
        ``{back-end: why}`` of the chosen back-ends the run's data could
        not train, named under the table.
    notes : sequence of str
        Sentences on how the systems were scored (the cohort), under the table.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "report.md")
    >>> summary = pd.DataFrame({"system": ["target", "target_plda"], "trials": [90, 90],
    ...                         "eer_percent": [30.0, 25.5], "min_dcf_0.01": [0.9, 0.8]})
    >>> write_summary_report(path, "demo", summary, {"target": "target_plda"}, "every system",
    ...                      "CKPT+2026-01-01+00-00-00+00")
    >>> print("".join(open(path).readlines()[:8]), end="")
    # Verification: demo
    <BLANKLINE>
    The model of checkpoint `CKPT+2026-01-01+00-00-00+00`.
    <BLANKLINE>
    | system | trials | EER (%) | minDCF 0.01 |
    | --- | --- | --- | --- |
    | target | 90 | 30.00 | 0.9000 |
    | **target_plda** | 90 | 25.50 | 0.8000 |
    """
    dcfs = [c for c in summary.columns if c.startswith("min_dcf_")]
    rows = [[f"**{row['system']}**" if row["system"] in best.values() else row["system"],
             str(row["trials"]), f"{row['eer_percent']:.2f}"]
            + ["" if pd.isna(row[c]) else f"{row[c]:.4f}" for c in dcfs]
            for row in summary.to_dict("records")]
    lowest = summary.set_index("system")["eer_percent"]
    text = [f"# Verification: {title}", "", f"The model of checkpoint `{checkpoint}`.", "",
            markdown_table(["system", "trials", "EER (%)"] + [_dcf_title(c) for c in dcfs], rows),
            "Lowest EER of each trial list (in bold): " + "; ".join(
                f"{name}: `{system}` ({lowest[system]:.2f} %)" for name, system in best.items())
            + ".", "", METRICS_NOTE, "",
            *(line for note in notes for line in (note, "")),
            *not_scored(unscored or {}),
            f"![DET curves of {det_systems}](det.png)", "",
            "## The rest of this folder", "",
            "- `summary.csv`: the table above, as `python -m local.evaluation.seed_table` "
            "reads it;",
            "- `<system>/scores.txt`: the system's score of each trial, `enrol test score "
            "label` (what `python -m local.evaluation.fusion` fuses);",
            "- `<system>/conditions.md` (and `.csv`): its EER and minDCF per condition "
            "(channel, language, phrase, trial type...);",
            "- `det.png`: the figure above;",
            f"- `{CHECKPOINT_FILE}`: the checkpoint scored, its name and save time.", ""]
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(text))


def not_scored(unscored):
    """The report's lines naming the back-ends left out, and why; none when none was.

    Arguments
    ---------
    unscored : dict
        ``{back-end: why}``.

    Returns
    -------
    list of str

    Example
    -------
    >>> print("\\n".join(not_scored({"plda": "its training embeddings have 2 speakers"})))
    Not scored (the run's training data cannot train them):
    <BLANKLINE>
    - `plda`: its training embeddings have 2 speakers.
    <BLANKLINE>
    >>> not_scored({})
    []
    """
    if not unscored:
        return []
    return ["Not scored (the run's training data cannot train them):", "",
            *[f"- `{backend}`: {reason}." for backend, reason in unscored.items()], ""]


def write_scored_checkpoint(report_folder, checkpoint):
    """Write :data:`CHECKPOINT_FILE`: the checkpoint a report scored.

    :func:`local.export.export_model` compares it with the checkpoint it exports.

    Arguments
    ---------
    report_folder : str
        The report being written.
    checkpoint : str
        The checkpoint scored, as :func:`local.model.checkpoints.checkpoint_identity`
        names it.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> write_scored_checkpoint(folder, "CKPT+1")
    >>> scored_checkpoint(folder), scored_checkpoint(os.path.join(folder, "elsewhere"))
    ('CKPT+1', None)
    """
    with open(os.path.join(report_folder, CHECKPOINT_FILE), "w", encoding="utf-8") as out:
        out.write(f"{checkpoint}\n")


def scored_checkpoint(report_folder):
    """The checkpoint a report scored (:data:`CHECKPOINT_FILE`), or None for a report that does not say.

    Arguments
    ---------
    report_folder : str
        ``<run>/verification``.

    Returns
    -------
    str or None
    """
    path = os.path.join(report_folder, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fin:
        return fin.read().strip()


def run_folder_of(path):
    """The run's report or folder that ``path`` lies in, its links followed, or None.

    Arguments
    ---------
    path : str
        A file to write.

    Returns
    -------
    str or None
        The nearest folder above it that is a run's report (it names the
        checkpoint it scored) or holds a run's record (:data:`RUN_RECORD`).

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> print(run_folder_of(os.path.join(run, "verification", "table.md")))
    None
    >>> for name in RUN_RECORD:
    ...     _ = open(os.path.join(run, name), "w").write("{}")
    >>> run_folder_of(os.path.join(run, "verification", "table.md")) == os.path.realpath(run)
    True
    """
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        if scored_checkpoint(folder) is not None or all(
                os.path.isfile(os.path.join(folder, name)) for name in RUN_RECORD):
            return folder
        if os.path.dirname(folder) == folder:
            return None
        folder = os.path.dirname(folder)


def score_file(report_folder, system):
    """The score file of ``system`` in a run's report folder (``<run>/verification``).

    Arguments
    ---------
    report_folder : str
        The folder :func:`write_report` wrote into.
    system : str
        The system's name (``target``, ``target_plda_pooled_asnorm``).

    Returns
    -------
    str
        ``<report_folder>/<system>/scores.txt``.
    """
    return os.path.join(report_folder, system, "scores.txt")


def write_report(name, trials, scores, manifest, out_dir, dcf=VOXCELEB_DCF, enrolment=None):
    """Write the score file and the per-condition table of one system, in a folder of its own.

    Writes ``<out_dir>/<name>/scores.txt`` (:func:`score_file`),
    ``conditions.csv`` and ``conditions.md``.

    Arguments
    ---------
    name : str
        The system's name, its folder's.
    trials : pandas.DataFrame
        As from :func:`local.data.manifest_io.read_trials`.
    scores : array-like
        One score per trial.
    manifest : pandas.DataFrame
        The manifest the trial IDs are in.
    out_dir : str
        Output folder (created if needed).
    dcf : list of tuple
        ``(p_target, c_miss, c_fa)`` settings.
    enrolment : pandas.DataFrame, optional
        Enrolment table, for trial lists with enrolment models.

    Returns
    -------
    dict
        ``trials``, ``targets``, ``eer`` and one ``min_dcf_...`` per setting,
        over all trials.

    Example
    -------
    >>> import tempfile
    >>> manifest = pd.DataFrame({"ID": ["a1", "a2", "b1"], "channel": ["mic", "tel", "mic"]})
    >>> trials = pd.DataFrame({"label": [1, 0], "enrol": ["a1", "a1"], "test": ["a2", "b1"]})
    >>> out_dir = tempfile.mkdtemp()
    >>> write_report("target", trials, [0.7, 0.2], manifest, out_dir)
    {'trials': 2, 'targets': 1, 'eer': 0.0, 'min_dcf_0.01': 0.0, 'min_dcf_0.001': 0.0}
    >>> sorted(os.listdir(os.path.join(out_dir, "target")))
    ['conditions.csv', 'conditions.md', 'scores.txt']
    """
    path = score_file(out_dir, name)
    write_scores(path, trials, scores)
    table = condition_table(trials, scores, manifest, enrolment, dcf)
    stem = os.path.join(os.path.dirname(path), "conditions")
    # In percent, as summary.csv gives it, so that a run's tables share one unit.
    table.assign(eer=100 * table["eer"]).rename(columns={"eer": "eer_percent"}).to_csv(
        stem + ".csv", index=False)
    with open(stem + ".md", "w", encoding="utf-8") as out:
        out.write(_markdown(table))
    overall = table.iloc[0]
    metrics = ["eer"] + [dcf_name(*setting) for setting in dcf]
    return {"trials": int(overall["trials"]), "targets": int(overall["targets"]),
            **{metric: float(overall[metric]) for metric in metrics}}
