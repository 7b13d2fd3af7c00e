"""The settings of a run: a model hparams file on its base, a condition file, overrides.

A model file (``hparams/dann_fbank.yaml``) names the file it builds on
(``base: common.yaml``, relative to itself) and sets what it changes: its
keys replace the base's in place, new keys follow them, and a base may have a
base. So the settings every model shares live in one file, a model file shows
the model, and a run's ``hyperparams.yaml`` is the whole, resolved.
hyperpyyaml has no such merge (its ``!include`` nests a file under a key), so
it is written here, on the ruamel.yaml trees that hyperpyyaml itself reads.

The condition file (``recipes/<name>/condition.yaml``) shares no key with the
model's but ``condition``, so that each command-line override has one
destination.
"""

import io
import json
import os
import re
import sys

import ruamel.yaml
import yaml
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update

from local.errors import fail

DEFAULT_CONDITION = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "recipes", "demo", "condition.yaml")
# A number in exponent notation without a dot (1e30, 5e-4): a float in YAML
# 1.2 and to Python, a string to the YAML 1.1 that hyperpyyaml reads.
EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def model_text(path):
    """The YAML text of a model hparams file merged onto its bases.

    Arguments
    ---------
    path : str
        A model hparams file.

    Returns
    -------
    str
        One hyperpyyaml document, without ``base``.

    Example
    -------
    >>> text = model_text("hparams/dann_wav2vec2.yaml")
    >>> "ssl_family: wav2vec2" in text, "checkpointer:" in text
    (True, True)
    """
    out = io.StringIO()
    ruamel.yaml.YAML().dump(_merged_tree(path, ()), out)
    return out.getvalue()


def _merged_tree(path, chain):
    if path in chain:
        fail(path, f"is its own base through {' -> '.join(chain)}",
             fix="give the chain of base: keys an end (hparams/common.yaml has none)")
    with open(path, encoding="utf-8") as fin:
        tree = ruamel.yaml.YAML().load(fin) or {}
    base = tree.pop("base", None)
    if base is None:
        return tree
    base_path = os.path.join(os.path.dirname(path), base)
    if not os.path.isfile(base_path):
        fail(path, f"its base {base} does not exist (looked for {base_path})",
             fix="name a file of the same folder, such as base: common.yaml")
    merged = _merged_tree(base_path, (*chain, path))
    for key, value in tree.items():
        merged[key] = value
    return merged


def load_model_hparams(path, overrides):
    """Load a model hparams file on its bases, with command-line overrides.

    Arguments
    ---------
    path : str
        A model hparams file.
    overrides : dict
        ``{key: value}`` overrides.

    Returns
    -------
    dict
        The loaded hparams.
    """
    return load_hyperpyyaml(model_text(path), overrides)


def plain_values(path):
    """A hyperpyyaml file's top-level ``{key: value}`` (on its bases), tagged values None.

    Arguments
    ---------
    path : str
        A model hparams or condition file.

    Returns
    -------
    dict
        What the command line's overrides are checked against.
    """
    return yaml.load(model_text(path), Loader=_KeysOnly) or {}


class _KeysOnly(yaml.SafeLoader):
    """Reads a hyperpyyaml file's top-level keys, ignoring its tags."""


_KeysOnly.add_multi_constructor("!", lambda loader, suffix, node: None)


def run_settings(path, overrides):
    """Every top-level setting of a model file on its bases, with the overrides, unresolved.

    What defines a run, in a form that compares: a ``!ref`` stays a
    reference, so that ``--lr`` is one change and not also one of each value
    that refers to it, and an object is its tag and its arguments
    (``{"!new:...ECAPA_TDNN": {...}}``). Keys that run on load (``__set_seed``)
    are left out.

    Arguments
    ---------
    path : str
        A model hparams file.
    overrides : dict
        ``{key: value}`` overrides, applied as hyperpyyaml applies them.

    Returns
    -------
    dict
        Plain JSON values, as :func:`json.load` reads them back.

    Example
    -------
    >>> settings = run_settings("hparams/dann_fbank.yaml", {"lr": 0.01})
    >>> settings["lr"], settings["disc_lr"], list(settings["frontend"])
    (0.01, {'!ref': '<lr>'}, ['!new:local.model.fbank_frontend.FbankFrontend'])
    """
    settings = yaml.load(model_text(path), Loader=_Tagged) or {}
    recursive_update(settings, overrides)
    return json.loads(json.dumps({key: value for key, value in settings.items()
                                  if not key.startswith("__")}))


class _Tagged(yaml.SafeLoader):
    """Reads a hyperpyyaml file's tagged values as ``{tag: value}``."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return {f"!{suffix}": value}


_Tagged.add_multi_constructor("!", _tagged)


def load_condition(overrides, hparams_file):
    """Split the command-line overrides into the condition's and the model's.

    The two files share no key but ``condition``, so that every override has
    one destination; overrides of numbers and switches are checked against
    their defaults (:func:`typed_overrides`).

    Arguments
    ---------
    overrides : str
        YAML overrides from ``sb.parse_arguments``; ``condition`` names the
        condition file.
    hparams_file : str
        The model hparams file.

    Returns
    -------
    tuple
        ``(condition_path, condition_hparams, model_overrides)``.
    """
    overrides = yaml.safe_load(overrides) or {}
    path = overrides.pop("condition", DEFAULT_CONDITION)
    if not os.path.isfile(path):
        sys.exit(f"Condition file {path} does not exist: pass --condition=recipes/<name>/condition.yaml")
    keys = set(plain_values(path))
    shared = sorted(keys & set(plain_values(hparams_file)) - {"condition"})
    if shared:
        fail(path, f"defines {shared}, which {hparams_file} defines too, so that an override "
                   "of them could reach only one of the files",
             fix="rename them in the condition file (and in its !ref <...> references)")
    mine = typed_overrides(path, {k: v for k, v in overrides.items() if k in keys})
    with open(path, encoding="utf-8") as fin:
        condition = load_hyperpyyaml(fin, mine)
    model = typed_overrides(hparams_file, {k: v for k, v in overrides.items() if k not in keys})
    return path, condition, model


def typed_overrides(path, overrides):
    """Overrides of a file's numbers and switches, checked against the types of its defaults.

    For a key whose default is a number, a string in exponent notation
    without a dot (``--lr=1e30``, which YAML 1.1 reads as text) is the number
    it means (an integer where the default is one and it is whole); nothing
    else is converted, so that a value is never guessed. Any other value
    that is not a number is refused, as is a value other than True or False
    for a key whose default is one of them. Keys without such a default
    (null, lists, tagged values) pass unchecked.

    Arguments
    ---------
    path : str
        The hparams or condition file whose keys the overrides set.
    overrides : dict
        ``{key: value}``, as the YAML of the command line read them.

    Returns
    -------
    dict
        The overrides, exponent-notation strings converted.

    Raises
    ------
    ManifestError
        Naming the key, its value and what it needs.

    Example
    -------
    >>> typed_overrides("hparams/dann_fbank.yaml", {"lr": "1e-3", "score_norm": "asnorm"})
    {'lr': 0.001, 'score_norm': 'asnorm'}
    """
    defaults = plain_values(path)
    checked = dict(overrides)
    for key, value in overrides.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                fail(path, f"--{key}={value} is not True or False (its default is {default})",
                     fix=f"pass --{key}=True or --{key}=False")
        elif isinstance(default, (int, float)):
            if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
                value = float(value)
                if isinstance(default, int) and value.is_integer():
                    value = int(value)
                checked[key] = value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(path, f"--{key}={value} is not a number (its default is {default})",
                     fix=f"pass a number, such as --{key}={default}")
    return checked
