"""A run's record of its data files, and the digests that name its caches."""

import hashlib
import json
import os

from local import provenance
from local.provenance import code_digest, file_sha256, short_digest, write_provenance


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
    versions = {library: "1.0" for library in provenance.CODE_LIBRARIES}
    monkeypatch.setattr(provenance.importlib.metadata, "version", versions.__getitem__)
    baseline = code_digest(str(package))
    for library in provenance.CODE_LIBRARIES:
        monkeypatch.setitem(versions, library, "1.1")
        assert code_digest(str(package)) != baseline, library
        monkeypatch.setitem(versions, library, "1.0")
