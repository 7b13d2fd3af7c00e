"""SpeechBrain's Checkpointer, with checkpoints that are complete or not used.

SpeechBrain writes a checkpoint's ``CKPT.yaml`` first, into the folder that
makes it a checkpoint, and then each parameter file: a kill or a full disk
during a save leaves a newest checkpoint that every resume picks and fails
on. :class:`CompleteCheckpointer` keeps SpeechBrain's saving and loading and
changes two things around them. A checkpoint is saved into a staging folder
(``<checkpoints_dir>/.saving``, which no listing reads) and renamed into place
once every file is written. And the listing that picks a checkpoint to load
(or to keep) leaves out any checkpoint, such as one written by SpeechBrain's
own Checkpointer or damaged on disk, whose parameter files are not all there
and readable, with a warning naming it.
"""

import logging
import os
import shutil
import zipfile

import torch
from speechbrain.utils.checkpoints import Checkpoint, Checkpointer
from speechbrain.utils.distributed import if_main_process

from local.errors import ManifestError, checked_on_main, failing_on_full_disk

logger = logging.getLogger(__name__)

STAGING = ".saving"


class CompleteCheckpointer(Checkpointer):
    """A ``speechbrain.utils.checkpoints.Checkpointer`` whose checkpoints are complete or ignored.

    Arguments
    ---------
    *args, **kwargs
        As for SpeechBrain's ``Checkpointer``.

    Example
    -------
    >>> import tempfile
    >>> folder, model = tempfile.mkdtemp(), torch.nn.Linear(2, 2)
    >>> saved = CompleteCheckpointer(folder, {"model": model}).save_checkpoint()
    >>> sorted(os.listdir(folder)), sorted(os.listdir(saved.path))
    (['CKPT+...'], ['CKPT.yaml', 'model.ckpt'])
    >>> open(saved.paramfiles["model"], "wb").close()  # damaged
    >>> CompleteCheckpointer(folder, {"model": model}).list_checkpoints()
    []
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.problems = {}  # {file: its problem, or None}, each file read once
        self.skipped = set()  # the incomplete checkpoints warned about
        # Called once, just before the first checkpoint this process saves
        # takes its place: a resume records its settings then, when there
        # is a checkpoint trained with them.
        self.on_first_save = None

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Save as SpeechBrain does, into the staging folder, then rename it into place.

        Under DDP the main process saves alone (SpeechBrain's save hooks all
        write on the main process only) and the others wait for it: a save
        that fails there stops every process with its message, rather than
        leaving the others waiting at one of SpeechBrain's per-file
        broadcasts until the main process exits, and failing then with an
        error of the connection.

        Arguments
        ---------
        meta, end_of_epoch, name, verbosity
            As for ``Checkpointer.save_checkpoint``.

        Returns
        -------
        Checkpoint or None
            The saved checkpoint (None on processes other than the main one).

        Raises
        ------
        ManifestError
            When the disk is full, naming the folder, on every process.
        """
        # The other processes go on once the main one has put the checkpoint
        # in place, and only then list the checkpoints: a process that listed
        # them before would keep another checkpoint than the main one deletes,
        # and wait for it at another collective (save_and_keep_only's
        # deletions), for ever.
        saved = checked_on_main(self._save_in_place, meta, end_of_epoch, name, verbosity)
        return saved if if_main_process() else None

    def _save_in_place(self, meta, end_of_epoch, name, verbosity):
        """The main process's save: into the staging folder, then into place."""
        final_dir = self.checkpoints_dir
        staging = final_dir / STAGING
        if staging.exists():
            logger.warning("Removing %s, a checkpoint whose save was interrupted", staging)
            shutil.rmtree(staging)
        # SpeechBrain's saving and naming, into a folder that no listing reads.
        self.checkpoints_dir = staging
        try:
            with failing_on_full_disk(
                    final_dir, "a checkpoint",
                    f"or move {final_dir} to another disk and pass its new place as "
                    "--save_folder=; the checkpoints saved before are intact, and a resume "
                    "continues from the newest"):
                staged = super().save_checkpoint(meta, end_of_epoch, name, logging.DEBUG)
        except (OSError, RuntimeError, ManifestError):
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            self.checkpoints_dir = final_dir
        return self._put_in_place(staged, final_dir, verbosity)

    def _put_in_place(self, staged, final_dir, verbosity):
        """Record the run's settings if due, and move the ``staged`` checkpoint into ``final_dir``."""
        if self.on_first_save is not None:
            record, self.on_first_save = self.on_first_save, None
            record()
        path = _free_name(final_dir, staged.path.name)
        os.rename(staged.path, path)
        staged.path.parent.rmdir()
        paramfiles = {key: path / file.name for key, file in staged.paramfiles.items()}
        for file in paramfiles.values():
            self.problems[file] = None
        logger.log(verbosity, "Saved a checkpoint in %s", path)
        return Checkpoint(path, staged.meta, paramfiles)

    def list_checkpoints(self):
        """The checkpoints whose every file is there and readable; the others are named in a warning.

        Returns
        -------
        list
            ``Checkpoint`` namedtuples, as SpeechBrain's.
        """
        complete = []
        for checkpoint in super().list_checkpoints():
            problem = self.problem(checkpoint)
            if problem is None:
                complete.append(checkpoint)
            elif checkpoint.path not in self.skipped:
                self.skipped.add(checkpoint.path)
                logger.warning("Skipping the checkpoint %s: %s. A resume continues from the "
                               "newest complete one; remove this folder once it is not needed.",
                               checkpoint.path, problem)
        return complete

    def holds_checkpoints(self):
        """Whether the folder holds a checkpoint, complete for this checkpointer or not.

        A model file with other modules than the run that saved them (another
        speaker head: GE2E's loss where AAM-softmax has a classifier) finds
        none of the run's checkpoints complete; they are the run's all the same,
        and its settings record says how they were trained.

        Returns
        -------
        bool
            True when SpeechBrain's listing finds any.
        """
        return bool(super().list_checkpoints())

    def problem(self, checkpoint):
        """Why ``checkpoint`` cannot be loaded by this checkpointer, or None.

        Arguments
        ---------
        checkpoint : Checkpoint
            A checkpoint of this folder.

        Returns
        -------
        str or None
            The first missing, empty or unreadable file.
        """
        for name in self.recoverables:
            if (name not in checkpoint.paramfiles and not self.allow_partial_load
                    and not self.optional_recoverables.get(name)):
                return f"it has no {name}.ckpt"
        for file in checkpoint.paramfiles.values():
            if file not in self.problems:
                self.problems[file] = _file_problem(file)
            if self.problems[file] is not None:
                return self.problems[file]
        return None


def checkpoint_identity(checkpoint):
    """A checkpoint's name followed by the time it was saved, which tells it from any other.

    A checkpoint is named after the second it was saved in
    (``CKPT+<date>+<time>+00``), and a name can come back for another
    checkpoint: one saved within the same second after ``num_to_keep``
    removed the first, or one of another run sharing the save folder. What
    is keyed on the checkpoint (the embedding caches, a report's
    ``checkpoint.txt``) is keyed on this instead: the name, for the reader,
    and the save time to the microsecond that SpeechBrain records in the
    checkpoint's meta (``unixtime``), read without reading its parameter files.

    Arguments
    ---------
    checkpoint : Checkpoint
        As SpeechBrain's ``Checkpointer`` lists and loads them.

    Returns
    -------
    str
        ``<name>@<unixtime>``.

    Example
    -------
    >>> from pathlib import Path
    >>> checkpoint_identity(Checkpoint(Path("save/CKPT+2026-01-01+00-00-00+00"),
    ...                                {"unixtime": 1767225600.25}, {}))
    'CKPT+2026-01-01+00-00-00+00@1767225600.250000'
    """
    return f"{os.path.basename(checkpoint.path)}@{checkpoint.meta['unixtime']:.6f}"


def _file_problem(path):
    """Why a parameter file cannot be read, or None.

    A torch archive (a zip file) is opened with ``torch.load`` as SpeechBrain
    loads it, memory-mapped so that a large model is not read whole; other
    files (SpeechBrain writes counters and states as text) must not be empty.
    """
    if os.path.getsize(path) == 0:
        return f"{path.name} is empty"
    with open(path, "rb") as file:
        is_archive = file.read(4) == b"PK\x03\x04"
    if not is_archive:
        return None
    if not zipfile.is_zipfile(path):
        return f"{path.name} is truncated (no end of its archive)"
    try:
        torch.load(path, map_location="cpu", mmap=True)
    except Exception as error:  # whatever torch raises for an unreadable archive
        return f"{path.name} cannot be loaded: {str(error).splitlines()[0]}"
    return None


def _free_name(folder, name):
    """``folder / name``, with a suffix if a checkpoint saved in the same second took it."""
    path, suffix = folder / name, 1
    while path.exists():
        path, suffix = folder / f"{name}-{suffix}", suffix + 1
    return path

