"""The benchmarks' peak memory: each process's own, not its parent's."""

import os
import subprocess
import sys

import numpy as np

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "benchmarks")
CHILD = f"""
import sys
sys.path.insert(0, {BENCHMARKS!r})
from resident import peak_resident_mib
print(peak_resident_mib())
"""


def test_a_child_reports_its_own_peak_not_its_parents(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    from resident import peak_resident_mib

    held = np.ones(64 * 2**20 // 8)  # 64 MiB held by this process while the child runs
    child = float(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                                 check=True).stdout)
    assert held.sum() > 0
    # A bare interpreter peaks well below a test process holding numpy, torch and 64 MiB.
    assert child < peak_resident_mib() - 64


def test_reset_makes_the_current_size_the_peak(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)
    from resident import peak_resident_mib, reset_peak_resident

    spike = np.ones(128 * 2**20 // 8)
    spike[::512] = 2.0  # touch every page
    del spike
    before_reset = peak_resident_mib()
    reset_peak_resident()
    assert peak_resident_mib() < before_reset - 100
