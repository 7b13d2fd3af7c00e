"""One writer per run folder, and the comparison of a run's settings with its record."""

import errno
import json
import logging
import os
import signal
import socket
import types

import pytest

from local import run_folder
from local.errors import ManifestError
from local.run_folder import (
    LOCK_FILE,
    changed_settings,
    hold_run_folder,
    holder,
    release_run_folders,
)
from tests.conftest import waiting_process
from tests.unit.test_whole_files import killed_swap

# Takes the lock of argv[1], says so, and holds it until its input closes.
HOLDER = ("import sys; from local.run_folder import hold_run_folder; "
          "hold_run_folder(sys.argv[1]); print('held', flush=True); sys.stdin.read()")


def holding_process(folder):
    return waiting_process(HOLDER, folder)


def test_folder_held_by_another_process_is_refused_naming_it(tmp_path):
    process = holding_process(tmp_path)
    try:
        with pytest.raises(ManifestError, match=rf"{tmp_path}: another run writes into this "
                                                rf"folder: the run of PID {process.pid} on "
                                                rf"{socket.gethostname()}, started .*, holds "
                                                rf"{tmp_path / LOCK_FILE}\nFix: wait until that "
                                                rf"run ends, or pass another --output_folder$"):
            hold_run_folder(tmp_path)
        assert holder(tmp_path / LOCK_FILE)["pid"] == process.pid
    finally:
        process.stdin.close()
        process.wait()
    assert not os.path.exists(tmp_path / LOCK_FILE)  # released at its exit
    hold_run_folder(tmp_path)
    release_run_folders()


def test_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
    process = holding_process(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert holder(tmp_path / LOCK_FILE)["pid"] == process.pid  # left behind
    with caplog.at_level(logging.WARNING):
        hold_run_folder(tmp_path)
    try:
        assert f"Took over the lock of the run of PID {process.pid}" in caplog.text
        assert ", which ended without releasing it" in caplog.text and ",," not in caplog.text
        assert holder(tmp_path / LOCK_FILE)["pid"] == os.getpid()
    finally:
        release_run_folders()


def test_lock_left_by_another_host_is_refused(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps(
        {"pid": 1, "host": "elsewhere", "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(ManifestError, match=r"is locked by the run of PID 1 on elsewhere, started "
                                            r"2026-01-01T00:00:00\+00:00, and whether .*\n"
                                            rf"Fix: remove {tmp_path / LOCK_FILE} if that run"):
        hold_run_folder(tmp_path)


def test_allow_changed_naming_no_setting_names_the_closest():
    with pytest.raises(ManifestError, match=r"--allow_changed names \['numbr_of_epochs'\].*\n"
                                            r"Fix: numbr_of_epochs: did you mean number_of_epochs"):
        changed_settings({"number_of_epochs": 2}, {"number_of_epochs": 3}, "numbr_of_epochs",
                         "r.json")


def test_settings_that_the_weights_never_depend_on_may_change():
    assert changed_settings({"num_workers": 2, "score_norm": None, "lr": 0.1},
                            {"num_workers": 0, "score_norm": "asnorm", "lr": 0.1}, [],
                            "r.json") == {}


def test_a_changed_ssl_model_says_to_pass_its_files_not_its_digest():
    # ssl_model_sha256 is no option: a fix passing "the run's values of these keys" is refused.
    with pytest.raises(ManifestError, match=r"trained with other settings and with other SSL "
                       r"model files:\n  lr: .*\n  ssl_model_sha256: .*\nFix: pass the run's "
                       r"values of these keys and the SSL model files the run was trained with "
                       r"\(ssl_source\), or"):
        changed_settings({"lr": 0.1, "ssl_model_sha256": "ab12"},
                         {"lr": 0.2, "ssl_model_sha256": "cd34"}, [], "r.json")


def test_a_setting_the_record_or_the_command_lacks_is_a_change():
    """A setting that the run did not have, or that the command no longer has, changes what
    a checkpoint is as much as another value of it."""
    with pytest.raises(ManifestError, match=r"other settings:\n  lr: 0.1 -> \(absent\)\n"
                                            r"  adv_layer: \(absent\) -> \"mfa\"\n"):
        changed_settings({"lr": 0.1}, {"adv_layer": "mfa"}, [], "r.json")


def test_full_disk_while_the_lock_is_taken_names_the_folder(tmp_path, monkeypatch):
    taken = run_folder.taken_lock

    class Full:
        """The lock file, on a disk that takes no more bytes."""

        def __init__(self, path):
            self.handle = taken(path)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def flush(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run_folder, "taken_lock", Full)
    with pytest.raises(ManifestError, match=rf"{tmp_path}: the disk is full: the lock file "
                                            rf"{LOCK_FILE} could not be written .*\n"
                                            rf"Fix: free space on the disk of {tmp_path}"):
        hold_run_folder(tmp_path)
    assert not os.path.exists(tmp_path / LOCK_FILE)
    monkeypatch.undo()
    hold_run_folder(tmp_path)
    release_run_folders()


@pytest.mark.parametrize("recorded, settings", [({"lr": 0.1, "margin": 0.2}, {"lr": 0.1}),
                                                ({"lr": 0.1}, {"lr": 0.1, "margin": 0.2})])
def test_a_setting_only_the_record_or_the_command_has_is_accepted_as_the_refusal_says(
        recorded, settings):
    """The refusal of a setting that the run had and the command has not, or the other way
    round, says to accept it by name: that is accepted."""
    with pytest.raises(ManifestError, match=r"  margin: .*\n.*--allow_changed=\[margin\]"):
        changed_settings(recorded, settings, [], "r.json")
    assert list(changed_settings(recorded, settings, ["margin"], "r.json")) == ["margin"]


def test_a_folder_this_process_holds_is_held_once_however_it_is_named(tmp_path):
    """A run whose save_folder is its output folder, or a link to it, holds it once."""
    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    hold_run_folder(folder)
    try:
        hold_run_folder(tmp_path / "link")
        hold_run_folder(f"{folder}/")
        assert holder(folder / LOCK_FILE)["pid"] == os.getpid()
    finally:
        release_run_folders()
    assert not os.path.exists(folder / LOCK_FILE)


def test_a_setting_the_run_did_not_have_is_a_change_even_when_null():
    """A new setting whose value is null is no absent one: the run was not trained with it."""
    with pytest.raises(ManifestError, match=r"other settings:\n  adv_layer: \(absent\) -> "
                                            r"null\nFix"):
        changed_settings({"lr": 0.1}, {"lr": 0.1, "adv_layer": None}, [], "r.json")
    with pytest.raises(ManifestError, match=r"other settings:\n  noise_csv: null -> \(absent\)"):
        changed_settings({"noise_csv": None}, {}, [], "r.json")


@pytest.mark.parametrize("name", run_folder.RESULTS)
def test_results_set_aside_by_a_killed_writer_are_the_runs_results(tmp_path, name):
    """A kill while a run's results are replaced leaves them as ``<name>.previous``: a new run
    without checkpoints (an evaluation's folder), or a --debug smoke test, is still refused."""
    (tmp_path / name).mkdir()
    (tmp_path / name / "summary.csv").write_text("the run's")
    killed_swap(tmp_path / name)
    assert not (tmp_path / name).exists()
    hparams = {"output_folder": str(tmp_path), "save_folder": str(tmp_path / "save"),
               "checkpointer": types.SimpleNamespace(list_checkpoints=list)}
    with pytest.raises(ManifestError, match=rf"^{tmp_path}: holds the results \({name}\.previous\) "
                                            "of a run whose checkpoints are not in "):
        run_folder.check_one_run(hparams, training=True)
    with pytest.raises(ManifestError, match=rf"^{tmp_path}: holds a run, whose results a --debug "):
        run_folder.check_one_run(hparams, training=True, debug=True)
    assert (tmp_path / f"{name}.previous" / "summary.csv").read_text() == "the run's"


def _seed_table(run):
    from local.evaluation.seed_table import collect

    collect(str(run))


def _score_file(run):
    from local.evaluation.report import read_scores

    read_scores(str(run / "verification" / "target" / "scores.txt"))


def _export(run):
    from local.export import check_report_checkpoint

    check_report_checkpoint(str(run), None)  # refused before the checkpoint is compared


@pytest.mark.parametrize("reader", [_seed_table, _score_file, _export])
def test_a_report_set_aside_by_a_killed_writer_is_named_by_its_readers(tmp_path, reader):
    """A kill between the two renames of a report's replacement leaves it whole, set aside:
    a seed table, a fusion or an export says where it is and how to get it back."""
    run = tmp_path / "run"
    (run / "verification" / "target").mkdir(parents=True)
    (run / "verification" / "summary.csv").write_text("system,eer_percent\ntarget,10.0\n")
    (run / "verification" / "target" / "scores.txt").write_text("e t 0.5 1\n")
    killed_swap(run / "verification")
    with pytest.raises(ManifestError) as refused:
        reader(run)
    previous, folder = run / "verification.previous", run / "verification"
    assert str(refused.value) == (
        f"{previous}: holds the run's earlier results, set aside by a command killed while it "
        f"replaced {folder}, which is absent\n"
        "Fix: evaluate the run again (python evaluate.py with its hparams and overrides), which "
        f"puts them back before it writes its own, or rename {previous} to {folder} to read "
        "them as they were")
    assert (previous / "summary.csv").read_text() == "system,eer_percent\ntarget,10.0\n"
