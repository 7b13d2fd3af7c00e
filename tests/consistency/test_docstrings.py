"""Docstrings of the recipe's code follow SpeechBrain's numpy style.

Every module of ``local/`` and ``data_prep/`` has a docstring, and so has
every public function, class and method (name not starting with ``_``;
functions nested in functions are not public). One that takes arguments
(for a class: its ``__init__``'s) has an ``Arguments`` section, underlined
with dashes, that lists exactly those arguments, one ``name : type`` entry
each, as SpeechBrain's own code does. An override inherits the documentation
of the method it overrides: of a class of the same module, or of one of
``speechbrain.Brain``'s methods in a Brain (it still says what it does).
"""

import ast
import pathlib
import re

import pytest
import speechbrain as sb

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDERS = ("local", "data_prep")
# Methods of SpeechBrain's Brain, whose arguments its own docstrings document.
BRAIN_METHODS = {name for name in dir(sb.Brain) if not name.startswith("_")}
# A section header: a title line followed by a line of dashes.
SECTION = re.compile(r"^(\w[\w ]*)\n-{3,}$", re.M)


def documented_arguments(docstring):
    """Names listed in the ``Arguments`` section, or None without one."""
    sections = list(SECTION.finditer(docstring))
    for index, header in enumerate(sections):
        if header.group(1) != "Arguments":
            continue
        end = sections[index + 1].start() if index + 1 < len(sections) else len(docstring)
        entries = [line for line in docstring[header.end():end].splitlines()
                   if line.strip() and not line[0].isspace()]
        return {name.strip().lstrip("*") for entry in entries
                for name in entry.split(":")[0].split(",")}
    return None


def signature(function, is_method):
    """Argument names of a function definition, without ``self``/``cls``."""
    spec = function.args
    names = [a.arg for a in spec.posonlyargs + spec.args + spec.kwonlyargs]
    names += [a.arg for a in (spec.vararg, spec.kwarg) if a is not None]
    if is_method and names and names[0] in ("self", "cls"):
        names = names[1:]
    return names


def public_definitions(tree):
    """``(name, node, arguments)`` of each public function, class and method.

    ``arguments`` is None for an override of a documented method.
    """
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in tree.body:
        if not isinstance(node, (*functions, ast.ClassDef)) or node.name.startswith("_"):
            continue
        if isinstance(node, functions):
            yield node.name, node, signature(node, is_method=False)
        else:
            methods = [m for m in node.body if isinstance(m, functions)]
            init = [m for m in methods if m.name == "__init__"]
            yield node.name, node, signature(init[0], is_method=True) if init else []
            inherited = inherited_methods(node, classes)
            for method in methods:
                if not method.name.startswith("_"):
                    yield (f"{node.name}.{method.name}", method,
                           None if method.name in inherited else signature(method, True))


def inherited_methods(node, classes):
    """Names of the methods a class inherits from its bases in the module, or from Brain."""
    names = set()
    for base in node.bases:
        base_name = ast.unparse(base)
        if base_name.endswith("Brain"):
            names |= BRAIN_METHODS
        elif base_name in classes:
            parent = classes[base_name]
            names |= {m.name for m in parent.body if isinstance(m, ast.FunctionDef)}
            names |= inherited_methods(parent, classes)
    return names


def docstring_problems(source, filename):
    """Every breach of the docstring rule in a module's source, one line each."""
    tree = ast.parse(source, filename)
    problems = [] if ast.get_docstring(tree) else [f"{filename}: no module docstring"]
    for name, node, arguments in public_definitions(tree):
        where = f"{filename}:{node.lineno} {name}"
        docstring = ast.get_docstring(node)
        if arguments is None:
            if isinstance(node, ast.FunctionDef) and node.name in BRAIN_METHODS and not docstring:
                problems.append(f"{where}: no docstring (say what this Brain does here)")
            continue
        if not docstring:
            problems.append(f"{where}: no docstring")
            continue
        documented = documented_arguments(docstring)
        if arguments and documented is None:
            problems.append(f"{where}: no 'Arguments' section (underlined with dashes) for {arguments}")
        elif documented is not None and set(documented) != set(arguments):
            missing = sorted(set(arguments) - documented)
            extra = sorted(documented - set(arguments))
            problems.append(f"{where}: Arguments section lacks {missing}, names non-arguments {extra}")
    return problems


MODULES = sorted(path.relative_to(ROOT).as_posix()
                 for folder in FOLDERS for path in (ROOT / folder).rglob("*.py")
                 if path.stat().st_size)


@pytest.mark.parametrize("module", MODULES)
def test_public_definitions_have_numpy_docstrings(module):
    problems = docstring_problems((ROOT / module).read_text(encoding="utf-8"), module)
    assert not problems, "Docstrings to write or fix:\n" + "\n".join(problems)


SAMPLE = '''"""A module."""


def bare(x):
    return x


def no_section(x):
    """Add one."""
    return x + 1


def stale(x, *rest):
    """Stale.

    Arguments
    ---------
    x : int
        A number.
    y : int
        Gone.
    """


def good(x, y=1, **options):
    """Good.

    Arguments
    ---------
    x, y : int
        Numbers.
    **options
        Passed on.

    Returns
    -------
    int
        Their sum.
    """
    def inner(z):
        return z
    return x + y


def no_arguments():
    """Nothing to list."""


class Model:
    """A model.

    Arguments
    ---------
    size : int
        Width.
    """

    def __init__(self, size):
        self.size = size

    def forward(self, x):
        return x

    def _private(self, x):
        return x


class _Hidden:
    def method(self, x):
        return x
'''


def test_rule_flags_exactly_the_bad_definitions():
    problems = [re.sub(r":\d+ ", " ", p) for p in docstring_problems(SAMPLE, "sample.py")]
    assert problems == [
        "sample.py bare: no docstring",
        "sample.py no_section: no 'Arguments' section (underlined with dashes) for ['x']",
        "sample.py stale: Arguments section lacks ['rest'], names non-arguments ['y']",
        "sample.py Model.forward: no docstring",
    ]
    assert docstring_problems("def f():\n    pass\n", "m.py") == [
        "m.py: no module docstring", "m.py:1 f: no docstring"]
