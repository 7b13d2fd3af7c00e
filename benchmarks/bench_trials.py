"""Validation of trial lists and reading of SdSV keys at 10^5, 10^6 and 10^7 trials.

Each measurement runs in a fresh subprocess, which reports its wall time, its
CPU time (the steadier figure on a machine shared with other jobs) and its
peak resident memory above what it held before the call (``VmHWM``,
:mod:`resident`). Today's code and the code
before vectorisation (``data_prep/manifest.py`` and ``data_prep/deepmine.py``
as of the git revision ``--before``, default c43640a, the last commit before it,
written to a temporary package) run on the same files in the same run.

1. ``validate(manifest, trials, check_audio=False)`` on a VoxCeleb-like
   manifest of 200,000 utterances of 2,000 speakers and a trial list of N
   random pairs, half of them same-speaker.
2. SdSV key reading: ``docs/trials.txt`` of N trials between 20,000 models
   and 100,000 evaluation files, and its key ``model-id evaluation-file-id
   TC|TW|IC|IW``, read with the task's ``_read_trials`` + ``_read_key``.

3. ``overlap``: the same ``validate`` with ``train_manifests``, the check
   that the trials share no speaker or audio file with a training manifest
   (``check_speaker_overlap``), against ``validate`` without it, on a
   VoxCeleb2-like training manifest of ``TRAIN_ROWS`` rows (10^6) in folders
   of 7 or 8 files that exist on disk (VoxCeleb2 dev: 1,092,009 files in
   145,569 videos), as each trial list is checked against each training
   manifest of a run.

The code before vectorisation is skipped at 10^7 trials (by its linear growth
from 10^5 to 10^6, about 5 minutes of CPU time for the validator and 2 for the
key).

Run from the repository root (about 10 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/bench_trials.py [--before c43640a] \\
        [--only validate|"sdsv key"|overlap]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [10**5, 10**6, 10**7]
BEFORE_LIMIT = 10**6
# The last commit before vectorisation, and where the validator is now and was then.
BEFORE = "c43640a"
VALIDATOR, VALIDATOR_BEFORE = "local.data.validation", "data_prep.manifest"
UTTERANCES, SPEAKERS = 200_000, 2_000
MODELS, TEST_FILES = 20_000, 100_000
TRAIN_ROWS, TRAIN_PER_FOLDER = 10**6, 7.5

# Run in the subprocess: import the package under ``root``, time one call.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[5])
import importlib
from resident import peak_resident_mib
from data_prep import deepmine
kind, files = sys.argv[2], json.loads(sys.argv[3])
validate = importlib.import_module(sys.argv[4]).validate
before = peak_resident_mib()
start, cpu = time.perf_counter(), time.process_time()
if kind == "validate":
    validate(files["manifest"], files["trials"], check_audio=False)
elif kind == "overlap":
    validate(files["manifest"], files["trials"], check_audio=False,
             train_manifests=[files["train"]])
else:
    models = {m: (None, []) for m in open(files["models"]).read().split()}
    deepmine._read_key(files["key"], deepmine._read_trials(files["trials"], models))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak_resident_mib() - before}))
"""


def write_corpus(folder, size, rng):
    """A manifest and a trial list of ``size`` trials (half targets), VoxCeleb-like IDs."""
    speakers = np.arange(UTTERANCES) % SPEAKERS
    ids = np.array([f"id{10000 + s}--yt{u:07d}--{u % 100:05d}"
                    for u, s in enumerate(speakers)], dtype=object)
    manifest = os.path.join(folder, "eval.csv")
    if not os.path.isfile(manifest):
        pd.DataFrame({"ID": ids, "duration": 1.0, "wav": "/nowhere/" + ids + ".wav",
                      "start": 0, "stop": 16000, "spk_id": [f"id{10000 + s}" for s in speakers],
                      "domain": "voxceleb"}).to_csv(manifest, index=False)
    enrol = rng.integers(0, UTTERANCES, size)
    # Half the tests are utterances of the enrol side's speaker, half random.
    same = rng.random(size) < 0.5
    test = np.where(same, (enrol + SPEAKERS * rng.integers(1, UTTERANCES // SPEAKERS, size))
                    % UTTERANCES, rng.integers(0, UTTERANCES, size))
    table = pd.DataFrame({"label": (speakers[enrol] == speakers[test]).astype(int),
                          "enrol": ids[enrol], "test": ids[test]}).drop_duplicates(
        ["enrol", "test"])
    table = table[table["enrol"] != table["test"]]
    trials = os.path.join(folder, f"trials_{size}.txt")
    table.to_csv(trials, sep=" ", header=False, index=False)
    return {"manifest": manifest, "trials": trials}, len(table)


def write_overlap(folder, size, rng):
    """:func:`write_corpus`'s files and a training manifest of other speakers, its folders made."""
    files, trials = write_corpus(folder, size, rng)
    files["train"] = os.path.join(folder, "train.csv")
    if not os.path.isfile(files["train"]):
        rows = np.arange(TRAIN_ROWS)
        videos = (rows / TRAIN_PER_FOLDER).astype(int)
        speakers = videos // 20
        folders = pd.Series([os.path.join(folder, "audio", f"tr{s:05d}", f"v{v:07d}")
                             for s, v in zip(speakers, videos)])
        for path in folders.unique():
            os.makedirs(path)
        pd.DataFrame({"ID": [f"tr{r:07d}" for r in rows], "duration": 1.0,
                      "wav": folders + "/" + pd.Series(rows).astype(str) + ".wav",
                      "start": 0, "stop": 16000, "spk_id": [f"tr{s:05d}" for s in speakers],
                      "domain": "voxceleb"}).to_csv(files["train"], index=False)
    return files, trials


def write_sdsv(folder, size, rng):
    """docs/trials.txt and its key of ``size`` trials between models and evaluation files."""
    models = np.array([f"model_{m:05d}" for m in range(MODELS)], dtype=object)
    tests = np.array([f"evl_{t:06d}" for t in range(TEST_FILES)], dtype=object)
    pairs = pd.DataFrame({"model": models[rng.integers(0, MODELS, size)],
                          "test": tests[rng.integers(0, TEST_FILES, size)]}).drop_duplicates()
    trials = os.path.join(folder, f"sdsv_trials_{size}.txt")
    key = os.path.join(folder, f"sdsv_key_{size}.txt")
    with open(trials, "w") as out:
        out.write("model-id evaluation-file-id\n")
    pairs.to_csv(trials, sep=" ", header=False, index=False, mode="a")
    labels = np.array(["TC", "TW", "IC", "IW"])[rng.integers(0, 4, len(pairs))]
    pairs.assign(label=labels).to_csv(key, sep=" ", index=False,
                                      header=["model-id", "evaluation-file-id", "trial-type"])
    model_list = os.path.join(folder, "models.txt")
    with open(model_list, "w") as out:
        out.write("\n".join(models))
    return {"trials": trials, "key": key, "models": model_list}, len(pairs)


def before_package(folder, revision):
    """The data_prep package as of ``revision``, under ``folder``."""
    package = os.path.join(folder, "before", "data_prep")
    os.makedirs(package, exist_ok=True)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in ("manifest.py", "deepmine.py"):
        source = subprocess.run(["git", "show", f"{revision}:data_prep/{name}"], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout
        with open(os.path.join(package, name), "w") as out:
            out.write(source)
    return os.path.dirname(package)


def measure(root, kind, files, validator):
    done = subprocess.run([sys.executable, "-c", CHILD, root, kind, json.dumps(files), validator,
                           os.path.dirname(os.path.abspath(__file__))],
                          check=True, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=""))
    return json.loads(done.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the code before")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="numbers of trials")
    parser.add_argument("--only", choices=["validate", "sdsv key", "overlap"],
                        help="run one part only")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"pandas {pd.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        before = before_package(folder, args.before)
        for kind, write in (("validate", write_corpus), ("sdsv key", write_sdsv),
                            ("overlap", write_overlap)):
            if args.only not in (None, kind):
                continue
            for size in args.sizes:
                files, trials = write(folder, size, rng)
                now = measure(ROOT, kind, files, VALIDATOR)
                line = (f"{kind}, {trials:,} trials: now {now['seconds']:.2f} s "
                        f"({now['cpu']:.2f} s CPU), +{now['peak_mib']:,.0f} MiB")
                if kind == "overlap":
                    plain = measure(ROOT, "validate", files, VALIDATOR)
                    ratio = now["cpu"] / plain["cpu"]
                    ratios.append(f"overlap {trials:,} {ratio:.2f}x")
                    line += (f"; without it {plain['seconds']:.2f} s ({plain['cpu']:.2f} s CPU), "
                             f"+{plain['peak_mib']:,.0f} MiB; {ratio:.2f}x the CPU time")
                elif size <= BEFORE_LIMIT:
                    then = measure(before, kind, files, VALIDATOR_BEFORE)
                    ratio = then["cpu"] / now["cpu"]
                    ratios.append(f"{kind} {trials:,} {ratio:.1f}x")
                    line += (f"; before ({args.before}) {then['seconds']:.2f} s "
                             f"({then['cpu']:.2f} s CPU), +{then['peak_mib']:,.0f} MiB; "
                             f"{ratio:.1f}x less CPU time")
                else:
                    line += f"; before ({args.before}) not run at this size"
                print(line, flush=True)
                for path in files.values():
                    if path.endswith(f"_{size}.txt"):
                        os.remove(path)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; CPU time ratios before / now "
          "(overlap: with / without the check): " + ", ".join(ratios))


if __name__ == "__main__":
    main()
