"""The installation check: the libraries load together, and a broken pair is named."""

import pytest

from local.environment import LIBRARIES, installation_problem, installed_versions, release

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
