"""Data preparation and the start of a run at 10^5 and 10^6 utterances.

What a user's corpus of 10^5 to 10^6 utterances (VoxCeleb2 dev: 1,092,009
files of 5,994 speakers) costs before the first training step, in the parts
the other benchmarks leave out. Each measurement runs in a fresh subprocess,
which reports its wall time, its CPU time and its peak resident memory
above what it held before the call (``VmHWM``, :mod:`resident`).

1. ``walk``: ``prepare_voxceleb`` on a fake VoxCeleb1 + VoxCeleb2 tree in the
   released layout (``dev/aac/idXXXXX/<video>/NNNNN.m4a`` converted in place
   to ``.wav``, 10 per video, 180 per speaker), tiny wav files of 0.05 s; and,
   beside it, ``soundfile.info`` of each of its files one after another, the
   part of the preparation that reads the audio headers. The files were just
   written, so the operating system's file cache holds them.
2. ``chunking``: the preparation skeleton (``prepare_corpus``) on N rows of
   VoxCeleb2-like recordings of 4 to 12 s, cut into chunks of 3 s
   (``seg_dur: 3.0``, as the VoxCeleb recipes prepare it) and written,
   checked and recorded; today's code and ``data_prep/preparation.py`` as of
   the git revision ``--before`` (default f5cf417, the last before the chunks
   were cut on whole columns), written to a temporary package.
3. ``dataset``: what a run does with a training manifest of N rows before its
   first batch: ``validate`` (no audio), ``manifest_dataset``,
   ``add_speaker_labels`` (the label encoder) and one epoch of GE2E's
   ``SpeakerBatchSampler`` (32 speakers x 4 utterances a batch); today's
   ``local/data/dataio.py`` and the file as of ``--before`` (the last before
   the label encoder read each item's class once).
4. ``report``: ``condition_table`` of N trials among 10^5 utterances with
   ``lang``, ``channel``, ``gender`` and ``phrase`` (the per-condition table
   that every scored system writes).
5. ``det``: ``plot_det`` of one trial list of N trials with 3 systems (what
   ``det_systems: default`` draws: raw cosine, the default back-end and the
   lowest-EER system) and with 16 (``--det_systems=all`` with every
   back-end and a score normalisation).
6. ``deepmine``: ``prepare_deepmine`` with a key on an SdSV task 2 tree of
   ``--deepmine_files`` tiny files (default 10^5): half of them training
   files of 100 per speaker, a quarter enrolment files of 3 per model, a
   quarter evaluation files, each tested against 10 models (2.5 trials a
   file).
7. ``farsdat``: ``prepare_farsdat`` (default pattern, 20 held-out speakers,
   5,000 + 5,000 trials) on a tree ``spkNNN/sessM/uttK.wav`` of 40 speakers of
   ``--farsdat_per_speaker`` tiny files each (default 1,000: a corpus of 10^6
   utterances of 1,000 speakers has as many per speaker), in 10 sessions.

Run from the repository root (about 10 minutes on 2 CPU cores; the tree of
10^5 files takes 0.8 GiB in the temporary folder)::

    .venv/bin/python benchmarks/bench_preparation.py [--sizes 100000 1000000] \\
        [--walk_size 100000] [--farsdat_per_speaker 1000] \\
        [--deepmine_files 100000] [--smoke] \\
        [--only walk|chunking|dataset|report|det|deepmine|farsdat]

``--smoke`` runs every part once at a few hundred utterances.
"""

import argparse
import glob
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import soundfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [10**5, 10**6]
WALK_SIZE = 10**5
SMOKE_SIZE = 400
PARTS = ("walk", "chunking", "dataset", "report", "det", "deepmine", "farsdat")
# The last commit before the chunks were cut on whole columns and the label
# encoder read each class once.
BEFORE = "f5cf417"
PREPARATION, DATAIO = "data_prep/preparation.py", "local/data/dataio.py"
PER_VIDEO, PER_SPEAKER = 10, 180
VOX1_SPEAKERS, VOX1_PER_SPEAKER = 40, 20
SEG_DUR = 3.0
RATE = 16000
REPORT_UTTERANCES = 10**5
DET_SYSTEMS = (3, 16)
DEEPMINE_FILES, DEEPMINE_PER_SPEAKER, DEEPMINE_PER_MODEL, DEEPMINE_TRIALS = 10**5, 100, 3, 10
FARSDAT_SPEAKERS, FARSDAT_PER_SPEAKER, FARSDAT_SESSIONS = 40, 1000, 10
SMOKE_PER_SPEAKER = 20

# Run in the subprocess: import the package under ``root``, time one part.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[2])
from resident import peak_resident_mib
import bench_preparation
setup, run = bench_preparation.PART_CALLS[sys.argv[3]]
argument = setup(*json.loads(sys.argv[4]))
before = peak_resident_mib()
start, cpu = time.perf_counter(), time.process_time()
detail = run(argument)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak_resident_mib() - before,
                  "detail": detail}))
"""


def tiny_wav():
    """The bytes of a 0.05-s 16-kHz wav file."""
    encoded = io.BytesIO()
    soundfile.write(encoded, np.zeros(RATE // 20), RATE, subtype="PCM_16", format="WAV")
    return encoded.getvalue()


def write_voxceleb(folder, files):
    """A VoxCeleb1 folder (40 test speakers, Vox1-O-like list) and a VoxCeleb2 one of ``files``."""
    data = tiny_wav()
    vox1, vox2 = os.path.join(folder, "vox1"), os.path.join(folder, "vox2")
    meta = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    paths = []
    for speaker in range(VOX1_SPEAKERS):
        meta.append(f"id{10270 + speaker}\tName_{speaker}\t{'mf'[speaker % 2]}\tUSA\ttest")
        for index in range(VOX1_PER_SPEAKER):
            paths.append(f"id{10270 + speaker}/vid{index // 5:08d}/{index % 5 + 1:05d}.wav")
    for path in paths:
        os.makedirs(os.path.join(vox1, "wav", os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(vox1, "wav", path), "wb") as out:
            out.write(data)
    with open(os.path.join(vox1, "vox1_meta.csv"), "w") as out:
        out.write("\n".join(meta) + "\n")
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(paths), (2000, 2))
    trials = dict.fromkeys(f"{int(paths[a][:7] == paths[b][:7])} {paths[a]} {paths[b]}"
                           for a, b in pairs if a != b)
    with open(os.path.join(vox1, "veri_test2.txt"), "w") as out:
        out.write("\n".join(trials) + "\n")
    speakers = -(-files // PER_SPEAKER)
    meta = ["VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set "]
    for index in range(files):
        speaker, number = divmod(index, PER_SPEAKER)
        video = os.path.join(vox2, "dev", "aac", f"id{speaker:05d}",
                             f"v{speaker:05d}_{number // PER_VIDEO:04d}")
        if number % PER_VIDEO == 0:
            os.makedirs(video)
        name = os.path.join(video, f"{number % PER_VIDEO + 1:05d}")
        with open(name + ".wav", "wb") as out:
            out.write(data)
        open(name + ".m4a", "wb").close()
    meta += [f"id{speaker:05d} ,n{speaker:06d} ,{'mf'[speaker % 2]} ,dev "
             for speaker in range(speakers)]
    with open(os.path.join(vox2, "vox2_meta.csv"), "w") as out:
        out.write("\n".join(meta) + "\n")
    return vox1, vox2


def write_farsdat(folder, per_speaker):
    """A tree ``spkNNN/sessM/uttK.wav`` of ``FARSDAT_SPEAKERS`` speakers of ``per_speaker`` files."""
    data = tiny_wav()
    for speaker in range(FARSDAT_SPEAKERS):
        for session in range(FARSDAT_SESSIONS):
            os.makedirs(os.path.join(folder, f"spk{speaker:03d}", f"sess{session}"))
        for index in range(per_speaker):
            with open(os.path.join(folder, f"spk{speaker:03d}", f"sess{index % FARSDAT_SESSIONS}",
                                   f"utt{index:05d}.wav"), "wb") as out:
                out.write(data)


def write_deepmine(folder, files):
    """An SdSV task 2 folder of ``files`` wav files (docs/ and wav/) and a key; returns its path."""
    data = tiny_wav()
    train = [f"trn_{i:06d}" for i in range(files // 2)]
    enrolment = [f"enr_{i:06d}" for i in range(files // 4)]
    evaluation = [f"evl_{i:06d}" for i in range(files // 4)]
    for wav, names in zip(("train", "enrollment", "evaluation"), (train, enrolment, evaluation)):
        os.makedirs(os.path.join(folder, "wav", wav))
        for name in names:
            with open(os.path.join(folder, "wav", wav, f"{name}.wav"), "wb") as out:
                out.write(data)
    models = [f"model_{i:05d}" for i in range(len(enrolment) // DEEPMINE_PER_MODEL)]
    rng = np.random.default_rng(0)
    tested = rng.integers(0, len(models), (len(evaluation), DEEPMINE_TRIALS))
    docs = {
        "train_labels.txt": ["train-file-id speaker-id"] + [
            f"{utt} spk_{i // DEEPMINE_PER_SPEAKER:06d}" for i, utt in enumerate(train)],
        "model_enrollment.txt": ["model-id enrollment-file-ids"] + [
            " ".join([model, *enrolment[DEEPMINE_PER_MODEL * i:DEEPMINE_PER_MODEL * (i + 1)]])
            for i, model in enumerate(models)],
        "trials.txt": ["model-id evaluation-file-id"] + [
            f"{models[m]} {utt}" for utt, row in zip(evaluation, tested) for m in np.unique(row)],
    }
    os.makedirs(os.path.join(folder, "docs"))
    for name, lines in docs.items():
        with open(os.path.join(folder, "docs", name), "w") as out:
            out.write("\n".join(lines) + "\n")
    key = os.path.join(folder, "key.txt")
    labels = np.where(rng.random(len(docs["trials.txt"]) - 1) < 0.1, "tgt", "imp")
    with open(key, "w") as out:
        out.write("\n".join(f"{line} {label}"
                             for line, label in zip(docs["trials.txt"][1:], labels)) + "\n")
    return key


def voxceleb_rows(size, rng):
    """``size`` manifest rows shaped as VoxCeleb2's: 4-12 s, 180 per speaker."""
    frames = (rng.uniform(4, 12, size) * RATE).astype(np.int64)
    speaker = np.arange(size) // PER_SPEAKER
    ids = pd.Series([f"id{s:05d}--v{s:05d}_{i % PER_SPEAKER // PER_VIDEO:04d}--{i % PER_VIDEO:05d}"
                     for i, s in enumerate(speaker)])
    return pd.DataFrame({"ID": ids, "duration": np.round(frames / RATE, 4),
                         "wav": "/data/vox2/dev/wav/" + ids.str.replace("--", "/") + ".wav",
                         "start": 0, "stop": frames, "spk_id": ids.str[:7],
                         "domain": "voxceleb", "lang": "en",
                         "gender": np.where(speaker % 2, "f", "m"),
                         "session": ids.str[9:20], "sample_rate": RATE})


# Each part: setup(*arguments) in the child before the clock starts, then run(setup's result).
def _walk_setup(folder, save_folder):
    from data_prep.voxceleb import prepare_voxceleb
    return lambda: prepare_voxceleb(os.path.join(folder, "vox1"), save_folder,
                                    vox2_folder=os.path.join(folder, "vox2"))


def _headers_setup(folder):
    return (glob.glob(os.path.join(folder, "vox1", "wav", "id*", "*", "*.wav"))
            + glob.glob(os.path.join(folder, "vox2", "dev", "aac", "id*", "*", "*.wav")))


def _headers(files):
    for path in files:
        soundfile.info(path)
    return len(files)


def _chunking_setup(package, rows_csv, save_folder):
    import importlib
    sys.path.insert(0, package)  # data_prep of the revision measured
    prepare_corpus = importlib.import_module("data_prep.preparation").prepare_corpus
    rows = pd.read_csv(rows_csv, dtype={"ID": str, "wav": str, "spk_id": str}).to_dict("records")
    trials = [(1, rows[0]["ID"], rows[1]["ID"]), (0, rows[0]["ID"], rows[-1]["ID"])]
    # Returned as dicts, as every corpus's preparation returns its rows.
    return lambda: len(pd.read_csv(prepare_corpus(
        "VoxCeleb2-like", save_folder, {"seg_dur": SEG_DUR},
        ["train.csv", "eval.csv", "trials.txt"],
        lambda: {"train": rows, "eval": [rows[0], rows[1], rows[-1]], "trials": trials})["train"],
        usecols=["ID"]))


def _dataset_setup(module, manifest, folder):
    import importlib.util
    # Imported before the clock starts, with torch: local.data.dataio, or its
    # file as of the revision before.
    spec = importlib.util.spec_from_file_location("dataio_measured", module)
    dataio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dataio)
    return dataio, manifest, folder


def _dataset(arguments):
    dataio, manifest, folder = arguments
    dataset = dataio.manifest_dataset(manifest, check_audio=False)
    dataio.add_crop_pipeline(dataset, SEG_DUR)
    encoder = dataio.add_speaker_labels(dataset, os.path.join(folder, "label_encoder.txt"))
    speakers = [encoder.encode_label(dataset.data[i]["spk_id"]) for i in dataset.data_ids]
    # GE2E's 32 speakers x 4 utterances (fewer speakers in the smoke run).
    batches = list(dataio.SpeakerBatchSampler(speakers, min(32, len(encoder)), 4,
                                              len(speakers) // 128 or 1, 0))
    return len(batches)


def _report_setup(size):
    from local.evaluation.report import condition_table
    rng = np.random.default_rng(0)
    utterances = min(size, REPORT_UTTERANCES)
    ids = np.array([f"utt{i:07d}" for i in range(utterances)], dtype=object)
    manifest = pd.DataFrame({"ID": ids, "lang": rng.choice(["fa", "en"], utterances),
                             "channel": rng.choice(["mic", "tel", "wideband"], utterances),
                             "gender": rng.choice(["m", "f"], utterances),
                             "phrase": rng.choice([f"{p:02d}" for p in range(1, 11)], utterances),
                             "domain": "target"})
    labels = rng.integers(0, 2, size)
    trials = pd.DataFrame({"label": labels, "enrol": rng.choice(ids, size),
                           "test": rng.choice(ids, size)})
    return condition_table, (trials, rng.normal(size=size) + labels, manifest)


def _report(arguments):
    condition_table, table_arguments = arguments
    return len(condition_table(*table_arguments))


def _det_setup(size, systems, path):
    from local.evaluation.report import plot_det
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size)
    panel = {f"system {k}": (rng.normal(size=size) + (1 + k / systems) * labels, labels)
             for k in range(systems)}
    return plot_det, {"target": panel}, path


def _det(arguments):
    plot_det, panels, path = arguments
    plot_det(panels, path)
    return os.path.getsize(path)


def _deepmine_setup(folder, key, save_folder):
    from data_prep.deepmine import prepare_deepmine
    return lambda: len(prepare_deepmine(folder, save_folder, key_file=key))


def _farsdat_setup(folder, save_folder):
    from data_prep.farsdat import prepare_farsdat
    return lambda: prepare_farsdat(folder, save_folder)


PART_CALLS = {
    "walk": (_walk_setup, lambda prepare: prepare() and None),
    "headers": (_headers_setup, _headers),
    "chunking": (_chunking_setup, lambda prepare: prepare()),
    "dataset": (_dataset_setup, _dataset),
    "report": (_report_setup, _report),
    "det": (_det_setup, _det),
    "deepmine": (_deepmine_setup, lambda prepare: prepare() and None),
    "farsdat": (_farsdat_setup, lambda prepare: prepare() and None),
}


def measure(part, *arguments):
    """``{seconds, cpu, peak_mib, detail}`` of one part, run in a fresh subprocess."""
    done = subprocess.run([sys.executable, "-c", CHILD, ROOT, os.path.dirname(__file__), part,
                           json.dumps(arguments)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=""))
    if done.returncode:
        raise RuntimeError(f"{part} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def before_package(folder, revision):
    """``preparation.py`` and ``dataio.py`` as of ``revision``, under ``folder``.

    ``data_prep/preparation.py`` is imported from there as the package
    ``data_prep``; ``local/data/dataio.py`` is loaded from its file, its imports
    being today's package.
    """
    root = os.path.join(folder, "before")
    for path in (PREPARATION, DATAIO):
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        with open(os.path.join(root, path), "w") as out:
            out.write(source)
    open(os.path.join(root, "data_prep", "__init__.py"), "w").close()
    return root


def line(name, figures):
    return (f"{name:44s} {figures['seconds']:8.2f} s wall {figures['cpu']:8.2f} s CPU "
            f"+{figures['peak_mib']:7,.0f} MiB peak")


def run(parts, sizes, walk_size, per_speaker, revision, folder,
        deepmine_files=DEEPMINE_FILES):
    """Measure ``parts``, printing a line each; returns the ratios of the last line."""
    ratios = []
    rng = np.random.default_rng(0)
    before = before_package(folder, revision)
    if "walk" in parts:
        tree = os.path.join(folder, "voxceleb")
        write_voxceleb(tree, walk_size)
        files = walk_size + VOX1_SPEAKERS * VOX1_PER_SPEAKER
        walk = measure("walk", tree, os.path.join(folder, "prepared_voxceleb"))
        headers = measure("headers", tree)
        print(line(f"walk, VoxCeleb2 tree of {walk_size:,}", walk), flush=True)
        print(line(f"  soundfile.info of its {files:,} files", headers), flush=True)
        ratios.append(f"walk: headers {headers['seconds'] / walk['seconds']:.2f} of the wall time")
    if "chunking" in parts:
        for size in sizes:
            rows_csv = os.path.join(folder, f"rows_{size}.csv")
            voxceleb_rows(size, rng).to_csv(rows_csv, index=False)
            now = measure("chunking", ROOT, rows_csv, os.path.join(folder, f"now_{size}"))
            then = measure("chunking", before, rows_csv, os.path.join(folder, f"before_{size}"))
            if now["detail"] != then["detail"]:
                raise RuntimeError(f"{now['detail']} chunks now, {then['detail']} before")
            print(line(f"chunking, {size:,} rows, {now['detail']:,} chunks: now", now))
            print(line(f"  before ({revision})", then), flush=True)
            ratios.append(f"chunking {size:,}: {then['cpu'] / now['cpu']:.1f}x CPU, "
                          f"{then['peak_mib'] / max(now['peak_mib'], 1):.1f}x peak")
    if "dataset" in parts:
        for size in sizes:
            manifest = os.path.join(folder, f"train_{size}.csv")
            voxceleb_rows(size, rng).to_csv(manifest, index=False)
            now = measure("dataset", os.path.join(ROOT, DATAIO), manifest,
                          tempfile.mkdtemp(dir=folder))
            then = measure("dataset", os.path.join(before, DATAIO), manifest,
                           tempfile.mkdtemp(dir=folder))
            print(line(f"dataset, {size:,} rows: now", now))
            print(line(f"  before ({revision})", then), flush=True)
            ratios.append(f"dataset {size:,}: {then['cpu'] / now['cpu']:.2f}x CPU")
    if "report" in parts:
        for size in sizes:
            figures = measure("report", size)
            print(line(f"report, {size:,} trials, {figures['detail']} rows", figures),
                  flush=True)
    if "det" in parts:
        for size in sizes:
            times = {}
            for systems in DET_SYSTEMS:
                figures = measure("det", size, systems, os.path.join(folder, "det.png"))
                times[systems] = figures["cpu"]
                print(line(f"DET figure, {size:,} trials, {systems} systems", figures), flush=True)
            ratios.append(f"DET {size:,}: {DET_SYSTEMS[-1]} / {DET_SYSTEMS[0]} systems "
                          f"{times[DET_SYSTEMS[-1]] / times[DET_SYSTEMS[0]]:.1f}x CPU")
    if "deepmine" in parts:
        tree = os.path.join(folder, "deepmine")
        key = write_deepmine(tree, deepmine_files)
        with open(key) as trials:
            count = sum(1 for _ in trials)
        figures = measure("deepmine", tree, key, os.path.join(folder, "prepared_deepmine"))
        print(line(f"deepmine, {deepmine_files:,} files, {count:,} trials", figures), flush=True)
    if "farsdat" in parts:
        tree = os.path.join(folder, "farsdat")
        write_farsdat(tree, per_speaker)
        figures = measure("farsdat", tree, os.path.join(folder, "prepared_farsdat"))
        print(line(f"farsdat, {FARSDAT_SPEAKERS} x {per_speaker:,} files", figures), flush=True)
    return ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES,
                        help="rows (utterances or trials) of chunking, dataset and report")
    parser.add_argument("--walk_size", type=int, default=WALK_SIZE,
                        help="files of the fake VoxCeleb2 tree")
    parser.add_argument("--farsdat_per_speaker", type=int, default=FARSDAT_PER_SPEAKER,
                        help="files per speaker of the Big FARSDAT-like tree")
    parser.add_argument("--deepmine_files", type=int, default=DEEPMINE_FILES,
                        help="wav files of the SdSV task 2-like tree")
    parser.add_argument("--before", default=BEFORE, help="git revision of preparation.py and dataio.py before")
    parser.add_argument("--only", choices=PARTS, help="run one part only")
    parser.add_argument("--smoke", action="store_true", help="every part at a tiny size")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.walk_size = [SMOKE_SIZE], SMOKE_SIZE
        args.farsdat_per_speaker, args.deepmine_files = SMOKE_PER_SPEAKER, SMOKE_SIZE
    parts = [args.only] if args.only else PARTS
    print(f"pandas {pd.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        ratios = run(parts, args.sizes, args.walk_size, args.farsdat_per_speaker, args.before,
                     folder, args.deepmine_files)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; " + "; ".join(ratios))


if __name__ == "__main__":
    main()
