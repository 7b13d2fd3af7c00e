"""Running the recipe test rows of ``tests/recipes/*.csv`` as SpeechBrain does.

A row names a script, an hparams file and ``test_debug_flags``; the runner
runs ``python <script> <hparams> <flags> --device=cpu`` from the repository
root (with ``--output_folder=<output>/<recipe ID>`` unless the flags give one),
then checks ``test_debug_checks``: ``file_exists=[a,b,...]`` (paths in the
output folder) and ``performance_check=[file, variable, <threshold>, epoch: N]``
(the value of ``variable`` on the line of ``file`` that contains ``epoch: N``,
or on its last line for ``epoch: -1``). Recipe IDs are ``<csv name>_row_<line>``.

This follows ``tests/utils/recipe_tests.py`` of SpeechBrain's repository (the
row format, IDs, command and checks), which the ``speechbrain`` package does
not install, so it is written here; the checks return what failed instead of
printing it, for the test's message.

The flags may name shell variables that the runner sets (see
``tests/recipes/README.md``): ``$RECIPE_TEST_DATA`` (the demo corpus folder),
``$RECIPE_TEST_WAVLM`` and ``$RECIPE_TEST_WAV2VEC2`` (tiny SSL models saved
with ``save_pretrained``) and ``$RECIPE_TEST_OUT`` (the runner's output folder,
for rows that read another row's run).
"""

import csv
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECIPE_FOLDER = ROOT / "tests" / "recipes"
COLUMNS = ["Task", "Dataset", "Script_file", "Hparam_file", "Data_prep_file", "Readme_file",
           "Result_url", "HF_repo", "test_debug_flags", "test_debug_checks", "performance"]


def read_rows(recipe_folder=RECIPE_FOLDER):
    """The rows of every recipe CSV, keyed by recipe ID, in ID order.

    Arguments
    ---------
    recipe_folder : pathlib.Path
        Folder of the ``<Dataset>.csv`` files.

    Returns
    -------
    dict
        ``{recipe ID: row dict}``; the ID of the row on line ``n`` of
        ``Demo.csv`` is ``Demo_row_<n>`` (two digits at least).

    Example
    -------
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "Toy.csv").write_text("Task,test_debug_flags\\nSV, --debug\\n")
    >>> read_rows(folder)
    {'Toy_row_02': {'Task': 'SV', 'test_debug_flags': '--debug'}}
    """
    rows = {}
    for path in sorted(recipe_folder.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fin:
            for index, row in enumerate(csv.DictReader(fin, skipinitialspace=True)):
                rows[f"{path.stem}_row_{index + 2:02d}"] = row
    return dict(sorted(rows.items()))


def output_folder_of(flags, default, env):
    """The folder a row's run writes to: its ``--output_folder`` flag, or ``default``.

    Arguments
    ---------
    flags : str
        The row's ``test_debug_flags``.
    default : str
        The runner's folder for this row.
    env : dict
        Variables the flags may name.

    Returns
    -------
    str
        The folder, variables expanded.

    Example
    -------
    >>> output_folder_of("--seed=1 --output_folder=$OUT/a", "x", {"OUT": "/tmp"})
    '/tmp/a'
    >>> output_folder_of("--seed=1", "x", {})
    'x'
    """
    match = re.search(r"--output_folder\s*=?\s*([^\s']+|'[^']*')", flags)
    if match is None:
        return default
    folder = match.group(1).strip("'")
    return re.sub(r"\$(\w+)", lambda m: env[m.group(1)], folder)


def missing_files(checks, folder):
    """The paths of ``file_exists=[...]`` that are not in ``folder``.

    Arguments
    ---------
    checks : str
        The row's ``test_debug_checks``.
    folder : str
        Its output folder.

    Returns
    -------
    list of str
        The missing paths (empty when the checks name none).

    Example
    -------
    >>> missing_files("file_exists=[a.txt, b.txt]", ".")
    ['a.txt', 'b.txt']
    """
    match = re.search(r"file_exists=\[(.*?)\]", checks)
    names = [name.strip() for name in match.group(1).split(",")] if match else []
    return [name for name in names if not os.path.exists(os.path.join(folder, name))]


def extract_value(line, variable):
    """The number after ``<variable>:`` in a log line, or None.

    Arguments
    ---------
    line : str
        A line of a train log.
    variable : str
        Its name, as logged (``train loss``).

    Returns
    -------
    float or None
        The value.

    Example
    -------
    >>> extract_value("epoch: 2 - train loss: 1.5e+01, train steps: 2", "train loss")
    15.0
    """
    match = re.search(rf"{re.escape(variable)}\s*:\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)", line)
    return float(match.group(1)) if match else None


def satisfies(value, threshold):
    """Whether ``value`` meets a threshold written ``<X``, ``<=X``, ``>X``, ``>=X`` or ``==X``.

    Arguments
    ---------
    value : float
        The measured value.
    threshold : str
        The condition.

    Returns
    -------
    bool
        Whether it holds.

    Example
    -------
    >>> satisfies(3.0, "<5"), satisfies(3.0, ">=5")
    (True, False)
    """
    operator, bound = re.fullmatch(r"\s*(<=|>=|==|<|>)\s*(\S+)\s*", threshold).groups()
    bound = float(bound)
    return {"<": value < bound, "<=": value <= bound, ">": value > bound,
            ">=": value >= bound, "==": value == bound}[operator]


def performance_problem(checks, folder):
    """What fails the ``performance_check=[...]`` of a row, or None.

    Arguments
    ---------
    checks : str
        The row's ``test_debug_checks``.
    folder : str
        Its output folder.

    Returns
    -------
    str or None
        The problem; None when the check holds or the row has none.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "log.txt"), "w") as log:
    ...     _ = log.write("epoch: 1 - train loss: 9.0\\nepoch: 2 - train loss: 7.5\\n")
    >>> performance_problem("performance_check=[log.txt, train loss, <8, epoch: 2]", folder)
    >>> performance_problem("performance_check=[log.txt, train loss, <8, epoch: 1]", folder)
    'log.txt: train loss is 9.0 on epoch: 1, not <8'
    """
    match = re.search(r"performance_check=\[(.*?)\]", checks)
    if match is None:
        return None
    filename, variable, threshold, epoch = (part.strip() for part in match.group(1).split(","))
    path = os.path.join(folder, filename)
    if not os.path.isfile(path):
        return f"{filename}: missing"
    with open(path, encoding="utf-8") as log:
        lines = [line for line in log if line.strip()]
    chosen = lines[-1:] if epoch.endswith("-1") else [line for line in lines if epoch in line]
    if not chosen:
        return f"{filename}: no line with {epoch}"
    value = extract_value(chosen[0], variable)
    if value is None:
        return f"{filename}: no {variable} on the line with {epoch}"
    if not satisfies(value, threshold):
        return f"{filename}: {variable} is {value} on {epoch}, not {threshold}"
    return None


def run_row(recipe_id, row, output_folder, env):
    """Run one recipe row and check its outputs.

    Arguments
    ---------
    recipe_id : str
        Its ID (the folder it writes to under ``output_folder``).
    row : dict
        The CSV row.
    output_folder : str
        The runner's output folder.
    env : dict
        Variables for the flags (added to the environment of the run).

    Returns
    -------
    list of str
        What failed: the exit status with the end of stderr, missing files,
        the performance check; empty when the row passed.
    """
    flags = row["test_debug_flags"]
    default = os.path.join(output_folder, recipe_id)
    folder = output_folder_of(flags, default, env)
    os.makedirs(folder, exist_ok=True)
    command = f"{sys.executable} {row['Script_file']} {row['Hparam_file']} {flags} --device=cpu"
    if folder == default:
        command += f" --output_folder={folder}"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environment = dict(os.environ, **env, PYTHONPATH=path)
    with open(os.path.join(folder, "stdout.txt"), "w") as out, \
            open(os.path.join(folder, "stderr.txt"), "w") as err:
        status = subprocess.run(command, shell=True, cwd=ROOT, env=environment, stdout=out,
                                stderr=err).returncode
    problems = []
    if status != 0:
        with open(os.path.join(folder, "stderr.txt"), encoding="utf-8") as err:
            problems.append(f"exit status {status}:\n{err.read()[-3000:]}")
    checks = row["test_debug_checks"]
    problems += [f"missing {name}" for name in missing_files(checks, folder)]
    performance = performance_problem(checks, folder)
    return problems + ([performance] if performance else [])
