"""Files that a reader finds whole or not at all.

A run's records and caches are written under a name of the writing process's
own beside their place, then renamed into it (``os.replace``, atomic on one
file system). A kill or a full disk during the write leaves the file before
it as it was, and runs that write the same file at once (several seeds
sharing a cache or a manifest's audio-check stamp) neither read half of one
another's file nor rename one another's away.
"""

import contextlib
import os
import socket


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


@contextlib.contextmanager
def written_whole(path, mode="w", **open_args):
    """Open a file to write ``path`` whole: it takes ``path``'s place once the block ends.

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
    partial = partial_path(path)
    try:
        with open(partial, mode, **open_args) as out:
            yield out
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
