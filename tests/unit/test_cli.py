"""The ``python -m`` commands of the recipe: what their ``--help`` says."""

import glob
import importlib
import re

import pytest

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
