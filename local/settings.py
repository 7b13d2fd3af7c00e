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

import difflib
import glob
import inspect
import io
import json
import math
import os
import re
import sys
import traceback

import ruamel.yaml
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references
from hyperpyyaml.core import recursive_update
from speechbrain.core import RunOptions
from speechbrain.utils.distributed import infer_device

from local.data.dataio import speaker_batches_per_epoch
from local.data.manifest_io import read_manifest
from local.data.ssl_cache import FROZEN_ONLY, FROZEN_ONLY_FIX
from local.errors import ManifestError, fail
from local.provenance import condition_files

# The recipe's root folder: its conditions, and the git checkout its provenance names.
RECIPE_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONDITION = os.path.join(RECIPE_FOLDER, "recipes", "demo", "condition.yaml")
_KEY_VALUE_FIX = ("pass each setting as --key=value, the condition as "
                  "--condition=recipes/<name>/condition.yaml")
# The file of every key the code reads from a model file.
COMMON_HPARAMS = os.path.join(RECIPE_FOLDER, "hparams", "common.yaml")
# The model files and condition files a missing one is told to choose from.
MODEL_FILES = "hparams/*.yaml"
CONDITION_FILES = "recipes/*/condition.yaml"
# Its !PLACEHOLDER keys that prepare_experiment fills in, from the condition
# file and the source manifest.
FILLED_IN_KEYS = ("condition", "n_speakers")
# What every condition file names, and every trial list of its evaluation.
CONDITION_KEYS = ("condition", "prepare", "source_train", "target_train", "evaluation")
TRIAL_LIST_KEYS = ("manifest", "trials")
# What a trial list of the evaluation may name besides (TrialList.read of local/evaluation).
OPTIONAL_TRIAL_LIST_KEYS = ("enrolment", "min_dcf")
# A number in exponent notation without a dot (1e30, 5e-4): a float in YAML
# 1.2 and to Python, a string to the YAML 1.1 that hyperpyyaml reads.
EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
# Keys whose default is a whole number but which take any number: seconds, and
# the margin softmax's scale s.
FRACTIONAL_KEYS = ("max_embed_seconds", "scale")
# Keys whose default is a list but which also take one item alone, or null
# (local/run_folder.py reads allow_changed so).
SCALAR_LIST_KEYS = ("allow_changed",)
# Keys whose default is a number but which also take null: no limit.
NULLABLE_KEYS = ("max_embed_seconds",)
# SpeechBrain's run options (flags such as --grad_accumulation_factor=4, or keys
# of the model file) that the trained weights depend on: a training run
# records the value of each with its settings.
TRAINING_RUN_OPTIONS = ("grad_accumulation_factor", "precision", "max_grad_norm",
                        "optimizer_step_limit", "remove_vector_weight_decay")
# The settings of an SSL model's fine-tuning (freeze_ssl: False), which a
# frozen one never reads; ssl_gradient_checkpointing is refused by the front end.
FINE_TUNING_KEYS = ("ssl_lr", "freeze_ssl_cnn")
# What train_dataloader_options may hold: the keyword arguments of torch's
# DataLoader and those SpeechBrain's Brain.make_dataloader takes before it.
LOADER_OPTIONS = frozenset(inspect.signature(torch.utils.data.DataLoader).parameters) - {
    "dataset"} | {"ckpt_prefix", "looped_nominal_epoch"}
# The number of DDP processes a run trains with, recorded with its settings:
# each process takes batch_size crops a step, so the batch of a step is their
# product. The launcher sets it (torchrun --nproc_per_node), no option.
PROCESSES_KEY = "ddp_processes"


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

    Raises
    ------
    ManifestError
        When a module cannot be built with these values (a lobe's bare
        ``assert``, a wrong type), naming the line that refused them.
    """
    try:
        return load_hyperpyyaml(model_text(path), overrides)
    except ManifestError:
        raise
    except (AssertionError, TypeError, ValueError) as err:
        frame = traceback.extract_tb(err.__traceback__)[-1]
        fail(path, f"a module cannot be built with these settings: {type(err).__name__}"
                   f"{f' ({err})' if str(err) else ''} at {frame.filename}:{frame.lineno}: "
                   f"{frame.line}",
             fix="check the values of the overrides and of the model file that this "
                 "module takes (its arguments in the model file)")


def plain_values(path, overrides=None):
    """A hyperpyyaml file's top-level ``{key: value}`` (on its bases), tagged values None.

    Arguments
    ---------
    path : str
        A model hparams or condition file.
    overrides : dict, optional
        Overrides to apply, with the references they reach resolved
        (``!ref <a> * <b>`` becomes its value), without building any object.

    Returns
    -------
    dict
        What the command line's overrides are checked against.

    Example
    -------
    >>> overrides = {"condition": "demo", "n_speakers": 24, "ge2e_speakers": 5}
    >>> plain_values("hparams/ge2e_fbank.yaml", overrides)["batch_size"]
    20
    >>> plain_values("hparams/ge2e_fbank.yaml", {**overrides, "lr": 1e-5})["lr"]
    1e-05
    """
    text = model_text(path)
    if overrides is not None:
        text = resolve_references(text, overrides).getvalue()
    return yaml.load(text, Loader=_KeysOnly) or {}


class _KeysOnly(yaml.SafeLoader):
    """Reads a hyperpyyaml file's top-level keys, ignoring its tags."""


_KeysOnly.add_multi_constructor("!", lambda loader, suffix, node: None)
# resolve_references writes a float override in exponent notation without a dot
# (--lr=1e-5 as 1e-05): the number the run takes, not YAML 1.1's text.
_KeysOnly.add_implicit_resolver("tag:yaml.org,2002:float",
                                re.compile(f"^(?:{EXPONENT_NUMBER.pattern})$"),
                                list("-+0123456789."))


class _References(_KeysOnly):
    """As :class:`_KeysOnly`, but a ``!ref`` is its text (``<lr>``)."""


_References.add_constructor("!ref", lambda loader, node: loader.construct_scalar(node))


def referenced_defaults(path):
    """A file's plain values, a key whose value is another key alone (``disc_lr: !ref <lr>``)
    taking that key's, so that its overrides are checked as that key's would be.

    Arguments
    ---------
    path : str
        The model hparams file, read on its bases.

    Returns
    -------
    dict
        The plain values of :func:`plain_values`, with those of such keys filled in.

    Example
    -------
    >>> defaults = referenced_defaults("hparams/dann_fbank.yaml")
    >>> defaults["disc_lr"] == defaults["lr"], defaults["adv_input_size"] == defaults["emb_dim"]
    (True, True)
    """
    values = plain_values(path)
    for key, text in (yaml.load(model_text(path), Loader=_References) or {}).items():
        name = re.fullmatch(r"<(\w+)>", text.strip()) if isinstance(text, str) else None
        if values.get(key) is None and name:
            values[key] = values.get(name.group(1))
    return values


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


def processes_line(processes):
    """The line of a ``hyperparams.yaml`` record that names the DDP processes of its command.

    A comment: the processes are no key of the model file.

    Arguments
    ---------
    processes : int
        DDP processes of the command.

    Returns
    -------
    str
        The line, with its newline.

    Example
    -------
    >>> processes_line(2)
    '# ddp_processes: 2 (torchrun --nproc_per_node)\\n'
    """
    return f"# {PROCESSES_KEY}: {processes} (torchrun --nproc_per_node)\n"


def recorded_processes(path):
    """The DDP processes that a ``hyperparams.yaml`` record names (:func:`processes_line`).

    Arguments
    ---------
    path : str
        The record.

    Returns
    -------
    int or None
        None for a record written before it named them.
    """
    with open(path, encoding="utf-8") as record:
        for line in record:
            if not line.startswith("#"):
                return None
            named = re.fullmatch(rf"# {PROCESSES_KEY}: (\d+) .*\n?", line)
            if named:
                return int(named.group(1))
    return None


def run_options(run_opts, hparams, names=TRAINING_RUN_OPTIONS):
    """The value of each run option of ``names`` in a run, as SpeechBrain's Brain takes it.

    The command line's, else the model file's, else SpeechBrain's default.

    Arguments
    ---------
    run_opts : speechbrain.core.RunOptions
        From ``speechbrain.parse_arguments``.
    hparams : dict
        The loaded model hparams.
    names : tuple of str
        The options: by default :data:`TRAINING_RUN_OPTIONS`.

    Returns
    -------
    dict
        ``{option: value}``.

    Example
    -------
    >>> import speechbrain as sb
    >>> _, run_opts, _ = sb.parse_arguments(["x.yaml", "--grad_accumulation_factor=4"])
    >>> run_options(run_opts, {"max_grad_norm": 1.0})
    {'grad_accumulation_factor': 4, 'precision': 'fp32', 'max_grad_norm': 1.0, 'optimizer_step_limit': None, 'remove_vector_weight_decay': False}
    >>> run_options(run_opts, {}, ("eval_precision",))
    {'eval_precision': 'fp32'}
    """
    defaults = RunOptions()
    return {name: run_opts[name] if name in run_opts.overridden_args
            else hparams.get(name, defaults[name]) for name in names}


def training_processes():
    """How many DDP processes run this command: torchrun's ``WORLD_SIZE``, else 1."""
    return int(os.environ.get("WORLD_SIZE", 1))


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


def run_option_words():
    """``{option: words it takes after it}`` of SpeechBrain's run options, from its own parser.

    0 for a flag (``--debug``), 1 for an option with a value (``--device
    cpu``), ``math.inf`` for a list (``--jit_module_keys a b``): the
    ``nargs`` of each option of the argparse parser that
    ``sb.parse_arguments`` builds (``RunOptions._create_parser``, pinned with
    SpeechBrain in ``tests/unit/test_speechbrain_internals.py``).

    Returns
    -------
    dict

    Example
    -------
    >>> words = run_option_words()
    >>> words["--debug"], words["--device"], words["--jit_module_keys"]
    (0, 1, inf)
    """
    words = {None: 1, "?": 1, "*": math.inf, "+": math.inf}
    return {option: words.get(action.nargs, action.nargs)
            for action in RunOptions._create_parser()._actions
            for option in action.option_strings}


def parse_arguments(argv=None):
    """``sb.parse_arguments`` of a command line whose every word a setting takes.

    SpeechBrain's parser appends a word that is no ``--key=value`` to the
    value of the setting before it: ``--output_folder=results/x
    recipes/demo/condition.yaml`` would train the default condition into a
    folder named ``results/x recipes/demo/condition.yaml``. Such a word is
    refused; a word is a value only after a ``--key`` without ``=`` that
    takes one (``--device cpu``, ``--seed 3``; a run option that takes none,
    ``--debug``, leaves the word to the setting before it: :func:`run_option_words`)
    or inside a list or mapping that its setting has not yet closed
    (``--backend=[plda, plda_pooled]``, unquoted).

    Arguments
    ---------
    argv : list of str, optional
        The model hparams file and the settings (None: ``sys.argv[1:]``).

    Returns
    -------
    tuple
        ``(hparams_file, run_opts, overrides)``, as from ``sb.parse_arguments``.

    Example
    -------
    >>> parse_arguments(["hparams/dann_fbank.yaml", "--seed=3",
    ...                  "recipes/demo/condition.yaml"])
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: hparams/dann_fbank.yaml: 'recipes/demo/condition.yaml' is no --key=value setting, and SpeechBrain would read it as part of --seed=3
    Fix: pass each setting as --key=value, the condition as --condition=recipes/<name>/condition.yaml
    """
    argv = sys.argv[1:] if argv is None else argv
    # Words before the first setting are left to load_condition, which
    # refuses the text they make.
    option_words = run_option_words()
    previous, words, unclosed = None, 0, 0
    for word in argv[1:]:
        if word.startswith("--"):
            key, equals, value = word.partition("=")
            # An override without "=" (--seed 3) takes one word, as a run option with a value.
            previous, words, unclosed = word, 0 if equals else option_words.get(key, 1), 0
        elif previous and not (words or unclosed > 0):
            reading = (f"{previous} takes no value" if option_words.get(previous) == 0
                       else f"SpeechBrain would read it as part of {previous}")
            fail(argv[0], f"{word!r} is no --key=value setting, and {reading}",
                 fix=_KEY_VALUE_FIX)
        else:
            value, words = word, max(words - 1, 0)
        unclosed += sum(value.count(c) for c in "[{") - sum(value.count(c) for c in "]}")
    return sb.parse_arguments(argv)


def passed_options(text):
    """The ``(argument, option)`` pairs of a condition file's ``argument: !ref <option>`` lines.

    A real corpus's condition gives its preparation its own options as the
    preparation's arguments (``data_folder: !ref <vox1_folder>``), so that a
    message naming the argument can name the option a user passes.

    Arguments
    ---------
    text : str
        The condition file's text.

    Returns
    -------
    list of tuple
        The pairs, in the file's order.

    Example
    -------
    >>> passed_options("vox1_folder: /data\\nprepare:\\n  - !name:f\\n    data_folder: !ref <vox1_folder>")
    [('data_folder', 'vox1_folder')]
    """
    return re.findall(r"^\s*(\w+):\s*!ref\s*<(\w+)>\s*(?:#.*)?$", text, re.MULTILINE)


def load_condition(overrides, hparams_file):
    """Split the command-line overrides into the condition's and the model's.

    The two files share no key but ``condition``, so that every override has
    one destination; an override of a key neither has is refused, naming the
    closest keys, as is one of a setting the model file leaves unused
    (:func:`unused_settings`) or of ``n_speakers``, which is counted in the
    source manifest, and overrides of numbers, switches and lists are checked
    against their defaults (:func:`typed_overrides`). First the model file
    on its bases must define every key of :data:`COMMON_HPARAMS`, and a
    ``!PLACEHOLDER`` of either file must be given by an override (but those
    of :data:`FILLED_IN_KEYS`), before the files are loaded.

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
        ``(condition_path, condition_hparams, model_overrides, condition_overrides)``.
    """
    overrides = _command_line(overrides, hparams_file)
    path = overrides.pop("condition", DEFAULT_CONDITION)
    if not os.path.isfile(hparams_file):
        fail(hparams_file, "no such model hparams file",
             fix=f"pass one of {', '.join(_recipe_files(MODEL_FILES, exclude=COMMON_HPARAMS))}")
    if not os.path.isfile(path):
        fail(path, "no such condition file", fix="pass --condition=recipes/<name>/condition.yaml, "
                                                 f"one of {', '.join(_recipe_files(CONDITION_FILES))}")
    _check_model_keys(hparams_file)
    keys = set(plain_values(path))
    shared = sorted(keys & set(plain_values(hparams_file)) - {"condition"})
    if shared:
        fail(path, f"defines {shared}, which {hparams_file} defines too, so that an override "
                   "of them could reach only one of the files",
             fix="rename them in the condition file (and in its !ref <...> references)")
    with open(path, encoding="utf-8") as fin:
        text = fin.read()
    known = keys | set(plain_values(hparams_file))
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            others = [name for name in _recipe_files(MODEL_FILES, exclude=COMMON_HPARAMS)
                      if key in plain_values(name)]
            # A real corpus's condition passes its own folders as the preparation's
            # data_folder: those, not the closest spellings, are what was meant.
            passed = list(dict.fromkeys(option for argument, option in passed_options(text)
                                        if argument == key))
            fail(hparams_file, f"--{key} is not a setting of it or of {path}",
                 fix=(f"it is a setting of {', '.join(others)}: train one of them" if others else
                      f"{path} gives its preparation {' and '.join(passed)} as {key}: pass "
                      f"{' or '.join(f'--{k}' for k in passed)}" if passed else
                      f"did you mean {' or '.join(f'--{k}' for k in close)}?" if close else
                      "override a key of these files (hparams/common.yaml documents them)"))
    if "n_speakers" in overrides:
        fail(hparams_file, f"--n_speakers={overrides['n_speakers']} would change nothing: the "
                           "speaker head's classes are counted in the source training manifest",
             fix="leave out --n_speakers (speaker_label says what a class is)")
    _check_used_overrides(hparams_file, [key for key in overrides if key not in keys])
    _check_placeholders(path, text, overrides, "the recipe's README says what")
    _check_placeholders(hparams_file, model_text(hparams_file), [*overrides, *FILLED_IN_KEYS],
                        "hparams/common.yaml says what")
    mine = typed_overrides(path, {k: v for k, v in overrides.items() if k in keys})
    try:
        condition = load_hyperpyyaml(text, mine)
    except ValueError as err:
        fail(path, f"cannot be loaded ({err})",
             fix=f"every !ref <key> must name a key of the file: {', '.join(sorted(keys))}")
    _check_condition_keys(path, condition)
    _check_unread_keys(path, text, keys)
    model = typed_overrides(hparams_file, {k: v for k, v in overrides.items() if k not in keys})
    return path, condition, model, mine


def _command_line(text, hparams_file):
    """The overrides ``{key: value}`` of ``sb.parse_arguments``'s YAML ``text``.

    A word that is no ``--key=value`` (a condition file passed without
    ``--condition=``) leaves text that is no YAML mapping: it is refused.
    """
    try:
        overrides = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        overrides = None
    if not isinstance(overrides, dict):
        fail(hparams_file, f"the arguments after it are no --key=value settings (read as "
                           f"{text.strip()!r})",
             fix=_KEY_VALUE_FIX)
    return overrides


def _recipe_files(pattern, exclude=None):
    """The recipe's files matching ``pattern`` (relative to its folder), but ``exclude``.

    Each named as the command line takes it: relative to the working directory.
    """
    found = sorted(glob.glob(os.path.join(RECIPE_FOLDER, pattern)))
    return [os.path.relpath(f) for f in found if f != exclude]


def _check_placeholders(path, text, given, hint):
    """Refuse the top-level ``!PLACEHOLDER`` keys of a file's ``text`` that ``given`` lacks.

    ``hint`` names where to read what the keys are ("the recipe's README says what").
    """
    tree = yaml.load(text, Loader=_Tagged) or {}
    unset = [key for key, value in tree.items()
             if value == {"!PLACEHOLDER": ""} and key not in given]
    if unset:
        one = len(unset) == 1
        flags = " ".join(f"--{key}=..." for key in unset)
        fail(path, f"{', '.join(unset)} {'is' if one else 'are'} not set (!PLACEHOLDER)",
             fix=f"pass {flags} ({hint} {'it is' if one else 'they are'})")


def _check_model_keys(path):
    """Every top-level key of :data:`COMMON_HPARAMS` in a model file on its bases."""
    missing = sorted(set(plain_values(COMMON_HPARAMS)) - set(plain_values(path)))
    if missing:
        base = os.path.relpath(COMMON_HPARAMS, os.path.dirname(os.path.abspath(path)))
        fail(path, f"model file without {missing}, which the recipe reads",
             fix=f"add `base: {base}` (a path relative to the file, to hparams/common.yaml) "
                 "or define them")


def unused_settings(path):
    """The settings of a model file's bases that it leaves unused, with the objects that took them.

    A model file that defines an object of its bases anew leaves the
    settings that only that object took with no effect:
    ``hparams/ge2e_fbank.yaml``'s ``speaker_head`` takes none of
    ``margin_type``, ``margin`` and ``scale``. Keys whose value is an object
    are left to the code that reads them (``pseudo_labels``).

    Arguments
    ---------
    path : str
        A model hparams file.

    Returns
    -------
    dict
        ``{key: [the objects of its bases that took it]}``.

    Example
    -------
    >>> unused_settings("hparams/ge2e_fbank.yaml")["margin"]
    ['speaker_head']
    >>> unused_settings("hparams/dann_fbank.yaml")
    {}
    """
    merged = yaml.load(model_text(path), Loader=_Tagged) or {}
    used = _referenced_keys(merged)
    unused = {}
    for tree in _own_trees(path):
        for name, value in tree.items():
            for key in _referenced_keys(value) - used:
                if not _built(merged.get(key)):
                    unused.setdefault(key, []).append(name)
    return {key: sorted(set(names)) for key, names in sorted(unused.items())}


def _check_used_overrides(path, keys):
    """Refuse overrides of :func:`unused_settings`: they would change nothing but the
    run's ``hyperparams.yaml``, which would record them."""
    unused = unused_settings(path)
    refused = [key for key in keys if key in unused]
    if refused:
        takers = sorted({name for key in refused for name in unused[key]})
        users = [name for name in _recipe_files(MODEL_FILES, exclude=COMMON_HPARAMS)
                 if not set(refused) & set(unused_settings(name))]
        flags = " ".join(f"--{key}" for key in refused)
        them = "it" if len(refused) == 1 else "them"
        others = f", or train a model file that uses {them}, such as {users[0]}" if users else ""
        fail(path, f"{flags} would change nothing: it defines {', '.join(takers)} anew, "
                   f"without {them}", fix=f"leave out {flags}{others}")


def _own_trees(path):
    """The settings of a model file and of each of its bases, each without the others'."""
    trees = []
    while path:
        with open(path, encoding="utf-8") as fin:
            trees.append(yaml.load(fin, Loader=_Tagged) or {})
        base = trees[-1].pop("base", None)
        path = base and os.path.join(os.path.dirname(path), base)
    return trees


def _referenced_keys(node):
    """The keys that the ``!ref`` and ``!copy`` values of a ``_Tagged`` tree name."""
    if isinstance(node, dict):
        return set().union(*(
            set(re.findall(r"<(\w+)", value))
            if tag in ("!ref", "!copy") and isinstance(value, str) else _referenced_keys(value)
            for tag, value in node.items()))
    if isinstance(node, list):
        return set().union(*map(_referenced_keys, node))
    return set()


def _built(value):
    """Whether a ``_Tagged`` value is an object that hyperpyyaml builds (``!new:``, ``!name:``...)."""
    return isinstance(value, dict) and any(
        str(tag).startswith(("!new:", "!apply:", "!name:")) for tag in value)


def _check_unread_keys(path, text, keys):
    r"""Refuse a top-level key of a condition file that neither the code nor a ``!ref`` reads.

    Such a key (a misspelt one, or a model setting put there) would be
    silently ignored.

    Example
    -------
    >>> text = "condition: c\ndata_folder: d\ndata_foldr: e\nsource_train: !ref <data_folder>/s.csv"
    >>> _check_unread_keys("c.yaml", text, {"condition", "data_folder", "data_foldr",
    ...                                     "source_train"})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: c.yaml: defines ['data_foldr'], which nothing reads
    Fix: remove them, or refer to them (!ref <key>) where they are meant to go; did you mean data_folder?
    """
    read = set(re.findall(r"<(\w+)>", text))
    unread = sorted(set(keys) - set(CONDITION_KEYS) - read)
    if unread:
        close = [match for key in unread
                 for match in difflib.get_close_matches(key, sorted(read), 1)]
        fail(path, f"defines {unread}, which nothing reads",
             fix="remove them, or refer to them (!ref <key>) where they are meant to go"
                 + (f"; did you mean {' or '.join(close)}?" if close else ""))


def _check_condition_keys(path, condition):
    """Every key of :data:`CONDITION_KEYS`, and of :data:`TRIAL_LIST_KEYS` per trial list.

    A trial list's other keys must be of :data:`OPTIONAL_TRIAL_LIST_KEYS`, so that a
    misspelt ``enrolment:`` is not ignored, and its ``min_dcf`` well formed, so that
    it does not fail when the list is scored, after training.
    """
    missing = [key for key in CONDITION_KEYS if key not in condition]
    if missing:
        others = [key for key in condition if key not in CONDITION_KEYS]
        renames = [f"rename {close[0]} to {key}; " for key in missing
                   for close in [difflib.get_close_matches(key, others, 1)] if close]
        fail(path, f"condition file without {', '.join(missing)}",
             fix="".join(renames) + "name the condition, its prepare steps ([] when the "
                 "manifests exist), source_train, target_train and evaluation, as "
                 "recipes/demo/condition.yaml does")
    lists = condition["evaluation"]
    if not isinstance(lists, dict) or not lists:
        fail(path, "evaluation is not a mapping of trial lists",
             fix="give evaluation: one entry per trial list, as recipes/demo/condition.yaml does")
    for name, spec in lists.items():
        missing = [key for key in TRIAL_LIST_KEYS
                   if not isinstance(spec, dict) or key not in spec]
        if missing:
            fail(path, f"trial list {name} of evaluation without {', '.join(missing)}",
                 fix="give each trial list its manifest: and trials: (and enrolment: where "
                     "the trials name enrolment models)")
        known = TRIAL_LIST_KEYS + OPTIONAL_TRIAL_LIST_KEYS
        unknown = [key for key in spec if key not in known]
        if unknown:
            close = [match for key in unknown for match in difflib.get_close_matches(key, known, 1)]
            fail(path, f"trial list {name} of evaluation has keys {unknown} that nothing reads",
                 fix=(f"did you mean {' or '.join(close)}? " if close else "")
                     + f"a trial list names only {', '.join(known)}")
        _check_min_dcf(path, name, spec.get("min_dcf"))


def check_condition_files(path, condition):
    """Refuse a condition that names a data file that is not there, before anything is written.

    Called once the condition's ``prepare`` steps have run, so that it names
    every missing manifest, trial list and enrolment table at once, where
    training would otherwise stop at the first, or after training at an
    evaluation file.

    Arguments
    ---------
    path : str
        The condition file, named in the message.
    condition : dict
        Condition hparams (:func:`local.provenance.condition_files`).

    Raises
    ------
    ManifestError
        Listing each missing file with its role.

    Example
    -------
    >>> check_condition_files("c.yaml", {"source_train": "nowhere/s.csv",
    ...                                  "target_train": "nowhere/t.csv", "evaluation": {}})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: c.yaml: names data files that do not exist
      source_train: nowhere/s.csv
      target_train: nowhere/t.csv
    Fix: prepare them ...
    """
    missing = [f"{role}: {file}" for role, file in condition_files(condition).items()
               if not os.path.isfile(file)]
    if missing:
        fail(path, "names data files that do not exist", rows=missing,
             fix="prepare them (the prepare: steps of the condition, or the data_prep command "
                 "of its README), or pass the folder they are in (such as --data_folder=...)")


def _check_min_dcf(path, name, settings):
    """A trial list's ``min_dcf``: None, or a list of ``[p_target, c_miss, c_fa]``."""
    if settings is None:
        return

    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def valid(setting):
        return (isinstance(setting, list) and len(setting) == 3 and all(map(number, setting))
                and 0 < setting[0] < 1 and setting[1] > 0 and setting[2] > 0)

    if not isinstance(settings, list) or not settings or not all(map(valid, settings)):
        fail(path, f"trial list {name} of evaluation has min_dcf: {settings}, not a list of "
                   "[p_target, c_miss, c_fa] settings",
             fix="give min_dcf a list of settings, each p_target in (0, 1) and two costs "
                 "above 0, such as min_dcf: [[0.01, 10, 1]] (SdSV's), or leave it out for "
                 "VoxCeleb's p_target 0.01 and 0.001")


def check_device(device):
    """Refuse a CUDA device that this machine does not have, before any work.

    Arguments
    ---------
    device : str or None
        The ``--device`` option (None: SpeechBrain chooses).

    Raises
    ------
    ManifestError
        Naming the device and the GPUs there are.

    Example
    -------
    >>> check_device("cpu")
    >>> check_device(f"cuda:{torch.cuda.device_count()}")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --device=cuda:...: this machine has ... CUDA GPU...
    Fix: pass --device=cpu...
    """
    if device is None or not str(device).startswith("cuda"):
        return
    count = torch.cuda.device_count()
    if (torch.device(device).index or 0) >= count:
        fail(f"--device={device}", f"this machine has {count} CUDA GPUs that torch can use",
             fix="pass --device=cpu" + (f", or cuda:0 to cuda:{count - 1}" if count else ""))


# SpeechBrain's deprecated flags for --precision, which its Brain applies
# without setting run_opts["precision"]: a run's settings would record fp32.
DEPRECATED_PRECISION_FLAGS = {"auto_mix_prec": "fp16", "bfloat16_mix_prec": "bf16"}
# What a run on the CPU may pass instead of fp16.
CPU_PRECISIONS = "bf16 (mixed precision on the CPU) or fp32"


def check_precision(run_opts, hparams_file=None, hparams=None):
    """Refuse fp16 on the CPU before any work, as SpeechBrain's Brain would only once built,
    and SpeechBrain's deprecated precision flags, which the run's settings would not record.

    Each option is taken as the Brain takes it: the command line's, else the
    model file's, else SpeechBrain's default.

    Arguments
    ---------
    run_opts : dict
        SpeechBrain's run options (``device``, ``precision``, ``eval_precision``,
        the flags of :data:`DEPRECATED_PRECISION_FLAGS`); without a ``device``,
        the one SpeechBrain infers. A ``RunOptions`` gives those of its
        ``overridden_args``, a dict those it has.
    hparams_file : str, optional
        The model hparams file, named in the messages on its settings.
    hparams : dict, optional
        Its plain values (:func:`plain_values`).

    Raises
    ------
    ManifestError
        Naming the option and bf16, the CPU's mixed precision, or the flag
        and its ``--precision``.

    Example
    -------
    >>> check_precision({"device": "cpu", "precision": "bf16"})
    >>> check_precision({"device": "cpu", "eval_precision": "fp16"})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --eval_precision=fp16: fp16 needs a CUDA device; this run is on the CPU
    Fix: pass --eval_precision=bf16 (mixed precision on the CPU) or fp32
    >>> check_precision({"device": "cpu", "bfloat16_mix_prec": True})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --bfloat16_mix_prec: a deprecated SpeechBrain flag, which the run's settings would not record
    Fix: pass --precision=bf16 instead
    >>> check_precision({"device": "cpu", "auto_mix_prec": True})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --auto_mix_prec: a deprecated SpeechBrain flag, which the run's settings would not record
    Fix: pass --precision=bf16 (mixed precision on the CPU) or fp32 instead
    >>> check_precision({"device": "cpu"}, "m.yaml", {"bfloat16_mix_prec": True})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: m.yaml: bfloat16_mix_prec: True is a deprecated SpeechBrain flag, which the run's settings would not record
    Fix: remove it and set precision: bf16 instead
    """
    options = _brain_run_options(run_opts, hparams or {})
    on_cpu = str(options["device"] or infer_device()).startswith("cpu")
    for flag, precision in DEPRECATED_PRECISION_FLAGS.items():
        if options[flag]:
            instead = CPU_PRECISIONS if on_cpu and precision == "fp16" else precision
            problem = "a deprecated SpeechBrain flag, which the run's settings would not record"
            if _given(run_opts, flag):
                fail(f"--{flag}", problem, fix=f"pass --precision={instead} instead")
            fail(hparams_file, f"{flag}: {options[flag]} is {problem}",
                 fix=f"remove it and set precision: {instead} instead")
    if not on_cpu:
        return
    for option in ("precision", "eval_precision"):
        if options[option] != "fp16":
            continue
        if _given(run_opts, option):
            fail(f"--{option}=fp16", "fp16 needs a CUDA device; this run is on the CPU",
                 fix=f"pass --{option}={CPU_PRECISIONS}")
        fail(hparams_file, f"{option}: fp16 needs a CUDA device; this run is on the CPU",
             fix=f"set {option}: {CPU_PRECISIONS}, or pass --{option}=bf16")


def _given(run_opts, name):
    """Whether the command line gives the run option ``name`` (a dict: whether it has it)."""
    return name in getattr(run_opts, "overridden_args", run_opts)


def _brain_run_options(run_opts, hparams):
    """The precision options as SpeechBrain's Brain takes them: the command line's, else the
    model file's, else its defaults."""
    defaults = RunOptions()
    return {name: run_opts[name] if _given(run_opts, name) else hparams.get(name, defaults[name])
            for name in ("device", "precision", "eval_precision", *DEPRECATED_PRECISION_FLAGS)}


def _check_loader_options(hparams_file, loader):
    """Refuse ``train_dataloader_options`` that are no mapping of DataLoader options.

    YAML reads ``{num_workers:4}``, without a space after the colon, as the
    key ``num_workers:4``, and a shell splits an unquoted ``{a: 1,b: 2}``
    into two arguments: either would stop the run at its first epoch, after
    its records are written, with a DataLoader's traceback.

    Example
    -------
    >>> _check_loader_options("m.yaml", {"num_workers:4": None})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: m.yaml: train_dataloader_options ['num_workers:4'] are no options of torch's DataLoader; did you mean num_workers?
    Fix: write each as key: value, a space after the colon, in one quoted argument: --train_dataloader_options="{batch_size: 16, num_workers: 4}"
    """
    fix = ("write each as key: value, a space after the colon, in one quoted argument: "
           '--train_dataloader_options="{batch_size: 16, num_workers: 4}"')
    if not isinstance(loader, dict):
        fail(hparams_file, f"--train_dataloader_options={loader} is no mapping of DataLoader "
                           "options", fix=fix)
    unknown = sorted(str(key) for key in set(loader) - LOADER_OPTIONS)
    if unknown:
        close = [match for key in unknown
                 for match in difflib.get_close_matches(key, sorted(LOADER_OPTIONS), 1)]
        fail(hparams_file, f"train_dataloader_options {unknown} are no options of torch's "
                           "DataLoader" + (f"; did you mean {' or '.join(close)}?" if close else ""),
             fix=fix)


def _check_optimiser_settings(hparams_file, hparams):
    """Refuse an ``lr`` of 0 or less, which trains nothing, and a negative ``disc_lr``,
    ``ssl_lr`` (when fine-tuning) or ``weight_decay``, which torch's optimisers refuse
    only when built, after the run's records are written.

    Arguments
    ---------
    hparams_file : str
        The model hparams file, named in the messages.
    hparams : dict
        Its plain values with the overrides (:func:`plain_values`).
    """
    keys = ["lr", "disc_lr", "weight_decay"] + (["ssl_lr"] if hparams.get("freeze_ssl") is False
                                                else [])
    for key in keys:
        value = hparams[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # typed_overrides has refused an override that is not a number
        fix = f"pass a value such as --{key}={referenced_defaults(hparams_file)[key]}"
        if key == "lr" and not value > 0:
            fail(hparams_file, f"--lr={value}: the learning rate must be above 0 (0 trains "
                               "nothing, and torch's optimisers refuse a negative one)", fix=fix)
        if not value >= 0:
            fail(hparams_file, f"--{key}={value} is refused by torch's optimisers: it must be 0 "
                               "or more", fix=fix)


def check_trainable(hparams_file, overrides, condition, run_opts=None):
    """Refuse settings under which training could not take a step, before any work.

    Arguments
    ---------
    hparams_file : str
        The model hparams file, named in the messages.
    overrides : dict
        The model overrides. Read with them (not loaded, which would build
        the models and their folders): ``number_of_epochs``, ``batch_size``,
        ``eval_batch_size``, ``crop_seconds``, ``min_embed_seconds``, ``coral_weight``,
        ``cache_ssl_features``, ``freeze_ssl`` (and whether :data:`FINE_TUNING_KEYS` are
        overridden), ``lr``, ``disc_lr``, ``ssl_lr``, ``weight_decay``, ``train_dataloader_options``
        (whose ``batch_size`` must be ``batch_size``).
    condition : dict
        Condition hparams: ``source_train``, ``target_train``.
    run_opts : speechbrain.core.RunOptions, optional
        A training run's options, for its ``grad_accumulation_factor``.

    Raises
    ------
    ManifestError
        Naming the option and a value that trains.
    """
    hparams = plain_values(hparams_file, overrides)
    # eval_batch_size is read only when whole utterances are embedded: for the
    # pseudo-labels after an epoch, for verification after training.
    for key, fault in (("number_of_epochs", "trains nothing"), ("batch_size", "trains nothing"),
                       ("eval_batch_size", "embeds no target or evaluation audio")):
        value = hparams[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(hparams_file, f"--{key}={value} {fault}",
                 fix=f"pass an integer of at least 1, such as --{key}="
                     f"{plain_values(hparams_file)[key] or 1}")
    if hparams["coral_weight"] and hparams["batch_size"] < 2:
        fail(hparams_file, f"--coral_weight={hparams['coral_weight']} compares the covariances "
                           "of each batch's source and target embeddings, and a batch of "
                           "--batch_size=1 has none",
             fix="pass --batch_size=2 or more, or --coral_weight=0")
    _check_optimiser_settings(hparams_file, hparams)
    loader = hparams["train_dataloader_options"]
    _check_loader_options(hparams_file, loader)
    # Each epoch's pairing is drawn in the main process (PairedDataset.set_epoch):
    # workers kept across epochs hold the first epoch's copy of the dataset.
    # And the domain losses' schedule counts an epoch's steps in whole batches.
    for key, value, fault in (
            ("persistent_workers", True, "keeps the data loader's workers across epochs, "
                                         "and with them the first epoch's pairing of source "
                                         "and target utterances for every epoch"),
            ("drop_last", False, "makes a last, smaller batch that the domain losses' "
                                 "schedule does not count")):
        if loader.get(key, not value) is value:
            fail(hparams_file, f"train_dataloader_options {key}: {value} {fault}",
                 fix=f"leave out {key} (default {not value})" if key == "persistent_workers"
                 else f"keep {key}: {not value}")
    if loader.get("batch_size", hparams["batch_size"]) != hparams["batch_size"]:
        fail(hparams_file, f"train_dataloader_options batch_size: {loader['batch_size']} differs "
                           f"from batch_size ({hparams['batch_size']}), by which the domain "
                           "losses' schedule counts an epoch's steps",
             fix=f"pass --batch_size={loader['batch_size']} instead")
    if hparams.get("cache_ssl_features") and hparams.get("freeze_ssl") is False:
        fail(hparams_file, f"--cache_ssl_features=True: {FROZEN_ONLY}", fix=FROZEN_ONLY_FIX)
    fine_tuning = [f"--{key}={overrides[key]}" for key in FINE_TUNING_KEYS if key in overrides]
    if fine_tuning and hparams.get("freeze_ssl"):
        fail(hparams_file, f"{' '.join(fine_tuning)} would change nothing: "
                           f"{'it sets' if len(fine_tuning) == 1 else 'they set'} the "
                           "fine-tuning of the SSL model, which freeze_ssl: True keeps fixed",
             fix="pass --freeze_ssl=False to fine-tune it, or leave out "
                 + " ".join(option.split("=")[0] for option in fine_tuning))
    shortest = hparams["min_embed_seconds"]
    if not hparams["crop_seconds"] >= shortest:
        fail(hparams_file, f"--crop_seconds={hparams['crop_seconds']} is shorter than the "
                           f"shortest input the models take, min_embed_seconds ({shortest})",
             fix=f"pass --crop_seconds={shortest} or more (the default is 2.0)")
    sizes = {domain: len(read_manifest(condition[f"{domain}_train"]))
             for domain in ("source", "target")}
    # Each step pairs a batch of source crops with one of target crops, and
    # the longer set sets the epoch; in DDP each process takes its share of the
    # pairs. The GE2E head's batch is ge2e_speakers * ge2e_utterances, and it
    # refuses a --batch_size; its batches are dealt out whole, the epoch's
    # rounded up to as many for every process (speaker_batches_per_epoch), so
    # that it needs one batch of pairs in all.
    processes = training_processes()
    ge2e = "ge2e_speakers" in hparams
    pairs = max(sizes.values()) // (1 if ge2e else processes)
    if pairs < hparams["batch_size"]:
        share = (f", {pairs} for each of {processes} processes"
                 if processes > 1 and not ge2e else "")
        fail(hparams_file, f"--batch_size={hparams['batch_size']} is more than the {pairs} "
                           f"training pairs of an epoch ({sizes['source']} source, "
                           f"{sizes['target']} target utterances{share}): no step would run",
             fix=(f"pass --ge2e_speakers and --ge2e_utterances whose product is {pairs} or less"
                  if ge2e else f"pass --batch_size={pairs} or less")
             + ", or train on more utterances")
    steps = (speaker_batches_per_epoch(pairs, hparams["batch_size"], processes) // processes
             if ge2e else pairs // hparams["batch_size"])
    accumulation = (run_options(run_opts, hparams, ("grad_accumulation_factor",))
                    ["grad_accumulation_factor"] if run_opts else 1)
    # The optimisers step at every accumulation-th step of an epoch (SpeechBrain
    # clears the gradients at its end), and 0 fails at the first.
    if not 1 <= accumulation <= steps:
        fail(hparams_file, f"--grad_accumulation_factor={accumulation} is not from 1 to the "
                           f"{steps} steps of an epoch: the optimisers would never step",
             fix=f"pass --grad_accumulation_factor=1 to {steps}, or a smaller "
                 + ("--ge2e_speakers or --ge2e_utterances" if ge2e else "--batch_size"))


def check_ssl_dim(hparams_file, hparams):
    """Refuse an ``ssl_dim`` that is not the hidden size of the SSL model loaded, before any work.

    The encoder is built for ``ssl_dim`` inputs; a model of another size
    (wavlm-large and other large models: 1,024) would otherwise fail at the
    first training step, after the data checks and the feature cache.

    Arguments
    ---------
    hparams_file : str
        The model hparams file, named in the message.
    hparams : dict
        The loaded model hparams: ``frontend`` (an SSL front end's
        ``output_size`` and ``source``) and, for an SSL front end, ``ssl_dim``.

    Raises
    ------
    ManifestError
        Naming the SSL model, its hidden size and the override to pass.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> frontend = SimpleNamespace(output_size=1024, source="microsoft/wavlm-large")
    >>> check_ssl_dim("m.yaml", {"frontend": frontend, "ssl_dim": 768})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: m.yaml: --ssl_dim=768 is not the hidden size of microsoft/wavlm-large, 1024
    Fix: pass --ssl_dim=1024
    """
    frontend = hparams["frontend"]
    size = getattr(frontend, "output_size", None)
    if size is not None and size != hparams["ssl_dim"]:
        fail(hparams_file, f"--ssl_dim={hparams['ssl_dim']} is not the hidden size of "
                           f"{frontend.source}, {size}", fix=f"pass --ssl_dim={size}")


def typed_overrides(path, overrides):
    """Overrides of a file's numbers, switches and lists, checked against the types of its defaults.

    For a key whose default is a number, a string in exponent notation
    without a dot (``--lr=1e30``, which YAML 1.1 reads as text) is the number
    it means; nothing else is converted, so that a value is never guessed.
    Any other value that is not a number is refused, but null for the keys
    of :data:`NULLABLE_KEYS`. Where the default is an
    integer, so must the value be: a whole number (``--seed=2.0``) is the
    integer it means, another (``--seed=1.5``) is refused, but for the keys
    of :data:`FRACTIONAL_KEYS`. A key whose default is True or False takes
    only one of them, and a key whose default is a list takes only a list
    (``--pseudo_label_epochs=[3]``), but for those of
    :data:`SCALAR_LIST_KEYS`. A key whose default is another key
    (``disc_lr: !ref <lr>``) is checked as that one; keys without such a
    default (null, other tagged values) pass unchecked.

    Arguments
    ---------
    path : str
        The hparams or condition file whose keys the overrides set.
    overrides : dict
        ``{key: value}``, as the YAML of the command line read them.

    Returns
    -------
    dict
        The overrides, exponent-notation strings and whole numbers of
        integer keys converted.

    Raises
    ------
    ManifestError
        Naming the key, its value and what it needs.

    Example
    -------
    >>> typed_overrides("hparams/dann_fbank.yaml", {"lr": "1e-3", "score_norm": "asnorm"})
    {'lr': 0.001, 'score_norm': 'asnorm'}
    >>> typed_overrides("hparams/dann_fbank.yaml", {"seed": 2.0, "max_embed_seconds": 90.5})
    {'seed': 2, 'max_embed_seconds': 90.5}
    >>> typed_overrides("hparams/dann_fbank.yaml", {"max_embed_seconds": None})
    {'max_embed_seconds': None}
    >>> typed_overrides("hparams/dann_fbank.yaml", {"seed": 1.5})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: hparams/dann_fbank.yaml: --seed=1.5 is not an integer (its default is 1986)
    Fix: pass a whole number, such as --seed=1986
    """
    defaults = referenced_defaults(path)
    checked = dict(overrides)
    for key, value in overrides.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                fail(path, f"--{key}={value} is not True or False (its default is {default})",
                     fix=f"pass --{key}=True or --{key}=False")
        elif isinstance(default, (int, float)) and not (value is None and key in NULLABLE_KEYS):
            checked[key] = _number(path, key, value, default)
        elif isinstance(default, list) and key not in SCALAR_LIST_KEYS:
            if not isinstance(value, list):
                fail(path, f"--{key}={value} is not a list (its default is {default})",
                     fix=f"pass a list, such as --{key}=[{'' if value is None else value}]")
    return checked


def _number(path, key, value, default):
    """The number an override of a key with a number ``default`` means, or a :func:`fail`."""
    if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(path, f"--{key}={value} is not a number (its default is {default})",
             fix=f"pass a number, such as --{key}={default}")
    if not isinstance(default, int) or key in FRACTIONAL_KEYS or isinstance(value, int):
        return value
    if not value.is_integer():
        fail(path, f"--{key}={value} is not an integer (its default is {default})",
             fix=f"pass a whole number, such as --{key}={default}")
    return int(value)
