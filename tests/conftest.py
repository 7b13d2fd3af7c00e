"""Fixtures shared by the test modules."""

import pytest

from data_prep.demo import prepare_demo


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """The default demo corpus (seed 1234), generated once per test session."""
    folder = tmp_path_factory.mktemp("demo")
    return prepare_demo(str(folder))
