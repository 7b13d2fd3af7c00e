"""Checking a manifest, its trial list and enrolment table against each other and the audio.

:func:`validate` is what training and evaluation call before they start;
``python -m data_prep.manifest`` runs it from the command line.
"""

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from local.data.audio import check_lengths, file_identity
from local.data.manifest_io import (
    numbered_trial_lines,
    read_enrolment,
    read_manifest,
    read_numbered_trials,
)
from local.data.schema import (
    DURATION_TOLERANCE_S,
    SDSV_TRIAL_COLUMNS,
    SDSV_TRIAL_TYPES,
    audio_info,
)
from local.errors import ManifestError, fail
from local.provenance import file_sha256
from local.whole_files import written_whole

logger = logging.getLogger(__name__)

# Files per task of the threads that stat a manifest's audio (audio_stat_digest).
STAT_CHUNK = 1000
# What a preparation writes beside its outputs (data_prep.preparation): while
# it is there, a preparation with the same options skips the folder.
PREPARED_MARKER = "prepare_options.json"


def check_manifest_audio(manifest, path, workers=None):
    """Open every audio file of a manifest and compare it with its rows; record a pass.

    Every file exists, is readable, has the declared sample rate and is long
    enough for every row's ``stop``; every ``duration`` is
    ``(stop - start) / sample_rate``. A relative ``wav`` is read from the
    current directory, as SpeechBrain's data loader reads it. The files are opened by ``workers``
    threads (libsndfile releases the GIL while it reads a header, and a
    network or cold disk answers many requests at once). A pass is recorded
    in the stamp ``<manifest>.audio_ok`` with the manifest's SHA-256 and the
    digest of its files' sizes and times (:func:`audio_stat_digest`, taken
    before the headers are read), which :func:`check_manifest_audio_once` reads.

    Arguments
    ---------
    manifest : pandas.DataFrame
        The manifest, as :func:`read_manifest` returns it.
    path : str
        Its CSV file.
    workers : int, optional
        Threads opening files (default: the thread pool's, ``min(32, CPUs + 4)``).

    Raises
    ------
    ManifestError
        Naming the first offending rows and how to fix them.
    """
    digest = file_sha256(path)
    wavs = manifest["wav"].unique()  # in order of first appearance
    stats = audio_stat_digest(wavs, workers)
    with ThreadPoolExecutor(workers) as pool:
        headers = list(pool.map(_audio_header, wavs))
    files = pd.DataFrame(headers, columns=["rate", "frames", "error"], index=wavs)
    first = ~manifest["wav"].duplicated()
    files["order"] = np.arange(len(wavs))
    # Every row declares its file's rate: the rows of one file may disagree.
    rows = manifest[["ID", "wav", "stop", "sample_rate"]].rename(
        columns={"sample_rate": "declared"}).join(files, on="wav")
    readable = rows["error"] == ""
    wrong_rate = readable & (rows["rate"] != rows["declared"])
    # A file's problems in order of its first row, its rows in manifest order.
    rows = rows[(first & ~readable) | wrong_rate
                | (readable & ~wrong_rate & (rows["stop"] > rows["frames"]))]
    problems = [_file_problem(r) for r in rows.sort_values("order", kind="stable").itertuples()]
    expected = (manifest["stop"] - manifest["start"]) / manifest["sample_rate"]
    off = manifest[(manifest["duration"] - expected).abs() > DURATION_TOLERANCE_S]
    problems += [
        f"{r.ID}: duration {r.duration} s but (stop - start) / sample_rate is "
        f"{(r.stop - r.start) / r.sample_rate:.4f} s"
        for r in off.itertuples()
    ]
    if problems:
        fail(path, "manifest does not match its audio", rows=problems,
             fix=f"{_prepare_again(path)}; in a manifest written by hand, "
                 "correct these rows: wav an absolute path or one relative to the directory "
                 f"you run from (now {os.getcwd()}), not to the manifest's folder; "
                 "sample_rate, start, stop and duration as soundfile.info(wav) gives them")
    _write_stamp(path, {"manifest_sha256": digest, "audio_stat_sha256": stats})


def _prepare_again(path):
    """How to prepare the manifest ``path`` again, past the marker that would skip it."""
    marker = os.path.join(os.path.dirname(path), PREPARED_MARKER)
    if os.path.isfile(marker):
        return f"remove {marker}, then re-run the data preparation for this corpus"
    return "re-run the data preparation for this corpus"


def audio_stat_digest(wavs, workers=None):
    """SHA-256 of the size, modification and change times of each of the files ``wavs``.

    The evidence a stamp keeps of the audio it vouches for: a file written,
    truncated, replaced (even by a copy that keeps the modification time: its
    change time is new) or removed since then changes it. One ``os.stat`` per
    file, a small part of the time of opening each (``benchmarks/README.md``).

    Arguments
    ---------
    wavs : numpy.ndarray
        The manifest's unique ``wav`` paths, in order of their first row.
    workers : int, optional
        Threads calling ``os.stat`` (see :func:`check_manifest_audio`), on
        chunks of ``STAT_CHUNK`` files.

    Returns
    -------
    str
        The hex digest.

    Example
    -------
    >>> import tempfile
    >>> wav = os.path.join(tempfile.mkdtemp(), "u1.wav")
    >>> _ = open(wav, "w").write("RIFF")
    >>> before = audio_stat_digest(np.array([wav]))
    >>> _ = open(wav, "a").write("more")
    >>> audio_stat_digest(np.array([wav])) == before
    False
    """
    chunks = [wavs[start:start + STAT_CHUNK] for start in range(0, len(wavs), STAT_CHUNK)]
    digest = hashlib.sha256()
    with ThreadPoolExecutor(workers) as pool:
        for stats in pool.map(_stats, chunks):
            digest.update(np.asarray(stats, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _stats(wavs):
    """:func:`file_identity` of each file, ``(-1, -1, -1)`` for one that cannot be found."""
    return [file_identity(wav) or (-1, -1, -1) for wav in wavs]


def _file_problem(row):
    """The message of a manifest row joined with its file's header, as selected above."""
    if row.error:
        return f"{row.ID}: {row.error}"
    if row.rate != row.declared:
        return (f"{row.ID}: {row.wav} is {row.rate} Hz but the manifest says {row.declared} Hz "
                "(add or fix the sample_rate column)")
    return f"{row.ID}: stop {row.stop} beyond the file's {row.frames} samples"


def _audio_header(wav):
    """``(sample_rate, frames, "")`` of a file, or ``(0, 0, the first line of its error)``."""
    try:
        return (*audio_info(wav), "")
    except ManifestError as err:
        return 0, 0, str(err).splitlines()[0]


def _stamp_path(manifest_path):
    return f"{manifest_path}.audio_ok"


def _read_stamp(manifest_path):
    """The record of a manifest's stamp; None where it has none or one that is no record."""
    stamp = _stamp_path(manifest_path)
    if not os.path.isfile(stamp):
        return None
    try:
        with open(stamp, encoding="utf-8") as saved:
            record = json.load(saved)
    except ValueError:  # not JSON: cut short or overwritten by something else
        record = None
    if not isinstance(record, dict):
        logger.warning("%s: the audio-check stamp %s is not a record of a passed check; the "
                       "audio is checked again, and a passed check rewrites the stamp",
                       manifest_path, stamp)
        return None
    return record


def _write_stamp(manifest_path, record):
    """Record that a manifest passed :func:`check_manifest_audio`: ``record`` of its version and audio."""
    stamp = _stamp_path(manifest_path)
    try:
        # Runs started at once (several seeds) stamp the same manifest.
        with written_whole(stamp, encoding="utf-8") as out:
            json.dump(record, out)
    except OSError as err:
        logger.warning("%s: could not record the passed audio check (%s); the next run "
                       "checks the audio again", manifest_path, err)


def check_manifest_audio_once(manifest_path, workers=None):
    """:func:`check_manifest_audio` unless this version of the manifest and its audio passed it.

    The version is the manifest's SHA-256 and the digest of its audio files'
    sizes and times (:func:`audio_stat_digest`), recorded beside it in
    ``<manifest>.audio_ok`` by a passed check; a failed check records nothing.
    An audio file written, truncated, replaced or removed under an unchanged
    manifest is checked again, with the rest of the manifest.

    Arguments
    ---------
    manifest_path : str
        Manifest CSV.
    workers : int, optional
        Threads opening files (see :func:`check_manifest_audio`).

    Returns
    -------
    bool
        Whether the audio was checked (False: the stamp matched).

    Example
    -------
    >>> import os, tempfile
    >>> import soundfile
    >>> from local.data.manifest_io import write_manifest
    >>> from local.data.schema import utterance_row
    >>> folder = tempfile.mkdtemp()
    >>> wav = os.path.join(folder, "u1.wav")
    >>> soundfile.write(wav, np.zeros(8000), 16000)
    >>> path = os.path.join(folder, "m.csv")
    >>> write_manifest([utterance_row("u1", wav, "s1", "demo")], path)
    >>> check_manifest_audio_once(path), check_manifest_audio_once(path)
    (True, False)
    >>> soundfile.write(wav, np.zeros(800), 16000)  # shorter than the row's stop
    >>> check_manifest_audio_once(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: .../m.csv: manifest does not match its audio
      u1: stop 8000 beyond the file's 800 samples
    ...
    """
    stamp = _stamp_path(manifest_path)
    record = _read_stamp(manifest_path) if os.path.isfile(manifest_path) else None
    if record is not None:
        # The stamped manifest passed the check: its wav column alone is read.
        if (record.get("manifest_sha256") == file_sha256(manifest_path)
                and record.get("audio_stat_sha256") == audio_stat_digest(
                    pd.read_csv(manifest_path, usecols=["wav"], dtype=str,
                                keep_default_na=False)["wav"].unique(), workers)):
            logger.info("%s: audio already checked (%s)", manifest_path, stamp)
            return False
    manifest = read_manifest(manifest_path)
    check_manifest_audio(manifest, manifest_path, workers)
    logger.info("%s: audio of %d rows checked", manifest_path, len(manifest))
    return True


def validate(manifest_path, trials_path=None, enrolment_path=None, check_audio=True,
             train_manifests=(), allow_speaker_overlap=False, embed_seconds=(None, None)):
    """Check a manifest, optionally a trial list and enrolment table, and the audio.

    Arguments
    ---------
    manifest_path : str
        Manifest CSV.
    trials_path : str, optional
        Trial list whose IDs must be in the manifest (or enrolment table).
    enrolment_path : str, optional
        Enrolment table whose utterances must be in the manifest.
    check_audio : bool
        Also open every audio file: it exists, is readable, has the declared
        sample rate, and is long enough for every row's ``stop``
        (:func:`check_manifest_audio`, which records a pass).
    train_manifests : sequence of str
        Training manifests that must share no speaker with the trial list
        (:func:`check_speaker_overlap`).
    allow_speaker_overlap : bool
        Warn of a shared speaker instead of refusing it.
    embed_seconds : tuple
        ``(min_embed_seconds, max_embed_seconds)``: the rows the trials
        score (all rows without trials) are embedded whole, and must last
        that long (:func:`local.data.audio.check_lengths`; None: no limit).

    Returns
    -------
    pandas.DataFrame
        The manifest, as :func:`read_manifest` returns it.

    Raises
    ------
    ManifestError
        Naming the file, the first offending rows and the fix.

    Example
    -------
    >>> import os, tempfile
    >>> import soundfile
    >>> from local.data.manifest_io import write_manifest, write_trials
    >>> from local.data.schema import utterance_row
    >>> folder = tempfile.mkdtemp()
    >>> rows = []
    >>> for utt, spk in [("u1", "a"), ("u2", "a"), ("u3", "b")]:
    ...     soundfile.write(os.path.join(folder, f"{utt}.wav"), np.zeros(8000), 16000)
    ...     rows.append(utterance_row(utt, os.path.join(folder, f"{utt}.wav"), spk, "demo"))
    >>> write_manifest(rows, os.path.join(folder, "eval.csv"))
    >>> write_trials([(1, "u1", "u2"), (0, "u1", "u3")], os.path.join(folder, "trials.txt"))
    >>> len(validate(os.path.join(folder, "eval.csv"), os.path.join(folder, "trials.txt")))
    3
    >>> write_trials([(0, "u1", "u2"), (0, "u1", "u3"), (1, "u2", "u3")],
    ...              os.path.join(folder, "wrong.txt"))
    >>> validate(os.path.join(folder, "eval.csv"), os.path.join(folder, "wrong.txt"))
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: .../wrong.txt: labels disagree with the spk_id of their sides
      line 1: 0 u1 u2
      line 3: 1 u2 u3
    Fix: label is 1 exactly when both sides have the same speaker (the manifest's spk_id; ...
    """
    manifest = read_manifest(manifest_path)
    if check_audio:
        check_manifest_audio(manifest, manifest_path)
    known = set(manifest["ID"])
    models, enrolment = {}, None
    if enrolment_path:
        models, enrolment = read_enrolment(enrolment_path)
        unknown = [f"{m}: {u}" for m, utts in models.items() for u in utts if u not in known]
        if unknown:
            fail(enrolment_path, f"utterances not in {manifest_path}", rows=unknown,
                  fix="prepare the enrolment utterances into the same manifest")
        # Scoring reads such a trial side as the model, the label check as the utterance.
        clash = [m for m, utts in models.items() if m in known and utts != [m]]
        if clash:
            fail(enrolment_path, f"models named like other utterances of {manifest_path}",
                 rows=clash, fix="rename these models (e.g. model_<ID>) in the enrolment table "
                                 "and the trial list")
        check_model_speakers(models, manifest, manifest_path, enrolment_path)
    scored = manifest
    if trials_path:
        trials, lines, sides = read_numbered_trials(trials_path)
        values = {column: side_values(column, manifest, models, enrolment, enrolment_path)
                  for column in SDSV_TRIAL_COLUMNS}
        check_typed_model_phrases(trials, models, manifest, manifest_path, enrolment_path)
        _check_trial_ids(trials, lines, sides, trials_path, values, manifest_path,
                         enrolment_path)
        _check_tests_not_enrolled(trials, lines, sides, models, trials_path, enrolment_path)
        _check_sides_share_no_audio(trials, lines, sides, models, manifest, trials_path,
                                    manifest_path)
        _warn_reversed_trials(lines, sides, trials_path)
        enrolled = sides["enrol"][1]
        used = {*sides["test"][1], *enrolled[~enrolled.isin(list(models))],
                *(utt for model in enrolled[enrolled.isin(list(models))] for utt in models[model])}
        scored = manifest[manifest["ID"].isin(used)]
    seconds = (scored["stop"] - scored["start"]) / scored["sample_rate"]
    check_lengths(seconds.set_axis(scored["ID"] + " (" + scored["wav"] + ")"), manifest_path,
                  *embed_seconds)
    for train_path in train_manifests:
        check_speaker_overlap(train_path, scored, trials_path or manifest_path,
                              allow_speaker_overlap)
    return manifest


def _check_tests_not_enrolled(trials, lines, sides, models, trials_path, enrolment_path):
    """Refuse trials whose test utterance is one of its enrolment model's utterances.

    Such a trial scores an utterance against a model made of it, as a trial of
    one utterance on both sides would (:func:`~local.data.manifest_io.read_trials`
    refuses that). Compared by the ``pd.factorize`` codes of ``sides``: 0.7-0.9 s
    for 10^6 trials of 10^5 models of 3 utterances.
    """
    (enrol_codes, enrol_ids), (test_codes, test_ids) = sides["enrol"], sides["test"]
    members = pd.Series(models, dtype=object).explode()
    model_codes = pd.Index(enrol_ids).get_indexer(members.index)
    utt_codes = pd.Index(test_ids).get_indexer(members.to_numpy())
    tested = (model_codes >= 0) & (utt_codes >= 0)
    enrolled = model_codes[tested].astype(np.int64) * len(test_ids) + utt_codes[tested]
    own = np.isin(enrol_codes.astype(np.int64) * len(test_ids) + test_codes, enrolled)
    if own.any():
        fail(trials_path, f"trials score a test utterance against a model of {enrolment_path} "
                          "that is made of it",
             rows=numbered_trial_lines(trials[own], lines),
             fix="remove these lines, or the test utterance from the model's utt_ids")


def _check_sides_share_no_audio(trials, lines, sides, models, manifest, trials_path,
                                manifest_path):
    """Refuse trials whose two sides are the same audio under two IDs.

    A recording listed twice in the manifest (rows of one ``wav``, by
    path as :func:`real_paths` resolves it, whose ``start``-``stop`` samples overlap) makes a trial
    between its IDs one of an utterance with itself, a certain target trial,
    as one ID on both sides would (:func:`~local.data.manifest_io.read_trials`
    refuses that). An enrolment model is compared by each of its utterances.
    Only utterances of files with several rows are paired up: about 1 s for
    10^6 trials between 10^5 utterances of files of their own, with or
    without models of 3, and 1-2 s where every file has 10 segments.
    """
    (enrol_codes, enrol_ids), (test_codes, test_ids) = sides["enrol"], sides["test"]
    members = pd.Series([models.get(side, [side]) for side in enrol_ids]).explode()
    used = pd.Index(pd.unique(np.concatenate([members.to_numpy(object),
                                              test_ids.to_numpy(object)])))
    audio = manifest.set_index("ID").reindex(used)
    wav = pd.factorize(real_paths(audio["wav"]))[0]
    repeated = np.bincount(wav)[wav] > 1
    if not repeated.any():
        return
    members = members[repeated[used.get_indexer(members)]]
    pairs = pd.DataFrame({"trial": np.arange(len(trials)), "enrol": enrol_codes}).merge(
        pd.DataFrame({"enrol": members.index, "utt": used.get_indexer(members)}), on="enrol")
    enrol = pairs["utt"].to_numpy()
    test = used.get_indexer(test_ids)[test_codes[pairs["trial"].to_numpy()]]
    start, stop = audio["start"].to_numpy(), audio["stop"].to_numpy()
    shared = ((wav[enrol] == wav[test]) & (start[enrol] < stop[test])
              & (start[test] < stop[enrol]))
    if shared.any():
        hits = pairs[shared].drop_duplicates("trial")
        rows, utts = trials.iloc[hits["trial"]], hits["utt"].to_numpy()
        which = (" (" + used.to_numpy(object)[utts] + " and " + rows["test"].to_numpy() + ": "
                 + audio["wav"].to_numpy(object)[utts] + ")")
        fail(trials_path, "trials compare an utterance with itself under two IDs: both sides "
                          f"share samples of one audio file of {manifest_path}",
             rows=[line + why for line, why in zip(numbered_trial_lines(rows, lines), which)],
             fix="remove these lines, or the manifest's second row of the same audio")


def _warn_reversed_trials(lines, sides, trials_path):
    """Warn of trials listed both ways round, ``A B`` on one line and ``B A`` on another.

    Cosine, PLDA, S-norm and AS-norm score the two alike, so the pair counts
    twice in the EER and minDCF, as a repeated line would
    (:func:`~local.data.manifest_io.read_trials` refuses that); Z-norm and
    T-norm score them apart. A warning, not a refusal: a published list
    that pairs some utterances both ways is still the protocol to score.
    """
    (enrol_codes, enrol_ids), (test_codes, test_ids) = sides["enrol"], sides["test"]
    # Each trial's test side by its enrolment code and enrolment side by its test code (-1: none).
    test_as_enrol = pd.Index(enrol_ids).get_indexer(test_ids)[test_codes].astype(np.int64)
    enrol_as_test = pd.Index(test_ids).get_indexer(enrol_ids)[enrol_codes].astype(np.int64)
    width = len(test_ids)
    forward = enrol_codes.astype(np.int64) * width + test_codes
    backward = np.where((test_as_enrol >= 0) & (enrol_as_test >= 0),
                        test_as_enrol * width + enrol_as_test, -1)
    # Trial pairs are unique (read_trials refuses repeats): each finds its reverse at most once.
    earlier = pd.Index(forward).get_indexer(backward)
    later = np.flatnonzero((earlier >= 0) & (earlier < np.arange(len(forward))))
    if len(later):
        logger.warning("%s: %d trials repeat an earlier trial the other way round (line %d "
                       "reverses line %d): with cosine, PLDA, S-norm or AS-norm each scores as "
                       "the other and the pair counts twice in the EER and minDCF; remove one "
                       "line of each pair unless the published list has both", trials_path,
                       len(later), lines[later[0]], lines[earlier[later[0]]])


def check_speaker_overlap(train_path, scored, scored_path, allow=False):
    """Refuse a training manifest that shares speakers or audio files with scored rows.

    A speaker the model trained on (labelled, or in unlabelled target audio)
    makes a trial list's EER say nothing of new speakers. Speakers are
    compared by ``spk_id`` (empty ones left out), files by ``wav`` path, absolute
    and with their folders' links followed (:func:`real_paths`).

    Arguments
    ---------
    train_path : str
        A training manifest.
    scored : pandas.DataFrame
        The rows of an evaluation manifest that a trial list scores.
    scored_path : str
        That trial list (or manifest), named in the message.
    allow : bool
        Log a warning instead (``allow_speaker_overlap``).

    Raises
    ------
    ManifestError
        Naming the shared speakers and files, unless ``allow``.
    """
    train = read_manifest(train_path)
    speakers = set(scored["spk_id"]) - {""}
    shared = train["spk_id"][train["spk_id"].isin(speakers)].value_counts(sort=False)
    wavs = real_paths(train["wav"])
    files = wavs[wavs.isin(set(real_paths(scored["wav"])))].unique()
    if not len(shared) and not len(files):
        return
    problem = (f"{len(shared)} speakers and {len(files)} audio files of these trials are in the "
               f"training manifest {train_path}")
    rows = ([f"speaker {spk}: {count} training utterances" for spk, count in shared.items()]
            + [f"file {wav}" for wav in files])
    if allow:
        logger.warning("%s: %s (allowed by allow_speaker_overlap), e.g. %s", scored_path,
                       problem, rows[0])
        return
    shared_kinds = " and ".join(kind for kind, count in (("speakers", len(shared)),
                                                        ("audio files", len(files))) if count)
    fail(scored_path, problem, rows=rows,
         fix=f"take these {shared_kinds} out of the training manifest or the trial list; where "
             "the protocol means them to be shared (the unlabelled target training audio being "
             "the evaluation audio itself), set allow_speaker_overlap: True "
             "(python -m data_prep.manifest: --allow-speaker-overlap)")


def real_paths(paths):
    """Absolute paths of files with their folders' links followed, each folder resolved once.

    A file reached through a linked folder (a corpus under ``/data`` linked
    from ``/mnt``) is then one path. Links to the files themselves are not
    followed: that would resolve every file, 10 s for 10^6 of them, where
    their folders take 1.8 s.

    Arguments
    ---------
    paths : pandas.Series
        File paths, absolute or relative to the working directory.

    Returns
    -------
    pandas.Series
        The resolved paths, in order.

    Example
    -------
    >>> real_paths(pd.Series(["/a/b.wav"])).tolist()
    ['/a/b.wav']
    """
    folders = paths.map(os.path.dirname)
    resolved = {folder: os.path.realpath(folder) for folder in folders.unique()}
    return pd.Series([os.path.join(resolved[folder], os.path.basename(path))
                      for folder, path in zip(folders, paths)], index=paths.index, dtype=object)


def check_model_speakers(models, manifest, manifest_path, enrolment_path):
    """Refuse enrolment models whose utterances have several speakers.

    A model enrols one speaker: one of several has no speaker that a trial's
    label could be checked against (:func:`side_values` gives it none), and
    its score compares the test side with a mix of voices. Utterances of
    unknown speaker (an empty ``spk_id``) do not count.

    Arguments
    ---------
    models : dict
        ``{model_id: [utterance ID, ...]}``, each utterance in ``manifest``.
    manifest : pandas.DataFrame
        As :func:`read_manifest` returns it.
    manifest_path : str
        Its file, named in the message.
    enrolment_path : str
        The enrolment table, named in the message.

    Raises
    ------
    ManifestError
        Naming each such model, its speakers and their utterances.
    """
    listed = _mixed_models(models, manifest, "spk_id")
    if len(listed):
        fail(enrolment_path, f"models whose utterances have several speakers in {manifest_path}",
             rows=listed.index + ": " + listed,
             fix="enrol each model with utterances of one speaker: split these models into "
                 "one per speaker in the enrolment table and the trial list, or correct the "
                 "spk_id of their utterances in the manifest")


def check_typed_model_phrases(trials, models, manifest, manifest_path, enrolment_path):
    """Refuse enrolment models of several phrases in trials with SdSV trial types.

    A trial type says whether the test side says the model's phrase; a model
    whose utterances say several phrases (and whose row in the enrolment
    table gives none; one that contradicts them :func:`side_values` refuses)
    has no phrase, so its types could not be checked and the per-phrase rows
    of the report (:func:`local.evaluation.report.condition_table`) would
    put its trials under the phrase ``mixed``. Untyped (text-independent)
    trials may enrol several phrases.

    Arguments
    ---------
    trials : pandas.DataFrame
        As from :func:`read_numbered_trials`.
    models : dict
        ``{model_id: [utterance ID, ...]}``, each utterance in ``manifest``.
    manifest : pandas.DataFrame
        As :func:`read_manifest` returns it.
    manifest_path : str
        Its file, named in the message.
    enrolment_path : str
        The enrolment table, named in the message.

    Raises
    ------
    ManifestError
        Naming each such model, its phrases and their utterances.
    """
    if "phrase" not in manifest.columns:
        return
    typed = trials["enrol"][trials["trial_type"] != ""].unique()
    listed = _mixed_models({m: models[m] for m in typed if m in models}, manifest, "phrase")
    if len(listed):
        fail(enrolment_path, f"models of trials with SdSV trial types whose utterances say "
             f"several phrases in {manifest_path}",
             rows=listed.index + ": " + listed,
             fix="enrol each model with utterances of one phrase (SdSV task 1: three of the "
                 "model's phrase), or correct the phrase of their utterances in the manifest")


def _mixed_models(models, manifest, column):
    """``{model: "utt (value), ..."}`` of the models whose utterances have several known values of ``column``."""
    members = pd.Series(models, dtype=object).explode().rename("utt").to_frame()
    members[column] = members["utt"].map(manifest.set_index("ID")[column])
    members = members[members[column] != ""]
    mixed = members.groupby(level=0, sort=False)[column].nunique() > 1
    rows = members[members.index.isin(mixed.index[mixed])]
    return (rows["utt"] + " (" + rows[column] + ")").groupby(level=0, sort=False).agg(", ".join)


def side_values(column, manifest, models, enrolment, enrolment_path):
    """``column`` (``spk_id``, ``phrase``) of every manifest ID and enrolment model, "" if unknown.

    A model's value is its enrolment table's, where the table has the column
    and the model's row a value; otherwise the one value its utterances'
    known values share ("" if they have none, or several).

    Arguments
    ---------
    column : str
        A manifest column (one a manifest may lack: all unknown).
    manifest : pandas.DataFrame
        As :func:`read_manifest` returns it.
    models : dict
        ``{model_id: [utterance ID, ...]}``, each utterance in ``manifest``.
    enrolment : pandas.DataFrame or None
        The enrolment table (``model_id`` and optionally ``column``); None
        without models.
    enrolment_path : str
        Its file, named in the message.

    Returns
    -------
    pandas.Series
        Indexed by manifest ID and model ID.

    Raises
    ------
    ManifestError
        When a model's value in the table contradicts one of its utterances'.
    """
    values = (manifest.set_index("ID")[column] if column in manifest.columns
              else pd.Series("", index=manifest["ID"]))
    if not models:
        return values
    own = (enrolment.set_index("model_id")[column] if column in enrolment.columns
           else pd.Series("", index=list(models)))
    pairs = pd.Series(models).explode().rename("utt").to_frame()
    pairs["value"] = pairs["utt"].map(values)
    pairs["own"] = own.reindex(pairs.index)
    wrong = pairs[(pairs["value"] != "") & (pairs["own"] != "") & (pairs["value"] != pairs["own"])]
    if len(wrong):
        fail(enrolment_path, f"models whose {column} contradicts their utterances'",
             rows=wrong.index + f": {column} " + wrong["own"] + ", utterance " + wrong["utt"]
             + f" {column} " + wrong["value"],
             fix=f"give each model the {column} of its utterances in the manifest")
    utterances = pairs[pairs["value"] != ""].groupby(level=0)["value"]
    shared = utterances.first().where(utterances.nunique() == 1).reindex(own.index)
    return pd.concat([own.where(own != "", shared).fillna(""),
                      values.drop(list(models), errors="ignore")])


def _sameness(values, sides):
    """Per trial: 1 where both sides have the same known value, 0 where they differ, -1 unknown."""
    codes = pd.Series(pd.factorize(values.mask(values == ""))[0], index=values.index)
    enrol, test = (codes.reindex(uniques).to_numpy()[positions]
                   for positions, uniques in (sides["enrol"], sides["test"]))
    return np.where((enrol >= 0) & (test >= 0), enrol == test, -1)


def _check_trial_ids(trials, lines, sides, trials_path, values, manifest_path,
                     enrolment_path=None):
    """Every trial side is known; labels and SdSV trial types agree with both sides.

    ``lines`` and ``sides`` are as from :func:`read_numbered_trials`;
    ``values`` is ``{column: series}`` of :func:`side_values`, for each of
    :data:`~local.data.schema.SDSV_TRIAL_COLUMNS`. An unknown side is named
    with the files it may be missing from: the manifest and the enrolment
    table (a model left out of it, or no table given).
    """
    known = values["spk_id"].index
    unknown = []
    for side in ("enrol", "test"):
        codes, uniques = sides[side]
        rows = np.flatnonzero(~uniques.isin(known)[codes])
        unknown.append(pd.DataFrame({"line": lines[rows], "side": side,
                                     "ident": trials[side].to_numpy()[rows]}))
    unknown = pd.concat(unknown).sort_values("line", kind="stable")
    if len(unknown):
        models = f" nor model_ids of {enrolment_path}" if enrolment_path else ""
        fail(trials_path, f"trials name IDs that are not in {manifest_path}{models}",
             rows="line " + unknown["line"].astype(str) + ": " + unknown["side"] + " '"
             + unknown["ident"] + "'",
             fix="use the manifest's ID column (or an enrolment model ID), and "
             + ("list every model of the trials in the enrolment table (prepare the two "
                "together)" if enrolment_path else "give the enrolment table of a list with "
                "models (the list's enrolment: in the condition, --enrolment of "
                "data_prep.manifest)"))
    same = {column: _sameness(values[column], sides) for column in SDSV_TRIAL_COLUMNS}
    # Where both sides have a known speaker, an untyped trial's label must agree
    # with them; a typed (text-dependent) one's label follows its type, which
    # says whether the speakers, and the phrases, are the same.
    types = trials["trial_type"]
    wrong = (types.to_numpy() == "") & (same["spk_id"] >= 0) & (
        same["spk_id"] != trials["label"].to_numpy())
    if wrong.any():
        fail(trials_path, "labels disagree with the spk_id of their sides",
             rows=numbered_trial_lines(trials[wrong], lines),
             fix="label is 1 exactly when both sides have the same speaker (the manifest's "
                 "spk_id; a model's in the enrolment table, or that of its utterances)")
    for position, column in enumerate(SDSV_TRIAL_COLUMNS):
        expected = types.map({kind: int(pair[position])
                              for kind, pair in SDSV_TRIAL_TYPES.items()}).fillna(-1).to_numpy()
        wrong = (expected >= 0) & (same[column] >= 0) & (same[column] != expected)
        if wrong.any():
            alike = " and ".join(kind for kind, pair in SDSV_TRIAL_TYPES.items() if pair[position])
            fail(trials_path, f"SdSV trial types disagree with the {column} of their sides",
                 rows=numbered_trial_lines(trials[wrong], lines),
                 fix=f"{alike} trials have the same {column} on both sides, the others "
                     f"different ones (the manifest's {column}; a model's in the enrolment "
                     "table, or that of its utterances)")
