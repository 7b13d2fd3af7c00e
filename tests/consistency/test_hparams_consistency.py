"""Hparams files and the code that reads them agree, as SpeechBrain requires of recipes.

Every top-level key of a model hparams file (``hparams/*.yaml``, merged onto
its base, :mod:`local.settings`) or of a condition file
(``recipes/*/condition.yaml``) is used: referenced by the settings themselves
(``!ref <key>``, ``!copy <key>``) or read by the recipe's code
(``hparams["key"]``, ``self.hparams.key``, ``condition["key"]``). Every key
the code reads exists in every file of its kind, every ``self.modules.x`` is
in each model's ``modules:``, and a model file sets no key to its base's value.

SpeechBrain's own check (``tests/utils/check_yaml.py`` in its repository; the
pip package does not ship it) compares a YAML with one training script, line
by line. Here one model file is read by ``train_dann.py``, ``evaluate.py`` and
``local/``, and a condition file sits beside it, so the same rule is written
over the parsed top-level keys and every code file at once.
"""

import pathlib
import re

import pytest
import yaml

from local.settings import model_text, unused_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
CODE = sorted([ROOT / "train_dann.py", ROOT / "evaluate.py", *(ROOT / "local").rglob("*.py")])
BASE_FILE = ROOT / "hparams" / "common.yaml"
MODEL_FILES = sorted(set((ROOT / "hparams").glob("*.yaml")) - {BASE_FILE})
CONDITION_FILES = sorted((ROOT / "recipes").glob("*/condition.yaml"))

# Keys the code reads only on a path some model files never take.
OPTIONAL_MODEL_KEYS = {
    "ssl_opt_class": "read by DANNBrain.init_optimizers only when an SSL model is fine-tuned",
    "cache_ssl_features": "a switch of the SSL front ends, read by dataio_prep with .get",
    "freeze_ssl": "a switch of the SSL front ends, read by check_trainable with .get",
    "ssl_features_folder": "read by dataio_prep only when cache_ssl_features is on",
    "ssl_dim": "read by check_ssl_dim only for a front end with an output_size, an SSL one",
}
# Methods of the modules dict, not modules.
MODULE_DICT_METHODS = {"eval", "train", "items", "keys", "values", "parameters", "buffers",
                       "to"}

READS = {
    "model": [r"hparams\[[\"'](\w+)[\"']\]", r"hparams\.get\([\"'](\w+)[\"']",
              r"\bhparams\.(?!get\b)(\w+)"],
    "condition": [r"condition\[[\"'](\w+)[\"']\]"],
}
REFERENCE = re.compile(r"<(\w+)")


class _KeysOnly(yaml.SafeLoader):
    """Reads a hyperpyyaml file as plain YAML, each tagged node as None."""


_KeysOnly.add_multi_constructor("!", lambda loader, suffix, node: None)


def top_level_keys(text):
    """The top-level keys of a hyperpyyaml file (``__``-prefixed ones run on load and are skipped)."""
    return {key for key in yaml.load(text, Loader=_KeysOnly) or {} if not key.startswith("__")}


def referenced_keys(text):
    """Names referenced by ``!ref``/``!copy`` values of a hyperpyyaml file."""
    names = set()
    for line in text.splitlines():
        value = line.split(" #")[0]
        if "!ref" in value or "!copy" in value:
            names.update(REFERENCE.findall(value))
    return names


def code_reads(sources, kind):
    """Keys that code reads from the hparams (``kind='model'``) or condition dict."""
    return {key for source in sources for pattern in READS[kind]
            for key in re.findall(pattern, source)}


def module_names(sources):
    """Names of ``self.modules.<name>`` in code, methods of the dict excluded."""
    return {name for source in sources for name in re.findall(r"\bmodules\.(\w+)", source)
            } - MODULE_DICT_METHODS


def unused_keys(text, reads):
    """Top-level keys of a file that neither it references nor the code reads."""
    return sorted(top_level_keys(text) - referenced_keys(text) - reads)


def code_sources():
    return [path.read_text(encoding="utf-8") for path in CODE]


def settings_text(path):
    """A condition file's text, or a model file's merged onto its bases."""
    return path.read_text(encoding="utf-8") if path.name == "condition.yaml" else model_text(path)


@pytest.mark.parametrize("path", MODEL_FILES + CONDITION_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_key_is_used(path):
    """A file's own keys are used in its settings; a model file's null removes a base's object."""
    kind = "condition" if path.name == "condition.yaml" else "model"
    own = yaml.load(path.read_text(encoding="utf-8"), Loader=_KeysOnly) or {}
    unused = set(unused_keys(settings_text(path), code_reads(code_sources(), kind)))
    unused &= {key for key, value in own.items() if not (kind == "model" and value is None)}
    assert not unused, (f"{path.relative_to(ROOT)} defines {sorted(unused)}, which neither its "
                        "settings reference nor train_dann.py, evaluate.py or local/ read: "
                        "use or remove them")


def test_every_key_of_the_base_is_used_by_a_model():
    reads = code_reads(code_sources(), "model")
    unused = set(top_level_keys(BASE_FILE.read_text(encoding="utf-8")))
    for path in MODEL_FILES:
        unused &= set(unused_keys(model_text(path), reads))
    assert not unused, f"hparams/common.yaml defines {sorted(unused)}, which no model uses"


@pytest.mark.parametrize("kind, files", [("model", MODEL_FILES), ("condition", CONDITION_FILES)])
def test_every_key_the_code_reads_is_defined(kind, files):
    reads = code_reads(code_sources(), kind)
    missing = {}
    for path in files:
        absent = reads - top_level_keys(settings_text(path))
        if kind == "model":
            absent -= set(OPTIONAL_MODEL_KEYS)
        if absent:
            missing[path.relative_to(ROOT).as_posix()] = sorted(absent)
    assert not missing, f"the code reads keys these files do not define: {missing}"


def test_optional_model_keys_are_read_and_defined_somewhere():
    defined = set().union(*(top_level_keys(model_text(p)) for p in MODEL_FILES))
    optional = set(OPTIONAL_MODEL_KEYS)
    assert optional <= code_reads(code_sources(), "model") & defined


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_no_setting_refused_as_unused_is_read_by_the_code(path):
    """The settings a model file leaves unused (refused as overrides) are none the code reads."""
    read = sorted(set(unused_settings(str(path))) & code_reads(code_sources(), "model"))
    assert not read, f"{path.name}: the code reads {read}, which unused_settings calls unused"


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_every_module_the_code_uses_is_in_modules(path):
    modules = set(yaml.load(model_text(path), Loader=_ModulesOnly)["modules"])
    missing = module_names(code_sources()) - modules
    assert not missing, f"{path.name}: self.modules.{sorted(missing)} not in its modules: section"


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_a_model_file_sets_no_key_to_its_base_value(path):
    """One home per setting: a value a model file repeats from its base is a copy to drift."""
    own = yaml.load(path.read_text(encoding="utf-8"), Loader=_ModulesOnly)
    base = yaml.load(model_text(path.parent / own.pop("base")), Loader=_ModulesOnly)
    copies = sorted(key for key, value in own.items() if key in base and base[key] == value)
    assert not copies, f"{path.name} repeats {copies} from its base: remove them"


@pytest.mark.parametrize("path", CONDITION_FILES, ids=lambda p: p.parent.name)
def test_condition_and_model_files_share_no_key_but_condition(path):
    """An override goes to the file that has its key: one key, one destination.

    Overrides reach a file's top-level keys (a nested value through the key
    above it), so these are what must not collide.
    """
    condition = top_level_keys(path.read_text(encoding="utf-8"))
    shared = {model.name: sorted(condition & top_level_keys(model_text(model))
                                 - {"condition"})
              for model in MODEL_FILES}
    assert not any(shared.values()), (
        f"{path.relative_to(ROOT)} shares keys with model files: {shared}; rename them in the "
        "condition file")


class _ModulesOnly(yaml.SafeLoader):
    """Reads a hyperpyyaml file as plain YAML, keeping ``!ref`` values as their text."""


_ModulesOnly.add_multi_constructor("!", lambda loader, suffix, node: getattr(node, "value", None))


SAMPLE_YAML = """\
seed: 1
__set_seed: !apply:torch.manual_seed [!ref <seed>]
lr: 0.1          # read by the code
width: 8
unused: 3        # <width> in a comment is no reference
model: !new:torch.nn.Linear
    in_features: !ref <width>
    out_features: !ref <width>
"""
SAMPLE_CODE = 'opt = torch.optim.SGD(p, lr=hparams["lr"])\nif self.hparams.ghost: pass\n'


def test_the_check_finds_unused_and_undefined_keys():
    reads = code_reads([SAMPLE_CODE], "model")
    assert reads == {"lr", "ghost"}
    assert unused_keys(SAMPLE_YAML, reads) == ["model", "unused"]
    assert reads - top_level_keys(SAMPLE_YAML) == {"ghost"}
    assert module_names(["self.modules.encoder(x); self.modules.eval()"]) == {"encoder"}
