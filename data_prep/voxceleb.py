"""VoxCeleb 1 and 2 manifests and the official VoxCeleb1 trial lists.

The folders are used as the official archives extract::

    data_folder/                        VoxCeleb1 (required)
        wav/id10270/x6uYqmx31kE/00001.wav   vox1_dev_wav.zip + vox1_test_wav.zip
        vox1_meta.csv                       (or meta/vox1_meta.csv)
        veri_test2.txt, ...                 trial lists (or meta/..., or any path)
    vox2_folder/                        VoxCeleb2 dev (optional, training only)
        dev/wav/id00012/21Uxsk56VDQ/00001.wav   converted to a wav tree, or
        dev/aac/id00012/21Uxsk56VDQ/00001.wav   converted in place (.wav beside .m4a)
        vox2_meta.csv                       (or meta/vox2_meta.csv)

VoxCeleb2 is released as AAC (``.m4a``), which libsndfile cannot read. Convert
it once, into ``dev/wav``; each file is written as ``.part`` and renamed when
whole, so that a conversion stopped halfway leaves no truncated ``.wav`` and
running the loop again converts what is left::

    cd VOX2_FOLDER/dev && find aac -name '*.m4a' | while read -r f; do
        o="wav/${f#aac/}"; o="${o%.m4a}.wav"; [ -e "$o" ] && continue
        mkdir -p "$(dirname "$o")"
        ffmpeg -nostdin -loglevel error -y -i "$f" -ac 1 -ar 16000 -f wav "$o.part" &&
            mv "$o.part" "$o"
    done

A tree converted as SpeechBrain's VoxCeleb2 instructions leave it
(``wav/id00012/...`` directly in the folder, beside VoxCeleb1's test set) is
refused with the command that moves its VoxCeleb2 speakers into ``dev/wav``.

Trial lists are the VoxCeleb1 lists in ``label enrol test`` form with
VoxCeleb1 IDs, as the VoxCeleb site publishes them: Vox1-O ``veri_test2.txt``
(the 40 test speakers), Vox1-E ``list_test_all2.txt`` and Vox1-H
``list_test_hard2.txt`` (both drawn from all of VoxCeleb1, so with them the
training speakers come from VoxCeleb2), and their versions before cleaning,
``veri_test.txt``, ``list_test_all.txt`` and ``list_test_hard.txt``, in the
same form (written under their own names, ``trials_veri_test.txt``...). The
list of VoxCeleb1's first release, which names speakers by celebrity name
(``Eric_McCormack/Y-qKARMSO7k_0000001.wav``, Kaldi's ``voxceleb1_test.txt``),
is refused with the lists to download instead. As in
SpeechBrain's recipe, every speaker that a trial list uses is kept out of
training. A speaker that a meta file lists in the sets its folder holds
(VoxCeleb1: dev and test; VoxCeleb2: dev) without recordings there, as of an
archive extracted in part, is named in a warning. Outputs in ``save_folder``
(one folder per preparation)::

    train.csv           every recording (or ``seg_dur`` chunk) of the other speakers
    eval.csv            every recording a trial list names, whole
    trials_vox1_o.txt   one per trial list (vox1_o, vox1_e, vox1_h, or the file's stem)

Unlike SpeechBrain's VoxCeleb recipe, this one writes no ``dev.csv`` of
held-out training recordings: its training has no validation stage (the
trial lists are the evaluation), so recordings held out would only be
missing from training.

Utterance IDs are SpeechBrain's ``id10270--x6uYqmx31kE--00001``; columns are
``domain=voxceleb``, ``lang=en``, ``gender`` (``m``/``f``, from the meta file)
and ``session`` (the YouTube ID).

Command line::

    python -m data_prep.voxceleb --data_folder /data/voxceleb1 \\
        --save_folder data/voxceleb [--vox2_folder /data/voxceleb2] \\
        [--trials veri_test2.txt list_test_all2.txt list_test_hard2.txt] \\
        [--seg_dur 3.0]

Example
-------
>>> import tempfile
>>> main(["--data_folder", tempfile.mkdtemp(), "--save_folder", tempfile.mkdtemp()])
1
"""

import functools
import glob
import logging
import os
import re
import shlex
import sys

from data_prep.preparation import (
    check_seg_dur,
    corpus_folder,
    preparation_command,
    prepare_corpus,
    speaker_genders,
)
from local.cli import option
from local.data.manifest_io import read_numbered_trials
from local.data.schema import utterance_row
from local.errors import fail

logger = logging.getLogger(__name__)

DOMAIN = "voxceleb"
LANG = "en"
ID_SEPARATOR = "--"
# The official trial lists and the names of their outputs.
OFFICIAL_TRIALS = {
    "veri_test2.txt": "vox1_o",
    "list_test_all2.txt": "vox1_e",
    "list_test_hard2.txt": "vox1_h",
}
TRIAL_PATH = re.compile(r"^id\d+/[^/]+/[^/]+\.wav$")
# The list of VoxCeleb1's first release: celebrity name / <youtube_id>_<number>.wav (or a
# three-part path).
OLD_TRIAL_PATH = re.compile(r"^[^/]+/([^/]+/)?[^/]+\.wav$")
# The archive of each meta file's set (its Set column) that the folders hold.
VOX1_ARCHIVES = {"dev": "vox1_dev_wav.zip", "test": "vox1_test_wav.zip"}
VOX2_ARCHIVES = {"dev": "vox2_dev_aac.zip"}
# VoxCeleb2 speaker IDs run from id00012 to id09272, VoxCeleb1 ones from id10001.
VOX2_SPEAKER_GLOB = "id0*"
# Speakers named in the warning about those without recordings.
SHOWN_SPEAKERS = 20
CLEANED_LISTS_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html"
CONVERT_VOX2 = (
    "cd VOX2_FOLDER/dev && find aac -name '*.m4a' | while read -r f; do "
    'o="wav/${f#aac/}"; o="${o%.m4a}.wav"; [ -e "$o" ] && continue; mkdir -p "$(dirname "$o")"; '
    'ffmpeg -nostdin -loglevel error -y -i "$f" -ac 1 -ar 16000 -f wav "$o.part" && '
    'mv "$o.part" "$o"; done'
)


def prepare_voxceleb(
    data_folder,
    save_folder,
    trial_lists=("veri_test2.txt",),
    vox2_folder=None,
    seg_dur=None,
):
    """Write VoxCeleb's training and evaluation manifests and trial lists.

    Does nothing when ``save_folder`` already holds them, made with the same
    arguments.

    Arguments
    ---------
    data_folder : str
        VoxCeleb1 folder, holding ``wav/idXXXXX/<youtube_id>/NNNNN.wav`` and
        ``vox1_meta.csv`` (directly or in ``meta/``).
    save_folder : str
        Where the manifests and trial lists go.
    trial_lists : list of str
        Trial lists to convert: paths, or file names found in ``data_folder``
        or ``data_folder/meta``.
    vox2_folder : str, optional
        VoxCeleb2 folder holding ``dev/wav/...`` or a converted ``dev/aac/...``
        tree and ``vox2_meta.csv``; all its speakers are training speakers.
    seg_dur : float, optional
        Cut training recordings into chunks of this many seconds; None keeps
        them whole.

    Returns
    -------
    dict
        Paths of the written files, keyed ``train``, ``eval`` and
        ``trials_<name>`` per trial list.

    Raises
    ------
    ManifestError
        When a folder, meta file, trial list or audio file is missing or not
        VoxCeleb's, naming the path and the fix.
    OptionError
        When ``seg_dur`` is outside its range, before any work.

    Example
    -------
    >>> prepare_voxceleb("/data/voxceleb1", "data/voxceleb",
    ...                  trial_lists=["veri_test2.txt", "list_test_hard2.txt"],
    ...                  vox2_folder="/data/voxceleb2")  # doctest: +SKIP
    """
    check_seg_dur(seg_dur)
    data_folder = corpus_folder(data_folder, "VoxCeleb1",
                                "pass as data_folder the folder that holds VoxCeleb1's wav/")
    vox1_wav = _wav_tree(data_folder)
    trial_files = _trial_files(data_folder, trial_lists)
    if vox2_folder:
        vox2_folder = corpus_folder(vox2_folder, "VoxCeleb2",
                                    "pass as vox2_folder the folder that holds VoxCeleb2's dev/")
    options = dict(data_folder=data_folder, vox2_folder=vox2_folder, trials=trial_files,
                   seg_dur=seg_dur)
    outputs = ["train.csv", "eval.csv", *(f"trials_{name}.txt" for name in trial_files)]
    read = functools.partial(_read, data_folder, vox1_wav, trial_files, vox2_folder)
    metas = [path for folder, name in ((data_folder, "vox1_meta.csv"),
                                       (vox2_folder, "vox2_meta.csv")) if folder
             for path in _meta_candidates(folder, name)]
    return prepare_corpus("VoxCeleb", save_folder, options, outputs, read,
                          inputs=[*trial_files.values(), *metas])


def _read(data_folder, vox1_wav, trial_files, vox2_folder):
    """The manifests and trial lists; every check first, as reading the audio headers is slow."""
    vox1_files = _scan(vox1_wav)
    genders = _speaker_genders(data_folder, "vox1_meta.csv", vox1_files, vox1_wav, VOX1_ARCHIVES)
    trials = {name: _read_trials(path, vox1_files, vox1_wav) for name, path in trial_files.items()}
    eval_files = sorted({f for pairs in trials.values() for _, *pair in pairs for f in pair})
    eval_speakers = {f.split("/")[0] for f in eval_files}
    train_files = [(vox1_wav, f, genders) for f in vox1_files
                   if f.split("/")[0] not in eval_speakers]
    if vox2_folder:
        vox2_wav = _vox2_tree(vox2_folder)
        vox2_files = _scan(vox2_wav)
        vox2_genders = _speaker_genders(vox2_folder, "vox2_meta.csv", vox2_files, vox2_wav,
                                        VOX2_ARCHIVES)
        train_files += [(vox2_wav, f, vox2_genders) for f in vox2_files]
    if not train_files:
        fail(data_folder, "no training speakers left: the trial lists use every "
              "VoxCeleb1 speaker", fix="pass vox2_folder (VoxCeleb2 dev) to train on, "
              "as is usual with Vox1-E and Vox1-H")

    logger.info("VoxCeleb: %d recordings to read", len(train_files) + len(eval_files))
    # The rows read the audio headers: prepare_corpus makes them once the
    # trial lists passed their checks.
    tables = {"train": lambda: [_row(*item) for item in train_files],
              "eval": lambda: [_row(vox1_wav, f, genders) for f in eval_files]}
    for name, pairs in trials.items():
        tables[f"trials_{name}"] = [(label, utterance_id(e), utterance_id(t))
                                    for label, e, t in pairs]
    return tables


def utterance_id(relative_path):
    """SpeechBrain's ID of a VoxCeleb recording ``idXXXXX/<youtube_id>/NNNNN.wav``.

    Arguments
    ---------
    relative_path : str
        Path relative to the ``wav`` (or ``aac``) folder.

    Returns
    -------
    str
        ``<speaker>--<youtube_id>--<number>``.

    Example
    -------
    >>> utterance_id("id10270/x6uYqmx31kE/00001.wav")
    'id10270--x6uYqmx31kE--00001'
    """
    speaker, session, name = relative_path.split("/")[-3:]
    return ID_SEPARATOR.join([speaker, session, os.path.splitext(name)[0]])


def read_meta(path):
    """Speaker genders from ``vox1_meta.csv`` or ``vox2_meta.csv``.

    VoxCeleb1's file is tab-separated; VoxCeleb2's is comma-separated with
    fields padded by spaces (``id00012 ,n000012 ,m ,dev``). Both are read.

    Arguments
    ---------
    path : str
        The meta file.

    Returns
    -------
    dict
        ``{speaker_id: gender}``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "vox2_meta.csv")
    >>> with open(path, "w") as meta:
    ...     _ = meta.write("VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \\nid00012 ,n000012 ,m ,dev \\n")
    >>> read_meta(path)
    {'id00012': 'm'}
    """
    return speaker_genders(path, [line[:3] for line in _meta_lines(path)])


def _meta_lines(path):
    """``(line number, speaker, gender, set)`` of each speaker of a VoxCeleb meta file."""
    with open(path, encoding="utf-8-sig") as meta:
        lines = [line for line in meta.read().splitlines() if line.strip()]
    separator = "\t" if lines and "\t" in lines[0] else ","
    header = [field.strip() for field in lines[0].split(separator)] if lines else []
    if (len(header) < 2 or not header[0].endswith("ID")
            or not {"Gender", "Set"} <= set(header)):
        fail(path, f"not a VoxCeleb meta file: header {header}",
              fix="use vox1_meta.csv / vox2_meta.csv as downloaded from the VoxCeleb site")
    gender, part = header.index("Gender"), header.index("Set")
    listed, bad = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = [field.strip() for field in line.split(separator)]
        if len(fields) <= max(gender, part) or not fields[0].startswith("id"):
            bad.append(f"line {number}: {line}")
        else:
            listed.append((number, fields[0], fields[gender].lower(), fields[part].lower()))
    if bad:
        fail(path, "lines without a speaker ID, gender and set", rows=bad,
              fix="use the meta file as downloaded from the VoxCeleb site")
    return listed


def _wav_tree(data_folder):
    """Check that ``data_folder`` holds VoxCeleb1's ``wav/idXXXXX`` tree; return it."""
    wav = os.path.join(data_folder, "wav")
    if glob.glob(os.path.join(wav, "id*", "")):
        return wav
    problem = "no VoxCeleb1 tree wav/idXXXXX/<youtube_id>/NNNNN.wav in it"
    fix = ("extract vox1_dev_wav.zip and vox1_test_wav.zip here, so that e.g. "
           "wav/id10270/x6uYqmx31kE/00001.wav exists")
    split = [f"{part}/wav" for part in ("dev", "test")
             if glob.glob(os.path.join(data_folder, part, "wav", "id*", ""))]
    if glob.glob(os.path.join(data_folder, "id*", "")):
        problem += ("; found the speaker folders idXXXXX/ directly in it: it is the wav/ "
                    "folder itself")
        fix = ("pass the folder above it instead (which holds wav/ and vox1_meta.csv): "
               f"{shlex.quote(os.path.dirname(data_folder))}")
    elif os.path.isdir(os.path.join(data_folder, "dev", "aac")):
        problem += "; found dev/aac/, VoxCeleb2's layout"
        fix = "pass VoxCeleb1's folder as data_folder and this one as vox2_folder"
    elif split:
        problem += (f"; found {' and '.join(p + '/idXXXXX/' for p in split)}: the dev and "
                    "test archives extracted apart")
        fix = (f"move them into one wav/ tree: cd {shlex.quote(data_folder)} && mkdir wav && "
               f"mv {' '.join(p + '/id*' for p in split)} wav/")
    fail(data_folder, problem, fix=fix)


def _vox2_tree(vox2_folder):
    """The folder of VoxCeleb2 dev's wav files; every released .m4a must have one."""
    for tree in ("wav", "aac"):
        root = os.path.join(vox2_folder, "dev", tree)
        if glob.glob(os.path.join(root, "id*", "")):
            break
    else:
        _fail_no_vox2_tree(vox2_folder)
    released = os.path.join(vox2_folder, "dev", "aac")
    unconverted = [f for f in _scan(released, ".m4a")
                   if not os.path.isfile(os.path.join(root, f[: -len(".m4a")] + ".wav"))]
    if unconverted:
        fail(released, f"{len(unconverted)} recordings are AAC (.m4a) only, which libsndfile "
              "cannot read", rows=unconverted,
              fix="convert them to 16 kHz wav: "
              + CONVERT_VOX2.replace("VOX2_FOLDER", shlex.quote(vox2_folder)))
    return root


def _fail_no_vox2_tree(vox2_folder):
    """Refuse a VoxCeleb2 folder without ``dev/wav`` or ``dev/aac``, naming what it holds."""
    problem = "no VoxCeleb2 tree dev/wav/idXXXXX/ or dev/aac/idXXXXX/ in it"
    fix = "extract vox2_dev_aac.zip here (it makes dev/aac/) and convert it to wav"
    trees = [tree for tree in ("aac", "wav")
             if glob.glob(os.path.join(vox2_folder, tree, VOX2_SPEAKER_GLOB, ""))]
    if "aac" in trees or (trees and os.path.basename(vox2_folder) == "dev"):
        problem += (f"; found {' and '.join(t + '/idXXXXX/' for t in trees)} directly in it: "
                    "it is the dev/ folder itself")
        fix = ("pass the folder above it instead (which holds dev/ and vox2_meta.csv): "
               f"{shlex.quote(os.path.dirname(vox2_folder))}")
    elif trees:
        # SpeechBrain's instructions convert VoxCeleb2 into <folder>/wav/ and
        # extract VoxCeleb1's test set into the same wav/ (its IDs are id1XXXX).
        problem += ("; found VoxCeleb2 speakers (id0XXXX) in wav/ directly in it, as "
                    "SpeechBrain's VoxCeleb2 instructions leave them")
        fix = ("move them into dev/wav/, leaving out any VoxCeleb1 speaker (id1XXXX): "
               f"cd {shlex.quote(vox2_folder)} && mkdir -p dev/wav && "
               f"mv wav/{VOX2_SPEAKER_GLOB} dev/wav/")
    fail(vox2_folder, problem, fix=fix)


def _scan(root, extension=".wav"):
    """Paths ``idXXXXX/<youtube_id>/<name><extension>`` under ``root``, sorted."""
    found = glob.glob(os.path.join(root, "id*", "*", "*" + extension))
    return sorted(os.path.relpath(path, root).replace(os.sep, "/") for path in found)


def _meta_candidates(folder, name):
    """Where a meta file may be: ``folder/name``, then ``folder/meta/name``."""
    return [os.path.join(folder, name), os.path.join(folder, "meta", name)]


def _meta_file(folder, name):
    """``folder/name`` or ``folder/meta/name``, whichever exists."""
    candidates = _meta_candidates(folder, name)
    for path in candidates:
        if os.path.isfile(path):
            return path
    fail(candidates[0], f"meta file not found (nor in {candidates[1]})",
          fix=f"download {name} from the VoxCeleb site into {folder}")


def _speaker_genders(folder, meta_name, files, root, archives):
    """Genders of the speakers of ``files`` under ``root``, checked both ways against the meta file.

    Every speaker of ``files`` must be in the meta file ``meta_name`` of
    ``folder``, and every speaker that it lists in a set of ``archives``
    (``{set: archive}``, extracted into ``folder``) should have files: a
    speaker without any, perhaps of an archive extracted in part, is named
    in a warning.
    """
    meta_path = _meta_file(folder, meta_name)
    listed = _meta_lines(meta_path)
    genders = speaker_genders(meta_path, [line[:3] for line in listed])
    found = {f.split("/")[0] for f in files}
    missing = sorted(found - set(genders))
    if missing:
        fail(meta_path, f"{len(missing)} speakers of {root} are not in it", rows=missing,
              fix="use the meta file of this corpus (vox1_meta.csv for VoxCeleb1, "
              "vox2_meta.csv for VoxCeleb2)")
    absent = sorted({speaker for _, speaker, _, part in listed if part in archives} - found)
    if absent:
        # A warning, not a failure: a copy may lack an archive on purpose (VoxCeleb1's
        # dev set where the training speakers come from VoxCeleb2), or a few speakers.
        logger.warning("%s: %d speakers that %s lists (sets %s) have no recordings in it and "
                       "are in no manifest: %s%s. Where an archive was extracted in part, "
                       "extract %s completely into %s and prepare again",
                       root, len(absent), meta_path, ", ".join(archives),
                       " ".join(absent[:SHOWN_SPEAKERS]),
                       " ..." * (len(absent) > SHOWN_SPEAKERS),
                       " and ".join(archives.values()), folder)
    return genders


def _trial_files(data_folder, trial_lists):
    """``{output name: path}`` of the trial lists, found by path or in ``data_folder``."""
    if isinstance(trial_lists, str):
        trial_lists = [trial_lists]
    found = {}
    for given in trial_lists:
        candidates = [given, os.path.join(data_folder, given),
                      os.path.join(data_folder, "meta", given)]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is None:
            fail(given, f"trial list not found (looked in {data_folder} and its meta/)",
                  fix=f"download it from {CLEANED_LISTS_URL} into {data_folder}, "
                  "or pass its path")
        base = os.path.basename(path)
        name = OFFICIAL_TRIALS.get(base, os.path.splitext(base)[0])
        if name in found:
            fail(path, f"two trial lists would both be written as trials_{name}.txt",
                  fix="pass each trial list once")
        found[name] = os.path.abspath(path)
    if not found:
        fail("trial_lists", "is empty: the evaluation needs a trial list",
             fix="name at least one, such as trial_lists: [veri_test2.txt]")
    return found


def _read_trials(path, known_files, wav_root):
    """Trials ``(label, enrol, test)`` of an official list; every file must exist."""
    pairs, bad, old_style = [], [], []
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            shown = f"line {number}: {line.strip()}"
            if len(fields) == 3 and fields[0] in ("0", "1"):
                if all(TRIAL_PATH.match(f) for f in fields[1:]):
                    pairs.append((int(fields[0]), fields[1], fields[2]))
                    continue
                if all(OLD_TRIAL_PATH.match(f) for f in fields[1:]):
                    old_style.append(shown)
                    continue
            bad.append(shown)
    if old_style:
        fail(path, "names speakers by celebrity name (the list form of VoxCeleb1's first "
              "release), not by VoxCeleb1 ID", rows=old_style,
              fix=f"download the cleaned lists with IDs (veri_test2.txt, list_test_all2.txt, "
              f"list_test_hard2.txt; or veri_test.txt, list_test_all.txt, list_test_hard.txt "
              f"before cleaning) from {CLEANED_LISTS_URL}")
    if bad:
        fail(path, "lines not of the form "
              "'label idXXXXX/<youtube_id>/NNNNN.wav idXXXXX/<youtube_id>/NNNNN.wav'",
              rows=bad, fix=f"use the official lists from {CLEANED_LISTS_URL}")
    if not pairs:
        fail(path, "trial list is empty", fix=f"use the official lists from {CLEANED_LISTS_URL}")
    # Duplicated trials, self-trials, one class: named by the lines of the list as given.
    read_numbered_trials(path)
    known = set(known_files)
    missing = sorted({f for _, *pair in pairs for f in pair} - known)
    if missing:
        fail(path, f"names {len(missing)} recordings that are not in {wav_root}",
              rows=missing, fix="extract both vox1_dev_wav.zip and vox1_test_wav.zip "
              f"into {wav_root} (Vox1-E and Vox1-H use the dev speakers too)")
    return pairs


def _row(root, relative_path, genders):
    """Manifest row of one recording ``idXXXXX/<youtube_id>/NNNNN.wav`` under ``root``."""
    speaker, session, _ = relative_path.split("/")
    return utterance_row(utterance_id(relative_path), os.path.join(root, relative_path),
                         speaker, DOMAIN, lang=LANG, gender=genders[speaker], session=session)


main = preparation_command(
    prepare_voxceleb, __doc__,
    option("--data_folder", required=True,
           help="VoxCeleb1 folder (wav/ and vox1_meta.csv)"),
    option("--save_folder", required=True, help="where the manifests and trial lists go"),
    option("--vox2_folder", help="VoxCeleb2 folder (dev/ and vox2_meta.csv)"),
    option("--trials", dest="trial_lists", nargs="+", default=["veri_test2.txt"],
           help="trial lists: paths, or names in data_folder"),
    option("--seg_dur", type=float, help="training chunk length in seconds"),
)


if __name__ == "__main__":
    sys.exit(main())
