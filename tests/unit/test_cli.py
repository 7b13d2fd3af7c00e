"""The ``python -m`` commands of the recipe: what their ``--help`` says."""

import glob
import importlib
import os
import re
import subprocess
import sys

import pytest

from local.cli import command, describe_on_help, option

# Every module with a command line: ``main = command(...)`` (local/cli.py).
COMMANDS = sorted(
    path[:-3].replace("/", ".")
    for path in glob.glob("local/**/*.py", recursive=True) + glob.glob("data_prep/*.py")
    if re.search(r"^main = ", open(path, encoding="utf-8").read(), re.MULTILINE))


def test_the_commands_are_found():
    assert {"local.export", "local.evaluation.fusion", "data_prep.manifest",
            "data_prep.demo"} <= set(COMMANDS)


@pytest.mark.parametrize("module", COMMANDS)
def test_help_says_what_every_option_does(module, capsys):
    main = importlib.import_module(module).main
    undescribed = [action.option_strings or action.dest
                   for action in main.parser._actions if not action.help]
    assert undescribed == []
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage:")



@pytest.mark.parametrize("module, argv", [
    ("local.export", ["MISSING"]),
    ("local.evaluation.mfcc_baseline", ["--manifest", "MISSING", "--trials", "MISSING"]),
    ("local.evaluation.fusion", ["--scores", "MISSING", "--out", "fused.txt"]),
    ("data_prep.manifest", ["MISSING"]),
])
def test_a_missing_input_ends_with_its_message_not_a_traceback(module, argv, tmp_path):
    missing = str(tmp_path / "missing")
    done = subprocess.run([sys.executable, "-m", module,
                           *[missing if word == "MISSING" else word for word in argv]],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and missing in done.stderr


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_either_help_flag_prints_the_scripts_description(flag, capsys):
    describe_on_help(["hparams/dann_fbank.yaml", flag], "Trains a model.")
    assert capsys.readouterr().out == "Trains a model.\n"


def test_help_describes_a_command_by_the_first_paragraph_of_its_docstring(capsys):
    main = command(lambda seed: seed, "Doubles a seed.\n\nA second paragraph.",
                   option("--seed", type=int, help="the seed"))
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "Doubles a seed." in out and "A second paragraph." not in out


def test_help_tells_each_options_default_as_it_is_typed(capsys):
    main = command(lambda **options: 0, "Does.",
                   option("--lists", nargs="+", default=["source", "target"], help="lists"),
                   option("--size", type=int, default=0, help="size"),
                   option("--share", default="5%", help="share"),
                   option("--folder", help="folder"),
                   option("--fast", action="store_true", help="fast"),
                   option("--seed", type=int, default=3, help="seed (default: the run's)"))
    with pytest.raises(SystemExit):
        main(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "lists (default: source target)" in said
    assert "size (default: 0)" in said and "share (default: 5%)" in said
    assert "folder --fast" in said and "fast --seed" in said  # nothing to tell
    assert "seed (default: the run's)" in said and said.count("default") == 4
    assert "show this help message and exit --lists" in said
