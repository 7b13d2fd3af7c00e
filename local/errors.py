"""The error of a bad data file or option, with the message that names the file and the fix.

Every check of the recipe (manifests, trial lists, score files, options)
raises :class:`ManifestError` through :func:`fail`, so a user sees one kind of
message: the file, what is wrong with it, the first offending rows, the fix.
"""

from speechbrain.utils.distributed import main_process_only

# Never accept more than this many offending rows into one message.
MAX_REPORTED = 5


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
    local.errors.ManifestError: train.csv: duplicated IDs
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


def exit_on_bad_input(command, *arguments):
    """Run ``command(*arguments)``; a :class:`ManifestError` ends the process with its message.

    For the recipe's scripts: a user who passed a bad file or option reads
    the message and its fix, with exit status 1, instead of a traceback.

    Arguments
    ---------
    command : callable
        The script's ``main``.
    *arguments
        Its arguments.

    Returns
    -------
    object
        What ``command`` returns.

    Example
    -------
    >>> exit_on_bad_input(fail, "trials.txt", "is empty")
    Traceback (most recent call last):
      ...
    SystemExit: trials.txt: is empty
    """
    try:
        return command(*arguments)
    except ManifestError as error:
        raise SystemExit(str(error)) from None


def checked_on_main(check, *arguments):
    """Run ``check(*arguments)`` on the main process; its :class:`ManifestError` stops every process.

    For the checks of a run that only the main process makes (its folder's
    lock, its settings against its checkpoints'): under DDP, the other
    processes would otherwise go on with a run the main one refused, and
    only fail at their next collective operation with an error of the
    connection, or wait there for the collective's timeout.

    Arguments
    ---------
    check : callable
        The check.
    *arguments
        Its arguments.

    Returns
    -------
    object
        What ``check`` returns on the main process, on every process.

    Raises
    ------
    ManifestError
        On every process, with the main process's message, when ``check`` raised it there.

    Example
    -------
    >>> checked_on_main(fail, "run.lock", "is held")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: run.lock: is held
    """
    def outcome():
        try:
            return check(*arguments), None
        except ManifestError as error:
            return None, str(error)

    # A process that is not the main one outside a process group gets None.
    result, refusal = main_process_only(outcome)() or (None, None)
    if refusal is not None:
        raise ManifestError(refusal)
    return result
