"""Big FARSDAT preparation on fake 8 kHz trees laid out for the default and a custom pattern."""

import collections
import itertools
import os
import random
import subprocess
import tracemalloc

import numpy as np
import pytest
import soundfile

from data_prep.farsdat import (
    CONVERT_SHORTEN,
    _draw_trials,
    main,
    prepare_farsdat,
    read_speaker_table,
    utterance_id,
)
from data_prep.preparation import OptionError
from local.data.manifest_io import read_manifest, read_trials
from local.data.validation import validate
from local.errors import ManifestError

RATE = 8000
# <spk>/<session>/<utt>.<ext>, as the default pattern expects, and lengths in seconds.
TREE = {
    "spk01/call1/utt01.wav": 0.5,
    "spk01/call1/utt02.wav": 0.3,
    "spk01/call2/utt01.wav": 0.8,
    "spk02/call1/utt01.wav": 0.6,
    "spk02/call2/utt03.flac": 0.4,
    "spk03/call1/utt01.wav": 0.9,
    "spk03/call1/utt02.sph": 0.2,  # uncompressed NIST SPHERE: libsndfile reads it
    "spk04/call1/utt01.wav": 0.7,
    "spk04/call3/utt02.wav": 0.5,
    "spk05/call1/utt01.wav": 1.0,
    "spk05/call2/utt01.wav": 0.3,
    "spk06/call1/utt01.wav": 0.4,
    "spk06/call1/utt02.WAV": 0.6,
}
GENDER = {"spk01": "f", "spk02": "m", "spk03": "f", "spk04": "m", "spk05": "f", "spk06": "m"}
SPEAKER_TABLE = "spk, gender ,age\n" + "".join(
    f"{spk},{gender.upper()},3{n}\n" for n, (spk, gender) in enumerate(GENDER.items()))
# A flat tree, gender/<spk>_s<session>_<n>.wav, and a pattern for it (no utt group).
FLAT = {
    "f/spk07_s1_01.wav": 0.4,
    "f/spk07_s2_02.wav": 0.5,
    "m/spk08_s1_01.wav": 0.6,
    "m/spk08_s1_02.wav": 0.3,
    "m/spk09_s3_01.wav": 0.7,
    "m/spk09_s3_02.wav": 0.2,
}
FLAT_PATTERN = r"[fm]/(?P<spk>spk\d+)_s(?P<session>\d+)_\d+\.wav"
COLUMNS = ["ID", "duration", "wav", "start", "stop", "spk_id", "domain",
           "lang", "channel", "gender", "session", "sample_rate"]


def _write_audio(path, seconds, seed, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * RATE))
    soundfile.write(path, noise, RATE, subtype="PCM_16", **kwargs)


def write_tree(folder, tree=TREE):
    for seed, (path, seconds) in enumerate(tree.items()):
        sphere = dict(format="NIST") if path.endswith(".sph") else {}
        _write_audio(os.path.join(folder, path), seconds, seed, **sphere)
    return folder


@pytest.fixture
def corpus(tmp_path):
    folder = write_tree(tmp_path / "big_farsdat")
    (folder / "spk01" / "call1" / "utt01.txt").write_text("transcription, not audio\n")
    (folder / "speakers.csv").write_text(SPEAKER_TABLE)
    return folder


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "prepared")


def _pairs(trials):
    return [frozenset(pair) for pair in zip(trials["enrol"], trials["test"])]


def test_rows_describe_their_files(corpus, out):
    paths = prepare_farsdat(str(corpus), out, speaker_table=str(corpus / "speakers.csv"),
                            n_eval_speakers=2)
    assert sorted(paths) == ["eval", "train", "trials"]
    wavs = []
    for name in ("train", "eval"):
        table = validate(paths[name])  # opens every file too
        assert list(table.columns) == COLUMNS
        assert set(table["domain"]) == {"farsdat"} and set(table["channel"]) == {"telephone"}
        assert set(table["lang"]) == {"fa"}
        for row in table.itertuples():
            speaker, session, name = row.wav.split(os.sep)[-3:]
            info = soundfile.info(row.wav)
            assert (row.start, row.stop, row.sample_rate) == (0, info.frames, RATE)
            assert row.duration == pytest.approx(info.frames / RATE, abs=1e-4)
            assert row.ID == f"{speaker}--{session}--{os.path.splitext(name)[0]}"
            assert (row.spk_id, row.session, row.gender) == (speaker, session, GENDER[speaker])
        wavs += list(table["wav"])
    assert sorted(wavs) == sorted(str(corpus / path) for path in TREE)  # .flac, .sph, .WAV too


def test_eval_speakers_are_held_out_and_trials_are_pairs_of_them(corpus, out):
    paths = prepare_farsdat(str(corpus), out, n_eval_speakers=3,
                            target_trials=100, nontarget_trials=100)
    train, evaluation = read_manifest(paths["train"]), read_manifest(paths["eval"])
    assert evaluation["spk_id"].nunique() == 3 and train["spk_id"].nunique() == 3
    assert not set(train["spk_id"]) & set(evaluation["spk_id"])
    assert set(train["spk_id"]) | set(evaluation["spk_id"]) == set(GENDER)
    assert set(train["gender"]) == {""}  # no speaker table
    validate(paths["eval"], paths["trials"])
    trials = read_trials(paths["trials"])
    speaker = dict(zip(evaluation["ID"], evaluation["spk_id"]))
    assert (trials["label"] == [int(speaker[e] == speaker[t])
                                for e, t in zip(trials["enrol"], trials["test"])]).all()
    # More trials were asked for than exist: every pair, once, and no self-trial.
    pairs = _pairs(trials)
    assert len(set(pairs)) == len(pairs) and all(len(pair) == 2 for pair in pairs)
    assert set(pairs) == {frozenset(pair) for pair in itertools.combinations(speaker, 2)}


def test_trial_counts_and_cross_session_targets_first(corpus, out):
    paths = prepare_farsdat(str(corpus), out, n_eval_speakers=4,
                            target_trials=2, nontarget_trials=5)
    trials = read_trials(paths["trials"])
    assert list(trials["label"].value_counts().sort_index()) == [5, 2]
    assert len(set(_pairs(trials))) == 7
    evaluation = read_manifest(paths["eval"])
    session = dict(zip(evaluation["ID"], evaluation["session"]))
    targets = trials[trials["label"] == 1]
    assert all(session[e] != session[t] for e, t in zip(targets["enrol"], targets["test"]))


def test_seeded_draws_are_reproducible(corpus, tmp_path):
    def prepared(name, seed):
        paths = prepare_farsdat(str(corpus), str(tmp_path / name), n_eval_speakers=3,
                                target_trials=3, nontarget_trials=4, seed=seed)
        return [open(paths[key]).read() for key in ("train", "eval", "trials")]

    first = prepared("a", 1234)
    assert prepared("b", 1234) == first
    assert prepared("c", 7)[1:] != first[1:]



def _held_out(sessions):
    """Trial-draw rows of ``{speaker: [utterances per session]}``."""
    return [dict(ID=f"{spk}--c{number}--u{utt}", spk_id=spk, session=f"c{number}")
            for spk, counts in sessions.items()
            for number, count in enumerate(counts) for utt in range(count)]


def _drawn(rows, targets, nontargets, seed):
    """The draw's trials as ``{frozenset(pair): label}``, checked for self and repeated pairs."""
    trials = _draw_trials(rows, targets, nontargets, random.Random(seed), "corpus")
    pairs = {frozenset((enrol, test)): label for label, enrol, test in trials}
    assert len(pairs) == len(trials) and all(len(pair) == 2 for pair in pairs)
    return pairs


# A: 3 utterances in c0 and 1 in c1 (3 cross-session pairs, 3 same-session);
# B: 2 in c0 (1 same-session pair); C: 1. 7 target and 14 non-target pairs.
SMALL = {"A": [3, 1], "B": [2], "C": [1]}


def test_trial_draw_takes_cross_session_targets_first_and_every_pair_at_most_once():
    rows = _held_out(SMALL)
    speaker = {row["ID"]: row["spk_id"] for row in rows}
    session = {row["ID"]: row["session"] for row in rows}
    for seed in range(20):
        pairs = _drawn(rows, 5, 10, seed)
        assert all(label == (len({speaker[i] for i in pair}) == 1)
                   for pair, label in pairs.items())
        targets = [pair for pair, label in pairs.items() if label]
        assert len(targets) == 5 and len(pairs) == 15
        # Every cross-session pair, then two of the four same-session ones.
        assert sum(len({session[i] for i in pair}) == 2 for pair in targets) == 3
    everything = _drawn(rows, 100, 100, 0)  # more than exist: all of them, once
    assert len(everything) == len(list(itertools.combinations(rows, 2))) == 21
    assert sum(everything.values()) == 7


def test_trial_draw_is_uniform_over_the_pairs_of_each_kind():
    rows = _held_out(SMALL)
    # One target of the 3 cross-session pairs and one non-target of 14, 2,900 times.
    counts = collections.Counter(pair for seed in range(2900)
                                 for pair in _drawn(rows, 1, 1, seed))
    session = {row["ID"]: (row["spk_id"], row["session"]) for row in rows}
    cross = [n for pair, n in counts.items() if len({session[i] for i in pair}) == 2
             and len({session[i][0] for i in pair}) == 1]
    nontarget = [n for pair, n in counts.items() if len({session[i][0] for i in pair}) == 2]
    assert len(cross) == 3 and len(nontarget) == 14 and len(counts) == 17
    assert all(865 <= n <= 1069 for n in cross)  # 967 expected, 4 standard deviations
    assert all(151 <= n <= 263 for n in nontarget)  # 207 expected, 4 standard deviations


def test_trial_draw_grows_with_the_utterances_not_their_pairs():
    # 2 speakers of 1,500 utterances: 2.2 million same-speaker pairs, none listed.
    rows = _held_out({"A": [500] * 3, "B": [500] * 3})
    tracemalloc.start()
    try:
        pairs = _drawn(rows, 5000, 5000, 1234)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2 ** 20
    session = {row["ID"]: row["session"] for row in rows}
    targets = [pair for pair, label in pairs.items() if label]
    assert len(targets) == 5000 and len(pairs) == 10000
    assert all(len({session[i] for i in pair}) == 2 for pair in targets)

def test_training_chunks(corpus, out):
    paths = prepare_farsdat(str(corpus), out, n_eval_speakers=2, seg_dur=0.25)
    train, evaluation = validate(paths["train"]), validate(paths["eval"])
    size = RATE // 4
    expected = []
    for path, seconds in TREE.items():
        if path[:5] in set(train["spk_id"]):
            ident, frames = os.path.splitext(path)[0].replace("/", "--"), int(seconds * RATE)
            starts = range(0, frames - size + 1, size)
            expected += [f"{ident}_{s}_{s + size}" for s in starts] if frames > size else [ident]
    assert sorted(train["ID"]) == sorted(expected)
    chunks = train[train["ID"].str.contains("_")]
    assert (chunks["stop"] - chunks["start"] == size).all() and set(chunks["duration"]) == {0.25}
    assert (evaluation["start"] == 0).all()
    assert (evaluation["stop"] == [soundfile.info(w).frames for w in evaluation["wav"]]).all()


def test_custom_pattern(tmp_path, out):
    flat = write_tree(tmp_path / "flat", FLAT)
    paths = prepare_farsdat(str(flat), out, pattern=FLAT_PATTERN, n_eval_speakers=2)
    rows = {}
    for name in ("train", "eval"):
        table = validate(paths[name])
        rows.update({row.ID: row for row in table.itertuples()})
    assert sorted(rows) == sorted(f"{p[2:7]}--{p[:-4].replace('/', '--')}" for p in FLAT)
    assert rows["spk07--f--spk07_s2_02"].session == "2"
    assert rows["spk07--f--spk07_s2_02"].wav == str(flat / "f" / "spk07_s2_02.wav")
    # Without a session group the session column is empty.
    paths = prepare_farsdat(str(flat), out, pattern=r"[fm]/(?P<spk>spk\d+)_.*\.wav",
                            n_eval_speakers=2)
    assert set(read_manifest(paths["train"])["session"]) == {""}


def test_unmatched_files_are_refused_or_left_out_on_request(corpus, out):
    _write_audio(str(corpus / "calibration.wav"), 0.3, 99)
    with pytest.raises(ManifestError, match=r"1 of 14 audio files do not match(.|\n)*"
                       r"\n  calibration.wav\n(.|\n)*--ignore_unmatched \(for a "
                       r"condition, ignore_unmatched: True in that step\)"):
        prepare_farsdat(str(corpus), out)
    paths = prepare_farsdat(str(corpus), out, n_eval_speakers=2, ignore_unmatched=True)
    ids = list(read_manifest(paths["train"])["ID"]) + list(read_manifest(paths["eval"])["ID"])
    assert len(ids) == len(TREE) and not [i for i in ids if "calibration" in i]


def test_hidden_files_and_folders_are_left_out(corpus, out, caplog):
    # What a copy made on macOS leaves: an AppleDouble file of metadata beside
    # an utterance, which the default pattern matches, and a hidden folder.
    (corpus / "spk01" / "call1" / "._utt01.wav").write_bytes(b"\x00\x05\x16\x07Mac OS X")
    _write_audio(str(corpus / ".Trashes" / "501" / "spk99" / "utt01.wav"), 0.3, 99)
    with caplog.at_level("WARNING", logger="data_prep.farsdat"):
        paths = prepare_farsdat(str(corpus), out, n_eval_speakers=2)
    ids = list(read_manifest(paths["train"])["ID"]) + list(read_manifest(paths["eval"])["ID"])
    assert len(ids) == len(TREE) and not [i for i in ids if "._" in i or "spk99" in i]
    assert ("leaving out 2 hidden audio files and folders" in caplog.text
            and "such as .Trashes/" in caplog.text)


def test_rerun_with_the_same_options_is_skipped(corpus, out):
    paths = prepare_farsdat(str(corpus), out, n_eval_speakers=2)
    stamps = {name: os.stat(path).st_mtime_ns for name, path in paths.items()}
    os.remove(corpus / "spk05" / "call2" / "utt01.wav")  # not even scanned
    assert prepare_farsdat(str(corpus), out, n_eval_speakers=2) == paths
    assert {name: os.stat(path).st_mtime_ns for name, path in paths.items()} == stamps
    prepare_farsdat(str(corpus), out, n_eval_speakers=3)  # other options: redone
    ids = list(read_manifest(paths["train"])["ID"]) + list(read_manifest(paths["eval"])["ID"])
    assert len(ids) == len(TREE) - 1 and read_manifest(paths["eval"])["spk_id"].nunique() == 3


def test_helpers():
    assert utterance_id("a/b c/d.wav", {"spk": "a", "session": None}) == "a--a--b_c--d"
    assert utterance_id("a/x/d.wav", {"spk": "a", "utt": "d"}) == "a--d"


def test_speaker_table_with_padding_and_extra_columns(corpus):
    path = corpus / "speakers.csv"
    path.write_text("\ufeff" + SPEAKER_TABLE + "\n", encoding="utf-8")
    assert read_speaker_table(str(path)) == GENDER


def test_speaker_table_listing_a_speaker_with_two_genders_is_refused(corpus):
    path = corpus / "speakers.csv"
    speaker, gender = next(iter(GENDER.items()))
    other = "m" if gender == "f" else "f"
    path.write_text(f"{SPEAKER_TABLE}\n{speaker},{other},30\n")
    with pytest.raises(ManifestError, match=rf"speakers.csv: speakers listed with two genders\n"
                       rf"  line \d+: {speaker} is {other}, line 2 said {gender}"):
        read_speaker_table(str(path))


def test_command_line(corpus, out, capsys):
    assert main(["--data_folder", str(corpus), "--save_folder", out, "--n_eval_speakers", "2",
                 "--speaker_table", str(corpus / "speakers.csv"), "--seg_dur", "0.25"]) == 0
    assert "trials: " in capsys.readouterr().out
    assert os.path.isfile(os.path.join(out, "trials.txt"))
    assert main(["--data_folder", str(corpus), "--save_folder", out,
                 "--pattern", r"(?P<speaker>[^/]+)/.*"]) == 1
    assert "has no named group spk" in capsys.readouterr().err


def _missing_folder(corpus):
    return dict(data_folder=str(corpus / "nowhere"))


def _transcripts_only(corpus):
    folder = corpus / "transcripts"
    folder.mkdir()
    (folder / "spk01.txt").write_text("salam\n")
    return dict(data_folder=str(folder))


def _pattern_without_spk(corpus):
    return dict(pattern=r"(?P<speaker>[^/]+)/(?P<session>[^/]+)/[^/]+")


def _not_a_regex(corpus):
    return dict(pattern=r"(?P<spk>[^/]+/.*")


def _unknown_group(corpus):
    return dict(pattern=r"(?P<spk>[^/]+)/(?P<call>[^/]+)/[^/]+")


def _unmatched(corpus):
    return dict(pattern=r"(?P<spk>[^/]+)/(?P<session>[^/]+)/(?P<utt>[^/]+)\.wav")


def _empty_spk(corpus):
    # spk06's files match with an empty spk group: they have no speaker.
    return dict(pattern=r"(?P<spk>spk0[1-5]|)\w*/(?P<session>[^/]+)/(?P<utt>[^/]+)\.(?i:wav|flac|sph)")


def _nothing_matches_with_unmatched_ignored(corpus):
    return dict(pattern=r"(?P<spk>[^/]+)/(?P<session>[^/]+)/(?P<utt>[^/]+)\.mp3",
                ignore_unmatched=True)


def _unreadable(corpus):
    (corpus / "spk04" / "call1" / "utt01.wav").write_bytes(b"RIFF0000WAVEjunk")


def _shorten(corpus):
    header = (b"NIST_1A\n   1024\nsample_rate -i 8000\nsample_count -i 4000\n"
              b"sample_coding -s26 pcm,embedded-shorten-v2.00\nend_head\n")
    (corpus / "spk03" / "call1" / "utt02.sph").write_bytes(header.ljust(1024) + b"ajkg" * 99)


def _shared_ids(corpus):
    _write_audio(str(corpus / "spk01" / "call1" / "utt01.flac"), 0.3, 99)


def _table_columns(corpus):
    (corpus / "speakers.csv").write_text("speaker,sex\nspk01,f\n")
    return dict(speaker_table=str(corpus / "speakers.csv"))


def _table_short_line(corpus):
    (corpus / "speakers.csv").write_text(SPEAKER_TABLE.replace("spk02,M,31", "spk02"))
    return dict(speaker_table=str(corpus / "speakers.csv"))


def _table_missing_speaker(corpus):
    (corpus / "speakers.csv").write_text(SPEAKER_TABLE.replace("spk04,M,33\n", ""))
    return dict(speaker_table=str(corpus / "speakers.csv"))


def _table_absent(corpus):
    return dict(speaker_table=str(corpus / "nowhere.csv"))


def _too_few_speakers(corpus):
    return dict(n_eval_speakers=6)


def _no_target_trial(corpus):
    return dict(pattern=r"(?P<spk>.+)\.(?i:wav|flac|sph)")  # every file its own speaker


@pytest.mark.parametrize("breakage, message, fix", [
    (_missing_folder, r"nowhere: Big FARSDAT folder does not exist",
     "pass as data_folder the folder that holds the corpus audio"),
    (_transcripts_only, r"transcripts: no audio files \(.wav, .flac, .sph\) under it",
     "pass as data_folder the folder that holds the corpus audio"),
    (_pattern_without_spk, r"pattern '\(\?P<speaker>.*: has no named group spk",
     "adjust the pattern (--pattern; for a condition, pattern: in its"),
    (_not_a_regex, r"not a regular expression",
     "adjust the pattern (--pattern; for a condition, pattern: in its"),
    (_unknown_group, r"has named groups \['call'\] that mean nothing here",
     "adjust the pattern (--pattern; for a condition, pattern: in its"),
    (_unmatched, r"3 of 13 audio files do not match(.|\n)*\n  spk02/call2/utt03.flac\n",
     "adjust the pattern (--pattern; for a condition, pattern: in its"),
    (_empty_spk, r"2 of 13 audio files do not match the pattern .* \(or give an empty spk\)\n"
                 r"  spk06/call1/utt01.wav\n  spk06/call1/utt02.WAV\n",
     "adjust the pattern (--pattern; for a condition, pattern: in its"),
    (_nothing_matches_with_unmatched_ignored, r"13 of 13 audio files do not match(.|\n)*\n"
                                              r"  spk01/call1/utt01.wav\n",
     "adjust the pattern (--pattern; for a condition, pattern: in its"),
    (_unreadable, r"spk04/call1/utt01.wav: cannot read audio",
     "convert it to wav or flac (e.g. ffmpeg -i IN -ar 16000 OUT.wav)"),
    (_shorten, r"utt02.sph: NIST SPHERE compressed with shorten(.|\n)*"
               r"Fix: .*find . -iname '\*.sph'.*big_farsdat_wav.*ffmpeg",
     "decompress the corpus into a wav tree and pass that as"),
    (_shared_ids, r"share an utterance ID\n  spk01--call1--utt01: spk01/call1/utt01.flac\n"
                  r"  spk01--call1--utt01: spk01/call1/utt01.wav",
     "keep one file per utterance (not e.g. both x.wav and x.sph), or"),
    (_table_columns, r"speakers.csv: not a speaker table: header \['speaker', 'sex'\]",
     "make the first line name the columns, with spk and gender among"),
    (_table_short_line, r"speakers.csv: lines without a speaker and gender\n  line 3: spk02",
     "give every line the 3 columns of the header"),
    (_table_missing_speaker, r"speakers.csv: 1 speakers found under .* are not in it\n  spk04",
     "add a line spk,gender for each, or check that the pattern's spk"),
    (_table_absent, r"nowhere.csv: speaker table does not exist",
     "pass the path of a CSV with the columns spk,gender, or no"),
    (_too_few_speakers, r"6 speakers found; n_eval_speakers=6 leaves none for training",
     "lower n_eval_speakers, or check that the pattern's spk group is"),
    (_no_target_trial, r"no held-out speaker has two utterances",
     "check that the pattern's spk group is the speaker"),
])
def test_bad_input_is_refused_with_the_fix(corpus, out, breakage, message, fix):
    arguments = dict(data_folder=str(corpus), save_folder=out, n_eval_speakers=2)
    arguments.update(breakage(corpus) or {})
    with pytest.raises(ManifestError, match=message) as error:
        prepare_farsdat(**arguments)
    assert f"\nFix: {fix}" in str(error.value)
    assert not os.path.exists(out)  # the save folder, made for the lock, removed again


@pytest.mark.parametrize("breakage", [_missing_folder, _transcripts_only, _pattern_without_spk,
                                      _unmatched, _unreadable, _table_missing_speaker])
def test_a_refused_preparation_leaves_the_earlier_one_as_it_was(corpus, out, breakage):
    """A preparation refused on other options removed the earlier one's record of its options,
    so that the folder was prepared again, and after a bad wav held the new trial list."""
    arguments = dict(data_folder=str(corpus), save_folder=out, n_eval_speakers=2)
    paths = prepare_farsdat(**arguments)
    before = {name: open(path, "rb").read() for name, path in paths.items()}
    listed = sorted(os.listdir(out))
    with pytest.raises(ManifestError):
        prepare_farsdat(**{**arguments, "seed": 7, **(breakage(corpus) or {})})
    assert sorted(os.listdir(out)) == listed
    assert {name: open(path, "rb").read() for name, path in paths.items()} == before
    assert prepare_farsdat(**arguments) == paths  # skipped, as before


@pytest.mark.parametrize("option, value, message", [
    ("n_eval_speakers", 1, r"n_eval_speakers is 1: not an integer in \[2, inf\), the held-out"),
    ("n_eval_speakers", 2.5, r"n_eval_speakers is 2.5: not an integer in \[2, inf\)"),
    ("target_trials", 0, r"target_trials is 0: not an integer in \[1, inf\)"),
    ("nontarget_trials", -3, r"nontarget_trials is -3: not an integer in \[1, inf\)"),
    ("seg_dur", 0, r"seg_dur is 0: not a number in \(0, inf\), the training chunk length"),
    ("seg_dur", "3", r"seg_dur is '3': not a number in \(0, inf\)"),
])
def test_bad_arguments(corpus, out, option, value, message):
    with pytest.raises(OptionError, match=message + rf".*\nFix: choose {option} in .* \(--{option} "):
        prepare_farsdat(str(corpus), out, **{option: value})
    assert not os.path.exists(out)


@pytest.mark.parametrize("option, value, message", [
    ("--n_eval_speakers", "1", r"n_eval_speakers is 1: not an integer in [2, inf)"),
    ("--target_trials", "0", r"target_trials is 0: not an integer in [1, inf)"),
    ("--seg_dur", "0", r"seg_dur is 0.0: not a number in (0, inf)"),
])
def test_bad_arguments_on_the_command_line(corpus, out, capsys, option, value, message):
    assert main(["--data_folder", str(corpus), "--save_folder", out, option, value]) == 1
    printed = capsys.readouterr()
    assert printed.err.startswith(message) and "Traceback" not in printed.err + printed.out


def test_speaker_folders_linked_into_the_corpus_are_read(corpus, tmp_path, out):
    """A corpus assembled from symbolic links to speaker folders elsewhere."""
    elsewhere = tmp_path / "disk2"
    elsewhere.mkdir()
    os.rename(corpus / "spk06", elsewhere / "spk06")
    os.symlink(elsewhere / "spk06", corpus / "spk06")
    os.symlink(corpus, corpus / "spk06" / "loop")  # a link back up is not walked again
    paths = prepare_farsdat(str(corpus), out, n_eval_speakers=2)
    ids = set(read_manifest(paths["train"])["ID"]) | set(read_manifest(paths["eval"])["ID"])
    assert {"spk06--call1--utt01", "spk06--call1--utt02"} <= ids
    assert len(ids) == len(TREE)


def test_a_decompression_stopped_halfway_leaves_no_truncated_wav(tmp_path):
    corpus, wav_tree = tmp_path / "corpus", tmp_path / "corpus_wav"
    (corpus / "spk01" / "call1").mkdir(parents=True)
    (corpus / "spk01" / "call1" / "utt01.sph").write_bytes(b"NIST_1A")
    ffmpeg = tmp_path / "bin" / "ffmpeg"
    ffmpeg.parent.mkdir()
    command = CONVERT_SHORTEN.replace("DATA_FOLDER", str(corpus)).replace("WAV_FOLDER",
                                                                          str(wav_tree))
    env = {**os.environ, "PATH": f"{ffmpeg.parent}:{os.environ['PATH']}"}
    # Killed while writing: part of a file, then no exit 0.
    ffmpeg.write_text('#!/bin/bash\nprintf RIFF > "${@: -1}"; exit 137\n')
    ffmpeg.chmod(0o755)
    subprocess.run(["bash", "-c", command], env=env)
    assert not list(wav_tree.rglob("*.wav"))
    ffmpeg.write_text('#!/bin/bash\nprintf whole > "${@: -1}"\n')
    subprocess.run(["bash", "-c", command], env=env)
    assert (wav_tree / "spk01" / "call1" / "utt01.wav").read_text() == "whole"
