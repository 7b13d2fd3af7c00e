"""Folders written whole: one writer at a time, and what a killed or failed writer leaves."""

import errno
import os
import signal
import socket
import subprocess
import sys

import pytest

from local.errors import ManifestError
from local.whole_files import saved_whole, staged_folder, written_whole
from tests.conftest import ROOT, waiting_process

# Stages argv[1] with a file written, says so, and waits to be killed.
WRITER = ("import os, sys; from local.whole_files import staged_folder\n"
          "with staged_folder(sys.argv[1]) as staged:\n"
          "    open(os.path.join(staged, 'half.ckpt'), 'w').close()\n"
          "    print('staged', flush=True); sys.stdin.read()")

# Writes part of argv[1] whole, says so, and waits to finish or be killed.
PARTIAL_WRITER = ("import sys; from local.whole_files import written_whole\n"
                  "with written_whole(sys.argv[1], 'wb') as out:\n"
                  "    out.write(b'half'); out.flush(); print('writing', flush=True); sys.stdin.read()")


# Writes argv[1] whole and is killed (SIGKILL) between setting the folder before it aside and
# moving its own into its place.
KILLED_SWAP = ("import os, signal, sys\n"
               "from local.whole_files import staged_folder\n"
               "rename = os.rename\n"
               "def killed(source, destination):\n"
               "    rename(source, destination)\n"
               "    if destination.endswith('.previous'):\n"
               "        os.kill(os.getpid(), signal.SIGKILL)\n"
               "os.rename = killed\n"
               "with staged_folder(sys.argv[1]) as staged:\n"
               "    open(os.path.join(staged, 'summary.csv'), 'w').write('another run')\n")


def killed_swap(folder):
    """Write ``folder`` whole in a process killed halfway through the replacement."""
    killed = subprocess.run([sys.executable, "-c", KILLED_SWAP, str(folder)], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL


def staging_process(folder):
    return waiting_process(WRITER, folder)


def test_a_second_writer_is_refused_and_a_killed_ones_leftovers_are_cleared(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text("before")
    process = staging_process(folder)
    try:
        with pytest.raises(ManifestError, match=rf"{folder}: another process writes this "
                                                rf"folder: PID {process.pid} on .* holds "
                                                rf"{folder}.lock\nFix: wait until it ends"):
            with staged_folder(folder):
                pass
        assert (tmp_path / "model.partial" / "half.ckpt").exists()  # the writer's, untouched
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert sorted(os.listdir(tmp_path)) == ["model", "model.lock", "model.partial"]
    with staged_folder(folder) as staged:
        assert os.listdir(staged) == []
        open(os.path.join(staged, "hyperparams.yaml"), "w").write("after")
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert (folder / "hyperparams.yaml").read_text() == "after"


@pytest.mark.parametrize("existed", [True, False])
def test_a_failed_replacement_leaves_the_folder_before_it(tmp_path, monkeypatch, existed):
    folder = tmp_path / "verification"
    if existed:
        folder.mkdir()
        (folder / "report.md").write_text("before")
    rename = os.rename

    def refuse_the_staged_folder(source, destination):
        if str(source).endswith(".partial"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", refuse_the_staged_folder)
    with pytest.raises(OSError, match="cross-device"):
        with staged_folder(folder) as staged:
            open(os.path.join(staged, "report.md"), "w").write("after")
    assert sorted(os.listdir(tmp_path)) == ["verification"] * existed
    if existed:
        assert (folder / "report.md").read_text() == "before"


def test_the_next_write_removes_the_partial_files_of_ended_writers_of_this_host_only(tmp_path):
    live = waiting_process(PARTIAL_WRITER, tmp_path / "scores.pt")
    writing = f"scores.pt.{socket.gethostname()}-{live.pid}.partial"
    killed = waiting_process(PARTIAL_WRITER, tmp_path / "embeddings.pt")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = f"embeddings.pt.{socket.gethostname()}-{killed.pid}.partial"
    elsewhere = f"embeddings.pt.other{socket.gethostname()}-{killed.pid}.partial"
    (tmp_path / elsewhere).write_bytes(b"half")  # its process may run on its host
    assert sorted(os.listdir(tmp_path)) == sorted([writing, left, elsewhere])
    with written_whole(tmp_path / "embeddings.pt", "wb") as out:
        out.write(b"whole")
    assert sorted(os.listdir(tmp_path)) == sorted([writing, "embeddings.pt", elsewhere])
    live.communicate("")  # the live writer ends its write undisturbed
    assert live.returncode == 0
    assert (tmp_path / "scores.pt").read_bytes() == b"half"


def test_two_writers_of_one_file_at_once_each_write_it_whole(tmp_path):
    """Runs that write one cache at once (several seeds) neither cut nor move the other's write."""
    path = tmp_path / "embeddings.pt"
    other = waiting_process(PARTIAL_WRITER, path)
    with written_whole(path, "wb") as out:
        out.write(b"whole")
    assert path.read_bytes() == b"whole"
    other.communicate("")
    assert other.returncode == 0
    assert path.read_bytes() == b"half"
    assert os.listdir(tmp_path) == ["embeddings.pt"]


def test_a_folder_left_aside_by_a_killed_swap_is_put_back_when_the_next_writer_fails(tmp_path):
    """A writer killed between moving the folder aside and moving its own in leaves
    ``<folder>.previous``: the earlier report is what the next writer, failing, leaves."""
    folder = tmp_path / "verification"
    folder.mkdir()
    (folder / "summary.csv").write_text("before")
    killed_swap(folder)
    assert not folder.exists()
    with pytest.raises(OSError, match="no space"):
        with staged_folder(folder) as staged:
            open(os.path.join(staged, "summary.csv"), "w").write("half")
            raise OSError(errno.ENOSPC, "no space left on device")
    assert sorted(os.listdir(tmp_path)) == ["verification"]
    assert (folder / "summary.csv").read_text() == "before"


def test_a_failed_save_leaves_the_file_before_it_and_no_partial_file(tmp_path):
    path = tmp_path / "label_encoder.txt"
    path.write_text("before")

    def save(name):
        open(name, "w").write("'spk1' => 0\n")
        raise OSError(errno.ENOSPC, "no space left on device")

    with pytest.raises(OSError, match="no space"):
        saved_whole(str(path), save)
    assert os.listdir(tmp_path) == ["label_encoder.txt"]
    assert path.read_text() == "before"


def test_a_partial_file_of_a_process_that_cannot_be_signalled_is_kept(tmp_path, monkeypatch):
    """Another user's writer on this host: whether it still writes cannot be told, so its
    partial file stays."""
    theirs = f"embeddings.pt.{socket.gethostname()}-4321.partial"
    (tmp_path / theirs).write_bytes(b"half")

    def kill(pid, signal_number):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    with written_whole(tmp_path / "embeddings.pt", "wb") as out:
        out.write(b"whole")
    assert sorted(os.listdir(tmp_path)) == sorted(["embeddings.pt", theirs])


@pytest.mark.parametrize("beside", [True, False])
def test_a_folder_of_the_set_aside_name_that_no_killed_writer_left_is_refused_and_kept(
        tmp_path, beside):
    """A copy kept by hand as ``<folder>.previous`` (``mv verification verification.previous``
    before another evaluation) is neither put back as the folder nor removed."""
    folder = tmp_path / "verification"
    if beside:
        folder.mkdir()
        (folder / "summary.csv").write_text("the report")
    (tmp_path / "verification.previous").mkdir()
    (tmp_path / "verification.previous" / "summary.csv").write_text("kept")
    with pytest.raises(ManifestError, match=rf"^{folder}\.previous: no killed writer of {folder} "
                                            "set this folder aside"):
        with staged_folder(folder) as staged:
            open(os.path.join(staged, "summary.csv"), "w").write("new")
    assert (tmp_path / "verification.previous" / "summary.csv").read_text() == "kept"
    assert sorted(os.listdir(tmp_path)) == (["verification", "verification.previous"] if beside
                                            else ["verification.previous"])
