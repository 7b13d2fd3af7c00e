"""The benchmark scripts without options answer --help, and refuse options, before measuring."""

import importlib
import os

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")

# The scripts that take no options; the others' parsers name theirs.
WITHOUT_OPTIONS = ["bench_dataloading", "bench_embed", "bench_frozen_ssl", "bench_metrics"]


@pytest.mark.parametrize("name", WITHOUT_OPTIONS)
def test_help_prints_the_usage_and_an_option_is_refused(name, monkeypatch, capsys):
    monkeypatch.syspath_prepend(BENCHMARKS)  # the scripts import their common module
    script = importlib.import_module(name)
    with pytest.raises(SystemExit) as asked:
        script.main(["--help"])
    out = capsys.readouterr().out
    assert asked.value.code == 0
    assert out.startswith("usage: ") and script.__doc__.split("\n")[0] in out.replace("\n", " ")
    with pytest.raises(SystemExit) as refused:
        script.main(["--rounds", "5"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --rounds 5" in capsys.readouterr().err
