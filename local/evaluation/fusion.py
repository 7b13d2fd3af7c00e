"""Score-level fusion of several systems scored on the same trial list.

Two fusions:

* **mean** (no development data): each system's scores are standardised
  with their own mean and standard deviation over the trial list, then
  averaged, so that no system weighs more for having a wider score range;
* **logistic** (with development score files of the same systems): linear
  logistic regression ``fused = w . scores + b`` trained on the development
  trials with the prior-weighted cross-entropy of Brümmer's FoCal/BOSARIS
  toolkits at a target prior of 0.5 (``--p_target``), so that the fused
  scores are also calibrated log-likelihood ratios;
  development trials among the fused ones are refused. One system with its
  development scores is calibrated this way.

Command line::

    python -m local.evaluation.fusion --scores a.txt b.txt --out fused.txt \
        [--dev a_dev.txt b_dev.txt [--p_target 0.01]] [--det det.png] \
        [--summary fused/verification/summary.csv --system target] \
        [--min_dcf 0.05 1 1 [--min_dcf ...]]

writes the fused score file (and a DET figure of every system and the fusion,
titled by the trial list scored) and prints EER and minDCF of each system
(named by the trailing parts of its path that tell the systems apart, the
full paths under the table) and of the fusion, at the minDCF
settings the systems' reports scored their list at (an SdSV list's
``min_dcf_0.01_10_1``; for score files of no report those of ``--min_dcf``,
by default VoxCeleb's two), and of
a logistic fusion how well its log-likelihood ratios are calibrated: the
actDCF at each of those settings, Cllr and min Cllr
(:func:`local.evaluation.metrics.calibration_metrics`; a mean fusion's
standardised scores have none). With
``--summary``, the fusion's row is added to (or replaced in) a table laid out
as a run's ``verification/summary.csv``, so that :mod:`local.evaluation.seed_table`
reads fused systems as it reads runs, and the folder's ``provenance.json``
records the hashes of the list's data files that the systems' runs were
scored on (systems scored on other data are refused) and what the row was
fused from and at which settings.
"""

import json
import logging
import os
import sys

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, logit

from local.cli import UsageError, command, option
from local.errors import ManifestError, fail
from local.evaluation.metrics import (
    VOXCELEB_DCF,
    calibration_metrics,
    compute_metrics,
    dcf_name,
    dcf_setting,
    repeated_dcf,
)
from local.evaluation.report import (
    RUN_RECORD,
    plot_det,
    read_scores,
    run_folder_of,
    scored_checkpoint,
    write_scores,
)
from local.evaluation.seed_table import (
    LIST_FILES,
    P_TARGET,
    calibration_prior,
    changed_inputs,
    list_hashes,
    report_provenance,
    scored_list,
    scored_run,
)
from local.evaluation.verification import summary_table
from local.provenance import file_sha256
from local.whole_files import written_together, written_whole

logger = logging.getLogger(__name__)

# The fused folder's record, beside its summary.csv: the hashes of each fused
# list's data files under "data", as in a run's report (so that
# local.evaluation.seed_table compares a fusion's data with other runs'), and
# what each row was fused from under "fusion".
RECORD_FILE = "provenance.json"

# Keeps the logistic-regression weights (of standardised scores) finite when
# the development trials are perfectly separable; small enough not to matter
# otherwise, down to an EER of 0.1 % (the weight 0.15 % below the unpenalised
# regression's there; 1e-6 took 7 %).
L2_PENALTY = 1e-8


def load_systems(paths):
    """Read the score files of several systems on one trial list, aligned.

    Arguments
    ---------
    paths : list of str
        One score file per system (as from :func:`local.evaluation.report.write_scores`);
        the trials may come in any order.

    Returns
    -------
    trials : pandas.DataFrame
        ``enrol``, ``test`` and ``label``, in the order of the first file.
    scores : numpy.ndarray
        ``[trials, systems]``.

    Raises
    ------
    ManifestError
        When a file is given twice (a system fused with itself), or lists
        other trials than the first one, or other labels.

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> trials = pd.DataFrame({"enrol": ["u1", "u1", "u2"], "test": ["u2", "u3", "u3"],
    ...                        "label": [1, 0, 0]})
    >>> write_scores(os.path.join(folder, "a.txt"), trials, [0.9, 0.2, 0.4])
    >>> write_scores(os.path.join(folder, "b.txt"), trials[::-1], [1.0, 3.0, 5.0])
    >>> trials, scores = load_systems([os.path.join(folder, "a.txt"),
    ...                                os.path.join(folder, "b.txt")])
    >>> scores.tolist()
    [[0.9, 5.0], [0.2, 3.0], [0.4, 1.0]]
    """
    seen = {}
    for index, path in enumerate(paths):
        earlier = seen.setdefault(os.path.realpath(path), index)
        if earlier != index:
            fail(path, f"is given twice (as {paths[earlier]}): the fusion would weigh that system "
                       "twice",
                 fix="give each system's score file once")
    first = read_scores(paths[0])
    key = pd.MultiIndex.from_frame(first[["enrol", "test"]])
    columns = [first["score"].to_numpy()]
    for path in paths[1:]:
        table = read_scores(path).set_index(["enrol", "test"])
        missing = key.difference(table.index, sort=False)
        extra = table.index.difference(key, sort=False)
        if len(missing) or len(extra):
            fail(path, f"does not list the same trials as {paths[0]} "
                       f"({len(missing)} missing, {len(extra)} extra)",
                 rows=[f"missing: {e} {t}" for e, t in missing]
                 + [f"extra: {e} {t}" for e, t in extra],
                 fix="score every system on the same trial list")
        table = table.reindex(key)
        wrong = (table["label"].to_numpy() != first["label"].to_numpy()).nonzero()[0]
        if len(wrong):
            fail(path, f"labels differ from {paths[0]}",
                 rows=[f"{first['enrol'][i]} {first['test'][i]}" for i in wrong],
                 fix="score every system on the same trial list")
        columns.append(table["score"].to_numpy())
    return first[["enrol", "test", "label"]], np.stack(columns, axis=1)


def mean_fusion(scores, names=None):
    """Mean of the systems' standardised scores.

    Arguments
    ---------
    scores : numpy.ndarray
        ``[trials, systems]``.
    names : list of str, optional
        The systems' score files, named when one cannot be standardised.

    Returns
    -------
    numpy.ndarray
        ``[trials]``.

    Raises
    ------
    ManifestError
        When a system gives every trial the same score.

    Example
    -------
    >>> mean_fusion(np.array([[0.0, 10.0], [1.0, 30.0], [2.0, 20.0]]))
    array([-1.22474487,  0.61237244,  0.61237244])
    >>> mean_fusion(np.array([[0.0, 1.0], [1.0, 1.0]]), ["a.txt", "b.txt"])
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: b.txt: gives every trial the same score, which cannot be standardised
    Fix: leave it out of the fusion, or check the system that scored it
    """
    names = names or [f"system {i}" for i in range(scores.shape[1])]
    for i in np.flatnonzero(_constant(scores)):
        fail(names[i], "gives every trial the same score, which cannot be standardised",
             fix="leave it out of the fusion, or check the system that scored it")
    return ((scores - scores.mean(axis=0)) / scores.std(axis=0)).mean(axis=1)


def _constant(scores):
    """Whether each system (column) gives every trial the same score: its std is
    then a rounding error (1e-16 of scores all 0.7), not always 0."""
    return np.ptp(scores, axis=0) == 0


def train_logistic_fusion(scores, labels, p_target=P_TARGET):
    """Weights and bias of linear logistic-regression fusion.

    Minimises the prior-weighted cross-entropy
    ``p_target * mean_targets(log(1 + exp(-(f + logit p))))
    + (1 - p_target) * mean_nontargets(log(1 + exp(f + logit p)))`` of
    ``f = scores @ weights + bias`` (Brümmer's FoCal), with
    :func:`scipy.optimize.minimize`.

    Arguments
    ---------
    scores : numpy.ndarray
        ``[trials, systems]`` development scores.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.
    p_target : float
        Prior the fused scores are calibrated for: the regression weighs the
        target trials by it and the non-target trials by ``1 - p_target``.

    Returns
    -------
    tuple
        ``(weights [systems], bias)``: fused scores are ``scores @ weights + bias``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, 1000)
    >>> truth = rng.normal(size=1000) + 2 * labels
    >>> scores = np.column_stack([truth + 0.3 * rng.normal(size=1000),
    ...                           truth + rng.normal(size=1000)])
    >>> weights, bias = train_logistic_fusion(scores, labels)
    >>> bool(weights[0] > 2 * weights[1] > 0)
    True
    """
    labels = np.asarray(labels).astype(bool)
    sign = np.where(labels, 1.0, -1.0)
    weight = np.where(labels, p_target / labels.sum(), (1 - p_target) / (~labels).sum())
    # Fitted on standardised scores, so that the penalty weighs each system
    # alike whatever its scores' unit (cosine or PLDA), then mapped back. A
    # system of one score is left unscaled: the penalty keeps its weight 0.
    mean, std = scores.mean(axis=0), scores.std(axis=0)
    std = np.where(_constant(scores), 1.0, std)
    features = np.column_stack([(scores - mean) / std, np.ones(len(labels))])
    offset = logit(p_target)

    def objective(params):
        margin = sign * (features @ params + offset)
        penalty = L2_PENALTY * params[:-1] @ params[:-1]
        loss = weight @ np.logaddexp(0, -margin) + penalty
        grad = features.T @ (-weight * sign * expit(-margin))
        grad[:-1] += 2 * L2_PENALTY * params[:-1]
        return loss, grad

    # The loss of a good system's trials is small (0.002 nats at an EER of
    # 0.1 %), and so is its gradient well before the minimum: the default
    # tolerance on the gradient would stop there.
    params = minimize(objective, np.zeros(features.shape[1]), jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-10}).x
    weights = params[:-1] / std
    return weights, params[-1] - mean @ weights


def system_names(paths):
    """Short, distinct names of the systems' score files, in the table and the DET legend.

    Each name is as many trailing folders of its (absolute) path as tell
    every system apart, the same number for all; a file name that every
    system shares (a report's ``scores.txt``) is left out. The fusion prints
    the full paths once, under its table.

    Arguments
    ---------
    paths : list of str
        The score files fused, none given twice.

    Returns
    -------
    list of str
        One name per score file, in their order.

    Example
    -------
    >>> system_names(["results/lab/default/1/verification/target_plda_pooled/scores.txt",
    ...             "results/lab/default/2/verification/target_plda_pooled/scores.txt",
    ...             "results/lab/default/2/verification/target/scores.txt"])
    ['1/verification/target_plda_pooled', '2/verification/target_plda_pooled', '2/verification/target']
    >>> system_names(["a.txt", "b.txt"]), system_names(["fused/target/scores.txt"])
    (['a.txt', 'b.txt'], ['scores.txt'])
    """
    parts = [os.path.abspath(path).split(os.sep) for path in paths]
    if len(parts) > 1 and len({names[-1] for names in parts}) == 1:
        parts = [names[:-1] for names in parts]
    depth = next(depth for depth in range(1, max(map(len, parts)) + 1)
                 if len({tuple(names[-depth:]) for names in parts}) == len(parts))
    return ["/".join(names[-depth:]) for names in parts]


def update_summary(path, system, metrics):
    """Add the row of ``system`` to the summary table at ``path``, replacing an older one.

    Arguments
    ---------
    path : str
        A ``summary.csv`` (created, with its folder, when absent).
    system : str
        The row's name, e.g. the trial list's (``target``).
    metrics : dict
        ``trials``, ``eer`` and ``min_dcf_*`` values, as
        :func:`local.evaluation.metrics.compute_metrics` gives them plus ``trials``,
        and for calibrated scores the ``act_dcf_*``, ``cllr`` and ``min_cllr``
        of :func:`local.evaluation.metrics.calibration_metrics`, columns after
        those of a run's summary.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "verification", "summary.csv")
    >>> update_summary(path, "target", {"trials": 10, "eer": 0.25, "min_dcf_0.01": 0.5})
    >>> update_summary(path, "target", {"trials": 10, "eer": 0.2, "min_dcf_0.01": 0.5,
    ...                                 "act_dcf_0.01": 0.6, "cllr": 0.4, "min_cllr": 0.3})
    >>> pd.read_csv(path).to_dict("records")
    [{'system': 'target', 'trials': 10, 'eer_percent': 20.0, 'min_dcf_0.01': 0.5, 'act_dcf_0.01': 0.6, 'cllr': 0.4, 'min_cllr': 0.3}]
    """
    calibration = {name: value for name, value in metrics.items()
                   if name.startswith("act_dcf_") or name in ("cllr", "min_cllr")}
    row = summary_table({system: metrics}).assign(**calibration)
    if os.path.isfile(path):
        older = pd.read_csv(path)
        row = pd.concat([older[older["system"] != system], row], ignore_index=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with written_whole(path, encoding="utf-8") as out:  # a kill leaves the table before it
        row.to_csv(out, index=False)


def input_record(path):
    """What a score file was scored on, as a run's report says.

    Arguments
    ---------
    path : str
        A score file; in a run's report it is ``<run>/verification/<system>/scores.txt``.

    Returns
    -------
    dict
        ``path``, ``sha256``, ``system`` (its folder's name: the list, back-end
        and score normalisation), ``checkpoint`` (the checkpoint its report
        scored) and ``data`` (the hashes of the list's trials, manifest and
        enrolment table, :func:`local.evaluation.seed_table.list_hashes`);
        the last two None where the report does not say.
    """
    system_folder = os.path.dirname(os.path.abspath(path))
    report, system = os.path.dirname(system_folder), os.path.basename(system_folder)
    run = scored_run(os.path.abspath(path))
    provenance = run and report_provenance(run)
    return {"path": os.path.abspath(path), "sha256": file_sha256(path), "system": system,
            "checkpoint": scored_checkpoint(report),
            "data": provenance and list_hashes(provenance[1], system)}


def scored_dcf(paths, requested=None):
    """The minDCF settings the systems were scored at, as their reports' summaries say.

    A score file in a report (``<report>/<system>/scores.txt``, the system a
    row of ``<report>/summary.csv``) was scored at its trial list's settings,
    such as an SdSV list's ``(0.01, 10, 1)``: the fusion is scored at the
    same, so that its row compares with the runs'. Score files of no report
    are scored at the ``requested`` settings (``--min_dcf``), by default
    :data:`~local.evaluation.metrics.VOXCELEB_DCF`.

    Arguments
    ---------
    paths : list of str
        The score files fused.
    requested : list of tuple, optional
        ``(p_target, c_miss, c_fa)`` settings asked for; where the systems'
        reports give settings, they must be the same (in any order).

    Returns
    -------
    list of tuple
        ``(p_target, c_miss, c_fa)`` settings.

    Raises
    ------
    ManifestError
        Naming two score files whose reports scored them at different
        settings, or a score file whose report scored it at other settings
        than the ``requested`` ones.
    """
    scored = {}
    for path in paths:
        system_folder = os.path.dirname(os.path.abspath(path))
        summary = os.path.join(os.path.dirname(system_folder), "summary.csv")
        if not os.path.isfile(summary):
            continue
        rows = pd.read_csv(summary).drop_duplicates("system", keep="last").set_index("system")
        system = os.path.basename(system_folder)
        if system in rows.index:
            settings = [dcf_setting(column) for column in rows.columns
                        if column.startswith("min_dcf_") and pd.notna(rows.loc[system, column])]
            if settings:
                scored[path] = settings
    if not scored:
        return requested or VOXCELEB_DCF
    (first, settings), *others = scored.items()
    for path, other in others:
        if other != settings:
            fail(path, f"was scored at other minDCF settings than {first}",
                 rows=[f"{first}: {settings}", f"{path}: {other}"],
                 fix="fuse systems scored on the same trial list")
    if requested and sorted(requested) != sorted(settings):
        fail(first, "was scored at other minDCF settings than --min_dcf asks for",
             rows=[f"{first}: {settings}", f"--min_dcf: {requested}"],
             fix="leave --min_dcf out: the fusion of a report's systems is scored at their "
                 "trial list's settings, so that its row compares with the runs'")
    return settings


def check_min_dcf(settings):
    """Refuse ``--min_dcf`` settings that are no DCF's, or a setting given twice.

    Arguments
    ---------
    settings : list of list of float or None
        ``[p_target, c_miss, c_fa]`` each, as the command line gives them.

    Returns
    -------
    list of tuple or None
        The settings as tuples.

    Raises
    ------
    UsageError
        Naming the setting.

    Example
    -------
    >>> check_min_dcf([[0.05, 1.0, 1.0]])
    [(0.05, 1.0, 1.0)]
    >>> check_min_dcf([[5.0, 1.0, 1.0]])
    Traceback (most recent call last):
      ...
    local.cli.UsageError: --min_dcf 5 1 1: p_target must lie in (0, 1) and both costs above 0, such as --min_dcf 0.05 1 1 (VoxSRC's)
    """
    if settings is None:
        return None
    settings = [tuple(setting) for setting in settings]
    for setting in settings:
        if not (0 < setting[0] < 1 and 0 < setting[1] < np.inf and 0 < setting[2] < np.inf):
            raise UsageError(f"--min_dcf {_words(setting)}: p_target must lie in (0, 1) and "
                             "both costs above 0, such as --min_dcf 0.05 1 1 (VoxSRC's)")
    repeats = repeated_dcf(settings)
    if repeats:
        setting, earlier = repeats[0]
        raise UsageError(f"--min_dcf {_words(setting)} is given twice (as --min_dcf "
                         f"{_words(earlier)}: both are the column {dcf_name(*setting)})")
    return settings


def _words(setting):
    """A ``--min_dcf`` setting as its words on the command line."""
    return " ".join(f"{value:.10g}" for value in setting)


def shared_data(records):
    """The list hashes every recorded input shares: inputs scored on other data are refused.

    Arguments
    ---------
    records : list of dict
        As :func:`input_record` gives, one per system.

    Returns
    -------
    dict or None
        ``{file: sha256}`` of the trial list, manifest and enrolment table;
        None when no input's report records them (a warning names those
        that do not).

    Raises
    ------
    ManifestError
        Naming the first input scored on other data than the first recorded
        one, and the hashes that differ.

    Example
    -------
    >>> shared_data([{"path": "a.txt", "data": {"trials": "ab", "manifest": "cd"}},
    ...              {"path": "b.txt", "data": {"trials": "ab", "manifest": "ef"}}])
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: b.txt: scored on other data than a.txt
      a.txt: manifest cd
      b.txt: manifest ef
    Fix: fuse systems evaluated on the same trial list, manifest and enrolment table (evaluate.py with the same condition)
    """
    recorded = [record for record in records if record["data"]]
    unrecorded = [record["path"] for record in records if not record["data"]]
    if unrecorded:
        logger.warning("No provenance record of the data %s was scored on: fused with the "
                       "others by its trials alone", ", ".join(unrecorded))
    if not recorded:
        return None
    first = recorded[0]
    for record in recorded[1:]:
        differing = [key for key in LIST_FILES
                     if record["data"].get(key) != first["data"].get(key)]
        if differing:
            fail(record["path"], f"scored on other data than {first['path']}",
                 rows=[f"{r['path']}: " + ", ".join(f"{key} {(r['data'].get(key) or 'none')[:12]}"
                                                    for key in differing)
                       for r in (first, record)],
                 fix="fuse systems evaluated on the same trial list, manifest and enrolment "
                     "table (evaluate.py with the same condition)")
    return first["data"]


def write_record(folder, system, data, fusion):
    """Add the row ``system`` to the fused folder's :data:`RECORD_FILE`, replacing an older one.

    Arguments
    ---------
    folder : str
        The fused folder (that of its ``summary.csv``).
    system : str
        The row's name.
    data : dict or None
        ``{file: sha256}`` of the list, as :func:`shared_data` gives.
    fusion : dict
        How the row was fused: ``method``, the :func:`input_record` of each
        ``scores`` and ``dev`` file, the ``min_dcf`` settings it was scored
        at and the ``p_target`` a logistic fusion is calibrated at (None for
        a mean fusion).
    """
    path = os.path.join(folder, RECORD_FILE)
    record = {"data": {}, "fusion": {}}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fin:
            record = json.load(fin)
    record["data"] = {role: entry for role, entry in record["data"].items()
                      if not role.startswith(f"evaluation/{system}/")}
    record["data"].update({f"evaluation/{system}/{key}": {"sha256": value}
                           for key, value in (data or {}).items()})
    record["fusion"][system] = fusion
    with written_whole(path, encoding="utf-8") as out:
        json.dump(record, out, indent=1)


def check_fused_folder(summary, system, fusion):
    """Refuse a fusion that would mix with another in the folder of ``summary``.

    Every row of a fused folder is fused by one method from the systems of
    the same reports (``<run>/verification``, in any order), a logistic one calibrated at
    one prior (:func:`calibration_prior`), and each row's score files are
    those it was fused from: a row fused from other systems or at another
    prior, or beside a row whose score files have changed since (a run
    scored again), would make a folder of figures that no one fusion gives.

    Arguments
    ---------
    summary : str
        The ``summary.csv`` the row is for.
    system : str
        The row's name; its own older entry is replaced, not compared.
    fusion : dict
        What the row is fused from, as :func:`write_record` takes it.

    Raises
    ------
    ManifestError
        Naming the summary, the rows and what differs.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(summary)), RECORD_FILE)
    if not os.path.isfile(path):
        if os.path.isfile(summary):
            fail(summary, f"has no record of the fusion its rows come from ({RECORD_FILE})",
                 fix="write this fusion into a folder of its own, or remove the folder and "
                     "fuse every list again")
        return

    def sources(entry):
        return entry["method"], [os.path.dirname(os.path.dirname(i["path"]))
                                 for i in entry["scores"]]

    with open(path, encoding="utf-8") as fin:
        rows = json.load(fin)["fusion"]
    for row, entry in rows.items():
        if row == system:
            continue
        (method, before), (now, reports) = sources(entry), sources(fusion)
        if method != now or sorted(before) != sorted(reports):  # in any order of --scores
            fail(summary, f"row '{row}' is the {method} fusion of other systems than this "
                          f"{now} fusion's", rows=[f"'{row}': {', '.join(before)}",
                                                   f"this fusion: {', '.join(reports)}"],
                 fix="write this fusion into a folder of its own (--summary and --out)")
        changed = changed_inputs(entry)
        if changed:
            fail(summary, f"row '{row}' was fused from score files that have changed since",
                 rows=changed, fix="fuse every list again into a folder of its own, or remove "
                                   f"{os.path.dirname(path)} first")
        before, now = calibration_prior(entry), calibration_prior(fusion)
        if before != now:
            fail(summary, f"row '{row}' was calibrated at another target prior than this fusion",
                 rows=[f"'{row}': --p_target {before}", f"this fusion: --p_target {now}"],
                 fix="write this fusion into a folder of its own (--summary and --out), or "
                     f"fuse with --p_target {before}")


def check_destinations(inputs, out, summary=None, det=None):
    """Refuse to write the fusion over its inputs or into a run's folder.

    A run's report (``<run>/verification``, holding the name of the checkpoint
    it scored) describes that run alone: a fused row in its ``summary.csv``
    would replace or join the run's own figures under its settings; a file
    anywhere in a run's folder (which holds its record,
    :data:`~local.evaluation.report.RUN_RECORD`) could replace one of its files.

    Arguments
    ---------
    inputs : list of str
        The score files fused (``--scores`` and ``--dev``).
    out : str
        The fused score file to write.
    summary : str, optional
        The ``summary.csv`` to add the fusion's row to.
    det : str, optional
        The DET figure to write.

    Raises
    ------
    ManifestError
        Naming the destination and where to write instead.

    Example
    -------
    >>> check_destinations(["a/verification/target/scores.txt"], "a/verification/target/scores.txt")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: a/verification/target/scores.txt: is one of the score files fused, which the fused scores would replace
    Fix: write the fused scores to a file of their own (--out)
    """
    own = "write the fusion into a folder of its own, e.g. results/<condition>/<name>/<seed>/"
    fused = {os.path.realpath(path) for path in inputs}
    if os.path.realpath(out) in fused:
        fail(out, "is one of the score files fused, which the fused scores would replace",
             fix="write the fused scores to a file of their own (--out)")
    if det and os.path.realpath(det) in fused | {os.path.realpath(out)}:
        fail(det, "is a score file of this fusion (fused, or --out), which the DET figure "
                  "would replace", fix="write the DET figure to a file of its own (--det)")
    for path in (out, summary, det):
        folder = path and run_folder_of(path)
        if folder and scored_checkpoint(folder) is not None:
            fail(path, "lies in a run's own verification report (it holds the checkpoint "
                       "the run scored), whose figures a fusion would replace or join",
                 fix=f"{own}verification/ (--out, --det and --summary)")
        if folder:
            fail(path, f"lies in the folder of a run, {folder} (it holds the run's "
                       f"{' and '.join(RUN_RECORD)}), whose files a fusion would replace or join",
                 fix=f"{own}verification/ (--out, --det and --summary)")


def _check_both_labels(path, trials, use):
    """Refuse the score file ``path`` when its ``trials`` are of one label: ``use`` needs both."""
    if trials["label"].nunique() < 2:
        fail(path, f"has {len(trials)} trials of one label, and {use} target and non-target "
             "trials", fix="pass score files of a trial list with both")


def check_held_out(dev_path, dev_trials, path, trials):
    """Refuse development trials that are among the fused ones, in either order of their sides.

    The logistic regression is trained on the development trials: on the
    trials it is scored on, the fusion's EER and minDCF would be those of its
    own training data, not of a held-out list.

    Arguments
    ---------
    dev_path : str
        The first development score file, named in the message.
    dev_trials, trials : pandas.DataFrame
        ``enrol`` and ``test`` of the development and the fused trials.
    path : str
        The first fused score file, named in the message.

    Raises
    ------
    ManifestError
        Naming the shared trials.

    Example
    -------
    >>> fused = pd.DataFrame({"enrol": ["u1", "u1"], "test": ["u2", "u3"]})
    >>> check_held_out("dev.txt", pd.DataFrame({"enrol": ["u4"], "test": ["u5"]}), "a.txt", fused)
    >>> check_held_out("dev.txt", pd.DataFrame({"enrol": ["u2"], "test": ["u1"]}), "a.txt", fused)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: dev.txt: 1 of its 1 trials are trials of a.txt, which the fusion trained on them would report
      u2 u1
    Fix: ...
    """
    pairs = trials[["enrol", "test"]]
    fused = pd.MultiIndex.from_frame(pd.concat([pairs, pairs[["test", "enrol"]].set_axis(
        pairs.columns, axis=1)], ignore_index=True))
    shared = pd.MultiIndex.from_frame(dev_trials[["enrol", "test"]]).isin(fused)
    if shared.any():
        fail(dev_path, f"{shared.sum()} of its {len(dev_trials)} trials are trials of {path}, "
                       "which the fusion trained on them would report",
             rows=[f"{e} {t}" for e, t in dev_trials[["enrol", "test"]][shared].to_numpy()],
             fix="train the fusion on the scores of another trial list (--dev), such as one "
                 "of other speakers of the same domain, or fuse by the mean (no --dev)")


def det_title(paths, trials):
    """The DET panel's title: the trial list that the systems' reports scored, and its size.

    Arguments
    ---------
    paths : list of str
        The score files fused.
    trials : pandas.DataFrame
        Their trials.

    Returns
    -------
    str
        ``trial list <name>: <trials file> (<n> trials)`` where every score
        file's report names the list (:func:`~local.evaluation.seed_table.scored_list`)
        and they name the same, else ``<n> trials``.

    Example
    -------
    >>> det_title(["a.txt", "b.txt"], pd.DataFrame({"label": [1, 0, 0]}))
    '3 trials'
    """
    lists = set()
    for path in paths:
        run = scored_run(os.path.abspath(path))
        provenance = run and report_provenance(run)
        name = provenance and scored_list(provenance[1],
                                          os.path.basename(os.path.dirname(os.path.abspath(path))))
        trials_file = name and provenance[1].get(f"evaluation/{name}/trials", {}).get("path")
        lists.add(trials_file and f"trial list {name}: {trials_file}")
    size = f"{len(trials):,} trials"
    scored = lists.pop() if len(lists) == 1 else None
    return f"{scored} ({size})" if scored else size


def print_calibration(name, fused, labels, dcf, calibrated):
    """Print the actDCF of each setting, Cllr and min Cllr of calibrated fused scores.

    A logistic fusion's scores are log-likelihood ratios, whose cost at the
    Bayes threshold of each setting is the actDCF; a mean fusion's are
    standardised scores, whose actDCF and Cllr would measure nothing: it
    says so, and gives none.

    Arguments
    ---------
    name : str
        The fusion's row name.
    fused : numpy.ndarray
        Its scores.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.
    dcf : list of tuple
        The ``(p_target, c_miss, c_fa)`` settings of its minDCFs.
    calibrated : bool
        Whether the scores are log-likelihood ratios (a logistic fusion).

    Returns
    -------
    dict
        :func:`local.evaluation.metrics.calibration_metrics`, empty when not
        ``calibrated``.

    Example
    -------
    >>> print_calibration("fusion (logistic)", np.array([-3.0, -1.0, 1.0, 3.0]), [0, 1, 0, 1],
    ...                   [(0.01, 1, 1)], calibrated=True)
    calibration        act_dcf_0.01    cllr  min_cllr
    fusion (logistic)        1.0000  0.9824    0.5000
    {'act_dcf_0.01': 1.0, 'cllr': 0.982..., 'min_cllr': 0.5}
    >>> print_calibration("fusion (mean)", np.array([-3.0, 3.0]), [0, 1], [(0.01, 1, 1)], False)
    fusion (mean): no actDCF or Cllr, which need log-likelihood ratios (a logistic fusion, --dev, calibrates its scores)
    {}
    """
    if not calibrated:
        print(f"{name}: no actDCF or Cllr, which need log-likelihood ratios (a logistic "
              "fusion, --dev, calibrates its scores)")
        return {}
    metrics = calibration_metrics(fused, labels, dcf)
    width = max(len(name), len("calibration"))
    print(f"{'calibration':<{width}}  " + "  ".join(f"{n:>6}" for n in metrics))
    print(f"{name:<{width}}  " + "  ".join(f"{v:{max(len(n), 6)}.4f}" for n, v in metrics.items()))
    return metrics


def run_fusion(scores, out, det=None, dev=None, summary=None, system=None, min_dcf=None,
               p_target=None):
    """Fuse score files and print EER/minDCF of each system and of the fusion, and its calibration.

    Arguments
    ---------
    scores : list of str
        One score file per system.
    out : str
        The fused score file to write.
    det : str, optional
        PNG with the DET curves of every system and the fusion.
    dev : list of str, optional
        Development score files of the same systems, in the same order:
        logistic-regression fusion instead of the mean. Their trials must
        not be among those fused (:func:`check_held_out`).
    summary : str, optional
        A run's ``summary.csv`` to add the fusion's row to; a logistic
        fusion's row also holds its actDCF, Cllr and min Cllr
        (:func:`print_calibration`).
    system : str, optional
        The name of that row.
    min_dcf : list of list of float, optional
        ``[p_target, c_miss, c_fa]`` settings of the minDCFs (and a logistic
        fusion's actDCFs) of score files of no report (:func:`scored_dcf`).
    p_target : float, optional
        The target prior a logistic fusion is calibrated at
        (:func:`train_logistic_fusion`), by default :data:`P_TARGET`.

    Returns
    -------
    int
        0 when the fused score file was written, 1 when the score files do
        not fit together, one cannot be fused, the trials (or the development
        trials) are of one label, the development trials are among the fused
        ones or a destination is refused (:func:`check_destinations`;
        the problem printed to stderr).

    Example
    -------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> trials = pd.DataFrame({"enrol": ["u1", "u1", "u2"], "test": ["u2", "u3", "u3"],
    ...                        "label": [1, 0, 0]})
    >>> paths = [os.path.join(folder, name) for name in ("a.txt", "b.txt", "fused.txt")]
    >>> write_scores(paths[0], trials, [0.9, 0.2, 0.4])
    >>> write_scores(paths[1], trials, [0.3, 0.1, 0.2])
    >>> main(["--scores", paths[0], paths[1], "--out", paths[2]])
    system ... EER (%)  min_dcf_0.01  min_dcf_0.001
    ...
    fusion (mean) ... 0.00 ...
    0
    >>> read_scores(paths[2])["score"].round(4).tolist()
    [1.2917, -1.1219, -0.1698]
    """
    if bool(summary) != bool(system):
        raise UsageError("--summary and --system go together")
    if dev and len(dev) != len(scores):
        raise UsageError(f"{len(scores)} --scores files but {len(dev)} --dev files")
    min_dcf = check_min_dcf(min_dcf)
    if p_target is not None and not dev:
        raise UsageError("--p_target is the prior a logistic fusion is calibrated at: it goes "
                         "with --dev")
    if p_target is not None and not 0 < p_target < 1:
        raise UsageError(f"--p_target {p_target:g} is no prior: it must lie in (0, 1)")
    p_target = P_TARGET if dev and p_target is None else p_target
    try:
        check_destinations(scores + (dev or []), out, summary, det)
        trials, system_scores = load_systems(scores)
        _check_both_labels(scores[0], trials, "EER and minDCF are taken over")
        inputs = [input_record(path) for path in scores]
        data = shared_data(inputs)
        dcf = scored_dcf(scores, min_dcf)
        development = load_systems(dev) if dev else None
        if development:
            _check_both_labels(dev[0], development[0], "the logistic regression is trained on")
            check_held_out(dev[0], development[0], scores[0], trials)
        if not development:
            fused, fusion = mean_fusion(system_scores, scores), "fusion (mean)"
        record = {"method": "logistic" if dev else "mean", "scores": inputs,
                  "dev": [input_record(path) for path in dev or []],
                  "min_dcf": [list(setting) for setting in dcf], "p_target": p_target}
        if summary:
            check_fused_folder(summary, system, record)
    except ManifestError as err:
        print(err, file=sys.stderr)
        return 1
    if development:
        weights, bias = train_logistic_fusion(development[1], development[0]["label"], p_target)
        fused, fusion = system_scores @ weights + bias, "fusion (logistic)"
        print("weights " + " ".join(f"{w:.4f}" for w in weights) + f", bias {bias:.4f}")
    names = system_names(scores)
    systems = dict(zip(names, system_scores.T))
    systems[fusion] = fused
    dcf_names = [dcf_name(*setting) for setting in dcf]
    width = max(len(name) for name in systems)
    print(f"{'system':<{width}}  EER (%)  " + "  ".join(dcf_names))
    for name, values in systems.items():
        metrics = compute_metrics(values, trials["label"], dcf)
        print(f"{name:<{width}}  {100 * metrics['eer']:7.2f}  "
              + "  ".join(f"{metrics[n]:{len(n)}.4f}" for n in dcf_names))
    for name, path in zip(names, scores):  # the key of the short names
        print(f"{name:<{width}}  is {os.path.abspath(path)}")
    metrics.update(print_calibration(fusion, fused, trials["label"], dcf, calibrated=bool(dev)))
    # Together: a full disk or an error while one is written leaves the fused
    # scores, the figure, the row and its record of the fusion before.
    with written_together():
        write_scores(out, trials, fused)
        if det:
            plot_det({det_title(scores, trials): {name: (s, trials["label"])
                                                  for name, s in systems.items()}}, det)
        if summary:
            update_summary(summary, system, dict(metrics, trials=len(trials)))
            write_record(os.path.dirname(os.path.abspath(summary)), system, data, record)
    return 0


main = command(
    run_fusion, __doc__,
    option("--scores", nargs="+", required=True, help="one score file per system"),
    option("--out", required=True, help="fused score file to write"),
    option("--det", help="PNG with the DET curves of every system and the fusion"),
    option("--dev", nargs="+",
           help="development score files of the same systems, in the same order: "
                "logistic-regression fusion instead of the mean"),
    option("--summary",
           help="add the fusion's row to this summary.csv (a run's layout)"),
    option("--system", help="name of that row, e.g. the trial list's"),
    option("--p_target", type=float,
           help=f"the target prior a logistic fusion (--dev) is calibrated at, e.g. that of "
                f"the minDCF it is meant for (default {P_TARGET})"),
    option("--min_dcf", nargs=3, type=float, action="append",
           metavar=("P_TARGET", "C_MISS", "C_FA"),
           help="a minDCF setting (repeat for more) of score files of no report, e.g. "
                "0.05 1 1 (VoxSRC's) or 0.01 10 1 (SdSV's); default VoxCeleb's 0.01 1 1 and "
                "0.001 1 1. A report's score files are scored at its settings"),
)


if __name__ == "__main__":
    sys.exit(main())
