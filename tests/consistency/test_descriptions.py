"""What the package and its model files say of themselves agrees with what they do."""

import configparser
import glob
import os
import re

import pytest

from local.settings import plain_values

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_FILES = sorted(glob.glob(os.path.join(ROOT, "hparams", "*.yaml")))


def header(path):
    """The comment lines a hparams file opens with."""
    lines = []
    with open(path, encoding="utf-8") as fin:
        for line in fin:
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines)


def trains_gradient_reversal(path):
    values = plain_values(path)
    return values["adversary"] == "grl" and float(values["adv_weight"]) > 0


@pytest.mark.parametrize("path", MODEL_FILES, ids=os.path.basename)
def test_a_header_promises_gradient_reversal_only_where_the_defaults_train_it(path):
    if "gradient reversal" in header(path).lower():
        assert trains_gradient_reversal(path), (
            f"{path}'s header says gradient reversal, but its defaults do not train it")


def test_the_package_description_is_the_readme_opening():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    description = config["metadata"]["description"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fin:
        title, _, body = fin.read().partition("\n")
    opening = " ".join(next(p for p in body.split("\n\n") if p.strip()).split())
    name, _, what = description.partition(": ")
    assert name == title.lstrip("# ")
    assert re.sub(r"^an? ", "", what, flags=re.I).lower() in opening.lower()
