"""Checkpoints that are complete or ignored: staged saves, skipped damaged checkpoints, a full disk."""

import errno
import json
import logging
import os
import time
from types import SimpleNamespace

import pytest
import torch

from local.errors import ManifestError
from local.model import checkpoints
from local.model.checkpoints import STAGING, CompleteCheckpointer
from tests.conftest import in_two_processes


def saved_twice(folder):
    """Two checkpoints of a model, the first at weight 1 and the second at weight 2."""
    model = torch.nn.Linear(1, 1, bias=False)
    checkpointer = CompleteCheckpointer(folder, {"model": model})
    torch.nn.init.constant_(model.weight, 1.0)
    first = checkpointer.save_checkpoint(meta={"unixtime": time.time() - 10})
    torch.nn.init.constant_(model.weight, 2.0)
    second = checkpointer.save_checkpoint()
    return model, first, second


def test_saves_in_the_same_second_are_separate_checkpoints(tmp_path):
    _, first, second = saved_twice(tmp_path)
    assert first.path != second.path
    assert sorted(os.listdir(tmp_path)) == sorted([first.path.name, second.path.name])


def evaluated_under_one_name(folder, monkeypatch):
    """The checkpoint that local.experiment.evaluate hands the verification (which keys the
    embedding caches and checkpoint.txt on it) for the first and the third of three saves
    within one second, num_to_keep=1: the second takes a suffixed name and removes the first,
    whose name the third then takes."""
    from local import experiment

    model = torch.nn.Linear(1, 1, bias=False)
    checkpointer = CompleteCheckpointer(folder, {"model": model})
    scored = []
    monkeypatch.setattr(experiment, "verify",
                        lambda embed, hparams, condition, data, training, device, checkpoint,
                        *rest: scored.append(checkpoint) or {})
    brain = SimpleNamespace(modules=model, checkpointer=checkpointer, evaluation_embed=model,
                            device="cpu", eval_precision="fp32")
    hparams = {"train_logger": SimpleNamespace(log_stats=lambda **stats: None)}
    for weight in (1.0, 2.0, 3.0):
        torch.nn.init.constant_(model.weight, weight)
        checkpointer.save_and_keep_only(name="2026-01-01+00-00-00+00", num_to_keep=1)
        if weight != 2.0:
            experiment.evaluate(brain, hparams, {}, {"eval": {}, "training_utterances": {}})
    assert [c.path.name for c in checkpointer.list_checkpoints()] == [
        "CKPT+2026-01-01+00-00-00+00"]
    return checkpointer, scored


def test_a_checkpoint_that_takes_a_removed_ones_name_is_told_apart(tmp_path, monkeypatch):
    _, scored = evaluated_under_one_name(tmp_path / "save", monkeypatch)
    assert all(name.startswith("CKPT+2026-01-01+00-00-00+00@") for name in scored)
    assert scored[0] != scored[1]  # neither its embedding caches nor its report are reused


def test_export_refuses_the_report_of_a_removed_checkpoint_of_the_same_name(tmp_path,
                                                                            monkeypatch):
    from local.evaluation.report import write_scored_checkpoint
    from local.export import check_report_checkpoint

    checkpointer, scored = evaluated_under_one_name(tmp_path / "save", monkeypatch)
    (tmp_path / "verification").mkdir()
    write_scored_checkpoint(tmp_path / "verification", scored[0])
    with pytest.raises(ManifestError, match="the report scored checkpoint CKPT"):
        check_report_checkpoint(str(tmp_path), checkpointer.find_checkpoint())


def test_resume_skips_a_truncated_newest_checkpoint_and_names_it(tmp_path, caplog):
    model, first, second = saved_twice(tmp_path)
    data = second.paramfiles["model"].read_bytes()
    second.paramfiles["model"].write_bytes(data[:len(data) // 2])
    torch.nn.init.constant_(model.weight, 0.0)
    with caplog.at_level(logging.WARNING):
        loaded = CompleteCheckpointer(tmp_path, {"model": model}).recover_if_possible()
    assert loaded.path == first.path
    assert model.weight.detach().item() == 1.0
    assert f"Skipping the checkpoint {second.path}: model.ckpt is truncated" in caplog.text


@pytest.mark.parametrize("damage, problem", [
    (lambda ckpt: ckpt.paramfiles["model"].unlink(), "it has no model.ckpt"),
    (lambda ckpt: ckpt.paramfiles["model"].write_bytes(b""), "model.ckpt is empty"),
])
def test_checkpoint_without_a_readable_file_is_skipped(tmp_path, caplog, damage, problem):
    model, first, second = saved_twice(tmp_path)
    damage(second)
    with caplog.at_level(logging.WARNING):
        assert CompleteCheckpointer(tmp_path, {"model": model}).find_checkpoint() == first
    assert problem in caplog.text


def test_a_skipped_checkpoint_is_named_once_however_often_the_checkpoints_are_listed(
        tmp_path, caplog):
    # A run lists them at its start, its resume's log and every save that keeps one.
    model, first, second = saved_twice(tmp_path)
    second.paramfiles["model"].write_bytes(b"")
    checkpointer = CompleteCheckpointer(tmp_path, {"model": model})
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert checkpointer.list_checkpoints() == [first]
    assert caplog.text.count(f"Skipping the checkpoint {second.path}") == 1


def test_a_checkpoint_without_a_modules_file_loads_with_allow_partial_load(tmp_path):
    # As SpeechBrain's Checkpointer: the modules it has are loaded, the others left.
    model, first, second = saved_twice(tmp_path)
    other = torch.nn.Linear(1, 1)
    recoverables = {"model": model, "other": other}
    assert CompleteCheckpointer(tmp_path, recoverables).list_checkpoints() == []
    torch.nn.init.constant_(model.weight, 0.0)
    loaded = CompleteCheckpointer(tmp_path, recoverables,
                                  allow_partial_load=True).recover_if_possible()
    assert loaded.path == second.path and model.weight.item() == 2.0


def test_interrupted_save_leaves_no_checkpoint_and_is_cleaned_by_the_next(tmp_path, monkeypatch):
    model, first, second = saved_twice(tmp_path)
    before = sorted(os.listdir(tmp_path))
    original = torch.save

    def killed_half_way(obj, path, *args, **kwargs):
        original(obj, path, *args, **kwargs)
        raise KeyboardInterrupt  # after the first file of the save

    checkpointer = CompleteCheckpointer(tmp_path, {"model": model, "other": torch.nn.Linear(1, 1)})
    monkeypatch.setattr(torch, "save", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save_checkpoint()
    monkeypatch.setattr(torch, "save", original)
    assert sorted(os.listdir(tmp_path)) == sorted(before + [STAGING])
    assert CompleteCheckpointer(tmp_path, {"model": model}).find_checkpoint() == second
    third = checkpointer.save_checkpoint()
    assert sorted(os.listdir(tmp_path)) == sorted(before + [third.path.name])


def test_full_disk_during_a_save_says_so_and_keeps_the_earlier_checkpoint(tmp_path, monkeypatch):
    model, first, second = saved_twice(tmp_path)
    data = {ckpt: ckpt.paramfiles["model"].read_bytes() for ckpt in (first, second)}

    def full(obj, path, *args, **kwargs):
        with open(path, "wb") as out:
            out.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ManifestError, match=rf"{tmp_path}: the disk is full: a checkpoint could "
                                            r"not be written .*\nFix: free space"):
        CompleteCheckpointer(tmp_path, {"model": model}).save_checkpoint()
    assert not (tmp_path / STAGING).exists()
    assert {ckpt: ckpt.paramfiles["model"].read_bytes() for ckpt in (first, second)} == data
    assert CompleteCheckpointer(tmp_path, {"model": model}).find_checkpoint() == second


@pytest.mark.parametrize("free, full", [(0, True), (10 << 30, False)])
def test_torchs_failed_write_is_a_full_disk_only_without_free_space(tmp_path, monkeypatch, free,
                                                                   full):
    model, _, _ = saved_twice(tmp_path)

    def failed_write(obj, path, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", failed_write)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: SimpleNamespace(free=free))
    expected = (ManifestError, "the disk is full") if full else (RuntimeError, "unexpected pos")
    with pytest.raises(expected[0], match=expected[1]):
        CompleteCheckpointer(tmp_path, {"model": model}).save_checkpoint()
    assert not (tmp_path / STAGING).exists()


def test_first_save_records_before_its_checkpoint_takes_its_place_and_only_once(tmp_path):
    checkpointer = CompleteCheckpointer(tmp_path, {"model": torch.nn.Linear(2, 2)})
    seen = []
    checkpointer.on_first_save = lambda: seen.append(sorted(
        path.name for path in tmp_path.iterdir() if path.name.startswith("CKPT")))
    checkpointer.save_checkpoint()
    checkpointer.save_checkpoint(name="second")
    assert seen == [[]]  # once, before the checkpoint was in place
    assert checkpointer.on_first_save is None and len(checkpointer.list_checkpoints()) == 2


def save_in_process(rank, folder):
    """One DDP process of two saving a checkpoint; the main one is slow to put it in place."""
    checkpointer = CompleteCheckpointer(os.path.join(folder, "save"),
                                        {"model": torch.nn.Linear(1, 1)})
    if rank == 0:  # as when it writes the run's records first (on_first_save)
        checkpointer.on_first_save = lambda: time.sleep(2)
    saved = checkpointer.save_checkpoint()
    listed = [checkpoint.path.name for checkpoint in checkpointer.list_checkpoints()]
    torch.save({"saved": saved and saved.path.name, "listed": listed},
               os.path.join(folder, f"rank{rank}.pt"))


def test_under_ddp_every_process_lists_the_checkpoint_the_main_process_saved(tmp_path):
    # A process that listed the checkpoints without it would keep another one than the main
    # process deletes (save_and_keep_only), and wait at another collective than it, for ever.
    in_two_processes(save_in_process, str(tmp_path))
    main, other = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert other["saved"] is None
    assert main["listed"] == other["listed"] == [main["saved"]]


FAILED_WRITES = {
    "full disk": lambda path: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    "permission": lambda path: PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path)),
}


def save_failing_on_main_in_process(rank, folder, failure):
    """One DDP process of two saving a checkpoint whose write fails on the main process."""
    checkpointer = CompleteCheckpointer(os.path.join(folder, "save"),
                                        {"model": torch.nn.Linear(1, 1)})
    if rank == 0:
        def failing(obj, path, *args, **kwargs):
            raise FAILED_WRITES[failure](path)

        torch.save = failing  # this process's own torch
    try:
        checkpointer.save_checkpoint()
        got = ["saved", ""]
    except Exception as error:  # what each process would stop with
        got = [type(error).__name__, str(error)]
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as out:
        json.dump(got, out)


@pytest.mark.parametrize("failure, kind, message", [
    ("full disk", ("ManifestError", "ManifestError"),
     "{folder}/save: the disk is full: a checkpoint could not be written"),
    ("permission", ("PermissionError", "RuntimeError"), "[Errno 13] Permission denied: '{folder}"),
])
def test_a_save_failing_on_the_main_process_stops_every_process_with_its_message(
        tmp_path, failure, kind, message):
    # The other process waited at one of SpeechBrain's per-file broadcasts until the main
    # process exited, and failed then with an error of the connection ("Connection closed
    # by peer").
    in_two_processes(save_failing_on_main_in_process, str(tmp_path), failure, timeout=120)
    got = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert tuple(name for name, _ in got) == kind
    assert all(message.format(folder=tmp_path) in text for _, text in got), got
    assert os.listdir(tmp_path / "save") == []  # no checkpoint, and no staging folder
