"""Big FARSDAT telephone speech: manifests and a held-out-speaker trial list.

Big FARSDAT's distribution layout is not publicly documented, so no folder or
file name is built in: the corpus is the audio under ``data_folder``, and a
path pattern says which part of each file's path is the speaker (and session).
What is assumed, exactly:

* Every file under ``data_folder`` (at any depth, folders reached through
  symbolic links included) ending in ``.wav``, ``.flac`` or ``.sph`` (any
  case) is one utterance of one speaker. Other
  files (transcriptions, labels, documentation) are not looked at, nor are
  hidden files and folders (names starting with ``.``, such as the
  AppleDouble ``._utt01.wav`` that a copy made on macOS holds beside each
  ``utt01.wav``); the log says how many were left out.
* ``pattern`` is a Python regular expression that matches the *whole* path of
  each of these files relative to ``data_folder``, with ``/`` separators. Its
  named groups are ``spk`` (required, non-empty: the speaker), ``session``
  (optional: the recording session or call) and ``utt`` (optional: the
  utterance); it has no others. The default, :data:`DEFAULT_PATTERN`, is
  ``<spk>/<session>/<utt>.<wav|flac|sph>``::

      data_folder/
          spk001/call1/utt01.wav      spk=spk001, session=call1, utt=utt01
          spk001/call2/utt01.flac
          spk002/call1/utt01.sph

  An audio file that the pattern does not match (or matches with an empty
  ``spk``) is an error listing it, unless ``ignore_unmatched`` leaves such
  files out (the log says how many).
* libsndfile reads the audio: wav, flac, or NIST SPHERE with PCM, u-law or
  A-law samples. Shorten-compressed SPHERE (``sample_coding
  pcm,embedded-shorten``) is refused; decompress it once into a wav tree and
  pass that tree as ``data_folder`` (each file is written as ``.part`` and
  renamed when whole, so that a run stopped halfway leaves no truncated
  ``.wav`` and running the loop again decompresses what is left)::

      cd DATA_FOLDER && find . -iname '*.sph' | while read -r f; do
          o=DATA_FOLDER_wav/"${f%.*}.wav"; [ -e "$o" ] && continue
          mkdir -p "$(dirname "$o")"
          # or: sph2pipe -f wav "$f" "$o.part" && mv "$o.part" "$o"
          ffmpeg -nostdin -loglevel error -y -i "$f" -f wav "$o.part" && mv "$o.part" "$o"
      done

* The audio stays where and as it is, at its own rate (8 kHz telephone):
  manifests record ``sample_rate`` and the recipe's pipeline resamples to
  16 kHz on the fly. A file holds one speaker (the pipeline averages the
  channels of a multi-channel file).
* Gender comes from an optional speaker table: a CSV whose header has the
  columns ``spk`` and ``gender`` (others are ignored), listing every speaker
  found; without it ``gender`` is empty.

Utterance IDs are ``<spk>--<session>--<utt>`` when the pattern has an ``utt``
group, else ``<spk>--<path without extension>`` with ``/`` written ``--``;
whitespace becomes ``_``, and two files with the same ID are an error.
Columns: ``domain=farsdat``, ``channel=telephone``, ``lang=fa``, ``session``
(from the pattern, empty without a session group) and ``gender``.

Splits: ``n_eval_speakers`` speakers, drawn with ``seed``, are held out for
evaluation; every other speaker trains. Outputs in ``save_folder``::

    train.csv    every utterance (or ``seg_dur`` chunk) of the training speakers
    eval.csv     every utterance of the held-out speakers, whole
    trials.txt   at most ``target_trials`` same-speaker and ``nontarget_trials``
                 different-speaker pairs of eval.csv utterances, drawn uniformly
                 with ``seed``: no self-trials, no pair twice (in either order);
                 same-speaker pairs from different sessions are taken first.
                 Where fewer pairs exist than requested, all of them are used.

Command line::

    python -m data_prep.farsdat --data_folder /data/big_farsdat \\
        --save_folder data/farsdat [--pattern REGEX] [--ignore_unmatched] \\
        [--speaker_table speakers.csv] [--n_eval_speakers 20] \\
        [--target_trials 5000] [--nontarget_trials 5000] [--seg_dur 3.0]

Example
-------
>>> import tempfile
>>> main(["--data_folder", tempfile.mkdtemp(), "--save_folder", tempfile.mkdtemp()])
1
"""

import collections
import csv
import functools
import itertools
import logging
import os
import random
import re
import shlex
import sys

import numpy as np

from data_prep.preparation import (
    AT_LEAST_ONE,
    AT_LEAST_TWO,
    check_option,
    check_seg_dur,
    corpus_folder,
    preparation_command,
    prepare_corpus,
    speaker_genders,
)
from local.cli import option
from local.data.schema import utterance_row
from local.errors import ManifestError, fail

logger = logging.getLogger(__name__)

DOMAIN = "farsdat"
CHANNEL = "telephone"
LANG = "fa"
ID_SEPARATOR = "--"
AUDIO_EXTENSIONS = (".wav", ".flac", ".sph")
# Matched whole, so the leading ^ changes nothing but makes it the pattern of
# recipes/voxceleb_to_farsdat/condition.yaml, which hyperpyyaml would read as a
# tuple without it: a folder prepared with the default is the condition's.
DEFAULT_PATTERN = r"^(?P<spk>[^/]+)/(?P<session>[^/]+)/(?P<utt>[^/]+)\.(?i:wav|flac|sph)"
PATTERN_GROUPS = ("spk", "session", "utt")
# A condition's preparation takes its options from the condition file, not the command line.
PATTERN_FIX = ("adjust the pattern (--pattern; for a condition, pattern: in its prepare_farsdat "
               "step, in a copy of the condition file): a Python regex matching the whole path "
               "relative to data_folder, with named groups spk (required), session and utt "
               "(optional)")
CONVERT_SHORTEN = (
    "cd DATA_FOLDER && find . -iname '*.sph' | while read -r f; do "
    'o=WAV_FOLDER/"${f%.*}.wav"; [ -e "$o" ] && continue; mkdir -p "$(dirname "$o")"; '
    'ffmpeg -nostdin -loglevel error -y -i "$f" -f wav "$o.part" && mv "$o.part" "$o"; done'
)


def prepare_farsdat(
    data_folder,
    save_folder,
    pattern=DEFAULT_PATTERN,
    speaker_table=None,
    ignore_unmatched=False,
    n_eval_speakers=20,
    target_trials=5000,
    nontarget_trials=5000,
    seg_dur=None,
    seed=1234,
):
    """Write Big FARSDAT's training and evaluation manifests and trial list.

    Does nothing when ``save_folder`` already holds them, made with the same
    arguments.

    Arguments
    ---------
    data_folder : str
        The corpus root: every ``.wav``/``.flac``/``.sph`` file under it is an
        utterance.
    save_folder : str
        Where the manifests and the trial list go.
    pattern : str
        Regex matching each audio file's whole path relative to
        ``data_folder`` (``/`` separators), with named groups ``spk``
        (required), ``session`` and ``utt`` (optional).
    speaker_table : str, optional
        CSV with columns ``spk`` and ``gender`` listing every speaker.
    ignore_unmatched : bool
        Leave out audio files that ``pattern`` does not match, instead of
        refusing them.
    n_eval_speakers : int
        Speakers held out for eval.csv and trials.txt (at least 2).
    target_trials : int
        Most same-speaker trials to draw.
    nontarget_trials : int
        Most different-speaker trials to draw.
    seg_dur : float, optional
        Cut training utterances into chunks of this many seconds; None keeps
        them whole.
    seed : int
        Seed of the held-out speakers and of the trials.

    Returns
    -------
    dict
        Paths of the written files, keyed ``train``, ``eval`` and ``trials``.

    Raises
    ------
    ManifestError
        When the folder, pattern, audio or speaker table does not fit the
        assumptions above, naming the path and the fix.
    OptionError
        When a numeric option is outside its range, before any work.

    Example
    -------
    >>> prepare_farsdat("/data/big_farsdat", "data/farsdat",
    ...                 speaker_table="/data/big_farsdat/speakers.csv")  # doctest: +SKIP
    """
    check_seg_dur(seg_dur)
    check_option("n_eval_speakers", n_eval_speakers, AT_LEAST_TWO,
                 "the held-out speakers (non-target trials need two)", integer=True)
    check_option("target_trials", target_trials, AT_LEAST_ONE,
                 "the most same-speaker trials to draw", integer=True)
    check_option("nontarget_trials", nontarget_trials, AT_LEAST_ONE,
                 "the most different-speaker trials to draw", integer=True)
    data_folder = corpus_folder(data_folder, "Big FARSDAT",
                                "pass as data_folder the folder that holds the corpus audio")
    speaker_table = os.path.abspath(speaker_table) if speaker_table else None
    options = dict(data_folder=data_folder, pattern=pattern, speaker_table=speaker_table,
                   ignore_unmatched=ignore_unmatched, n_eval_speakers=n_eval_speakers,
                   target_trials=target_trials, nontarget_trials=nontarget_trials,
                   seg_dur=seg_dur, seed=seed)
    read = functools.partial(_read, data_folder, pattern, speaker_table, ignore_unmatched,
                             n_eval_speakers, target_trials, nontarget_trials, seed)
    return prepare_corpus("Big FARSDAT", save_folder, options,
                          ["train.csv", "eval.csv", "trials.txt"], read, inputs=[speaker_table])


def _read(data_folder, pattern, speaker_table, ignore_unmatched, n_eval_speakers,
          target_trials, nontarget_trials, seed):
    """The manifests and trial list; every check first, as reading the audio headers is slow."""
    utterances = _utterances(data_folder, _compile(pattern), ignore_unmatched)
    speakers = sorted({u["spk"] for u in utterances})
    genders = _speaker_genders(speaker_table, speakers, data_folder) if speaker_table else {}
    if len(speakers) <= n_eval_speakers:
        fail(data_folder, f"{len(speakers)} speakers found; n_eval_speakers={n_eval_speakers} "
             "leaves none for training",
             fix="lower n_eval_speakers, or check that the pattern's spk group is the speaker")
    rng = random.Random(seed)
    eval_speakers = set(rng.sample(speakers, n_eval_speakers))

    held_out = [u for u in utterances if u["spk"] in eval_speakers]
    trials = _draw_trials([dict(ID=u["ID"], spk_id=u["spk"], session=u["session"])
                           for u in held_out], target_trials, nontarget_trials, rng, data_folder)

    logger.info("Big FARSDAT: %d recordings to read", len(utterances))
    # The rows read the audio headers: prepare_corpus makes them once the
    # trial list passed its checks.
    return {"train": lambda: [_row(data_folder, u, genders) for u in utterances
                              if u["spk"] not in eval_speakers],
            "eval": lambda: [_row(data_folder, u, genders) for u in held_out],
            "trials": trials}


def utterance_id(relative_path, groups):
    """ID of the audio file at ``relative_path`` whose pattern groups are ``groups``.

    Arguments
    ---------
    relative_path : str
        Path relative to the corpus root, with ``/`` separators.
    groups : dict
        The match's named groups: ``spk``, and ``session``/``utt`` if any.

    Returns
    -------
    str
        ``<spk>--<session>--<utt>`` with an ``utt`` group (no session part
        without a session), else ``<spk>--<path without extension>``; ``/``
        is written ``--`` and whitespace ``_``.

    Example
    -------
    >>> utterance_id("spk001/call1/utt01.wav",
    ...              {"spk": "spk001", "session": "call1", "utt": "utt01"})
    'spk001--call1--utt01'
    >>> utterance_id("female/spk001 call1.sph", {"spk": "spk001"})
    'spk001--female--spk001_call1'
    """
    if groups.get("utt"):
        parts = [groups["spk"], groups.get("session"), groups["utt"]]
    else:
        parts = [groups["spk"], os.path.splitext(relative_path)[0]]
    joined = ID_SEPARATOR.join(part for part in parts if part)
    return re.sub(r"\s+", "_", joined.replace("/", ID_SEPARATOR))


def read_speaker_table(path):
    """Speaker genders from a CSV whose header has the columns ``spk`` and ``gender``.

    Arguments
    ---------
    path : str
        The table; other columns are ignored, fields may be padded by spaces.

    Returns
    -------
    dict
        ``{speaker: gender}``, genders in lower case.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "speakers.csv")
    >>> with open(path, "w") as table:
    ...     _ = table.write("spk, gender, age\\nspk001, F, 30\\nspk002, m, 41\\n")
    >>> read_speaker_table(path)
    {'spk001': 'f', 'spk002': 'm'}
    """
    if not os.path.isfile(path):
        fail(path, "speaker table does not exist", fix="pass the path of a CSV with the "
             "columns spk,gender, or no speaker table (gender is then left empty)")
    with open(path, encoding="utf-8-sig", newline="") as table:
        lines = [[field.strip() for field in line] for line in csv.reader(table)]
    header = lines[0] if lines else []
    if "spk" not in header or "gender" not in header:
        fail(path, f"not a speaker table: header {header}",
             fix="make the first line name the columns, with spk and gender among them, "
             "e.g. 'spk,gender' then one line per speaker such as 'spk001,f'")
    spk, gender = header.index("spk"), header.index("gender")
    listed, bad = [], []
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) > max(spk, gender) and fields[spk]:
            listed.append((number, fields[spk], fields[gender].lower()))
        elif any(fields):
            bad.append(f"line {number}: {','.join(fields)}")
    if bad:
        fail(path, "lines without a speaker and gender", rows=bad,
             fix=f"give every line the {len(header)} columns of the header")
    return speaker_genders(path, listed)


def _compile(pattern):
    """The compiled ``pattern``, checked for a ``spk`` group and no unknown groups."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        fail(f"pattern {pattern!r}", f"not a regular expression ({err})", fix=PATTERN_FIX)
    if "spk" not in regex.groupindex:
        fail(f"pattern {pattern!r}", "has no named group spk, so the speakers are unknown",
             fix=PATTERN_FIX + r", e.g. (?P<spk>[^/]+)/(?P<session>[^/]+)/[^/]+\.wav")
    unknown = sorted(set(regex.groupindex) - set(PATTERN_GROUPS))
    if unknown:
        fail(f"pattern {pattern!r}", f"has named groups {unknown} that mean nothing here",
             fix=PATTERN_FIX)
    return regex


def _utterances(data_folder, regex, ignore_unmatched):
    """``{ID, path, spk, session}`` of every audio file under ``data_folder``, sorted by path."""
    files = _audio_files(data_folder)
    if not files:
        fail(data_folder, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under it",
             fix="pass as data_folder the folder that holds the corpus audio")
    utterances, unmatched = [], []
    for path in files:
        match = regex.fullmatch(path)
        if match and match["spk"]:
            groups = match.groupdict()
            utterances.append(dict(ID=utterance_id(path, groups), path=path, spk=groups["spk"],
                                   session=groups.get("session") or ""))
        else:
            unmatched.append(path)
    if unmatched and not (utterances and ignore_unmatched):
        fail(data_folder, f"{len(unmatched)} of {len(files)} audio files do not match the "
             f"pattern {regex.pattern!r} (or give an empty spk)", rows=unmatched,
             fix=PATTERN_FIX + "; or leave them out with --ignore_unmatched (for a condition, "
             "ignore_unmatched: True in that step)")
    if unmatched:
        logger.warning("Big FARSDAT: leaving out %d audio files that do not match the "
                       "pattern, such as %s", len(unmatched), unmatched[0])
    counts = collections.Counter(u["ID"] for u in utterances)
    shared = [f"{u['ID']}: {u['path']}" for u in utterances if counts[u["ID"]] > 1]
    if shared:
        fail(data_folder, "audio files that would share an utterance ID", rows=shared,
             fix="keep one file per utterance (not e.g. both x.wav and x.sph), or widen the "
             "pattern's utt group to the part of the path that tells them apart")
    return utterances


def _audio_files(data_folder):
    """Paths of the audio files under ``data_folder``, relative to it, ``/``-separated, sorted.

    Folders reached through symbolic links are read too (a corpus assembled
    from links to several disks); a link back to a folder the walk is already
    in is not followed again. Hidden files and folders (names starting with
    ``.``) are left out, and the log says how many: a copy made on macOS
    holds an AppleDouble file ``._utt01.wav`` of metadata beside each
    ``utt01.wav``, which is not audio.
    """
    files, hidden = [], []
    # The real paths of the folders from data_folder down to each folder walked.
    chains = {data_folder: {os.path.realpath(data_folder)}}
    for folder, subfolders, names in os.walk(data_folder, followlinks=True):
        chain = chains.pop(folder)
        kept = []
        for name in subfolders:
            real = os.path.realpath(os.path.join(folder, name))
            if name.startswith("."):
                hidden.append(_relative_path(data_folder, folder, name) + "/")
            elif real not in chain:
                kept.append(name)
                chains[os.path.join(folder, name)] = chain | {real}
        subfolders[:] = kept
        for name in names:
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                path = _relative_path(data_folder, folder, name)
                (hidden if name.startswith(".") else files).append(path)
    if hidden:
        logger.warning("Big FARSDAT: leaving out %d hidden audio files and folders (names "
                       "starting with '.': macOS's ._*.wav metadata files and the like), "
                       "such as %s",
                       len(hidden), hidden[0])
    return sorted(files)


def _relative_path(data_folder, folder, name):
    """Path of ``name`` in ``folder`` relative to ``data_folder``, with ``/`` separators."""
    return os.path.relpath(os.path.join(folder, name), data_folder).replace(os.sep, "/")


def _speaker_genders(table_path, speakers, data_folder):
    """Genders of ``speakers``; every one must be in the speaker table."""
    genders = read_speaker_table(table_path)
    missing = [speaker for speaker in speakers if speaker not in genders]
    if missing:
        fail(table_path, f"{len(missing)} speakers found under {data_folder} are not in it",
             rows=missing, fix="add a line spk,gender for each, or check that the pattern's "
             "spk group is the speaker")
    return genders


def _row(data_folder, utterance, genders):
    """Manifest row of one utterance; shorten-compressed SPHERE gets its own fix."""
    path = os.path.join(data_folder, *utterance["path"].split("/"))
    try:
        return utterance_row(utterance["ID"], path, utterance["spk"], DOMAIN, lang=LANG,
                             channel=CHANNEL, gender=genders.get(utterance["spk"], ""),
                             session=utterance["session"])
    except ManifestError:
        with open(path, "rb") as audio:
            header = audio.read(1024)
        if header.startswith(b"NIST_1A") and b"shorten" in header:
            wav_folder = data_folder.rstrip(os.sep) + "_wav"
            fail(path, "NIST SPHERE compressed with shorten, which libsndfile cannot read",
                 fix="decompress the corpus into a wav tree and pass that as data_folder: "
                 + CONVERT_SHORTEN.replace("DATA_FOLDER", shlex.quote(data_folder))
                 .replace("WAV_FOLDER", shlex.quote(wav_folder))
                 + ' (sph2pipe -f wav "$f" "$o.part" does the same as ffmpeg)')
        raise


def _draw_trials(rows, target_trials, nontarget_trials, rng, data_folder):
    """Seeded ``(label, enrol, test)`` trials: distinct unordered pairs of ``rows``.

    With the rows ordered by speaker and session, the later partners of a row
    in each kind of pair (same speaker and other session, same session, other
    speaker) are one run of positions, so each pair is drawn by its number
    among those of its kind and none is listed: time and memory grow with the
    rows and the trials, not with the square of the utterances per speaker.
    """
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["spk_id"], rows[i]["session"]))
    speaker_end = _run_ends([rows[i]["spk_id"] for i in order])
    session_end = _run_ends([(rows[i]["spk_id"], rows[i]["session"]) for i in order])
    following = np.arange(1, len(rows) + 1)
    if not (speaker_end - following).any():
        fail(data_folder, "no held-out speaker has two utterances, so there is no target trial",
             fix="check that the pattern's spk group is the speaker")
    targets = _draw_pairs(session_end, speaker_end, target_trials, rng)  # cross-session first
    targets += _draw_pairs(following, session_end, target_trials - len(targets), rng)
    nontargets = _draw_pairs(speaker_end, np.full(len(rows), len(rows)), nontarget_trials, rng)
    for kind, count, chosen in (("target", target_trials, len(targets)),
                                ("non-target", nontarget_trials, len(nontargets))):
        if chosen < count:
            logger.warning("Big FARSDAT: only %d %s trials exist, using all of them "
                           "(%d requested)", chosen, kind, count)
    pairs = []
    for label, drawn in ((1, targets), (0, nontargets)):
        pairs += [(*sorted((order[p], order[q])), label) for p, q in drawn]
    return [(label, rows[i]["ID"], rows[j]["ID"]) for i, j, label in sorted(pairs)]


def _run_ends(keys):
    """For each position of the sorted ``keys``, the position after its run of equal keys."""
    ends = []
    for _, run in itertools.groupby(keys):
        length = len(list(run))
        ends += [len(ends) + length] * length
    return np.array(ends, dtype=np.int64)


def _draw_pairs(first, stop, count, rng):
    """``count`` distinct ``(p, q)`` with ``first[p] <= q < stop[p]``, uniformly (all if fewer)."""
    sizes = stop - first
    cumulative = np.cumsum(sizes)
    total = int(cumulative[-1])
    chosen = np.array(rng.sample(range(total), min(count, total)), dtype=np.int64)
    p = np.searchsorted(cumulative, chosen, side="right")
    q = first[p] + chosen - (cumulative[p] - sizes[p])
    return list(zip(p.tolist(), q.tolist()))


main = preparation_command(
    prepare_farsdat, __doc__,
    option("--data_folder", required=True, help="the corpus root"),
    option("--save_folder", required=True, help="where the manifests and trial lists go"),
    option("--pattern", default=DEFAULT_PATTERN,
           help="regex with named groups spk (required), session and utt, "
           "matching each audio file's whole path relative to data_folder "
           "(default: %(default)s)"),
    option("--ignore_unmatched", action="store_true",
           help="leave out audio files the pattern does not match"),
    option("--speaker_table", help="CSV with columns spk and gender"),
    option("--n_eval_speakers", type=int, default=20,
           help="speakers held out for evaluation"),
    option("--target_trials", type=int, default=5000,
           help="most same-speaker trials"),
    option("--nontarget_trials", type=int, default=5000,
           help="most different-speaker trials"),
    option("--seg_dur", type=float, help="training chunk length in seconds"),
    option("--seed", type=int, default=1234,
           help="seed of the held-out speakers and the trials"),
)


if __name__ == "__main__":
    sys.exit(main())
