"""Docstrings of the recipe's code follow SpeechBrain's numpy style.

Every module of ``local/`` and ``data_prep/`` has a docstring, and so has
every public function, class and method (name not starting with ``_``;
functions nested in functions are not public). One that takes arguments
(for a class: its ``__init__``'s) has an ``Arguments`` section, underlined
with dashes, that lists exactly those arguments, one ``name : type`` entry
each, as SpeechBrain's own code does.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = ("local", "data_prep")
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
    """``(name, node, arguments)`` of each public function, class and method."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if not isinstance(node, (*functions, ast.ClassDef)) or node.name.startswith("_"):
            continue
        if isinstance(node, functions):
            yield node.name, node, signature(node, is_method=False)
        else:
            methods = [m for m in node.body if isinstance(m, functions)]
            init = [m for m in methods if m.name == "__init__"]
            yield node.name, node, signature(init[0], is_method=True) if init else []
            for method in methods:
                if not method.name.startswith("_"):
                    yield f"{node.name}.{method.name}", method, signature(method, is_method=True)


def docstring_problems(source, filename):
    """Every breach of the docstring rule in a module's source, one line each."""
    tree = ast.parse(source, filename)
    problems = [] if ast.get_docstring(tree) else [f"{filename}: no module docstring"]
    for name, node, arguments in public_definitions(tree):
        where = f"{filename}:{node.lineno} {name}"
        docstring = ast.get_docstring(node)
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
