"""The training log as long as the checkpoint a run resumes from had it."""

import logging

import pytest
import torch

from local.model.checkpoints import CompleteCheckpointer
from local.model.train_log import TrainLogLength


def logged(path, *lines):
    with open(path, "a", encoding="utf-8") as log:
        log.writelines(f"{line}\n" for line in lines)


def resumed_log(folder, *recoverables):
    """A new run's log object on ``folder``'s checkpoints, loaded as the Brain's (optional:
    older checkpoints have none): ``(log, resumed)``."""
    log = TrainLogLength(folder / "train_log.txt")
    checkpointer = CompleteCheckpointer(folder / "save", dict(recoverables))
    checkpointer.add_recoverable("train_log", log, optional_load=True)
    return log, checkpointer.recover_if_possible() is not None


def test_resume_drops_the_lines_logged_after_its_checkpoint(tmp_path):
    path = tmp_path / "train_log.txt"
    log = TrainLogLength(path)
    checkpointer = CompleteCheckpointer(tmp_path / "save", {"train_log": log})
    logged(path, "epoch: 1 - train loss: 2.0")
    checkpointer.save_checkpoint()
    # Then killed after the next epoch's clustering, or in its end-of-epoch save.
    logged(path, "epoch: 2, pseudo-labels: target clustering", "epoch: 2 - train loss: 1.0")
    log, resumed = resumed_log(tmp_path)
    log.rewind(resumed)
    assert path.read_text() == "epoch: 1 - train loss: 2.0\n"


def test_a_run_that_starts_anew_drops_the_lines_of_one_killed_before_its_checkpoint(tmp_path):
    logged(tmp_path / "train_log.txt", "epoch: 1, pseudo-labels: target clustering")
    log, resumed = resumed_log(tmp_path)
    assert not resumed
    log.rewind(resumed)
    assert (tmp_path / "train_log.txt").read_text() == ""


def test_a_log_as_long_as_its_checkpoint_is_not_written(tmp_path, caplog):
    path = tmp_path / "train_log.txt"
    logged(path, "epoch: 1 - train loss: 2.0")
    CompleteCheckpointer(tmp_path / "save", {"train_log": TrainLogLength(path)}).save_checkpoint()
    before = path.stat().st_ino  # a file written whole is another file
    log, resumed = resumed_log(tmp_path)
    with caplog.at_level(logging.INFO, logger="local.model.train_log"):
        log.rewind(resumed)
    assert path.stat().st_ino == before
    # Neither changed since nor lines dropped: the usual resume says nothing of its log.
    assert not [record for record in caplog.records if record.name == "local.model.train_log"]


def test_a_checkpoint_from_before_the_log_length_leaves_the_log(tmp_path):
    path, model = tmp_path / "train_log.txt", torch.nn.Linear(1, 1)
    CompleteCheckpointer(tmp_path / "save", {"model": model}).save_checkpoint()
    logged(path, "epoch: 1 - train loss: 2.0", "verification: EER (%)")
    with pytest.warns(UserWarning, match="missing a load path for train_log"):
        log, resumed = resumed_log(tmp_path, ("model", model))
    assert resumed
    log.rewind(resumed)
    assert path.read_text() == "epoch: 1 - train loss: 2.0\nverification: EER (%)\n"


def test_a_log_shorter_than_its_checkpoint_is_left_with_a_warning(tmp_path, caplog):
    path = tmp_path / "train_log.txt"
    logged(path, "epoch: 1 - train loss: 2.0")
    CompleteCheckpointer(tmp_path / "save", {"train_log": TrainLogLength(path)}).save_checkpoint()
    path.write_text("")  # emptied by hand
    log, resumed = resumed_log(tmp_path)
    with caplog.at_level(logging.WARNING):
        log.rewind(resumed)
    assert path.read_text() == ""
    assert f"{path} has 0 lines, its checkpoint 1: it was changed since" in caplog.text
