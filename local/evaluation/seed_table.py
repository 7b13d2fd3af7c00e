"""Mean and spread over seeds of the verification results of several systems.

Usage::

    python -m local.evaluation.seed_table --runs baseline 'results/demo/dann_fbank/base_s*' \\
        --runs DANN 'results/demo/dann_fbank/dann_s*' [--lists target target_whiten] \\
        [--metrics eer_percent min_dcf_0.01] [--out table.md]

Each ``--runs NAME PATTERN`` names a system and the run folders of its seeds
(a glob); each run's ``verification/summary.csv`` gives its figures. The
table has a row per system and, per scored list and metric, the mean ± the
standard deviation (with n - 1) over the runs, and the number of runs.

Every run of the table, of any system, must have scored each reported list
on the same data: the same number of trials in its summary and, where its
report holds the hashes of its data files (``provenance.json``, or
``evaluate_provenance.json`` for a report of ``evaluate.py``), the same trial
list, manifest and enrolment table; a table of runs evaluated on other data
is refused. A report without hashes (of an older run) is compared by its
number of trials only, with a warning. The runs of one system must be seeds
of one setting: their reports' settings (``hyperparams.yaml``, or
``evaluate_hyperparams.yaml`` for a report of ``evaluate.py``, on the run's
own) must agree in all but the seed, the folders and what leaves the figures
alone (``num_workers``...: :data:`SEED_FREE_KEYS`), so that an oracle
evaluation of one seed, or a run of other epochs or score normalisation, is
refused, naming the setting and its value in each run; a report without
that record is not compared, with a warning. Systems differ in their
settings: that is what the table compares. An unknown list or metric is refused
with the names the summaries have, and so is a metric a list was not scored
at (an SdSV list's minDCF is ``min_dcf_0.01_10_1``) and a system name given
to two ``--runs``. A fused folder (``python -m local.evaluation.fusion
--summary``) is read as a run; a row of it whose score files have changed
since it was fused (a run scored again) is refused, naming them. The fused
folders of one system must be seeds of one fusion: each row fused by the
same method, at the same calibration prior (``--p_target``) and from the
same systems (``target_plda_pooled`` and ``target_asnorm``, in any order),
each folder from runs of its own (but for a system fixed over the seeds,
fused into every folder), and the runs fused as each system seeds of one
setting, their reports' settings compared as the runs of a system are;
a table of others is refused, naming the folder, the row and the
difference, and so is a fused folder beside runs under one ``--runs``. A
run fused without a settings record, or a score file of no run's report
(whose run is unknown), is not compared by its settings, with a warning.
"""

import glob
import json
import logging
import os
import sys

import pandas as pd
import ruamel.yaml
import yaml

from local.cli import command, option
from local.errors import fail
from local.evaluation.report import markdown_table, run_folder_of
from local.provenance import file_sha256
from local.run_folder import check_results_in_place
from local.settings import PROCESSES_KEY, recorded_processes, run_settings
from local.whole_files import written_whole

logger = logging.getLogger(__name__)

# The report's record of its data files: an evaluation's (evaluate.py), else the training run's.
PROVENANCE_FILES = ("evaluate_provenance.json", "provenance.json")
# The files of a trial list whose hashes the runs of a table must share.
LIST_FILES = ("trials", "manifest", "enrolment")
# The report's record of its settings: an evaluation's (evaluate.py), else the training run's copy.
SETTINGS_FILES = ("evaluate_hyperparams.yaml", "hyperparams.yaml")
# The settings that name a run's folders: a path inside one is compared as
# the key's (<output_folder>/save), the same for every run.
FOLDER_KEYS = ("output_folder", "save_folder", "train_log", "ssl_cache", "ssl_features_folder")
# The settings that the runs of one system may differ in: the seed, where
# files go, how data are loaded and checked, which changes a command accepted
# (each changed setting is compared itself) and which systems the DET figure
# draws. Any other setting may change a figure.
SEED_FREE_KEYS = frozenset({
    "seed", *FOLDER_KEYS, "num_workers", "eval_batch_size", "check_audio", "allow_changed",
    "allow_speaker_overlap", "det_systems",
})
# Decimals of a minDCF, a cost between 0 and 1 that good systems' runs
# differ by in the third decimal, and of a fused folder's actDCF and Cllr
# (bits), figures of the same size; every other figure (an EER in %) has 2.
DCF_DECIMALS = 3
# The target prior a logistic fusion (local.evaluation.fusion) is calibrated
# at unless --p_target says (FoCal's and BOSARIS's default).
P_TARGET = 0.5
# How a fused row names a score file that lies in no run's report, whose
# folder's name is no system's.
NO_REPORT = "(a file of no report)"


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
        check_results_in_place(path)
        if not os.path.isfile(path):
            fail(path, "run without a verification summary",
                 fix="let the training finish, or run evaluate.py on it")
        tables.append(pd.read_csv(path).assign(run=folder))
    return pd.concat(tables, ignore_index=True)


def report_provenance(run):
    """The data files' record of a run's verification report, or None without one.

    Arguments
    ---------
    run : str
        A run folder (``<run>/verification`` is its report).

    Returns
    -------
    tuple or None
        ``(path, data)``: the record's file and its ``data`` entry,
        ``{role: {"path", "sha256"}}`` (:func:`local.provenance.write_provenance`).

    Raises
    ------
    ManifestError
        When the record cannot be read.

    Example
    -------
    >>> import tempfile
    >>> print(report_provenance(tempfile.mkdtemp()))
    None
    """
    for name in PROVENANCE_FILES:
        path = os.path.join(run, "verification", name)
        if os.path.isfile(path):
            return path, _read_record(path, "data")
    return None


def _read_record(path, entry, required=True):
    """The ``entry`` of the provenance record ``path`` (``{}`` when absent and not ``required``)."""
    try:
        with open(path, encoding="utf-8") as record:
            content = json.load(record)
        return dict(content[entry] if required else content.get(entry, {}))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        fail(path, f"unreadable provenance record ({error})",
             fix="evaluate the run again (evaluate.py), which writes it anew")


def changed_inputs(fused):
    """The score files a fused row was fused from that are gone or have changed since.

    Arguments
    ---------
    fused : dict
        What the row was fused from, as a fused folder's record holds it:
        ``scores`` and ``dev``, each a list of ``{"path", "sha256"}``
        (:func:`local.evaluation.fusion.input_record`).

    Returns
    -------
    list of str
        Their paths.
    """
    return [i["path"] for i in fused["scores"] + fused["dev"]
            if not os.path.isfile(i["path"]) or file_sha256(i["path"]) != i["sha256"]]


def fused_rows(run):
    """What each row of a fused folder was fused from, as its record says; ``{}`` for a run.

    Arguments
    ---------
    run : str
        A run folder or a fused folder.

    Returns
    -------
    dict
        ``{row: entry}``, each entry as
        :func:`local.evaluation.fusion.write_record` takes it.

    Example
    -------
    >>> import tempfile
    >>> fused_rows(tempfile.mkdtemp())
    {}
    """
    record = report_provenance(run)
    return {} if record is None else _read_record(record[0], "fusion", required=False)


def scored_run(path):
    """The run whose report holds the score file ``path``, or None for a file of no report.

    Arguments
    ---------
    path : str
        A score file; in a run's report it is ``<run>/verification/<system>/scores.txt``.

    Returns
    -------
    str or None

    Example
    -------
    >>> scored_run("results/default/1/verification/target_asnorm/scores.txt")
    'results/default/1'
    >>> print(scored_run("fused.txt"))
    None
    """
    report = os.path.dirname(os.path.dirname(path))
    return os.path.dirname(report) if os.path.basename(report) == "verification" else None


def calibration_prior(fusion):
    """The target prior a fused row's logistic fusion was calibrated at, as its record says.

    Each list of a fused folder keeps its own minDCF settings, as in a run's
    summary (a DeepMine list's ``(0.01, 10, 1)`` beside VoxCeleb's); the
    prior is the fusion's, the same for every row. A record written before
    it was recorded is read as a fusion then was made, at :data:`P_TARGET`.

    Arguments
    ---------
    fusion : dict
        A row's record, as :func:`local.evaluation.fusion.write_record` takes it.

    Returns
    -------
    float or None
        The prior; None for a mean fusion.

    Example
    -------
    >>> calibration_prior({"method": "logistic"}), calibration_prior({"method": "mean"})
    (0.5, None)
    """
    return fusion.get("p_target", P_TARGET if fusion["method"] == "logistic" else None)


def check_fused_rows(runs, lists):
    """Refuse a fused row whose score files have changed since it was fused.

    A fused folder's record (its ``provenance.json``) holds, under
    ``fusion``, the hash of each score file a row was fused from: a run
    scored again since has other scores, and the row is no longer their
    fusion. A run's own report has no such entry.

    Arguments
    ---------
    runs : list of str
        The run folders of the table.
    lists : list of str
        The scored lists of the table.

    Raises
    ------
    ManifestError
        Naming the record, the row and the files that changed.
    """
    for run in runs:
        record = report_provenance(run)
        if record is None:
            continue
        fused = _read_record(record[0], "fusion", required=False)
        for scored in lists:
            changed = fused.get(scored) and changed_inputs(fused[scored])
            if changed:
                summary = os.path.join(run, "verification", "summary.csv")
                fail(record[0], f"row '{scored}' was fused from score files that have changed "
                                "since (a run scored again): its figures are not their fusion",
                     rows=changed,
                     fix=f"fuse '{scored}' again (python -m local.evaluation.fusion with "
                         f"--summary {summary}), or leave {run} out")


def list_hashes(data, scored):
    """The hashes of the files of the trial list that the system ``scored`` was scored on.

    Arguments
    ---------
    data : dict
        ``{role: {"path", "sha256"}}``, as :func:`report_provenance` gives.
    scored : str
        A system of the summary: a trial list's name, or it followed by
        ``_<back-end>``/``_<normalisation>`` (``target_whiten_asnorm``).

    Returns
    -------
    dict or None
        ``{"trials": sha256, "manifest": ..., ["enrolment": ...]}``, None
        when the record names no such trial list.

    Example
    -------
    >>> data = {"evaluation/target/trials": {"path": "t.txt", "sha256": "ab"},
    ...         "evaluation/target/manifest": {"path": "e.csv", "sha256": "cd"}}
    >>> list_hashes(data, "target_whiten")
    {'trials': 'ab', 'manifest': 'cd'}
    """
    name = scored_list(data, scored)
    if name is None:
        return None
    return {key: data[f"evaluation/{name}/{key}"].get("sha256") for key in LIST_FILES
            if f"evaluation/{name}/{key}" in data}


def scored_list(data, scored):
    """The name of the trial list that the system ``scored`` was scored on, as its record has it.

    Arguments
    ---------
    data : dict
        ``{role: {"path", "sha256"}}``, as :func:`report_provenance` gives.
    scored : str
        A system of the summary: a trial list's name, or it followed by
        ``_<back-end>``/``_<normalisation>``; the longest list name it starts with.

    Returns
    -------
    str or None
        The list's name, None when the record names no such trial list.

    Example
    -------
    >>> data = {"evaluation/target/trials": {"path": "t.txt"},
    ...         "evaluation/target_hard/trials": {"path": "h.txt"}}
    >>> scored_list(data, "target_hard_asnorm"), scored_list(data, "source")
    ('target_hard', None)
    """
    names = {role.split("/")[1] for role in data
             if role.startswith("evaluation/") and role.count("/") == 2}
    matches = [name for name in names if scored == name or scored.startswith(f"{name}_")]
    return max(matches, key=len) if matches else None


def _refuse_different(scored, groups, what):
    """Refuse a list scored on different data by the runs of ``groups`` (``{value: runs}``)."""
    reference, *others = groups
    rows = [f"{', '.join(runs)}: {what(value)}" for value, runs in groups.items()]
    fail(groups[others[0]][0], f"'{scored}' scored on other data than {groups[reference][0]}",
         rows=rows,
         fix="evaluate every run of the table on the same trial list, manifest and enrolment "
             "table (evaluate.py with the same condition), or leave the other runs out")


def check_same_data(systems, lists):
    """Refuse a table whose runs scored a list on different data.

    Every run, of every system, must have the same ``trials`` count of each
    list in its summary and, where its report holds a provenance record
    (:func:`report_provenance`), the same hashes of that list's trial list,
    manifest and enrolment table. Runs without a record are compared by
    their trials count only, with a warning.

    Arguments
    ---------
    systems : dict
        ``{name: summaries}``, as :func:`collect` returns.
    lists : list of str
        The scored lists of the table.

    Raises
    ------
    ManifestError
        When runs differ, naming them and what differs.

    Example
    -------
    >>> summaries = pd.DataFrame({"system": ["target"] * 2, "trials": [1770, 900],
    ...                           "run": ["s1", "s2"]})
    >>> check_same_data({"baseline": summaries}, ["target"])
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: s2: 'target' scored on other data than s1
      s1: 1770 trials
      s2: 900 trials
    Fix: evaluate every run of the table on the same trial list, manifest and enrolment table...
    """
    for summaries in systems.values():
        if "trials" not in summaries.columns:
            fail(summaries["run"].iloc[0], "no 'trials' column in its verification summary",
                 fix="evaluate the run again (evaluate.py), which writes it")
    rows = pd.concat(list(systems.values()), ignore_index=True)
    records = {run: report_provenance(run) for run in dict.fromkeys(rows["run"])}
    unrecorded = [run for run, record in records.items() if record is None]
    if unrecorded:
        logger.warning("No provenance record in the report of %s: compared with the other runs "
                       "by the number of trials only", ", ".join(unrecorded))
    for scored in lists:
        chosen = rows[rows["system"] == scored]
        groups = {}
        for run, trials in zip(chosen["run"], chosen["trials"]):
            groups.setdefault(int(trials), []).append(run)
        if len(groups) > 1:
            _refuse_different(scored, groups, lambda trials: f"{trials} trials")
        groups = {}
        for run in dict.fromkeys(chosen["run"]):
            hashes = records[run] and list_hashes(records[run][1], scored)
            if hashes is not None:
                groups.setdefault(tuple(sorted(hashes.items())), []).append(run)
        if len(groups) > 1:
            differing = [key for key in LIST_FILES
                         if len({dict(value).get(key) for value in groups}) > 1]
            _refuse_different(scored, groups, lambda value: ", ".join(
                f"{key} {(dict(value).get(key) or 'none')[:12]}" for key in differing))


def report_settings(run):
    """The settings a run's verification report was made with, or None without a record of them.

    The report's ``hyperparams.yaml`` (``evaluate_hyperparams.yaml`` for a
    report of ``evaluate.py``) on the run's own ``hyperparams.yaml``, whose
    training run options (``precision``...) an evaluation does not record;
    each read as :func:`local.settings.run_settings` reads a model file. And
    the DDP processes that trained the run (``ddp_processes``, each taking
    ``batch_size`` crops a step), where its training record names them.

    Arguments
    ---------
    run : str
        A run folder.

    Returns
    -------
    tuple or None
        ``(path, settings)``: the report's record and ``{key: value}``.

    Raises
    ------
    ManifestError
        When a record cannot be read.
    """
    for name in SETTINGS_FILES:
        path = os.path.join(run, "verification", name)
        if os.path.isfile(path):
            trained = os.path.join(run, "hyperparams.yaml")
            own = _read_settings(trained) if os.path.isfile(trained) else {}
            # The processes that trained the run: an evaluation's are its own command's.
            training = path if name == "hyperparams.yaml" else trained
            processes = recorded_processes(training) if os.path.isfile(training) else None
            return path, {**own, **_read_settings(path),
                          **({PROCESSES_KEY: processes} if processes else {})}
    return None


def _read_settings(path):
    try:
        return run_settings(path, {})
    except (yaml.YAMLError, ruamel.yaml.YAMLError) as error:
        fail(path, f"unreadable settings record ({error})",
             fix="leave the run out, or evaluate it again (evaluate.py), which writes its "
                 "report's settings anew")


def compared_settings(settings):
    """The settings of a run that the other runs of its system must share, each argument apart.

    An object's class and each of its arguments are an entry of their own
    (``embedding_model.channels``), those of :data:`SEED_FREE_KEYS` are left
    out at any depth (the ``num_workers`` of ``train_dataloader_options``,
    which takes the setting's value), and a path inside a folder of
    :data:`FOLDER_KEYS` is named by its key (an object's ``checkpoints_dir``).

    Arguments
    ---------
    settings : dict
        As :func:`report_settings` reads them.

    Returns
    -------
    dict
        ``{dotted name: value}``.

    Example
    -------
    >>> compared_settings({"seed": 2, "output_folder": "r/s2", "lr": 0.1,
    ...                    "checkpointer": {"!new:Checkpointer": {"checkpoints_dir": "r/s2/save"}}})
    {'lr': 0.1, 'checkpointer': '!new:Checkpointer', 'checkpointer.checkpoints_dir': '<output_folder>/save'}
    """
    folders = sorted(((settings[key], key) for key in FOLDER_KEYS
                      if isinstance(settings.get(key), str)), key=lambda f: -len(f[0]))

    def named(value):
        for folder, key in folders if isinstance(value, str) else ():
            if value == folder or value.startswith(f"{folder}/"):
                return f"<{key}>{value[len(folder):]}"
        return value

    def entries(prefix, value):
        if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
            for index, item in enumerate(value):  # a list of objects: each by its place
                yield from entries(f"{prefix}[{index}]", item)
            return
        if not isinstance(value, dict):
            yield prefix, named(value)
            return
        if len(value) == 1 and next(iter(value)).startswith("!"):  # an object: {tag: arguments}
            (tag, arguments), = value.items()
            yield prefix, tag
            if not isinstance(arguments, dict):
                yield from entries(f"{prefix}.arguments", arguments)
                return
            value = arguments
        for key, item in value.items():
            if key not in SEED_FREE_KEYS:
                yield from entries(f"{prefix}.{key}" if prefix else key, item)

    return dict(entries("", settings))


def check_same_settings(systems):
    """Refuse a system whose runs' reports were made with different settings.

    The runs of one system are seeds of one setting: their reports'
    settings (:func:`report_settings`) must agree in all but the seed,
    the folders and what leaves the figures alone (:data:`SEED_FREE_KEYS`),
    so that an oracle evaluation, a run of fewer epochs or one scored with
    another normalisation is not averaged with the others under one name.
    A report without a record (of an older run) is not compared, with a
    warning, nor is a setting that some records lack: one added to the
    recipe after they were written, whose default is what they ran. The
    systems of a table differ in their settings: that is what it compares.
    Fused folders, which have no settings of their own, are compared by
    :func:`check_same_fusion`.

    Arguments
    ---------
    systems : dict
        ``{name: summaries}``, as :func:`collect` returns.

    Raises
    ------
    ManifestError
        Naming the system, the runs, and each setting that differs with its
        value in each run.
    """
    for name, summaries in systems.items():
        runs = [run for run in dict.fromkeys(summaries["run"]) if not fused_rows(run)]
        refuse_other_settings(
            {run: report_settings(run) for run in runs}, f"a run of '{name}'",
            f"the other runs of '{name}'",
            fix="give the runs of each setting a --runs of their own, or run the odd ones "
                "again with the settings of the others (evaluate.py, or train_dann.py into a "
                "new --output_folder)")


def refuse_other_settings(records, member, others, fix):
    """Refuse runs that are not seeds of one setting, and warn of those that do not say.

    Arguments
    ---------
    records : dict
        ``{run: record}`` of the runs that must be seeds of one setting, each
        record as :func:`report_settings` gives it (None: not compared, with
        a warning where there are others).
    member : str
        What a run of them is, for the message (``"a run of 'DANN'"``).
    others : str
        What the others are, for the warning (``"the other runs of 'DANN'"``).
    fix : str
        How to mend a difference.

    Raises
    ------
    ManifestError
        Naming the odd run's record and each setting that differs with its
        value in each run.
    """
    unrecorded = [run for run, record in records.items() if record is None]
    if unrecorded and len(records) > 1:
        logger.warning("No settings record (%s) in the report of %s: its settings are not "
                       "compared with those of %s",
                       " or ".join(SETTINGS_FILES), ", ".join(unrecorded), others)
    compared = {run: compared_settings(record[1]) for run, record in records.items()
                if record is not None}
    differing = _differing(compared)
    if differing:
        reference = next(iter(compared))
        odd = next(run for run in compared if compared[run] != compared[reference])
        fail(records[odd][0], f"{member} made with other settings than {reference}: its "
                              "figures are not another seed's",
             rows=_difference_rows(differing), fix=fix)


def _difference_rows(differing):
    """A line per entry of ``differing`` (:func:`_differing`): its value in each run."""
    return [f"{key}: " + "; ".join(f"{_shown(value)} in {', '.join(members)}"
                                   for value, members in groups.items())
            for key, groups in differing.items()]


def fusion_of(entry):
    """What makes a fused row's fusion, to be the same in each seed's fused folder.

    Its method, the prior a logistic fusion is calibrated at
    (:func:`calibration_prior`) and the systems of its score files and
    development score files, in any order: a report's system (its list,
    back-end and score normalisation, ``target_plda_pooled``), a file of no
    report as :data:`NO_REPORT`, its folder being no system's name.

    Arguments
    ---------
    entry : dict
        A row's record, as :func:`local.evaluation.fusion.write_record` takes it.

    Returns
    -------
    dict
        ``{"method", "--p_target", "systems", "development systems"}``.

    Example
    -------
    >>> fusion_of({"method": "mean", "dev": [],
    ...            "scores": [{"path": "r/2/verification/target_asnorm/scores.txt",
    ...                        "system": "target_asnorm"},
    ...                       {"path": "s/b.txt", "system": "s"}]})
    {'method': 'mean', '--p_target': None, 'systems': ['(a file of no report)', 'target_asnorm'], 'development systems': []}
    """
    def systems(files):
        return sorted(i["system"] if scored_run(i["path"]) else NO_REPORT for i in files)

    return {"method": entry["method"], "--p_target": calibration_prior(entry),
            "systems": systems(entry["scores"]), "development systems": systems(entry["dev"])}


def _fused_runs(entry):
    """``[(system, run, settings record)]`` of a fused row's score files, in a seed-free order.

    Sorted by system and by the settings of its run, but for the seed and
    the folders (:func:`compared_settings`), so that the runs of the same
    setting in each seed's fusion take the same place, whatever the order
    of ``--scores``; a file of no report has no run nor record.
    """
    fused = []
    for i in entry["scores"]:
        run = scored_run(i["path"])
        record = run and report_settings(run)
        fused.append((i["system"] if run else NO_REPORT, run, record))
    return sorted(fused, key=lambda f: (f[0], json.dumps(
        f[2] and compared_settings(f[2][1]), sort_keys=True, default=str)))


def check_same_fusion(systems, lists):
    """Refuse fused folders of one system that are not one fusion of seeds of one setting.

    The fused folders of one ``--runs`` are seeds of one fusion: each row of
    the table must be fused by the same method, at the same calibration
    prior, from the same systems (:func:`fusion_of`), of other runs in
    each folder (:func:`_refuse_shared_runs`), and the runs fused as each system must be seeds of one
    setting (:func:`refuse_other_settings`), paired in a seed-free order
    (:func:`_fused_runs`). A fused folder beside runs in one ``--runs`` is
    refused. A score file of no report has no run whose settings could be
    compared: it is compared by its place among the systems only, with a
    warning.

    Arguments
    ---------
    systems : dict
        ``{name: summaries}``, as :func:`collect` returns.
    lists : list of str
        The scored lists of the table.

    Raises
    ------
    ManifestError
        Naming the fused folder's record, the row and what differs.
    """
    for name, summaries in systems.items():
        runs = list(dict.fromkeys(summaries["run"]))
        fused = {run: fused_rows(run) for run in runs}
        fused = {run: rows for run, rows in fused.items() if rows}
        if not fused or len(runs) == 1:
            continue
        if len(fused) < len(runs):
            plain = next(run for run in runs if run not in fused)
            fail(next(iter(fused)), f"a fused folder among runs of '{name}' that are not "
                                    f"fused ({plain}): its figures are no other seed's",
                 fix="give the fused folders a --runs of their own")
        for scored in lists:
            entries = {run: rows[scored] for run, rows in fused.items() if scored in rows}
            _refuse_other_fusion(name, scored, entries)
            _refuse_shared_runs(name, scored, entries)
            unreported = [run for run, entry in entries.items()
                          if any(not scored_run(i["path"]) for i in entry["scores"])]
            if unreported:
                logger.warning("%s: row '%s' fused score files of no run's report, whose "
                               "runs' settings are not compared with those of the other "
                               "fused folders of '%s'", ", ".join(unreported), scored, name)
            for place in zip(*(_fused_runs(entry) for entry in entries.values())):
                system = place[0][0]
                if system == NO_REPORT:
                    continue
                refuse_other_settings(
                    {run: record for _, run, record in place},
                    f"a run fused as '{system}' into row '{scored}' of '{name}'",
                    f"the runs fused as '{system}' into row '{scored}' of the other fused "
                    f"folders of '{name}'",
                    fix="fuse the runs of one setting in every seed's folder (python -m "
                        "local.evaluation.fusion), or give the fused folders of each setting "
                        "a --runs of their own")


def _refuse_other_fusion(name, scored, entries):
    """Refuse fused folders whose row ``scored`` is not one fusion (:func:`fusion_of`)."""
    differing = _differing({run: fusion_of(entry) for run, entry in entries.items()})
    if differing:
        reference, *others = entries
        odd = next(run for run in others
                   if fusion_of(entries[run]) != fusion_of(entries[reference]))
        fail(report_provenance(odd)[0], f"row '{scored}' is another fusion than that of "
                                        f"{reference}: the fused folders of '{name}' are not "
                                        "seeds of one fusion",
             rows=_difference_rows(differing),
             fix="fuse the runs of every seed by one method (and --p_target) from the same "
                 "systems (python -m local.evaluation.fusion), or give the fused folders of "
                 "each fusion a --runs of their own")


def _refuse_shared_runs(name, scored, entries):
    """Refuse fused folders whose row ``scored`` fused another's runs.

    A run (or a file of no report) fused into every folder, from the same
    score files, is a system fixed over the seeds (one baseline fused with
    each seed's run); a folder fused from the very runs of another, or from
    a run that some others fused too, or fused from other score files (seed 1's
    AS-norm system beside seed 2's PLDA one, where seed 1 fused its own
    two), is no other seed's fusion.

    With two seeds, a folder that fused all that one run of the other seed's
    folder gave it (seed 2's run A with seed 1's run B, where seed 1 fused
    its A and B) is not refused, and cannot be told apart: that run is in
    every folder from the same score files, as a fixed baseline is, and a
    baseline trained once is a run of one seed too, the seed of one folder's
    other runs; the records keep which runs were fused, not which of them
    were meant to be fixed. The runs' settings are still compared place by
    place (:func:`_fused_runs`), and a third seed tells it apart (the run is
    not in every folder).
    """
    sources = {run: _fused_files(entry) for run, entry in entries.items()}
    for number, (run, own) in enumerate(sources.items()):
        for other in list(sources)[:number]:
            shared = own.keys() & sources[other].keys()
            if own.keys() != sources[other].keys():  # but for the systems fixed over the seeds
                shared = {source for source in shared
                          if not all(theirs.get(source) == own[source]
                                     for theirs in sources.values())}
            if shared:
                fail(report_provenance(run)[0],
                     f"row '{scored}' fused runs of {other}: the fused folders of '{name}' "
                     "are not seeds of one fusion", rows=sorted(shared),
                     fix="fuse each seed's own runs into its folder (python -m "
                         "local.evaluation.fusion); a system fixed over the seeds goes into "
                         "every folder")


def _fused_files(entry):
    """``{run (a file of no report: its path): {score files}}`` of a fused row, ``--dev`` too."""
    fused = {}
    for i in entry["scores"] + entry["dev"]:
        fused.setdefault(scored_run(i["path"]) or i["path"], set()).add(i["path"])
    return fused


def _differing(compared):
    """``{name: {JSON value: runs}}`` of the settings that differ between the runs of ``compared``.

    An object's arguments are made from the settings: one that differs is
    named only where no setting that differs explains it (an edited model file).
    """
    differing = {}
    for key in dict.fromkeys(key for settings in compared.values() for key in settings):
        if not all(key in settings for settings in compared.values()):
            continue
        groups = {}
        for run, settings in compared.items():
            groups.setdefault(json.dumps(settings[key]), []).append(run)
        if len(groups) > 1:
            differing[key] = groups
    plain = {key: groups for key, groups in differing.items() if "." not in key}
    return plain or differing


def _shown(value, width=60):
    """A setting's JSON value, shortened to ``width`` characters (a long list)."""
    return value if len(value) <= width else f"{value[:width - 3]}..."


def check_metrics(systems, lists, metrics):
    """Refuse a metric that is no column of the summaries, or that a list was not scored at.

    A summary's minDCF columns are those of every list's settings, empty for
    a list scored at other settings (an SdSV list's ``min_dcf_0.01_10_1``
    beside a VoxCeleb list's ``min_dcf_0.01``).

    Arguments
    ---------
    systems : dict
        ``{name: summaries}``, as :func:`collect` returns.
    lists : list of str
        The scored lists of the table.
    metrics : list of str
        The metrics of the table.

    Raises
    ------
    ManifestError
        Naming the metric and the columns there are (of that list, for a
        metric it was not scored at).

    Example
    -------
    >>> summaries = pd.DataFrame({"system": ["target"], "trials": [10], "eer_percent": [30.0],
    ...                           "run": ["s1"]})
    >>> check_metrics({"baseline": summaries}, ["target"], ["eer"])
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: s1: no 'eer' column in its verification summary
    Fix: choose among the metrics: trials, eer_percent
    """
    for summaries in systems.values():
        for metric in metrics:
            if metric not in summaries.columns or metric in ("system", "run"):
                available = [c for c in summaries.columns if c not in ("system", "run")]
                fail(summaries["run"].iloc[0], f"no '{metric}' column in its verification summary",
                     fix=f"choose among the metrics: {', '.join(available)}")
        for scored in lists:
            chosen = summaries[summaries["system"] == scored].drop(columns=["system", "run"])
            for run, values in zip(summaries["run"][chosen.index], chosen.to_dict("records")):
                unscored = [metric for metric in metrics if pd.isna(values[metric])]
                if unscored:
                    available = [column for column, value in values.items() if not pd.isna(value)]
                    fail(run, f"'{scored}' was not scored at '{unscored[0]}' (empty in its "
                              "verification summary)",
                         fix=f"choose among the metrics of '{scored}': {', '.join(available)}")


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
        formatted ``mean ± std``, an EER (%) with 2 decimals, a minDCF, an
        actDCF and a Cllr with :data:`DCF_DECIMALS`.

    Raises
    ------
    ManifestError
        When a run lacks one of the lists or metrics, runs scored a list
        on different data (:func:`check_same_data`), runs of one system
        were made with different settings (:func:`check_same_settings`),
        a fused row's score files have changed since (:func:`check_fused_rows`),
        or the fused folders of one system are not one fusion of seeds of one
        setting (:func:`check_same_fusion`).

    Example
    -------
    >>> summaries = pd.DataFrame({"system": ["target"] * 3, "trials": [10] * 3,
    ...                           "eer_percent": [30.0, 32.0, 34.0], "run": ["s1", "s2", "s3"]})
    >>> seed_table({"baseline": summaries}, ["target"], ["eer_percent"]).to_dict("records")
    [{'system': 'baseline', 'runs': 3, 'target eer_percent': '32.00 ± 2.00'}]
    """
    for summaries in systems.values():
        for scored in lists:
            chosen = summaries[summaries["system"] == scored]
            missing = sorted(set(summaries["run"]) - set(chosen["run"]))
            if missing:
                scored_there = summaries["system"][summaries["run"] == missing[0]]
                fail(missing[0], f"no '{scored}' list in its verification summary",
                     fix=f"choose among its lists: {', '.join(scored_there)}; or score it "
                         "again with the score_norm/backend_adaptation/backend that make it")
    check_metrics(systems, lists, metrics)
    check_same_data(systems, lists)
    check_same_settings(systems)
    check_fused_rows(list(dict.fromkeys(pd.concat(systems.values())["run"])), lists)
    check_same_fusion(systems, lists)
    rows = []
    for name, summaries in systems.items():
        row = {"system": name, "runs": summaries["run"].nunique()}
        for scored in lists:
            chosen = summaries[summaries["system"] == scored]
            for metric in metrics:
                values = chosen[metric]
                decimals = (DCF_DECIMALS if metric.startswith(("min_dcf_", "act_dcf_"))
                            or metric in ("cllr", "min_cllr") else 2)
                row[f"{scored} {metric}"] = f"{values.mean():.{decimals}f}" + (
                    f" ± {values.std(ddof=1):.{decimals}f}" if len(values) > 1 else "")
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
        0 when the table was made, 1 when ``out`` lies in a run's folder
        (:func:`~local.evaluation.report.run_folder_of`), a system is named twice, a run
        folder is missing or incomplete, a list or metric is unknown, runs
        scored a list on different data, runs of one system were made with
        different settings, a fused row's score files have changed since, or
        the fused folders of one system are not one fusion of seeds of one
        setting (the message names them).
    """
    try:
        names = [name for name, _ in runs]
        repeated = [name for name in dict.fromkeys(names) if names.count(name) > 1]
        if repeated:
            # One entry per system: a second pattern would replace the first's runs.
            fail(f"--runs {repeated[0]}", "a system named by more than one --runs",
                 fix="give each --runs a name of its own, or one pattern matching all of "
                     "the system's runs")
        folder = out and run_folder_of(out)
        if folder:
            fail(out, f"lies in {folder}, a run's folder or report, whose files the table "
                      "would replace", fix="write the table outside the runs' folders, e.g. "
                                           "results/<condition>/seed_table.md (--out)")
        table = seed_table({name: collect(pattern) for name, pattern in runs}, lists, metrics)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    text = markdown_table(list(table.columns), table.astype(str).values.tolist())
    print(text, end="")
    if out:
        with written_whole(out, encoding="utf-8") as fout:
            fout.write(text)
    return 0


main = command(
    print_seed_table, __doc__,
    option("--runs", nargs=2, action="append", required=True,
           metavar=("NAME", "PATTERN"), help="a system and the glob of its runs"),
    option("--lists", nargs="+", default=["source", "target"],
           help="the scored systems of summary.csv to report (its system column)"),
    option("--metrics", nargs="+", default=["eer_percent", "min_dcf_0.01"],
           help="the columns of summary.csv to report"),
    option("--out", help="also write the table here, as markdown"),
)


if __name__ == "__main__":
    sys.exit(main())
