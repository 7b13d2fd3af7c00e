"""Modules of ``local/`` import downward only, and no module imports another's private names.

The layers (ARCHITECTURE.md): ``local/data``, ``local/domain_statistics.py``
and ``local/embedding.py`` at the bottom, beside the modules every layer uses
(``local/errors.py``, ``local/settings.py``, ...); ``local/model`` and
``local/evaluation`` above them, the model never importing the evaluation;
``local/experiment.py`` and ``local/export.py`` on top; the scripts and
``data_prep/`` outside ``local/``, which never imports them.
Only the tests import ``train_dann.py``, to run it.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOCAL = sorted((ROOT / "local").rglob("*.py"))
OUTSIDE = ("data_prep", "train_dann", "evaluate", "benchmarks", "tests")
TOP = ("local.experiment", "local.export")
MIDDLE = ("local.model", "local.evaluation")
# Every module of local/ outside the middle and top layers: the bottom one.
BOTTOM = sorted({".".join(path.relative_to(ROOT).parts[:2]).removesuffix(".py")
                 for path in LOCAL} - {"local.__init__", *MIDDLE, *TOP})
# What the modules of a layer (a module-name prefix) must not import.
FORBIDDEN = {
    "local": OUTSIDE,
    "local.model": ("local.evaluation", *TOP),
    "local.evaluation": TOP,
    **{bottom: (*MIDDLE, *TOP) for bottom in BOTTOM},
}
PYTHON_FILES = sorted([*LOCAL, *(ROOT / "data_prep").rglob("*.py"),
                       *(ROOT / "benchmarks").rglob("*.py"),
                       ROOT / "train_dann.py", ROOT / "evaluate.py"])


def module_name(path):
    """``local.model.dann_brain`` of ``local/model/dann_brain.py``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path):
    """``(line, module, name or None)`` of every import of a file, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                # ``from local import evaluation`` imports the module local.evaluation.
                yield node.lineno, node.module, alias.name


def is_within(module, prefix):
    return module == prefix or module.startswith(prefix + ".")


def is_private(name):
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", LOCAL, ids=module_name)
def test_local_imports_point_down(path):
    name = module_name(path)
    rules = [banned for layer, banned in FORBIDDEN.items() if is_within(name, layer)]
    wrong = [f"line {line}: {module}{'.' + imported if imported else ''}"
             for line, module, imported in imports(path)
             for target in {module, f"{module}.{imported}"}
             if any(is_within(target, prefix) for banned in rules for prefix in banned)]
    assert not wrong, f"{name} imports above its layer: {sorted(set(wrong))}"


@pytest.mark.parametrize("path", PYTHON_FILES, ids=module_name)
def test_no_private_name_is_imported(path):
    wrong = [f"line {line}: {module} {imported or ''}"
             for line, module, imported in imports(path)
             if any(is_private(part) for part in module.split("."))
             or (imported and is_private(imported))]
    assert not wrong, f"{module_name(path)} imports private names: {wrong}"


@pytest.mark.parametrize("path", PYTHON_FILES, ids=module_name)
def test_the_recipe_script_is_no_library(path):
    wrong = [line for line, module, _ in imports(path) if is_within(module, "train_dann")]
    assert not wrong, f"{module_name(path)} imports train_dann.py (lines {wrong}): use local/"


def test_the_rules_catch_what_they_forbid(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("from local import evaluation\nimport train_dann\n"
                      "def f():\n    from local.data.manifest_io import _trial_lines\n")
    found = list(imports(source))
    assert found == [(1, "local", "evaluation"), (2, "train_dann", None),
                     (4, "local.data.manifest_io", "_trial_lines")]
    assert any(is_within(f"{m}.{n}", "local.evaluation") for _, m, n in found)
    assert is_private("_trial_lines") and not is_private("__version__")
