"""Each benchmark script measures the package of its own checkout, installed or not."""

import glob
import os
import site
import subprocess
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")
# Imports each script as `python benchmarks/<script>.py` runs it (its folder
# first on the path), with nothing of the repository imported before it.
CHILD = """
import importlib, sys
base = [sys.argv[1], *sys.path]
for script in sys.argv[2:]:
    sys.path[:] = base
    for name in [name for name in sys.modules
                 if name.split(".")[0] in ("local", "data_prep", "tests", "benchmarks", "common",
                                           "resident") or name.startswith("bench_")]:
        del sys.modules[name]
    try:
        importlib.import_module(script)
    except ImportError as err:
        print(script, err)
"""


def test_every_script_imports_the_package_without_an_installed_one(tmp_path):
    scripts = sorted(os.path.basename(path)[:-3]
                     for path in glob.glob(os.path.join(BENCHMARKS, "*.py")))
    # -S: no site-packages .pth files, so no installed (or editable) copy of the package;
    # the libraries come from the site-packages folders on PYTHONPATH.
    done = subprocess.run([sys.executable, "-S", "-c", CHILD, BENCHMARKS, *scripts],
                          cwd=tmp_path, capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages())))
    assert done.stdout == ""
