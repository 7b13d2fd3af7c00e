"""Running means of the per-step values that a training epoch's log line reports."""

import json

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks


@register_checkpoint_hooks
class EpochStatistics:
    """Running sums of the per-step values that an epoch's log line averages.

    A recoverable of the run's checkpointer: a checkpoint inside an epoch
    (``--ckpt_interval_steps``) keeps the sums of the steps before it, so
    that a run resumed there logs the means over the whole epoch, as Brain
    does for its running loss.

    Example
    -------
    >>> stats = EpochStatistics()
    >>> stats.add(mmd_loss=torch.tensor(1.0))
    >>> stats.add(mmd_loss=torch.tensor(2.0))
    >>> stats.means()
    {'mmd_loss': 1.5}
    """

    def __init__(self):
        self.sums = {}

    def add(self, **values):
        """Add one step's value of each name.

        Arguments
        ---------
        **values : torch.Tensor
            ``name=value``, tensors of one element.
        """
        for name, value in values.items():
            total, count = self.sums.get(name, (0.0, 0))
            self.sums[name] = (total + float(value.detach()), count + 1)

    def means(self):
        """``{name: mean over the steps added}``."""
        return {name: total / count for name, (total, count) in self.sums.items()}

    def reset(self):
        """Start a new epoch."""
        self.sums = {}

    @mark_as_saver
    def _save(self, path):
        # JSON writes floats with repr, which reads back exactly.
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.sums, out)

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch  # an end-of-epoch checkpoint holds the next epoch's empty sums
        with open(path, encoding="utf-8") as saved:
            self.sums = {name: tuple(sums) for name, sums in json.load(saved).items()}
