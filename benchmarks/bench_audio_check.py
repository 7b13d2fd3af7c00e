"""Start-up of a training run: the audio check of a manifest of 10^5 files.

With ``check_audio: True`` a run opens every audio file of every manifest
before training. On a synthetic manifest of ``--files`` short wav files (100
per speaker folder), in one run:

* before: the validator of commit c43640a, the last before the check was
  made once per manifest version (``git show c43640a:data_prep/manifest.py``),
  one file after another, on every run;
* cold: :func:`local.data.validation.check_manifest_audio_once` without a stamp,
  one thread (``workers=1``);
* parallel cold: the same with the default thread pool;
* warm: the same again, finding the stamp of the passed check (the manifest
  is hashed, its wav column read and each file stat'ed);
* stat pass: :func:`local.data.validation.audio_stat_digest` alone, the
  part of the warm check that vouches for the audio files.

``--skip_before`` leaves out the validator before (8 minutes at 10^5 files
on 2 busy cores).

Every variant reads the manifest. The files were just written, so the
operating system's file cache holds them in every variant: "cold" means not
stamped, not read from disk; on a disk or network file system that has not
seen the files, each header read waits for the storage, which threads overlap.

Run from the repository root (2 to 10 minutes on 2 CPU cores, with their load;
benchmarks/README.md)::

    .venv/bin/python benchmarks/bench_audio_check.py [--files 100000] [--skip_before]

The last lines print the time ratios against the validator before and
against the cold check.
"""

import argparse
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile  # noqa: E402

from local.data.manifest_io import write_manifest
from local.data.validation import audio_stat_digest, check_manifest_audio_once

RATE = 16000
SECONDS = 0.1
PER_SPEAKER = 100
BEFORE = "c43640a"


def write_corpus(folder, files):
    """``files`` wav files of ``SECONDS`` in speaker folders, and their manifest."""
    wave = np.random.default_rng(0).uniform(-0.1, 0.1, int(RATE * SECONDS))
    encoded = io.BytesIO()
    soundfile.write(encoded, wave, RATE, subtype="PCM_16", format="WAV")
    rows = []
    for index in range(files):
        speaker = f"spk{index // PER_SPEAKER:05d}"
        path = os.path.join(folder, "wav", speaker, f"{index:07d}.wav")
        if index % PER_SPEAKER == 0:
            os.makedirs(os.path.dirname(path))
        with open(path, "wb") as out:
            out.write(encoded.getvalue())
        rows.append({"ID": f"{speaker}_{index:07d}", "duration": SECONDS, "wav": path,
                     "start": 0, "stop": wave.size, "spk_id": speaker, "domain": "synthetic",
                     "sample_rate": RATE})
    manifest = os.path.join(folder, "train.csv")
    write_manifest(rows, manifest)
    return manifest


def validator_before(folder):
    """data_prep/manifest.py of commit ``BEFORE``, imported as a module of its own."""
    source = subprocess.run(["git", "show", f"{BEFORE}:data_prep/manifest.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = os.path.join(folder, "manifest_before.py")
    with open(path, "w", encoding="utf-8") as out:
        out.write(source)
    spec = importlib.util.spec_from_file_location("manifest_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(function, *args, **kwargs):
    """``(result, wall seconds, CPU seconds of all the process's threads)``."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--skip_before", action="store_true",
                        help="leave out the validator before")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    folder = tempfile.mkdtemp()
    try:
        _, seconds, _ = timed(write_corpus, folder, args.files)
        print(f"wrote {args.files:,} files of {SECONDS} s and their manifest in {seconds:.0f} s")
        manifest = os.path.join(folder, "train.csv")
        stamp = f"{manifest}.audio_ok"
        times = {}
        if not args.skip_before:
            before = validator_before(folder)
            _, *times["before (serial, every run)"] = timed(before.validate, manifest)
        _, *times["cold, 1 thread"] = timed(check_manifest_audio_once, manifest, workers=1)
        os.remove(stamp)
        checked, *times["cold, thread pool"] = timed(check_manifest_audio_once, manifest)
        assert checked and os.path.isfile(stamp)
        checked, *times["warm (stamped)"] = timed(check_manifest_audio_once, manifest)
        assert not checked
        wavs = pd.read_csv(manifest, usecols=["wav"])["wav"].unique()
        _, *times["stat pass"] = timed(audio_stat_digest, wavs)
        print(f"{'':34s} {'wall':>9s} {'CPU':>9s} {'files/s (wall)':>15s}")
        for name, (wall, cpu) in times.items():
            print(f"{name:34s} {wall:8.2f}s {cpu:8.2f}s {args.files / wall:15,.0f}")
        if not args.skip_before:
            old = times["before (serial, every run)"]
            print("time ratios, before / new (wall, CPU): " + "; ".join(
                f"{name} {old[0] / wall:.1f}x, {old[1] / cpu:.1f}x"
                for name, (wall, cpu) in list(times.items())[1:]))
        cold = times["cold, thread pool"]
        print("time ratios to the cold check (thread pool; wall, CPU): " + "; ".join(
            f"{name} {times[name][0] / cold[0]:.4f}, {times[name][1] / cold[1]:.4f}"
            for name in ("warm (stamped)", "stat pass")))
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
