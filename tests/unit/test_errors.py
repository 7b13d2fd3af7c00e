"""The messages of bad input and of a full disk, and the failures of the main process, or of
any, stopping every DDP process with their message."""

import errno
import os
import shutil
from types import SimpleNamespace

import pytest
import torch

from local.errors import (
    FULL_BELOW_BYTES,
    MAX_REPORTED,
    ManifestError,
    checked_on_every_process,
    checked_on_main,
    fail,
    failing_on_full_disk,
    is_disk_full,
)
from tests.conftest import in_two_processes

FAILURES = {
    "bad input": lambda folder: fail(folder, "is not a corpus", fix="prepare it"),
    "other": lambda folder: os.makedirs(os.path.join(folder, "a_file", "demo")),
    "none": lambda folder: "prepared",
}


def check_in_process(rank, folder, failure):
    """One DDP process of two running a check on the main process; what it got is saved."""
    try:
        got = ("returned", checked_on_main(FAILURES[failure], folder))
    except Exception as error:  # what each process would stop with
        got = (type(error).__name__, str(error))
    torch.save(got, os.path.join(folder, f"rank{rank}.pt"))


@pytest.mark.parametrize("failure, kind, message", [
    ("bad input", ("ManifestError", "ManifestError"), "{folder}: is not a corpus\nFix: prepare it"),
    # An OSError of a data preparation: the other process named it, rather than stopping at
    # its next collective with an error of the connection ("Connection closed by peer").
    ("other", ("NotADirectoryError", "RuntimeError"), "Not a directory: '{folder}/a_file/demo'"),
    ("none", ("returned", "returned"), "prepared"),
])
def test_what_the_main_process_raises_stops_every_process_with_its_message(tmp_path, failure,
                                                                          kind, message):
    (tmp_path / "a_file").touch()
    in_two_processes(check_in_process, str(tmp_path), failure)
    got = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert tuple(name for name, _ in got) == kind
    assert all(message.format(folder=tmp_path) in text for _, text in got), got
    if failure == "other":
        assert got[1][1].startswith("the main process failed with NotADirectoryError: ")


def share_in_process(rank, folder, failure):
    """One DDP process of two doing its share of work, which fails on the second process
    only; what each got is saved."""
    try:
        got = ("returned", checked_on_every_process(
            FAILURES[failure] if rank == 1 else FAILURES["none"], folder))
    except Exception as error:  # what each process would stop with
        got = (type(error).__name__, str(error))
    torch.save(got, os.path.join(folder, f"rank{rank}.pt"))


@pytest.mark.parametrize("failure, kind, message", [
    # The main process went on to its next collective, and failed there with an error of
    # the connection.
    ("bad input", ("ManifestError", "ManifestError"), "{folder}: is not a corpus\nFix: prepare it"),
    ("other", ("RuntimeError", "NotADirectoryError"), "Not a directory: '{folder}/a_file/demo'"),
    ("none", ("returned", "returned"), "prepared"),
])
def test_what_any_process_raises_in_its_share_stops_every_process_with_its_message(
        tmp_path, failure, kind, message):
    (tmp_path / "a_file").touch()
    in_two_processes(share_in_process, str(tmp_path), failure)
    got = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert tuple(name for name, _ in got) == kind
    assert all(message.format(folder=tmp_path) in text for _, text in got), got
    if failure == "other":
        assert got[0][1].startswith("process 1 failed with NotADirectoryError: ")


@pytest.mark.parametrize("count", [MAX_REPORTED, MAX_REPORTED + 1])
def test_the_first_rows_are_shown_and_the_rest_counted(count):
    rows = [f"u{i}" for i in range(count)]
    with pytest.raises(ManifestError) as raised:
        fail("train.csv", "duplicated IDs", rows=rows)
    lines = str(raised.value).split("\n")
    assert lines[1:MAX_REPORTED + 1] == [f"  u{i}" for i in range(MAX_REPORTED)]
    assert lines[MAX_REPORTED + 1:] == ([] if count == MAX_REPORTED else ["  ... and 1 more"])


def test_no_space_and_no_quota_left_are_a_full_disk_whatever_the_free_space(tmp_path):
    for code in (errno.ENOSPC, errno.EDQUOT):
        assert is_disk_full(OSError(code, os.strerror(code)), str(tmp_path))


@pytest.mark.parametrize("free, full", [(FULL_BELOW_BYTES - 1, True), (FULL_BELOW_BYTES, False)])
def test_a_failed_write_is_a_full_disk_below_the_free_space_threshold(tmp_path, monkeypatch,
                                                                     free, full):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=free))
    assert is_disk_full(RuntimeError("unexpected pos 704 vs 598"), str(tmp_path)) is full
    assert is_disk_full(OSError(errno.EIO, "I/O error"), str(tmp_path)) is full
    assert is_disk_full(ValueError("not a write"), str(tmp_path)) is False


def test_the_free_space_of_a_folder_not_made_yet_is_that_of_its_parent(tmp_path, monkeypatch):
    measured = []
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: measured.append(path) or SimpleNamespace(free=0))
    assert is_disk_full(OSError(errno.EIO, "I/O error"), str(tmp_path / "run"))
    assert is_disk_full(OSError(errno.EIO, "I/O error"), str(tmp_path))
    assert measured == [str(tmp_path), str(tmp_path)]


@pytest.mark.parametrize("error", [RuntimeError("unexpected pos"), OSError(errno.EIO, "I/O")])
def test_a_failed_write_with_space_left_is_raised_as_it_is(tmp_path, monkeypatch, error):
    measured = []
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: measured.append(path) or SimpleNamespace(free=10 << 30))
    with pytest.raises(type(error)) as raised, failing_on_full_disk(str(tmp_path), "a file", "fix"):
        raise error
    assert raised.value is error and measured == [str(tmp_path)]


def test_a_failed_write_on_a_full_disk_names_the_folder_and_what_was_written(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=0))
    with pytest.raises(ManifestError) as raised, \
            failing_on_full_disk(str(tmp_path), "the report", "and evaluate it again"):
        raise RuntimeError("unexpected pos 704 vs 598")
    assert str(raised.value) == (f"{tmp_path}: the disk is full: the report could not be written "
                                 f"(unexpected pos 704 vs 598)\n"
                                 f"Fix: free space on the disk of {tmp_path}, and evaluate it again")
