"""The error of a bad data file or option, with the message that names the file and the fix.

Every check of the recipe (manifests, trial lists, score files, options)
raises :class:`ManifestError` through :func:`fail`, so a user sees one kind of
message: the file, what is wrong with it, the first offending rows, the fix.
"""

import contextlib
import errno
import os
import shutil

import torch
from speechbrain.utils.distributed import main_process_only

# Never accept more than this many offending rows into one message.
MAX_REPORTED = 5
# torch.save reports a failed write to a path as a RuntimeError without errno
# ("enforce fail at inline_container.cc"); below this much free space it is a
# full disk.
FULL_BELOW_BYTES = 1 << 20


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


def is_disk_full(error, folder):
    """Whether ``error``, raised while writing into ``folder``, is that of a full disk.

    Arguments
    ---------
    error : Exception
        What the write raised.
    folder : str
        Where it wrote (or, while that is not made yet, into its parent).

    Returns
    -------
    bool
        For an ``OSError`` of no space or no quota left, or an ``OSError`` or
        ``RuntimeError`` (torch's) while under :data:`FULL_BELOW_BYTES` are free.

    Example
    -------
    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"), ".")
    True
    >>> is_disk_full(ValueError("not a write"), ".")
    False
    """
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    disk = folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder))
    return shutil.disk_usage(disk).free < FULL_BELOW_BYTES


@contextlib.contextmanager
def failing_on_full_disk(folder, written, fix):
    """A block whose full disk (:func:`is_disk_full`) fails with a message naming ``folder``.

    Enter it inside any block that removes what was written when it fails:
    the free space is measured before that.

    Arguments
    ---------
    folder : str
        Where the block writes.
    written : str
        What it writes, for the message (``"a checkpoint"``).
    fix : str
        What to do besides freeing space on the disk of ``folder``, and what
        is intact.

    Raises
    ------
    ManifestError
        On a full disk, with the fix.

    Example
    -------
    >>> with failing_on_full_disk("run", "the report", "and evaluate it again"):
    ...     raise OSError(errno.ENOSPC, "No space left")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: run: the disk is full: the report could not be written ([Errno 28] No space left)
    Fix: free space on the disk of run, and evaluate it again
    """
    try:
        yield
    except (OSError, RuntimeError) as error:
        if is_disk_full(error, folder):
            fail(folder, f"the disk is full: {written} could not be written ({error})",
                 fix=f"free space on the disk of {folder}, {fix}")
        raise


def checked_on_main(check, *arguments, **keywords):
    """Run ``check`` on the main process; its failure stops every process, with its message.

    For the checks and work of a run that only the main process does (its
    folder's lock, its settings against its checkpoints', the data
    preparation, the verification and the export after training): under
    DDP, the other processes would otherwise go on with a run the main one
    refused, and only fail at their next collective operation with an error
    of the connection, or wait there for the collective's timeout.

    Arguments
    ---------
    check : callable
        The check.
    *arguments
        Its arguments.
    **keywords
        Its keyword arguments.

    Returns
    -------
    object
        What ``check`` returns on the main process, on every process.

    Raises
    ------
    ManifestError
        On every process, with the main process's message, when ``check`` raised it there.
    Exception
        On the main process, any other exception ``check`` raised there; on
        the others, a ``RuntimeError`` naming it and its message.

    Example
    -------
    >>> checked_on_main(fail, "run.lock", "is held")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: run.lock: is held
    """
    raised = []

    def outcome():
        try:
            return check(*arguments, **keywords), None
        except Exception as error:  # whatever it is, the other processes stop with it
            raised.append(error)
            return None, _carried(error, "the main process")

    # A process that is not the main one outside a process group gets None.
    result, failure = main_process_only(outcome)() or (None, None)
    if raised:
        raise raised[0]  # on the main process, with its traceback
    if failure is not None:
        kind, message = failure
        raise kind(message)
    return result


def checked_on_every_process(work, *arguments, **keywords):
    """Run ``work`` on every process; a failure in any of them stops every process with its message.

    For work that each process does on its own share (the target
    utterances a clustering embeds): a process whose share holds a bad file
    would otherwise stop alone, and the others wait for it at their next
    collective operation and fail with an error of the connection.

    Arguments
    ---------
    work : callable
        The work.
    *arguments
        Its arguments.
    **keywords
        Its keyword arguments.

    Returns
    -------
    object
        What ``work`` returns on this process.

    Raises
    ------
    ManifestError
        On every process, with the message of the first process (by rank)
        where ``work`` raised it.
    Exception
        On a process where ``work`` failed, what it raised, with its
        traceback; on the others, that of the first process that failed, a
        :class:`ManifestError` as it is, any other as a ``RuntimeError``
        naming the process, its type and its message.

    Example
    -------
    >>> checked_on_every_process(fail, "share.csv", "is empty")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: share.csv: is empty
    """
    if not torch.distributed.is_initialized():
        return work(*arguments, **keywords)
    result, raised, failure = None, None, None
    try:
        result = work(*arguments, **keywords)
    except Exception as error:  # whatever it is, the other processes stop with it
        raised = error
        failure = _carried(error, f"process {torch.distributed.get_rank()}")
    failures = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(failures, failure)
    if raised is not None:
        raise raised
    failure = next((failure for failure in failures if failure is not None), None)
    if failure is not None:
        kind, message = failure
        raise kind(message)
    return result


def _carried(error, process):
    """``(exception type, message)`` that carries ``error`` of ``process`` to the others:
    a :class:`ManifestError` as it is, any other as a ``RuntimeError`` naming the
    process, the error's type and its message."""
    if isinstance(error, ManifestError):
        return ManifestError, str(error)
    return RuntimeError, f"{process} failed with {type(error).__name__}: {error}"
