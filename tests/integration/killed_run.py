"""``train_dann.py``, killed (SIGKILL) by its own process at a chosen moment.

Usage::

    python -m tests.integration.killed_run step EPOCH STEP <train_dann.py arguments>
    python -m tests.integration.killed_run save EPOCH <train_dann.py arguments>
    python -m tests.integration.killed_run never <train_dann.py arguments>

``step`` kills before training step STEP of epoch EPOCH; ``save`` kills
while the end-of-epoch checkpoint of EPOCH is written, with half of its
``embedding_model.ckpt`` on disk; ``never`` runs to the end.
"""

import io
import os
import pathlib
import runpy
import signal
import sys

import torch
import yaml

from local.model.checkpoints import STAGING
from local.model.dann_brain import DANNBrain


def killed():
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_step(epoch, step):
    original = DANNBrain.fit_batch

    def fit_batch(self, batch):
        if (self.hparams.epoch_counter.current, self.step) == (epoch, step):
            killed()
        return original(self, batch)

    DANNBrain.fit_batch = fit_batch


def kill_in_save(epoch):
    original = torch.save

    def save(obj, path, *args, **kwargs):
        # A file object is no checkpoint's file: torch.distributed pickles tensors so.
        if not isinstance(path, (str, os.PathLike)):
            return original(obj, path, *args, **kwargs)
        path = pathlib.Path(path)
        if path.name == "embedding_model.ckpt" and path.parent.parent.name == STAGING:
            meta = yaml.safe_load((path.parent / "CKPT.yaml").read_text())
            if meta["end-of-epoch"] and meta.get("epoch") == epoch:
                data = io.BytesIO()
                original(obj, data)
                path.write_bytes(data.getvalue()[:len(data.getvalue()) // 2])
                killed()
        return original(obj, path, *args, **kwargs)

    torch.save = save


if __name__ == "__main__":
    moment, arguments = sys.argv[1], sys.argv[2:]
    if moment == "step":
        kill_at_step(int(arguments[0]), int(arguments[1]))
        arguments = arguments[2:]
    elif moment == "save":
        kill_in_save(int(arguments[0]))
        arguments = arguments[1:]
    sys.argv = ["train_dann.py", *arguments]
    runpy.run_path("train_dann.py", run_name="__main__")
