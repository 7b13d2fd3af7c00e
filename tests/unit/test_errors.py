"""The failures of the main process, or of any, stopping every DDP process with their message."""

import os

import pytest
import torch

from local.errors import ManifestError, checked_on_every_process, checked_on_main, fail
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
