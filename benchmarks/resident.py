"""The peak resident memory of this process, as the benchmarks measure it.

Read from Linux's ``VmHWM`` (``/proc/self/status``), not from ``getrusage``'s
``ru_maxrss``: a process started by ``subprocess`` inherits its parent's
``ru_maxrss`` through fork and exec, so a child measuring a call smaller than
its parent would report the parent's memory. ``VmHWM`` starts afresh with
the new program, and writing 5 to ``/proc/self/clear_refs`` resets it.
"""


def peak_resident_mib():
    """The process's peak resident set size since it started or was reset, in MiB."""
    with open("/proc/self/status", encoding="ascii") as fin:
        kib = next(line.split()[1] for line in fin if line.startswith("VmHWM:"))
    return int(kib) / 1024


def reset_peak_resident():
    """Make the current resident set size the process's peak."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fout:
        fout.write("5")
