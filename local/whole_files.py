"""Files that a reader finds whole or not at all.

A run's records and caches are written under a name of the writing process's
own beside their place, then renamed into it (``os.replace``, atomic on one
file system). A kill or a full disk during the write leaves the file before
it as it was, and runs that write the same file at once (several seeds
sharing a cache or a manifest's audio-check stamp) neither read half of one
another's file nor rename one another's away.

Files that are read as one record (a run's settings record and the settings
files beside it) are written together (:func:`written_together`): each is
written whole, and none takes its place before all are written, so that a
full disk while one is written leaves every one of them as it was.

A writer killed mid-write (SIGKILL, an out-of-memory kill) leaves its partial
file, as large as what it wrote (an embedding cache of 10^6 utterances: about
0.8 GB). The first write of a process into a folder removes the partial files
there of this host's writers whose process has ended (one listing of the
folder per process, not per file: an SSL feature cache folder holds a file
per utterance); those of live processes and of other hosts, which cannot be
told from here to have ended, are kept.

A folder that a reader takes as one whole (a run's verification report, its
exported model) is written whole into ``<folder>.partial`` beside it and then
takes its place (:func:`staged_folder`): it holds what one writer wrote, and
a writer that fails or is killed leaves the folder before it as it was. The
writer holds ``<folder>.lock`` beside it meanwhile, so that a second writer
of the folder (two exports into one ``--model_folder``) is refused rather
than mixing its files with the first's.
"""

import contextlib
import fcntl
import os
import re
import shutil
import socket
import threading

from local.errors import fail

# The files written whole that wait, in each open written_together block of
# this thread, for the block's end to take their places: [(partial file,
# path)] per block. Per thread: another thread's writes (a cache's) are not
# the block's.
_BLOCKS = threading.local()
# The folders whose partial files of ended writers this process has removed.
_CLEARED = set()


def _waiting():
    """The open blocks of this thread, innermost last."""
    if not hasattr(_BLOCKS, "open"):
        _BLOCKS.open = []
    return _BLOCKS.open


def partial_path(path):
    """The file this process writes ``path`` into before renaming it.

    Arguments
    ---------
    path : str
        The file to write.

    Returns
    -------
    str
        ``<path>.<host>-<PID>.partial``.

    Example
    -------
    >>> partial_path("cache/u1.npy") == f"cache/u1.npy.{socket.gethostname()}-{os.getpid()}.partial"
    True
    """
    return f"{path}.{socket.gethostname()}-{os.getpid()}.partial"


def _clear_ended_writers(path):
    """Remove the partial files beside ``path`` of this host's ended writers (once per folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder in _CLEARED or not os.path.isdir(folder):
        return
    own = re.compile(rf".+\.{re.escape(socket.gethostname())}-(\d+)\.partial")
    with os.scandir(folder) as entries:
        for entry in entries:
            match = own.fullmatch(entry.name)
            if match and entry.is_file(follow_symlinks=False) and _ended(int(match.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)
    _CLEARED.add(folder)


def _ended(pid):
    """Whether process ``pid`` of this host has ended (another user's runs, unsignallable)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass
    return False


@contextlib.contextmanager
def written_whole(path, mode="w", **open_args):
    """Open a file to write ``path`` whole: it takes ``path``'s place once the block ends.

    Inside a :func:`written_together` block, it waits for that block's end.

    When the block raises, ``path`` is left as it was and the partial file removed.

    Arguments
    ---------
    path : str
        The file to write.
    mode : str
        ``"w"`` or ``"wb"``.
    **open_args
        For ``open`` (``encoding``).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "record.json")
    >>> with written_whole(path, encoding="utf-8") as out:
    ...     _ = out.write("{}")
    >>> try:
    ...     with written_whole(path, encoding="utf-8") as out:
    ...         _ = out.write("{half")
    ...         raise OSError("no space left on device")
    ... except OSError:
    ...     pass
    >>> open(path, encoding="utf-8").read(), os.listdir(os.path.dirname(path))
    ('{}', ['record.json'])
    """
    _clear_ended_writers(path)
    partial = partial_path(path)
    try:
        with open(partial, mode, **open_args) as out:
            yield out
        if _waiting():
            _waiting()[-1].append((partial, path))
        else:
            os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        raise


@contextlib.contextmanager
def written_together():
    """A block whose files written whole (:func:`written_whole`) take their places at its end.

    Each waits, written, under its partial name until the block ends; then
    they are renamed into place one after the other (no rename needs space on
    the disk). When the block raises, every file is left as it was and the
    partial files are removed: a full disk while the third of four records
    is written leaves none of the four in the new version.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> try:
    ...     with written_together():
    ...         with written_whole(os.path.join(folder, "settings.json")) as out:
    ...             _ = out.write("{}")
    ...         raise OSError("no space left on device")
    ... except OSError:
    ...     pass
    >>> os.listdir(folder)
    []
    >>> with written_together():
    ...     with written_whole(os.path.join(folder, "settings.json")) as out:
    ...         _ = out.write("{}")
    ...     os.listdir(folder) == [os.path.basename(partial_path("settings.json"))]
    True
    >>> os.listdir(folder)
    ['settings.json']
    """
    waiting = []
    _waiting().append(waiting)
    try:
        yield
        for partial, path in waiting:
            os.replace(partial, path)
    finally:
        _waiting().pop()
        for partial, _ in waiting:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)


def saved_whole(path, save):
    """``save(file)`` writes ``path`` whole: into this process's partial file, which takes its place.

    For a writer that takes a path (SpeechBrain's ``CategoricalEncoder.save``)
    rather than an open file (:func:`written_whole`). When ``save`` raises,
    ``path`` is left as it was and the partial file removed.

    Arguments
    ---------
    path : str
        The file to write.
    save : callable
        ``save(file path)``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> saved_whole(path, lambda name: open(name, "w").write("'a' => 0\\n"))
    >>> os.listdir(os.path.dirname(path))
    ['labels.txt']
    """
    _clear_ended_writers(path)
    partial = partial_path(path)
    try:
        save(partial)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)


def taken_lock(path, wait=False):
    """The lock file ``path``, open with its ``flock`` taken, or None while another holds it.

    The kernel lets go of the ``flock`` when its holder's process ends, however
    it ends, so a file whose ``flock`` is free is taken over. The file is made if
    absent. Its holder removes it before letting go (:func:`release_lock`), so
    one removed between its opening here and the ``flock`` is opened again.

    Arguments
    ---------
    path : str
        The lock file.
    wait : bool
        Wait until the holder lets go rather than return None.

    Returns
    -------
    file or None
        The lock file, open for appending and reading.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "run.lock")
    >>> handle = taken_lock(path)
    >>> taken_lock(path) is None  # another open file description: another holder
    True
    >>> release_lock(path, handle)
    >>> os.path.exists(path)
    False
    """
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return None
        if os.path.exists(path) and os.path.samestat(os.stat(path), os.fstat(handle.fileno())):
            return handle
        handle.close()


def release_lock(path, handle):
    """Remove the lock file ``path`` while its ``flock`` is held, then let go of it.

    Arguments
    ---------
    path : str
        The lock file (its folder may be gone).
    handle : file
        As :func:`taken_lock` gave it.
    """
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    handle.close()


def set_aside(folder):
    """Where :func:`staged_folder` sets the folder before it aside while its own takes its place.

    A writer killed between the two leaves the earlier folder there, and no
    ``folder``: it is still ``folder``'s contents, which the next writer puts back.
    A killed writer leaves its lock file too, which tells such a folder from one
    of that name that no writer set aside (a copy kept by hand).

    Arguments
    ---------
    folder : str
        The folder written whole.

    Returns
    -------
    str
        ``<folder>.previous``.

    Example
    -------
    >>> set_aside("run/verification")
    'run/verification.previous'
    """
    return f"{folder}.previous"


@contextlib.contextmanager
def staged_folder(folder):
    """A block that writes ``folder`` whole: its new contents go into the folder it gives.

    That folder, ``<folder>.partial`` beside ``folder``, takes the place of
    ``folder`` when the block ends, so that ``folder`` holds what one writer
    wrote, and a writer that fails or is killed leaves the folder before it as
    it was. When the block raises, or the replacement fails (the folder before
    it is then put back), the staging folder is removed with what it
    holds (a full disk is not kept full until the next writer); one left by a
    killed writer is removed here, by the next, and a folder left aside as
    ``<folder>.previous`` (:func:`set_aside`) by a kill during the replacement is put back (or,
    once its successor is in place, removed); a ``<folder>.previous`` that no
    killed writer left (no ``<folder>.lock`` is left with it) is refused.
    The block holds ``<folder>.lock`` (:func:`taken_lock`): a second writer
    of ``folder`` meanwhile is refused.

    Arguments
    ---------
    folder : str
        The folder to write whole (``<output_folder>/verification``).

    Yields
    ------
    str
        The empty staging folder, ``<folder>.partial``.

    Raises
    ------
    ManifestError
        When another process writes ``folder``, naming it; or naming a
        ``<folder>.previous`` that no killed writer left.

    Example
    -------
    >>> import tempfile
    >>> folder = os.path.join(tempfile.mkdtemp(), "verification")
    >>> with staged_folder(folder) as staged:
    ...     _ = open(os.path.join(staged, "summary.csv"), "w").write("system")
    ...     sorted(os.listdir(os.path.dirname(folder)))
    ['verification.lock', 'verification.partial']
    >>> os.listdir(os.path.dirname(folder)), os.listdir(folder)
    (['verification'], ['summary.csv'])
    """
    lock, staged, previous = f"{folder}.lock", f"{folder}.partial", set_aside(folder)
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    killed_writer = os.path.exists(lock)
    handle = taken_lock(lock)
    if handle is None:
        fail(folder, f"another process writes this folder: {_holder(lock)} holds {lock}",
             fix="wait until it ends, or write into another folder")
    try:
        handle.truncate(0)
        handle.write(f"PID {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        if os.path.isdir(previous):
            if not killed_writer:
                fail(previous, f"no killed writer of {folder} set this folder aside (none left "
                               f"{lock}), but writing {folder} would take it for the folder "
                               "before it and remove it",
                     fix="rename it to keep it, or remove it")
            if os.path.isdir(folder):
                shutil.rmtree(previous)
            else:
                os.rename(previous, folder)
        shutil.rmtree(staged, ignore_errors=True)
        os.makedirs(staged)
        try:
            yield staged
            if os.path.isdir(folder):
                os.rename(folder, previous)
            os.rename(staged, folder)
        except BaseException:
            # A failed writer, or a failed swap (permission, another device),
            # leaves the folder before it.
            if os.path.isdir(previous):
                os.rename(previous, folder)
            shutil.rmtree(staged, ignore_errors=True)
            raise
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        release_lock(lock, handle)


def _holder(lock):
    """Who holds ``lock``, as its holder wrote it."""
    try:
        with open(lock, encoding="utf-8") as record:
            return record.read() or "a process"
    except OSError:
        return "a process"
