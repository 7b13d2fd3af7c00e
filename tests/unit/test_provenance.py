"""A run's record of its data files, and the digests that name its caches."""

import hashlib
import importlib.metadata
import json
import os
import subprocess

from local.environment import LIBRARIES
from local.provenance import (
    code_digest,
    code_version,
    condition_files,
    file_sha256,
    short_digest,
    trained_by,
    write_provenance,
)


def test_a_file_is_hashed_whole_past_the_first_block(tmp_path):
    # A manifest of 10^5 utterances is several MiB: a change near its end is a change.
    path = tmp_path / "train.csv"
    data = os.urandom(3 << 20) + b"tail"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + b"!")
    assert file_sha256(path) != hashlib.sha256(data).hexdigest()


def test_every_data_file_of_a_condition_is_recorded_with_its_hash(tmp_path):
    names = ["s.csv", "t.csv", "e.csv", "tr.txt", "enrol.csv", "v.csv", "vtr.txt"]
    for name in names:
        (tmp_path / name).write_text(f"{name}\n")
    file = {name: str(tmp_path / name) for name in names}
    condition = {"source_train": file["s.csv"], "target_train": file["t.csv"],
                 "evaluation": {"target": {"manifest": file["e.csv"], "trials": file["tr.txt"],
                                           "enrolment": file["enrol.csv"]},
                                "source": {"manifest": file["v.csv"], "trials": file["vtr.txt"]}}}
    write_provenance(condition, str(tmp_path), str(tmp_path))
    data = json.loads((tmp_path / "provenance.json").read_text())["data"]
    expected = {"source_train": "s.csv", "target_train": "t.csv",
                "evaluation/target/manifest": "e.csv", "evaluation/target/trials": "tr.txt",
                "evaluation/target/enrolment": "enrol.csv",
                "evaluation/source/manifest": "v.csv", "evaluation/source/trials": "vtr.txt"}
    assert data == {role: {"path": str(tmp_path / name),
                           "sha256": hashlib.sha256(f"{name}\n".encode()).hexdigest()}
                    for role, name in expected.items()}


def test_a_digest_does_not_depend_on_the_order_of_keys():
    # Settings read from a model file or from a run's record come in other orders.
    assert short_digest({"b": 1, "a": {"y": [1, 2], "x": None}}) == \
        short_digest({"a": {"x": None, "y": [1, 2]}, "b": 1})
    assert short_digest({"a": [1, 2]}) != short_digest({"a": [2, 1]})


def test_the_code_digest_changes_with_any_source_file_or_library_version(tmp_path, monkeypatch):
    package = tmp_path / "local"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "frontend.py").write_text("SCALE = 1.0\n")
    first = code_digest(str(package))
    (package / "notes.txt").write_text("not code")
    assert code_digest(str(package)) == first
    (package / "model" / "frontend.py").write_text("SCALE = 2.0\n")
    changed_source = code_digest(str(package))
    assert changed_source != first
    (package / "model" / "frontend.py").write_text("SCALE = 1.0\n")
    assert code_digest(str(package)) == first
    (package / "model" / "extra.py").write_text("")
    assert code_digest(str(package)) not in (first, changed_source)
    (package / "model" / "extra.py").unlink()
    versions = {library: "1.0" for library in LIBRARIES}
    monkeypatch.setattr(importlib.metadata, "version", versions.__getitem__)
    baseline = code_digest(str(package))
    for library in LIBRARIES:
        monkeypatch.setitem(versions, library, "1.1")
        assert code_digest(str(package)) != baseline, library
        monkeypatch.setitem(versions, library, "1.0")


def test_a_digest_is_the_first_16_hex_digits_of_the_sha256_of_its_sorted_json():
    # Cache and file names made by earlier versions are found again only with the same digest.
    expected = hashlib.sha256(b'{"a": [1, null], "b": "x"}').hexdigest()[:16]
    assert short_digest({"b": "x", "a": [1, None]}) == expected


def git(folder, *args):
    """Run git in ``folder`` and return what it printed."""
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder,
                          check=True, capture_output=True, text=True).stdout.strip()


def condition_in(folder):
    """A condition whose four data files are in ``folder``, with no enrolment table."""
    for name in ("s.csv", "t.csv", "e.csv", "tr.txt"):
        (folder / name).write_text(f"{name}\n")
    return {"source_train": str(folder / "s.csv"), "target_train": str(folder / "t.csv"),
            "evaluation": {"target": {"manifest": str(folder / "e.csv"),
                                      "trials": str(folder / "tr.txt"), "enrolment": None}}}


def test_the_code_version_is_the_recipes_commit_marked_dirty_by_uncommitted_changes(tmp_path):
    code, run = tmp_path / "code", tmp_path / "run"
    code.mkdir()
    run.mkdir()
    (code / "train.py").write_text("print(1)\n")
    git(code, "init", "-q")
    git(code, "add", "train.py")
    git(code, "commit", "-q", "-m", "first")
    commit = git(code, "rev-parse", "HEAD")
    assert write_provenance(condition_in(run), str(run), str(code))["code_version"] == commit
    (code / "train.py").write_text("print(2)\n")
    assert code_version(str(code)) == f"{commit}-dirty"
    assert json.loads((run / "provenance.json").read_text())["code_version"] == commit


def test_a_condition_without_an_enrolment_table_records_its_other_files(tmp_path):
    files = condition_files(condition_in(tmp_path))
    assert list(files) == ["source_train", "target_train", "evaluation/target/manifest",
                           "evaluation/target/trials"]


def test_an_evaluations_record_holds_what_it_is_given_beside_the_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    condition = condition_in(tmp_path)
    condition["source_train"] = "s.csv"  # relative to the working directory
    (tmp_path / "noise.csv").write_text("noise\n")
    trained = [{"code_version": "ab12", "first_epoch": 1}, {"code_version": "cd34",
                                                            "first_epoch": 3}]
    write_provenance(condition, str(tmp_path), str(tmp_path), prefix="evaluate_",
                     trained=trained, ssl_model="f00d", augmentation={"noise_csv": "noise.csv"})
    assert not (tmp_path / "provenance.json").exists()
    record = json.loads((tmp_path / "evaluate_provenance.json").read_text())
    assert record["trained_by"] == trained and record["ssl_model_sha256"] == "f00d"
    assert record["data"]["source_train"]["path"] == str(tmp_path / "s.csv")
    assert record["data"]["noise_csv"] == {"path": str(tmp_path / "noise.csv"),
                                           "sha256": hashlib.sha256(b"noise\n").hexdigest()}
    (tmp_path / "provenance.json").write_text(json.dumps(record))
    assert trained_by(str(tmp_path)) == trained


def test_a_run_trained_by_no_recorded_command_records_none(tmp_path):
    record = write_provenance(condition_in(tmp_path), str(tmp_path), str(tmp_path), trained=[])
    assert record["trained_by"] == [] and "ssl_model_sha256" not in record
    assert json.loads((tmp_path / "provenance.json").read_text())["trained_by"] == []
