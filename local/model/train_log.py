"""How much of a run's ``train_log.txt`` each checkpoint had, so that a resume logs the rest once."""

import logging
import os

from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from local.whole_files import written_whole

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class TrainLogLength:
    """The number of lines of the training log when a checkpoint is saved.

    A recoverable of the run's checkpointer. A run logs lines after its
    last checkpoint that a resume logs again: the clustering of an epoch
    that a kill at the epoch's start makes it redo, the line of an epoch
    whose end-of-epoch save was killed, the verification of a finished run
    verified again. :meth:`rewind` drops them before the resume trains, so
    that the log holds each line once, in order, as an uninterrupted run's.

    Arguments
    ---------
    path : str
        The training log (``train_log``).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> log = TrainLogLength(os.path.join(folder, "train_log.txt"))
    >>> _ = open(log.path, "w").write("epoch: 1\\n")
    >>> log._save(os.path.join(folder, "train_log.ckpt"))
    >>> _ = open(log.path, "a").write("epoch: 2, pseudo-labels\\n")
    >>> log._load(os.path.join(folder, "train_log.ckpt"), end_of_epoch=True)
    >>> log.rewind(resumed=True)
    >>> open(log.path).read()
    'epoch: 1\\n'
    """

    def __init__(self, path):
        self.path = path
        self.lines = None  # of the checkpoint loaded; None without one, or for an older one

    def _read(self):
        """The log's lines, ends kept; none where there is no log."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as log:
            return log.readlines()

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as out:
            out.write(str(len(self._read())))

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch  # the log is as long as at the save, wherever it was
        with open(path, encoding="utf-8") as saved:
            self.lines = int(saved.read())

    def rewind(self, resumed):
        """Drop the lines logged after the checkpoint the run resumes from.

        Run by the main process alone, which writes the log, before the
        first line the run logs.

        Arguments
        ---------
        resumed : bool
            Whether the run resumes from a checkpoint. A run that starts anew
            logs from the first line: the lines of a run killed before its
            first checkpoint (the clustering of epoch 1) are dropped. A
            checkpoint saved before the log's length was recorded leaves the
            log as it is.
        """
        if resumed and self.lines is None:
            return
        kept = self.lines if resumed else 0
        lines = self._read()
        if len(lines) < kept:
            logger.warning("%s has %d lines, its checkpoint %d: it was changed since, and is "
                           "left as it is", self.path, len(lines), kept)
            return
        if len(lines) == kept:
            return
        with written_whole(self.path, encoding="utf-8") as out:
            out.writelines(lines[:kept])
        logger.info("Dropped the last %d of the %d lines of %s, logged after the %s",
                    len(lines) - kept, len(lines), self.path,
                    "checkpoint this run resumes from" if resumed else "start of a run killed "
                    "before its first checkpoint")
