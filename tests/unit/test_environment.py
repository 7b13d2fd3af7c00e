"""The installation check: the libraries load together, and a broken pair is named."""

import importlib.metadata

import pytest

from local import environment
from local.environment import (
    LIBRARIES,
    check_installation,
    installation_problem,
    installed_versions,
    release,
)

VERIFIED = {"torch": "2.11.0", "torchaudio": "2.11.0", "speechbrain": "1.1.2",
            "transformers": "5.24.0"}


def test_installed_libraries_load_together():
    versions = installed_versions()
    assert installation_problem(versions) is None, versions
    assert release(versions["torch"]) == release(versions["torchaudio"])


def test_mismatched_torchaudio_is_named_before_any_import():
    imported = []
    problem = installation_problem(dict(VERIFIED, torchaudio="2.11.1"), imported.append)
    assert problem.startswith("torchaudio 2.11.1 does not match torch 2.11.0")
    assert "pip install -c constraints.txt" in problem
    assert imported == []


def test_cuda_build_labels_match_their_release():
    versions = dict(VERIFIED, torch="2.11.0+cu126", torchaudio="2.11.0+cu126")
    assert installation_problem(versions, lambda name: None) is None


def test_missing_library_is_named():
    problem = installation_problem(dict(VERIFIED, speechbrain=None), lambda name: None)
    assert problem.startswith("speechbrain not installed.")


@pytest.mark.parametrize("broken", LIBRARIES)
def test_import_failure_names_the_library_and_what_it_was_loaded_with(broken):
    def import_module(name):
        if name == broken:
            raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what\nmore")

    problem = installation_problem(VERIFIED, import_module)
    loaded_before = LIBRARIES[:LIBRARIES.index(broken)]
    expected = f"{broken} {VERIFIED[broken]} does not load"
    if loaded_before:
        expected += " with " + ", ".join(f"{name} {VERIFIED[name]}" for name in loaded_before)
    assert problem.startswith(expected + ": OSError: libtorchaudio.so: undefined symbol")
    assert "more" not in problem


def test_a_release_is_the_version_without_its_build_label():
    assert [release(v) for v in ("2.11.0+cu130", "2.11.0", "1.1.2+local+x")] == \
        ["2.11.0", "2.11.0", "1.1.2"]


@pytest.mark.parametrize("torch, torchaudio, matched", [
    # A CUDA build of torch with torchaudio from the package index, which has no label.
    ("2.11.0+cu126", "2.11.0", True),
    ("2.11.0+cu126", "2.11.1+cu126", False),
])
def test_torch_and_torchaudio_match_by_release_whatever_their_build_labels(torch, torchaudio,
                                                                         matched):
    versions = dict(VERIFIED, torch=torch, torchaudio=torchaudio)
    problem = installation_problem(versions, lambda name: None)
    if matched:
        assert problem is None
    else:
        assert problem.startswith(f"torchaudio {torchaudio} does not match torch {torch}")


def test_a_library_that_is_not_installed_has_no_version():
    assert installed_versions(("torch", "no-such-distribution-here")) == {
        "torch": importlib.metadata.version("torch"), "no-such-distribution-here": None}


@pytest.mark.parametrize("error, said", [
    (OSError("\nlibc10.so: cannot open shared object file\nmore"),
     "OSError: libc10.so: cannot open shared object file."),
    (ImportError(), "ImportError: ImportError."),
])
def test_an_import_failure_is_told_by_its_first_line_or_its_type(error, said):
    def import_module(name):
        if name == "speechbrain":
            raise error

    problem = installation_problem(VERIFIED, import_module)
    assert problem.startswith("speechbrain 1.1.2 does not load with torch 2.11.0, "
                              f"torchaudio 2.11.0: {said} Fix: ")


def test_check_installation_exits_with_the_problem_and_only_then(monkeypatch):
    monkeypatch.setattr(environment, "installation_problem", lambda: "torchaudio mismatch")
    with pytest.raises(SystemExit, match="^torchaudio mismatch$"):
        check_installation()
    monkeypatch.setattr(environment, "installation_problem", lambda: None)
    assert check_installation() is None
