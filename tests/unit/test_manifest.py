"""The manifest schema and its validator, each bad input with its message."""

import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import soundfile

from data_prep import preparation
from data_prep.manifest import main
from data_prep.preparation import chunk_rows, mark_prepared, prepare_corpus, skip_if_prepared
from local.data.manifest_io import (
    read_csv_table,
    read_enrolment,
    read_manifest,
    read_trials,
    write_enrolment,
    write_manifest,
    write_trials,
)
from local.data import validation
from local.data.schema import REQUIRED_COLUMNS, utterance_row
from local.data.validation import (
    audio_stat_digest,
    check_manifest_audio,
    check_manifest_audio_once,
    validate,
)
from local.errors import ManifestError, fail
from local.provenance import file_sha256
from tests.conftest import waiting_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

@pytest.fixture
def corpus(tmp_path):
    """Four utterances of two speakers, one of them stored at 8 kHz."""
    rows = []
    for spk in ("spkA", "spkB"):
        for n, rate in ((1, 16000), (2, 8000)):
            path = tmp_path / f"{spk}_{n}.wav"
            soundfile.write(path, np.random.default_rng(n).uniform(-0.1, 0.1, rate), rate)
            rows.append(utterance_row(f"{spk}_{n}", str(path), spk, "demo", lang="l1"))
    manifest = tmp_path / "m.csv"
    write_manifest(rows, manifest)
    trials = tmp_path / "trials.txt"
    write_trials([(1, "spkA_1", "spkA_2"), (0, "spkA_1", "spkB_1"), (1, "spkB_1", "spkB_2")], trials)
    return tmp_path, manifest, trials


def test_rows_describe_their_files(corpus):
    folder, manifest, trials = corpus
    table = validate(manifest, trials)
    for row in table.itertuples():
        info = soundfile.info(row.wav)
        assert row.sample_rate == info.samplerate
        assert (row.start, row.stop) == (0, info.frames)
        assert row.duration == pytest.approx(info.frames / info.samplerate)
    assert list(pd.read_csv(manifest).columns[:7]) == [
        "ID", "duration", "wav", "start", "stop", "spk_id", "domain"]


def test_a_row_of_a_whole_file_takes_its_length_and_rate_from_the_header(tmp_path):
    path = tmp_path / "u.wav"
    soundfile.write(path, np.zeros(12345), 16000)
    row = utterance_row("u", str(path), "s", "d", sample_rate=8000, lang="l1")
    assert (row["start"], row["stop"], row["sample_rate"], row["lang"]) == (0, 12345, 16000, "l1")
    assert row["duration"] == pytest.approx(12345 / 16000, abs=5e-5)


def test_trial_round_trip_keeps_types(tmp_path):
    path = tmp_path / "t.txt"
    write_trials([(1, "a", "b", "TC"), (0, "a", "c", "TW")], path)
    assert path.read_text() == "1 a b TC\n0 a c TW\n"
    table = read_trials(path)
    assert table["label"].tolist() == [1, 0] and table["trial_type"].tolist() == ["TC", "TW"]


def test_chunks_cover_the_utterance_without_overlap():
    row = {"ID": "u", "duration": 3.5, "wav": "u.wav", "start": 0, "stop": 56000,
           "spk_id": "s", "domain": "d", "sample_rate": 16000}
    chunks = chunk_rows(pd.DataFrame([row]), 1.0)
    assert list(zip(chunks["start"], chunks["stop"])) == [
        (0, 16000), (16000, 32000), (32000, 48000)]
    assert (chunks["duration"] == 1.0).all()
    assert chunk_rows(pd.DataFrame([row]), 10.0).to_dict("records") == [row]


def test_chunks_of_a_segment_fill_it_exactly_from_its_start():
    # A segment of exactly three chunks that does not start at the file's first sample.
    row = {"ID": "u", "duration": 3.0, "wav": "u.wav", "start": 8000, "stop": 56000,
           "spk_id": "s", "domain": "d", "sample_rate": 16000}
    chunks = chunk_rows(pd.DataFrame([row]), 1.0)
    assert list(zip(chunks["start"], chunks["stop"])) == [
        (8000, 24000), (24000, 40000), (40000, 56000)]
    assert list(chunks["ID"]) == ["u_8000_24000", "u_24000_40000", "u_40000_56000"]


def test_rows_at_several_rates_are_cut_each_at_its_own_in_row_order():
    # Cut on whole columns: each row at its own rate (16 kHz where it names none),
    # a row one chunk long or shorter kept as it is, in its place.
    rows = [{"ID": "a", "duration": 2.5, "wav": "a.wav", "start": 0, "stop": 20000,
             "spk_id": "s", "domain": "d", "sample_rate": 8000},
            {"ID": "b", "duration": 0.5, "wav": "b.wav", "start": 0, "stop": 8000,
             "spk_id": "s", "domain": "d", "sample_rate": 16000},
            {"ID": "c", "duration": 2.0, "wav": "c.wav", "start": 100, "stop": 32100,
             "spk_id": "t", "domain": "d"},
            {"ID": "d", "duration": 1.5, "wav": "d.wav", "start": 0, "stop": 66150,
             "spk_id": "t", "domain": "d", "sample_rate": 44100}]
    chunks = chunk_rows(pd.DataFrame(rows), 0.7)
    assert list(zip(chunks["ID"], chunks["start"], chunks["stop"], chunks["duration"])) == [
        ("a_0_5600", 0, 5600, 0.7), ("a_5600_11200", 5600, 11200, 0.7),
        ("a_11200_16800", 11200, 16800, 0.7), ("b", 0, 8000, 0.5),
        ("c_100_11300", 100, 11300, 0.7), ("c_11300_22500", 11300, 22500, 0.7),
        ("d_0_30870", 0, 30870, 0.7), ("d_30870_61740", 30870, 61740, 0.7)]
    assert list(chunks["spk_id"]) == ["s"] * 4 + ["t"] * 4
    assert chunks["sample_rate"].isna().tolist() == [False] * 4 + [True] * 2 + [False] * 2


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest does not exist.*\n.*data preparation"):
        validate(tmp_path / "none.csv")


def test_wrong_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("utt,path,speaker\na,a.wav,s\n")
    with pytest.raises(ManifestError, match=r"m.csv: missing columns \['ID', 'duration'.*\n"
                                            r"Fix: a manifest needs the header ID,duration,wav,"
                                            r"start,stop,spk_id,domain$"):
        validate(path)


HEADER = "ID,duration,wav,start,stop,spk_id,domain\n"
ROW = "u{},1.0,u.wav,0,16000,s,d"


def test_manifest_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes((HEADER + ROW.format(1) + "\n" + "u2,1.0,caf\xe9.wav,0,16000,s,d\n")
                     .encode("latin-1"))
    with pytest.raises(ManifestError, match=r"m.csv: manifest is not UTF-8 text\n"
                                            r"  line 3: u2,1.0,caf\\xe9.wav.*\nFix: convert it to UTF-8"):
        read_manifest(path)


@pytest.mark.parametrize("text, message", [
    ("model_id,utt_ids\nm1,caf\xe9\n".encode("latin-1"),
     r"enrol.csv: enrolment table is not UTF-8 text\n  line 2: m1,caf\\xe9\nFix: convert it"),
    (b"", r"enrol.csv: enrolment table is empty, without even a header line\n"
          r"Fix: an enrolment table starts with the header line model_id,utt_ids"),
    (b"model_id,utt_ids\nm1,u1,u2\n", r"enrol.csv: line 2 has 3 fields, the header 2"),
])
def test_unreadable_enrolment_table_is_a_message(tmp_path, text, message):
    path = tmp_path / "enrol.csv"
    path.write_bytes(text)
    with pytest.raises(ManifestError, match=message):
        read_enrolment(str(path))


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_manifest_file(tmp_path, text):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match="m.csv: manifest is empty, without even a header line\n"
                                            "Fix: a manifest starts with the header line "
                                            "ID,duration,wav,start,stop,spk_id,domain$"):
        validate(path)


@pytest.mark.parametrize("rows, message", [
    ([ROW.format(1), ROW.format(2) + ",x"], "line 3 has 8 fields, the header 7"),
    # Every row longer: pandas would take the first column for the index.
    ([ROW.format(1) + ",x", ROW.format(2) + ",x"], "line 2 has 8 fields, the header 7"),
    # pandas would fill the missing fields with "".
    ([ROW.format(1), "u2,1.0,u.wav,0,16000,s"], "line 3 has 6 fields, the header 7"),
    (["u1,1.0,u.wav,0,16000,s", "u2,1.0,u.wav,0,16000,s"], "line 2 has 6 fields, the header 7"),
])
def test_row_with_extra_or_missing_fields_names_the_line(tmp_path, rows, message):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    with pytest.raises(ManifestError, match=f"m.csv: {message}\nFix: give every row as many"):
        validate(path)


def test_empty_trailing_fields_written_as_commas_pass(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER.rstrip("\n") + ",channel,lang\n" + ROW.format(1) + ",,\n\n"
                    + ROW.format(2) + ",telephone,\n")
    table = read_manifest(path)
    assert list(table["channel"]) == ["", "telephone"] and list(table["lang"]) == ["", ""]


def test_repeated_column_is_refused(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER.rstrip("\n") + ",spk_id\n" + ROW.format(1) + ",s9\n")
    with pytest.raises(ManifestError, match=r"m.csv: repeated columns \['spk_id'\]\nFix: keep "
                                            r"one column of each name"):
        validate(path)


def test_csv_reader_names_the_kind_of_file(tmp_path):
    path = tmp_path / "enrol.csv"
    path.write_text("")
    with pytest.raises(ManifestError, match="enrolment table is empty.*\n.*header line "
                                            "model_id,utt_ids"):
        read_csv_table(path, "enrolment table", "model_id,utt_ids")


def test_non_numeric_duration_names_the_row(corpus):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest, dtype=str)
    table.loc[2, "duration"] = "long"
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=r"m.csv: column 'duration' is not a non-negative "
                                            r"number in rows\n  row 4: ID spkB_1: 'long'\nFix: "
                                            r"give every row's duration as a non-negative number "
                                            r"\(a manifest written by the data preparation has "
                                            r"them: re-run it\)$"):
        validate(manifest)


def test_a_duration_off_by_more_than_rounding_is_refused(corpus):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest, dtype=str)
    table.loc[0, "duration"] = "1.005"  # spkA_1: 16000 samples at 16 kHz
    table.to_csv(manifest, index=False)
    validate(manifest)
    table.loc[0, "duration"] = "1.02"
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=r"m.csv: manifest does not match its audio\n  spkA_1: "
                                            r"duration 1.02 s but \(stop - start\) / "
                                            r"sample_rate is 1.0000 s\n"):
        validate(manifest)


@pytest.mark.parametrize("column, value, kind", [
    ("start", "0.5", "a non-negative whole number"),
    ("start", "-1", "a non-negative whole number"),
    ("duration", "-1", "a non-negative number"),
    ("stop", "8000.25", "a non-negative whole number"),
    ("sample_rate", "7999.9", "a positive whole number"),
    ("sample_rate", "0", "a positive whole number"),
])
def test_sample_counts_that_are_not_whole_are_refused_not_truncated(corpus, column, value, kind):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest, dtype=str)
    table.loc[1, column] = value
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=rf"column '{column}' is not {kind} in rows\n"
                                            rf"  row 3: ID spkA_2: '{value}'\nFix: give every "
                                            rf"row's {column} as {kind} \(a manifest written"):
        read_manifest(manifest)


@pytest.mark.parametrize("name", ["", "spkA 2", " spkA_2", "spkA_2\t"])
def test_ids_empty_or_holding_whitespace_are_refused(corpus, name):
    folder, manifest, _ = corpus
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    table.loc[1, "ID"] = name
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=rf"m.csv: IDs empty or holding whitespace\n"
                                            rf"  row 3: {re.escape(repr(name))}\nFix: "):
        read_manifest(manifest)
    enrolment = folder / "enrol.csv"
    pd.DataFrame({"model_id": ["model_1", name], "utt_ids": ["spkA_1", "spkB_1"]}).to_csv(
        enrolment, index=False)
    with pytest.raises(ManifestError, match=rf"enrol.csv: model_ids empty or holding whitespace"
                                            rf"\n  row 3: {re.escape(repr(name))}\nFix: "):
        read_enrolment(enrolment)


def test_duplicated_ids(corpus):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table.loc[1, "ID"] = table.loc[0, "ID"]
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match="duplicated IDs\n  spkA_1"):
        validate(manifest)


def test_missing_audio_file(corpus):
    folder, manifest, _ = corpus
    (folder / "spkB_2.wav").unlink()
    # Prepared by hand (no preparation's marker beside it): the fix says to re-run the
    # preparation, or to correct the rows.
    with pytest.raises(ManifestError, match=r"m.csv: manifest does not match its audio\n  "
                                            r"spkB_2: .*spkB_2.wav: audio file does not "
                                            r"exist\nFix: re-run the data preparation for this "
                                            r"corpus; in a manifest written by hand, correct "
                                            r"these rows: wav an absolute path"):
        validate(manifest)
    validate(manifest, check_audio=False)


def test_a_wav_path_that_is_a_folder_is_named_as_one(corpus):
    folder, manifest, _ = corpus
    (folder / "spkB_2.wav").unlink()
    (folder / "spkB_2.wav").mkdir()
    with pytest.raises(ManifestError, match=r"spkB_2: .*spkB_2.wav: is a folder, not an audio "
                                            r"file\n"):
        validate(manifest)


def test_relative_wav_is_read_from_the_current_directory(corpus, tmp_path_factory, monkeypatch):
    folder, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table["wav"] = [os.path.basename(wav) for wav in table["wav"]]
    table.to_csv(manifest, index=False)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ManifestError) as error:
        validate(manifest)
    assert (f"spkA_1: spkA_1.wav: audio file does not exist (a relative path: looked for in the "
            f"current directory {elsewhere})") in str(error.value)
    assert (f"in a manifest written by hand, correct these rows: wav an absolute path or one "
            f"relative to the directory you run from (now {elsewhere}), not to the manifest's "
            "folder") in str(error.value)
    monkeypatch.chdir(folder)
    assert len(validate(manifest)) == 4


def test_audio_problems_in_manifest_order_whatever_the_threads(corpus):
    folder, manifest, _ = corpus
    table = pd.read_csv(manifest)
    # Two rows of spkA_1.wav, one beyond its end; spkB_1.wav gone; spkB_2 stored at 8 kHz.
    table = pd.concat([table, table[table["ID"] == "spkA_1"].assign(ID="spkA_1b", stop=20000,
                                                                   duration=1.25)])
    table.loc[table["ID"] == "spkB_2", ["sample_rate", "duration"]] = [16000, 0.5]
    table.to_csv(manifest, index=False)
    (folder / "spkB_1.wav").unlink()
    expected = ["spkA_1b: stop 20000 beyond the file's 16000 samples",
                f"spkB_1: {folder / 'spkB_1.wav'}: audio file does not exist",
                f"spkB_2: {folder / 'spkB_2.wav'} is 8000 Hz but the manifest says 16000 Hz "
                "(add or fix the sample_rate column)"]
    for workers in (1, 3):
        with pytest.raises(ManifestError) as error:
            check_manifest_audio(read_manifest(manifest), manifest, workers)
        assert str(error.value).splitlines()[1:4] == [f"  {line}" for line in expected]


def training_manifest(folder, rows):
    """A training manifest of ``(ID, wav, spk_id)`` rows (its audio is not read)."""
    path = folder / "train.csv"
    write_manifest([{"ID": utt, "duration": 1.0, "wav": str(wav), "start": 0, "stop": 16000,
                     "spk_id": spk, "domain": "demo"} for utt, wav, spk in rows], path)
    return str(path)


def test_training_speakers_in_the_trials_are_refused_unless_allowed(corpus, caplog):
    folder, manifest, trials = corpus
    train = training_manifest(folder, [("t1", folder / "t1.wav", "spkA"),
                                       ("t2", folder / "t2.wav", "spkA"),
                                       ("t3", folder / "t3.wav", "spkC")])
    with pytest.raises(ManifestError, match=(
            r"trials.txt: 1 speakers and 0 audio files of these trials are in the training "
            r"manifest .*train.csv\n  speaker spkA: 2 training utterances\nFix: take these "
            r"speakers out .* set allow_speaker_overlap: True")):
        validate(manifest, trials, train_manifests=[train])
    assert main([str(manifest), "--trials", str(trials), "--train", train]) == 1
    assert len(validate(manifest, trials, train_manifests=[train],
                        allow_speaker_overlap=True)) == 4
    assert "1 speakers and 0 audio files of these trials" in caplog.text
    assert main([str(manifest), "--trials", str(trials), "--train", train,
                 "--allow-speaker-overlap"]) == 0


def test_an_audio_file_both_trained_on_and_scored_is_refused(corpus):
    folder, manifest, trials = corpus
    # Another speaker label, the same file (by its relative path from here).
    train = training_manifest(folder, [("t1", os.path.relpath(folder / "spkB_2.wav"), "other")])
    with pytest.raises(ManifestError, match=r"trials.txt: 0 speakers and 1 audio files .*\n  "
                                            r"file .*spkB_2.wav\nFix: take these audio files "
                                            r"out of the training manifest or the trial list"):
        validate(manifest, trials, train_manifests=[train])


def test_an_audio_file_reached_through_a_linked_folder_is_the_same_file(corpus, tmp_path_factory):
    folder, manifest, trials = corpus
    linked = tmp_path_factory.mktemp("elsewhere") / "corpus"
    os.symlink(folder, linked)
    # Unlabelled target audio: only the file tells.
    train = training_manifest(folder, [("t1", linked / "spkB_2.wav", "")])
    with pytest.raises(ManifestError, match=r"0 speakers and 1 audio files .*\n  file "
                                            r".*spkB_2.wav\n"):
        validate(manifest, trials, train_manifests=[train])


def test_unknown_speakers_on_both_sides_are_not_a_shared_speaker(corpus):
    """Unlabelled target training audio and scored rows of unknown speaker share no speaker."""
    folder, manifest, _ = corpus
    table = pd.read_csv(manifest, keep_default_na=False)
    table.loc[table["ID"] == "spkB_2", "spk_id"] = ""
    table.to_csv(manifest, index=False)
    trials = folder / "t.txt"
    write_trials([(1, "spkA_1", "spkA_2"), (0, "spkA_1", "spkB_2")], trials)
    train = training_manifest(folder, [("t1", folder / "t1.wav", ""),
                                       ("t2", folder / "t2.wav", "spkC")])
    assert len(validate(manifest, trials, train_manifests=[train])) == 4


def test_only_the_rows_a_trial_list_scores_are_compared(corpus):
    folder, manifest, _ = corpus
    trials = folder / "fewer.txt"
    write_trials([(1, "spkA_1", "spkA_2"), (0, "spkA_1", "spkB_1")], trials)
    unscored = training_manifest(folder, [("t1", folder / "spkB_2.wav", "other")])
    assert len(validate(manifest, trials, train_manifests=[unscored])) == 4
    with pytest.raises(ManifestError, match="1 speakers and 0 audio files"):
        validate(manifest, trials, train_manifests=[
            training_manifest(folder, [("t1", folder / "t1.wav", "spkB")])])


def test_passed_audio_check_is_stamped_per_manifest_version(corpus):
    folder, manifest, _ = corpus
    stamp = f"{manifest}.audio_ok"
    assert check_manifest_audio_once(manifest)
    with open(stamp) as saved:
        assert json.load(saved) == {
            "manifest_sha256": file_sha256(manifest),
            "audio_stat_sha256": audio_stat_digest(read_manifest(manifest)["wav"].unique())}
    assert not check_manifest_audio_once(manifest)
    # A changed manifest is checked again.
    table = pd.read_csv(manifest)
    table.loc[0, "domain"] = "other"
    table.to_csv(manifest, index=False)
    assert check_manifest_audio_once(manifest)
    assert not check_manifest_audio_once(manifest)


@pytest.mark.parametrize("content", ['{"manifest_sha256": "8d07', "[]", "\udcff"],
                         ids=["cut short", "no record", "not text"])
def test_a_stamp_that_is_no_record_is_checked_again_and_rewritten(corpus, caplog, content):
    folder, manifest, _ = corpus
    stamp = f"{manifest}.audio_ok"
    assert check_manifest_audio_once(manifest)
    with open(stamp, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write(content)
    with caplog.at_level(logging.WARNING):
        assert check_manifest_audio_once(manifest)
    assert f"the audio-check stamp {stamp} is not a record of a passed check" in caplog.text
    with open(stamp) as saved:
        assert json.load(saved)["manifest_sha256"] == file_sha256(manifest)
    assert not check_manifest_audio_once(manifest)


def rewritten_keeping_size_and_time(wav):
    """A file of the same size at another rate, its modification time set back."""
    before = os.stat(wav)
    time.sleep(0.02)  # beyond the file system clock's tick: the change time is new
    soundfile.write(wav, np.zeros(soundfile.info(wav).frames), 16000)
    os.utime(wav, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(wav).st_size == before.st_size


@pytest.mark.parametrize("change, problem", [
    (os.remove, "audio file does not exist"),
    (lambda wav: os.truncate(wav, 100), "beyond the file's 28 samples"),
    (lambda wav: soundfile.write(wav, np.zeros(8000), 16000), "is 16000 Hz"),
    (rewritten_keeping_size_and_time, "is 16000 Hz"),
], ids=["removed", "truncated", "replaced", "replaced keeping size and time"])
def test_audio_changed_under_a_stamped_manifest_is_checked_again(corpus, change, problem):
    folder, manifest, _ = corpus
    assert check_manifest_audio_once(manifest)
    change(folder / "spkB_2.wav")
    with pytest.raises(ManifestError, match=f"spkB_2: .*{problem}"):
        check_manifest_audio_once(manifest)
    assert os.path.isfile(f"{manifest}.audio_ok")  # the stamp of the audio before, now ignored


@pytest.mark.parametrize("utterance", ["spkA_1", "spkA_2", "spkB_1", "spkB_2"])
def test_audio_changed_in_any_chunk_of_the_stamp_is_checked_again(corpus, monkeypatch, utterance):
    """The stamp's digest covers every file of a manifest of several chunks of files."""
    monkeypatch.setattr(validation, "STAT_CHUNK", 2)
    folder, manifest, _ = corpus
    assert check_manifest_audio_once(manifest)
    os.truncate(folder / f"{utterance}.wav", 100)
    with pytest.raises(ManifestError, match=f"{utterance}: stop .* beyond the file's"):
        check_manifest_audio_once(manifest)


def test_audio_check_stamped_by_two_runs_at_once(corpus, monkeypatch, caplog):
    """Runs of several seeds check the same manifests when they start: another run
    may stamp the manifest while this one writes its stamp."""
    folder, manifest, _ = corpus
    other_runs = []
    dump = json.dump

    def interleaved(*args, **kwargs):
        dump(*args, **kwargs)
        if not other_runs:  # this run's stamp not yet in place
            other_runs.append(subprocess.run(
                [sys.executable, "-c", "import sys; from local.data.validation import "
                 "check_manifest_audio_once; check_manifest_audio_once(sys.argv[1])",
                 str(manifest)], cwd=ROOT, capture_output=True, text=True))

    monkeypatch.setattr(json, "dump", interleaved)
    with caplog.at_level(logging.WARNING):
        assert check_manifest_audio_once(manifest)
    other, = other_runs
    assert other.returncode == 0, other.stderr
    assert "could not record" not in caplog.text
    with open(f"{manifest}.audio_ok") as saved:
        assert json.load(saved)["manifest_sha256"] == file_sha256(manifest)
    assert not check_manifest_audio_once(manifest)
    assert [name for name in os.listdir(folder) if name.startswith("m.csv.")] == ["m.csv.audio_ok"]


def test_failed_audio_check_is_not_stamped(corpus):
    folder, manifest, _ = corpus
    (folder / "spkA_2.wav").write_bytes(b"not audio")
    for _ in range(2):
        with pytest.raises(ManifestError, match="spkA_2: .*cannot read audio"):
            check_manifest_audio_once(manifest)
        assert not os.path.exists(f"{manifest}.audio_ok")


def test_unreadable_audio(corpus):
    folder, manifest, _ = corpus
    (folder / "spkA_1.wav").write_bytes(b"not audio at all")
    with pytest.raises(ManifestError, match="spkA_1: .*cannot read audio"):
        validate(manifest)


def test_audio_that_cannot_be_read_from_inside_is_refused_before_training(corpus):
    """A GSM 6.10 wav (a telephone codec) has a header soundfile reads, but libsndfile cannot
    seek in it: a crop or row starting inside it would fail at its first read in training."""
    folder, manifest, _ = corpus
    wave = np.random.default_rng(0).uniform(-0.1, 0.1, 8000)
    soundfile.write(folder / "spkA_2.wav", wave, 8000, subtype="GSM610")
    frames = soundfile.info(folder / "spkA_2.wav").frames  # GSM's whole blocks
    table = pd.read_csv(manifest)
    table.loc[table["ID"] == "spkA_2", ["stop", "duration"]] = frames, frames / 8000
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=r"spkA_2: .*spkA_2.wav: GSM 6.10 samples, which "
                                            r"libsndfile cannot read from a given sample on"):
        validate(manifest)
    with pytest.raises(ManifestError, match=r"(?s)GSM 6.10 samples.*Fix: convert it to 16-bit "
                                            r"PCM wav or flac \(e.g. ffmpeg"):
        utterance_row("spkA_2", str(folder / "spkA_2.wav"), "spkA", "demo")


def test_wrong_sample_rate(corpus):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table.loc[table["ID"] == "spkA_2", "sample_rate"] = 16000
    table.loc[table["ID"] == "spkA_2", "duration"] = 0.5
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match="spkA_2: .* is 8000 Hz but the manifest says 16000 Hz"):
        validate(manifest)


def test_wrong_sample_rate_of_a_later_row_of_the_same_file(corpus):
    folder, manifest, _ = corpus
    table = pd.read_csv(manifest)
    # A second row of spkA_1.wav (16 kHz) that says 8 kHz, its duration at that rate.
    second = table[table["ID"] == "spkA_1"].assign(ID="spkA_1b", stop=8000, sample_rate=8000)
    pd.concat([table, second]).to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=r"\n  spkA_1b: .*spkA_1.wav is 16000 Hz but the "
                                            r"manifest says 8000 Hz"):
        validate(manifest)


def test_sample_rate_defaults_to_16k(corpus):
    folder, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table[table["sample_rate"] == 16000].drop(columns="sample_rate").to_csv(manifest, index=False)
    assert (validate(manifest)["sample_rate"] == 16000).all()


@pytest.mark.parametrize("duration", [2.0, 0.5])
def test_duration_mismatch(corpus, duration):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table.loc[0, "duration"] = duration
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=f"spkA_1: duration {duration} s but .* is 1.0000 s"):
        validate(manifest)


@pytest.mark.parametrize("stop", [32000, 16001])
def test_stop_beyond_file(corpus, stop):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table.loc[0, ["stop", "duration"]] = [stop, stop / 16000]
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=f"spkA_1: stop {stop} beyond the file's 16000 samples"):
        validate(manifest)


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_a_manifest_without_a_required_column_is_refused_naming_it(corpus, column):
    _, manifest, _ = corpus
    pd.read_csv(manifest, dtype=str).drop(columns=[column]).to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match=rf"m.csv: missing columns \['{column}'\]; found "
                                            r".*\nFix: a manifest needs the header ID,duration,"
                                            r"wav,start,stop,spk_id,domain$"):
        read_manifest(manifest)


def test_manifest_of_a_header_without_rows_is_refused(corpus):
    folder, manifest, _ = corpus
    header = open(manifest).readline()
    (folder / "empty.csv").write_text(header)
    with pytest.raises(ManifestError, match=r"empty.csv: manifest has no rows\nFix: check the "
                                            r"data preparation"):
        validate(folder / "empty.csv")


def test_empty_trial_list(corpus):
    folder, manifest, _ = corpus
    (folder / "empty.txt").write_text("\n")
    with pytest.raises(ManifestError, match="empty.txt: trial list is empty"):
        validate(manifest, folder / "empty.txt")


def test_malformed_trial_line(corpus):
    folder, manifest, _ = corpus
    (folder / "bad.txt").write_text("1 spkA_1 spkA_2\nyes spkA_1 spkB_1\n")
    with pytest.raises(ManifestError, match="bad.txt: lines not of the form.*\n  line 2: yes"):
        validate(manifest, folder / "bad.txt")


def test_a_kaldi_trial_list_is_refused_with_its_conversion(corpus):
    folder, manifest, _ = corpus
    (folder / "kaldi.txt").write_text("spkA_1 spkA_2 target\nspkA_1 spkB_1 nontarget\n")
    with pytest.raises(ManifestError, match="Kaldi's 'enrol test target.nontarget' form") as err:
        validate(manifest, folder / "kaldi.txt")
    command = str(err.value).split("convert the list: ")[1].strip()
    subprocess.run(command, shell=True, cwd=folder, check=True)
    assert (folder / "trials.txt").read_text() == "1 spkA_1 spkA_2\n0 spkA_1 spkB_1\n"
    validate(manifest, folder / "trials.txt")


def test_one_class_trial_list(corpus):
    folder, manifest, _ = corpus
    write_trials([(1, "spkA_1", "spkA_2"), (1, "spkB_1", "spkB_2")], folder / "t.txt")
    with pytest.raises(ManifestError, match=r"t.txt: all 2 trials are target trials\nFix: EER "
                                            r"and minDCF need both target and non-target "
                                            r"trials$"):
        validate(manifest, folder / "t.txt")


def test_duplicated_trials_name_the_repeat_and_the_first_line_of_the_file(corpus):
    folder, manifest, _ = corpus
    (folder / "dup.txt").write_text("1 spkA_1 spkA_2\n0 spkA_1 spkB_1\n\n0 spkA_1 spkB_1\n"
                                     "1 spkA_1 spkA_2\n1 spkA_1 spkA_2\n")
    with pytest.raises(ManifestError, match=r"duplicated trials\n"
                                            r"  line 4: 0 spkA_1 spkB_1 \(repeats line 2\)\n"
                                            r"  line 5: 1 spkA_1 spkA_2 \(repeats line 1\)\n"
                                            r"  line 6: 1 spkA_1 spkA_2 \(repeats line 1\)\n"
                                            r"Fix: remove the repeated lines$"):
        validate(manifest, folder / "dup.txt")


def test_trial_id_not_in_manifest(corpus):
    folder, manifest, _ = corpus
    write_trials([(1, "spkA_1", "spkA_2"), (0, "spkA_1", "spkC_9")], folder / "t.txt")
    with pytest.raises(ManifestError, match=r"t.txt: trials name IDs that are not in .*m.csv\n"
                                            r"  line 2: test 'spkC_9'\nFix: use the manifest's "
                                            r"ID column"):
        validate(manifest, folder / "t.txt")


def test_label_disagreeing_with_speakers(corpus):
    folder, manifest, _ = corpus
    write_trials([(1, "spkA_1", "spkA_2"), (1, "spkA_1", "spkB_1"), (0, "spkA_2", "spkB_2")],
                 folder / "t.txt")
    with pytest.raises(ManifestError, match=r"t.txt: labels disagree with the spk_id of their "
                                            r"sides\n  line 2: 1 spkA_1 spkB_1\nFix: label is 1 "
                                            r"exactly when both sides have the same speaker"):
        validate(manifest, folder / "t.txt")


def test_enrolment_models(corpus):
    folder, manifest, _ = corpus
    enrolment = folder / "enrol.csv"
    write_enrolment([{"model_id": "model_1", "utt_ids": ["spkA_1"]}], enrolment)
    write_trials([(1, "model_1", "spkA_2"), (0, "model_1", "spkB_1")], folder / "t.txt")
    validate(manifest, folder / "t.txt", enrolment)
    assert read_enrolment(enrolment)[0] == {"model_1": ["spkA_1"]}
    write_enrolment([{"model_id": "model_1", "utt_ids": ["spkA_1", "ghost"]}], enrolment)
    with pytest.raises(ManifestError, match=r"enrol.csv: utterances not in .*m.csv\n  model_1: "
                                            r"ghost\nFix: prepare the enrolment utterances into "
                                            r"the same manifest$"):
        validate(manifest, folder / "t.txt", enrolment)


def test_a_trial_of_a_model_missing_from_the_enrolment_table_names_the_table(corpus):
    folder, manifest, _ = corpus
    enrolment = folder / "enrol.csv"
    write_enrolment([{"model_id": "model_1", "utt_ids": ["spkA_1"]}], enrolment)
    write_trials([(1, "model_1", "spkA_2"), (0, "model_2", "spkB_1")], folder / "t.txt")
    with pytest.raises(ManifestError, match=r"t.txt: trials name IDs that are not in .*m.csv "
                                            r"nor model_ids of .*enrol.csv\n"
                                            r"  line 2: enrol 'model_2'\nFix: .*list every "
                                            r"model of the trials in the enrolment table"):
        validate(manifest, folder / "t.txt", enrolment)
    with pytest.raises(ManifestError, match=r"t.txt: trials name IDs that are not in .*m.csv\n"
                                            r"  line 1: enrol 'model_1'\n  line 2: enrol "
                                            r"'model_2'\nFix: .*give the enrolment table of a "
                                            r"list with models \(the list's enrolment: in the "
                                            r"condition"):
        validate(manifest, folder / "t.txt")


def test_a_trial_of_a_model_against_one_of_its_own_utterances_is_refused(corpus):
    folder, manifest, _ = corpus
    enrolment = folder / "enrol.csv"
    # model_2's trial scores spkA_2 against a model made of it: a sure target.
    write_enrolment([{"model_id": "model_1", "utt_ids": ["spkA_1"]},
                     {"model_id": "model_2", "utt_ids": ["spkA_1", "spkA_2"]}], enrolment)
    write_trials([(1, "model_1", "spkA_2"), (0, "model_1", "spkB_1"), (1, "model_2", "spkA_2"),
                  (0, "spkA_2", "spkB_1")], folder / "t.txt")
    with pytest.raises(ManifestError, match=r"t.txt: trials score a test utterance against a "
                                            r"model of .*enrol.csv that is made of it\n"
                                            r"  line 3: 1 model_2 spkA_2\nFix: remove these"):
        validate(manifest, folder / "t.txt", enrolment)


def test_an_enrolment_model_listed_twice_is_refused_not_overwritten(corpus):
    folder, manifest, _ = corpus
    enrolment = folder / "enrol.csv"
    enrolment.write_text("model_id,utt_ids\nmodel_1,spkA_1 spkA_2\nmodel_1,spkB_1 spkB_2\n")
    write_trials([(1, "model_1", "spkA_2"), (0, "model_1", "spkB_1")], folder / "t.txt")
    with pytest.raises(ManifestError, match=r"enrol.csv: enrolment models listed more than "
                                            r"once\n  model_1\nFix: give each model_id one row"):
        validate(manifest, folder / "t.txt", enrolment)


def test_an_enrolment_model_named_like_another_utterance_is_refused(corpus):
    folder, manifest, _ = corpus
    enrolment = folder / "enrol.csv"
    # Trial 1 scores spkB's model against spkA_2, which the label check took for spkA_1.
    write_enrolment([{"model_id": "spkA_1", "utt_ids": ["spkB_1", "spkB_2"]}], enrolment)
    write_trials([(1, "spkA_1", "spkA_2"), (0, "spkA_1", "spkB_1")], folder / "t.txt")
    with pytest.raises(ManifestError, match=r"enrol.csv: models named like other utterances "
                                            r"of .*m.csv\n  spkA_1\nFix: rename these models"):
        validate(manifest, folder / "t.txt", enrolment)
    # A model of the one utterance it is named after is that utterance.
    write_enrolment([{"model_id": "spkA_1", "utt_ids": ["spkA_1"]}], enrolment)
    validate(manifest, folder / "t.txt", enrolment)


def test_skip_marker(tmp_path):
    out = tmp_path / "a.csv"
    assert not skip_if_prepared(tmp_path, [out], {"seed": 1})
    out.write_text("x")
    mark_prepared(tmp_path, {"seed": 1}, [out.name])
    assert skip_if_prepared(tmp_path, [out], {"seed": 1})
    assert not skip_if_prepared(tmp_path, [out], {"seed": 2})
    # Asking leaves the marker of seed 1: a seed 2 preparation replaces it once it passed.
    assert skip_if_prepared(tmp_path, [out], {"seed": 1})
    out.unlink()
    assert not skip_if_prepared(tmp_path, [out], {"seed": 1})
    out.write_text("x")
    # A marker of the options alone, without the outputs' names, still skips.
    (tmp_path / "prepare_options.json").write_text('{"seed": 1}')
    assert skip_if_prepared(tmp_path, [out], {"seed": 1})


def test_a_marker_whose_write_fails_halfway_is_not_left_half_written(tmp_path, monkeypatch):
    out = tmp_path / "a.csv"
    out.write_text("x")

    def full_disk(record, stream, **kwargs):
        stream.write('{"options": {"se')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", full_disk)
    with pytest.raises(OSError):
        mark_prepared(tmp_path, {"seed": 1}, [out.name])
    monkeypatch.undo()
    # No marker: the next preparation prepares again rather than fail to read it.
    assert os.listdir(tmp_path) == ["a.csv"]
    assert not skip_if_prepared(tmp_path, [out], {"seed": 1})


def _two_second_rows():
    return [{"ID": f"u{i}", "duration": 2.0, "wav": f"u{i}.wav", "start": 0, "stop": 32000,
             "spk_id": f"s{i // 2}", "domain": "d"} for i in range(4)]


def test_prepare_corpus_chunks_training_manifests_and_skips_a_rerun(tmp_path):
    reads = []

    def read():
        reads.append(1)
        rows = _two_second_rows()
        return {"train": rows, "eval": rows, "trials": [(1, "u0", "u1"), (0, "u0", "u2")]}

    outputs = ["train.csv", "eval.csv", "trials.txt"]
    paths = prepare_corpus("Toy", str(tmp_path), {"seg_dur": 1.0}, outputs, read)
    assert list(paths) == ["train", "eval", "trials"]
    assert len(read_manifest(paths["train"])) == 8  # two 1 s chunks a row
    assert list(read_manifest(paths["eval"])["ID"]) == ["u0", "u1", "u2", "u3"]  # whole
    assert prepare_corpus("Toy", str(tmp_path), {"seg_dur": 1.0}, outputs, read) == paths
    assert len(reads) == 1


@pytest.mark.parametrize("breakage, message", [
    (lambda rows: rows + rows[:1], r"train.csv: duplicated IDs\n  u0\nFix: IDs must be unique"),
    (lambda rows: [{**rows[0], "stop": 0}] + rows[1:],
     r"train.csv: stop must be greater than start\n  row 2: ID u0\nFix: start and stop are "
     r"the row's first sample and the one after its last: give each row at least one sample"),
    (lambda rows: [{**rows[0], "duration": "n/a"}] + rows[1:],
     r"train.csv: column 'duration' is not a non-negative number in rows\n  row 2: ID u0"),
])
def test_prepare_corpus_checks_the_training_manifests(tmp_path, breakage, message):
    def read():
        rows = _two_second_rows()
        return {"train": breakage(rows), "eval": rows, "trials": [(1, "u0", "u1"), (0, "u0", "u2")]}

    with pytest.raises(ManifestError, match=message):
        prepare_corpus("Toy", str(tmp_path), {}, ["train.csv", "eval.csv", "trials.txt"], read)
    assert not (tmp_path / "prepare_options.json").exists()


def test_prepare_corpus_records_nothing_when_a_trial_list_is_refused(tmp_path):
    def read():
        return {"eval": _two_second_rows(), "trials": [(1, "u0", "u1"), (0, "u0", "ghost")]}

    with pytest.raises(ManifestError, match="ghost"):
        prepare_corpus("Toy", str(tmp_path), {}, ["eval.csv", "trials.txt"], read)
    assert not (tmp_path / "prepare_options.json").exists()


def _folder_contents(folder):
    return {os.path.relpath(os.path.join(parent, name), folder):
            open(os.path.join(parent, name), "rb").read()
            for parent, _, names in os.walk(folder) for name in names}


def _toy_read(domain="d", trials=((1, "u0", "u1"), (0, "u0", "u2")), bad_audio=False):
    def rows():
        if bad_audio:
            fail("u3.wav", "cannot read audio", fix="replace the file")
        return [{**row, "domain": domain} for row in _two_second_rows()]

    return lambda: {"train": rows, "eval": rows, "trials": list(trials),
                    "trials_b": [(1, "u2", "u3"), (0, "u1", "u3")]}


@pytest.mark.parametrize("where", ["new", "made", "empty"])
def test_a_refused_preparation_leaves_no_folder_behind(tmp_path, where):
    """A refused preparation left behind the save folder (and its parents) it made for its lock."""
    top = tmp_path / "data"
    save_folder = top / "corpus" if where == "new" else top
    if where == "empty":
        top.mkdir()
    outputs = ["train.csv", "eval.csv", "trials.txt"]
    for read in (_toy_read(bad_audio=True), _toy_read(trials=[(1, "u0", "u1")])):
        with pytest.raises(ManifestError):
            prepare_corpus("Toy", str(save_folder), {}, outputs, read)
        assert os.listdir(tmp_path) == (["data"] if where == "empty" else [])
        assert not top.exists() or os.listdir(top) == []
    # Prepared once the tree is right.
    prepare_corpus("Toy", str(save_folder), {}, outputs, _toy_read())
    assert sorted(os.listdir(save_folder)) == ["eval.csv", "prepare_options.json", "train.csv",
                                               "trials.txt"]


def test_a_refused_preparation_leaves_what_others_wrote_in_the_parents_it_made(tmp_path):
    """It made data/ and data/corpus/; another writer put data/other/ there meanwhile."""
    other = tmp_path / "data" / "other" / "notes.txt"

    def read():
        other.parent.mkdir()
        other.write_text("another writer's")
        return _toy_read(bad_audio=True)()

    with pytest.raises(ManifestError):
        prepare_corpus("Toy", str(tmp_path / "data" / "corpus"), {},
                       ["train.csv", "eval.csv", "trials.txt"], read)
    assert _folder_contents(tmp_path) == {"data/other/notes.txt": b"another writer's"}


def test_every_trial_list_is_checked_against_eval_csv(tmp_path):
    def read():
        tables = _toy_read()()
        return {**tables, "trials_b": [(1, "u2", "u3"), (0, "u1", "ghost")]}

    with pytest.raises(ManifestError, match=r"trials_b.txt: trials name IDs that are not in "
                                            r".*eval.csv\n  line 2: test 'ghost'\n"):
        prepare_corpus("Toy", str(tmp_path), {},
                       ["train.csv", "eval.csv", "trials.txt", "trials_b.txt"], read)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("breakage", [
    dict(bad_audio=True),  # refused after the trial lists were written
    dict(trials=[(1, "u0", "u1")]),  # a one-class trial list
    dict(trials=[(1, "u0", "u1"), (0, "u0", "ghost")]),  # refused against eval.csv
])
def test_a_refused_preparation_leaves_the_earlier_one_as_it_was(tmp_path, breakage):
    """A preparation refused on other options removed the earlier preparation's marker and files
    it no longer named, and left its own trial list over the earlier one."""
    outputs = ["train.csv", "eval.csv", "trials.txt", "trials_b.txt"]
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, _toy_read("first"))
    before = _folder_contents(tmp_path)
    with pytest.raises(ManifestError):
        prepare_corpus("Toy", str(tmp_path), {"seed": 2}, outputs[:3],
                       _toy_read("second", **breakage))
    assert _folder_contents(tmp_path) == before
    assert skip_if_prepared(tmp_path, [tmp_path / name for name in outputs], {"seed": 1})
    # The rerun on a right tree replaces them, trials_b.txt no longer asked for.
    prepare_corpus("Toy", str(tmp_path), {"seed": 2}, outputs[:3], _toy_read("second"))
    assert set(read_manifest(tmp_path / "eval.csv")["domain"]) == {"second"}
    assert sorted(os.listdir(tmp_path)) == ["eval.csv", "prepare_options.json", "train.csv",
                                            "trials.txt"]


def test_the_earlier_record_does_not_vouch_for_outputs_whose_own_record_failed(tmp_path,
                                                                             monkeypatch):
    """Seed 2's files replaced seed 1's, then a full disk stopped its record: a rerun with
    seed 1 must give seed 1's files, not skip to seed 2's under seed 1's record."""
    outputs = ["train.csv", "eval.csv", "trials.txt"]
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, _toy_read("first"))

    def full_disk(record, stream, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", full_disk)
    with pytest.raises(OSError):
        prepare_corpus("Toy", str(tmp_path), {"seed": 2}, outputs, _toy_read("second"))
    monkeypatch.undo()
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, _toy_read("first"))
    assert set(read_manifest(tmp_path / "eval.csv")["domain"]) == {"first"}


def test_earlier_files_left_when_their_removal_stopped_do_not_skip_a_rerun(tmp_path,
                                                                         monkeypatch):
    """The removal of seed 1's files, replaced by seed 2's, stopped after one: what is put
    back is no whole preparation, and its record must not be among it."""
    outputs = ["train.csv", "eval.csv", "trials.txt"]
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, _toy_read("first"))

    def stopped(folder, *args, **kwargs):
        os.remove(os.path.join(folder, "eval.csv"))
        raise OSError(errno.EBUSY, "Device or resource busy", folder)

    monkeypatch.setattr(shutil, "rmtree", stopped)
    with pytest.raises(OSError):
        prepare_corpus("Toy", str(tmp_path), {"seed": 2}, outputs, _toy_read("second"))
    monkeypatch.undo()
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, _toy_read("first"))
    assert set(read_manifest(tmp_path / "eval.csv")["domain"]) == {"first"}


def test_a_generated_corpus_whose_generation_fails_is_generated_again(tmp_path):
    """Its audio, written over, is no longer the earlier preparation's."""
    outputs = ["train.csv", "eval.csv", "trials.txt"]
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, _toy_read("first"), generated=True)

    def generate():
        (tmp_path / "u0.wav").write_bytes(b"seed 2's audio")
        fail("u1.wav", "cannot write audio", fix="free some disk space")

    with pytest.raises(ManifestError):
        prepare_corpus("Toy", str(tmp_path), {"seed": 2}, outputs, generate, generated=True)
    assert not skip_if_prepared(tmp_path, [tmp_path / name for name in outputs], {"seed": 1})


def test_files_set_aside_by_a_killed_preparation_are_put_back(tmp_path):
    outputs = ["train.csv", "eval.csv", "trials.txt"]
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, _toy_read("first"))
    before = _folder_contents(tmp_path)
    # A preparation of seed 2 killed once it had set them aside and written a trial list.
    (tmp_path / "prepare.previous").mkdir()
    for name in ["prepare_options.json", *outputs]:
        os.replace(tmp_path / name, tmp_path / "prepare.previous" / name)
    write_trials([(1, "u0", "u2"), (0, "u1", "u3")], tmp_path / "trials.txt")
    reads = []
    prepare_corpus("Toy", str(tmp_path), {"seed": 1}, outputs, lambda: reads.append(1))
    assert reads == [] and _folder_contents(tmp_path) == before


def test_a_refused_preparation_leaves_the_folder_it_waited_for_with_what_was_prepared(
        tmp_path, monkeypatch):
    """Two preparations made the new folder at once; the other one prepared it while this
    one waited for the lock, then this one was refused: the other's files stay."""
    save_folder = tmp_path / "corpus"
    outputs = ["train.csv", "eval.csv", "trials.txt"]
    real_lock = preparation.taken_lock

    def held_by_the_other(lock, wait=False):
        if not wait:
            return None
        monkeypatch.setattr(preparation, "taken_lock", real_lock)
        prepare_corpus("Toy", str(save_folder), {"seed": 1}, outputs, _toy_read("first"))
        return real_lock(lock, wait=True)

    monkeypatch.setattr(preparation, "taken_lock", held_by_the_other)
    with pytest.raises(ManifestError):
        prepare_corpus("Toy", str(save_folder), {"seed": 2}, outputs,
                       _toy_read("second", bad_audio=True))
    assert skip_if_prepared(save_folder, [save_folder / name for name in outputs], {"seed": 1})
    assert set(read_manifest(save_folder / "eval.csv")["domain"]) == {"first"}


def test_a_preparation_waiting_for_one_that_is_refused_then_prepares(tmp_path, caplog):
    """The first one removes the folder it made; the second makes it again."""
    save_folder = tmp_path / "corpus"
    # Its eval.csv lacks the trials' u1 and u2.
    first = waiting_process(PREPARER.replace("{'eval': rows", "{'eval': rows[:1]"), save_folder)
    ending = threading.Timer(1.0, first.stdin.close)
    ending.start()
    try:
        with caplog.at_level(logging.INFO):
            paths = prepare_corpus("Toy", str(save_folder), {}, ["eval.csv", "trials.txt"],
                                   _toy_read("second"))
    finally:
        ending.join()
        assert first.wait() == 1
    assert "another process prepares" in caplog.text
    assert set(read_manifest(paths["eval"])["domain"]) == {"second"}


# Prepares a toy corpus in argv[1] whose rows are of domain "first", saying so
# once inside its read(), which ends when its input closes.
PREPARER = (
    "import sys; from data_prep.preparation import prepare_corpus\n"
    "rows = [{'ID': f'u{i}', 'duration': 2.0, 'wav': f'u{i}.wav', 'start': 0, 'stop': 32000,\n"
    "         'spk_id': f's{i // 2}', 'domain': 'first'} for i in range(4)]\n"
    "def read():\n"
    "    print('reading', flush=True); sys.stdin.read()\n"
    "    return {'eval': rows, 'trials': [(1, 'u0', 'u1'), (0, 'u0', 'u2')]}\n"
    "prepare_corpus('Toy', sys.argv[1], {}, ['eval.csv', 'trials.txt'], read)\n")


def test_a_second_preparation_of_a_folder_waits_for_the_first_then_skips(tmp_path, caplog):
    first = waiting_process(PREPARER, tmp_path)  # inside its read()
    ending = threading.Timer(1.0, first.stdin.close)
    ending.start()
    reads = []

    def read():
        reads.append(1)
        rows = [{**row, "domain": "second"} for row in _two_second_rows()]
        return {"eval": rows, "trials": [(1, "u0", "u1"), (0, "u0", "u2")]}

    try:
        with caplog.at_level(logging.INFO):
            paths = prepare_corpus("Toy", str(tmp_path), {}, ["eval.csv", "trials.txt"], read)
    finally:
        ending.join()
        assert first.wait() == 0
    assert f"Toy: another process prepares {tmp_path}; waiting until it ends" in caplog.text
    assert f"Toy already prepared in {tmp_path}, skipping" in caplog.text
    assert reads == []
    assert set(read_manifest(paths["eval"])["domain"]) == {"first"}
    assert sorted(os.listdir(tmp_path)) == ["eval.csv", "prepare_options.json", "trials.txt"]


def test_a_prepared_folder_that_may_not_be_written_is_read_as_it_is(tmp_path, monkeypatch):
    outputs, read = ["eval.csv", "trials.txt"], lambda: {
        "eval": _two_second_rows(), "trials": [(1, "u0", "u1"), (0, "u0", "u2")]}
    paths = prepare_corpus("Toy", str(tmp_path), {}, outputs, read)

    def read_only(path, wait=False):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr("data_prep.preparation.taken_lock", read_only)
    assert prepare_corpus("Toy", str(tmp_path), {}, outputs, read) == paths  # skipped


def test_command_line(corpus, capsys):
    folder, manifest, trials = corpus
    assert main([str(manifest), "--trials", str(trials)]) == 0
    assert "4 rows, 2 speakers, OK" in capsys.readouterr().out
    assert main([str(manifest), "--trials", str(folder / "none.txt")]) == 1
    assert "trial list does not exist" in capsys.readouterr().err



def test_the_command_line_refuses_scored_rows_that_training_would_refuse_as_too_short(corpus,
                                                                                    capsys):
    """It said OK to a trial list scoring a 0.1 s clip, which training and evaluation then
    refused before any training (min_embed_seconds of hparams/common.yaml)."""
    folder, manifest, trials = corpus
    soundfile.write(folder / "spkB_2.wav", np.full(800, 0.1), 8000)
    table = pd.read_csv(manifest)
    table.loc[table["ID"] == "spkB_2", ["duration", "stop"]] = 0.1, 800
    table.to_csv(manifest, index=False)
    assert main([str(manifest), "--trials", str(trials)]) == 1
    assert re.search(r"m.csv: 1 inputs are shorter than min_embed_seconds \(0.25 s\).*\n  "
                     r"spkB_2 \(.*spkB_2.wav\): 0.10 s\n", capsys.readouterr().err)
    assert main([str(manifest), "--trials", str(trials), "--min-embed-seconds", "0.1"]) == 0
    assert main([str(manifest)]) == 0  # a training manifest: its crops repeat a short row

def test_enrolment_model_without_utterances_on_the_command_line(corpus, capsys):
    folder, manifest, _ = corpus
    enrolment = folder / "enrol.csv"
    enrolment.write_text("model_id,utt_ids\nmodel_1,spkA_1 spkA_2\nmodel_2,\n")
    write_trials([(1, "model_1", "spkA_2"), (0, "model_1", "spkB_1")], folder / "t.txt")
    assert main([str(manifest), "--trials", str(folder / "t.txt"),
                 "--enrolment", str(enrolment)]) == 1
    assert "enrol.csv: enrolment models without utterances\n  model_2\n" in capsys.readouterr().err


def test_several_distinct_duplicated_ids(corpus):
    _, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table.loc[1, "ID"] = table.loc[0, "ID"]
    table.loc[3, "ID"] = table.loc[2, "ID"]
    table.to_csv(manifest, index=False)
    with pytest.raises(ManifestError, match="duplicated IDs\n  spkA_1\n  spkB_1\nFix"):
        validate(manifest)


@pytest.mark.parametrize("rows", [pd.Series(["r1", "r2"]), np.array(["r1", "r2"]),
                                  ("r1", "r2"), ["r1", "r2"]])
def test_fail_takes_any_sequence_of_rows(rows):
    with pytest.raises(ManifestError, match=r"^f.csv: bad\n  r1\n  r2\nFix: mend$"):
        fail("f.csv", "bad", rows=rows, fix="mend")


def test_more_rows_than_shown_are_counted():
    with pytest.raises(ManifestError, match=r"  r4\n  \.\.\. and 2 more$"):
        fail("f.csv", "bad", rows=pd.Series([f"r{i}" for i in range(7)]))


def test_blank_lines_keep_the_file_line_numbers(corpus):
    folder, manifest, _ = corpus
    (folder / "t.txt").write_text("\n1 spkA_1 spkA_2\n\n   \n0 spkA_1 spkC_9\n")
    with pytest.raises(ManifestError, match="not in .*m.csv\n  line 5: test 'spkC_9'\nFix"):
        validate(manifest, folder / "t.txt")
    (folder / "t.txt").write_text("1 spkA_1 spkA_2\n\n\n1 spkA_1 spkB_1\n\n0 spkB_1 spkB_2\n")
    with pytest.raises(ManifestError, match="labels disagree.*\n  line 4: 1 spkA_1 spkB_1\n"
                                            "  line 6: 0 spkB_1 spkB_2\nFix"):
        validate(manifest, folder / "t.txt")


def test_unknown_ids_are_listed_by_line_enrol_first(corpus):
    folder, manifest, _ = corpus
    (folder / "t.txt").write_text("1 spkA_1 spkA_2\n0 x1 spkB_1\n0 x2 y2\n0 spkA_1 y3\n")
    with pytest.raises(ManifestError, match="\n  line 2: enrol 'x1'\n  line 3: enrol 'x2'\n"
                                            "  line 3: test 'y2'\n  line 4: test 'y3'\nFix"):
        validate(manifest, folder / "t.txt")


def test_trial_list_not_utf8(corpus, capsys):
    folder, manifest, _ = corpus
    (folder / "t.txt").write_bytes("1 spkA_1 spkA_2\n0 spkA_1 sp\u00e9kB_1\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="t.txt: is not UTF-8 text\n  line 2: 0 spkA_1 sp"
                                            ".*\nFix: convert it to UTF-8, e.g. iconv"):
        validate(manifest, folder / "t.txt")
    assert main([str(manifest), "--trials", str(folder / "t.txt")]) == 1
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_byte_order_mark_is_accepted(corpus):
    folder, manifest, trials = corpus
    (folder / "bom.txt").write_bytes(b"\xef\xbb\xbf" + trials.read_bytes())
    assert read_trials(folder / "bom.txt").equals(read_trials(trials))
    validate(manifest, folder / "bom.txt")


def test_self_trial(corpus):
    folder, manifest, _ = corpus
    (folder / "t.txt").write_text("1 spkA_1 spkA_2\n0 spkA_1 spkB_1\n1 spkB_2 spkB_2\n")
    with pytest.raises(ManifestError, match="t.txt: trials compare an utterance with itself\n"
                                            "  line 3: 1 spkB_2 spkB_2\nFix: remove these "
                                            "lines: a trial's enrol and test must be different "
                                            "IDs$"):
        validate(manifest, folder / "t.txt")


def test_trials_listed_both_ways_round_are_warned_of(corpus, caplog):
    """Symmetric scoring scores B A as A B: the pair would count twice, unnoticed."""
    folder, manifest, trials = corpus
    validate(manifest, trials)
    assert "other way round" not in caplog.text
    (folder / "t.txt").write_text("1 spkA_1 spkA_2\n0 spkA_1 spkB_1\n0 spkB_2 spkA_1\n"
                                  "1 spkA_2 spkA_1\n0 spkB_1 spkA_1\n")
    validate(manifest, folder / "t.txt")
    assert re.search(r"t.txt: 2 trials repeat an earlier trial the other way round \(line 4 "
                     r"reverses line 1\)", caplog.text)


def with_second_row(manifest, ident, start=0, stop=None, wav=None):
    """The manifest with a row ``ident`` of spkA_1's audio (or ``wav``), samples ``start`` to ``stop``."""
    table = pd.read_csv(manifest)
    row = table[table["ID"] == "spkA_1"].assign(ID=ident, start=start)
    if stop is not None:
        row = row.assign(stop=stop)
    row = row.assign(duration=(row["stop"] - start) / 16000)
    if wav is not None:
        row = row.assign(wav=wav)
    pd.concat([table, row]).to_csv(manifest, index=False)


def test_a_self_trial_under_another_id_of_the_same_audio_is_refused(corpus, monkeypatch):
    """The same recording in the manifest twice: a trial between its IDs is a sure target."""
    folder, manifest, _ = corpus
    monkeypatch.chdir(folder)
    # Overlapping spkA_1's samples, its file named by a relative path.
    with_second_row(manifest, "spkA_1_again", start=8000, wav="spkA_1.wav")
    (folder / "t.txt").write_text("1 spkA_1 spkA_2\n0 spkA_1 spkB_1\n1 spkA_1 spkA_1_again\n"
                                  "1 model_1 spkA_1\n")
    write_enrolment([{"model_id": "model_1", "utt_ids": ["spkA_2", "spkA_1_again"]}],
                    folder / "enrol.csv")
    with pytest.raises(ManifestError, match=r"t.txt: trials compare an utterance with itself "
                                            r"under two IDs: both sides share samples of one "
                                            r"audio file of .*m.csv\n"
                                            r"  line 3: 1 spkA_1 spkA_1_again \(spkA_1 and "
                                            r"spkA_1_again: .*spkA_1.wav\)\n"
                                            r"  line 4: 1 model_1 spkA_1 \(spkA_1_again and "
                                            r"spkA_1: spkA_1.wav\)\nFix: remove these lines"):
        validate(manifest, folder / "t.txt", folder / "enrol.csv")


def test_the_same_audio_reached_through_a_linked_folder_is_one_file(corpus, tmp_path_factory):
    folder, manifest, _ = corpus
    linked = tmp_path_factory.mktemp("elsewhere") / "corpus"
    os.symlink(folder, linked)
    with_second_row(manifest, "spkA_1_linked", wav=str(linked / "spkA_1.wav"))
    (folder / "t.txt").write_text("1 spkA_1 spkA_2\n0 spkA_1 spkB_1\n1 spkA_1 spkA_1_linked\n")
    with pytest.raises(ManifestError, match=r"trials compare an utterance with itself under "
                                            r"two IDs(.|\n)*  line 3: 1 spkA_1 spkA_1_linked"):
        validate(manifest, folder / "t.txt")


@pytest.mark.parametrize("trial", ["1 spkA_1 spkA_1_late", "1 spkA_1_late spkA_1"])
def test_segments_of_one_file_that_do_not_overlap_are_separate_utterances(corpus, trial):
    """Adjacent segments (one's stop the next one's start, stop exclusive) share no sample."""
    folder, manifest, _ = corpus
    table = pd.read_csv(manifest)
    table.loc[table["ID"] == "spkA_1", ["stop", "duration"]] = [8000, 0.5]
    table.to_csv(manifest, index=False)
    with_second_row(manifest, "spkA_1_late", start=8000, stop=16000)
    (folder / "t.txt").write_text(f"{trial}\n0 spkA_1 spkB_1\n")
    validate(manifest, folder / "t.txt")


@pytest.mark.parametrize("text, message", [
    # A label the type contradicts would put the trial in the wrong 'TC vs ...' rows.
    ("1 spkA_1 spkA_2 TC\n0 spkA_1 spkB_1 IC\n1 spkB_1 spkB_2 TW\n0 spkA_2 spkB_2\n",
     r"labels disagree with the SdSV trial types \(only TC is a target trial\)\n"
     r"  line 3: 1 spkB_1 spkB_2 TW\nFix: label TC trials 1 and TW, IC and IW trials 0"),
    # Another type escaped every check of its label: 'tc' between two speakers, labelled 1.
    ("1 spkA_1 spkA_2 TC\n1 spkA_1 spkB_1 tc\n0 spkA_2 spkB_2 IW\n0 spkB_1 spkB_2 XX\n",
     r"trial types that are not SdSV's\n  line 2: 1 spkA_1 spkB_1 tc\n"
     r"  line 4: 0 spkB_1 spkB_2 XX\nFix: write the trial type as TC, TW, IC or IW, in upper case"),
])
def test_trial_types_are_sdsv_ones_that_agree_with_the_label(corpus, text, message):
    folder, manifest, _ = corpus
    (folder / "t.txt").write_text(text)
    with pytest.raises(ManifestError, match=r"t.txt: " + message):
        validate(manifest, folder / "t.txt")


def with_phrases(manifest):
    """The manifest with a phrase column: 01 for each speaker's first utterance, 02 for the second.

    And spkB_12, another utterance of spkB's phrase 02, which a model enrols
    for its target trial on spkB_2.
    """
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    extra = table[table["ID"] == "spkB_2"].assign(
        ID="spkB_12", wav=str(manifest.parent / "spkB_12.wav"))
    soundfile.write(extra["wav"].iloc[0], np.zeros(8000), 8000)
    table = pd.concat([table, extra], ignore_index=True)
    table["phrase"] = "0" + table["ID"].str[-1]
    table.to_csv(manifest, index=False)


@pytest.mark.parametrize("text, problem, line", [
    # A target speaker's trial between two speakers, an impostor's within one.
    ("1 spkA_1 spkB_2 TC\n0 spkA_1 spkA_2 TW\n", "spk_id", "line 1: 1 spkA_1 spkB_2 TC"),
    ("1 spkA_1 spkA_2 TC\n0 spkB_1 spkB_2 IW\n", "spk_id", "line 2: 0 spkB_1 spkB_2 IW"),
    # A correct phrase's trial between two phrases, a wrong one's within one.
    ("1 spkA_1 spkA_2 TC\n0 spkA_1 spkB_2 IW\n", "phrase", "line 1: 1 spkA_1 spkA_2 TC"),
    ("0 spkA_1 spkB_1 IW\n1 model_b spkB_2 TC\n", "phrase", "line 1: 0 spkA_1 spkB_1 IW"),
    # An enrolment model's speaker and phrase are its utterances'.
    ("0 spkA_1 spkA_2 TW\n1 model_b spkA_2 TC\n", "spk_id", "line 2: 1 model_b spkA_2 TC"),
])
def test_sdsv_trial_type_contradicting_the_sides_is_refused(corpus, text, problem, line):
    folder, manifest, _ = corpus
    with_phrases(manifest)
    write_enrolment([{"model_id": "model_b", "utt_ids": ["spkB_12"]}], folder / "enrol.csv")
    (folder / "t.txt").write_text(text)
    # The fix says which types share the column: TC and TW the speaker, TC and IC the phrase.
    alike = {"spk_id": "TC and TW", "phrase": "TC and IC"}[problem]
    with pytest.raises(ManifestError, match=f"t.txt: SdSV trial types disagree with the "
                                            f"{problem} of their sides\n  {line}\nFix: {alike} "
                                            f"trials have the same {problem} on both sides, the "
                                            f"others different ones"):
        validate(manifest, folder / "t.txt", folder / "enrol.csv")
    (folder / "t.txt").write_text("0 spkA_1 spkA_2 TW\n0 spkA_1 spkB_1 IC\n"
                                  "0 spkA_2 spkB_1 IW\n1 model_b spkB_2 TC\n")
    validate(manifest, folder / "t.txt", folder / "enrol.csv")


def test_untyped_trial_of_a_model_is_checked_against_its_utterances_speaker(corpus):
    folder, manifest, _ = corpus
    write_enrolment([{"model_id": "model_a", "utt_ids": ["spkA_1", "spkA_2"]}],
                    folder / "enrol.csv")
    write_trials([(0, "model_a", "spkA_2"), (1, "model_a", "spkB_1")], folder / "t.txt")
    with pytest.raises(ManifestError, match="labels disagree with the spk_id of their sides\n"
                                            "  line 1: 0 model_a spkA_2\n"
                                            "  line 2: 1 model_a spkB_1\nFix"):
        validate(manifest, folder / "t.txt", folder / "enrol.csv")


def test_enrolment_table_speaker_contradicting_the_utterances_is_refused(corpus):
    folder, manifest, trials = corpus
    write_enrolment([{"model_id": "model_a", "utt_ids": ["spkA_1", "spkA_2"], "spk_id": "spkB"}],
                    folder / "enrol.csv")
    with pytest.raises(ManifestError, match="enrol.csv: models whose spk_id contradicts their "
                                            "utterances'\n  model_a: spk_id spkB, utterance "
                                            "spkA_1 spk_id spkA\n  model_a: spk_id spkB, "
                                            "utterance spkA_2 spk_id spkA\nFix: give each "
                                            "model the "
                                            "spk_id of its utterances in the manifest$"):
        validate(manifest, trials, folder / "enrol.csv")


def test_an_enrolment_model_of_several_speakers_is_refused(corpus):
    """Its speaker unknown, its trials' labels would go unchecked."""
    folder, manifest, _ = corpus
    write_enrolment([{"model_id": "model_a", "utt_ids": ["spkA_1", "spkA_2"]},
                     {"model_id": "model_ab", "utt_ids": ["spkA_1", "spkB_1"]}],
                    folder / "enrol.csv")
    write_trials([(0, "model_ab", "spkA_2"), (1, "model_ab", "spkB_2")], folder / "t.txt")
    with pytest.raises(ManifestError, match=r"enrol.csv: models whose utterances have several "
                                            r"speakers in .*m.csv\n"
                                            r"  model_ab: spkA_1 \(spkA\), spkB_1 \(spkB\)\n"
                                            r"Fix: enrol each model with utterances of one"):
        validate(manifest, folder / "t.txt", folder / "enrol.csv")
    # Utterances of unknown speaker do not count.
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    table.loc[table["ID"] == "spkB_1", "spk_id"] = ""
    table.to_csv(manifest, index=False)
    write_trials([(1, "model_ab", "spkA_2"), (0, "model_ab", "spkB_2")], folder / "t.txt")
    validate(manifest, folder / "t.txt", folder / "enrol.csv")


def test_an_enrolment_model_of_several_phrases_in_typed_trials_is_refused(corpus):
    """Its phrase unknown, its trial types would go unchecked and the phrase rows leave it out."""
    folder, manifest, _ = corpus
    with_phrases(manifest)
    write_enrolment([{"model_id": "model_b", "utt_ids": ["spkB_1", "spkB_12"]}],
                    folder / "enrol.csv")
    (folder / "t.txt").write_text("1 model_b spkB_2 TC\n0 model_b spkA_2 IC\n")
    with pytest.raises(ManifestError, match=r"enrol.csv: models of trials with SdSV trial types "
                                            r"whose utterances say several phrases in .*m.csv\n"
                                            r"  model_b: spkB_1 \(01\), spkB_12 \(02\)\n"
                                            r"Fix: enrol each model with utterances of one phrase"):
        validate(manifest, folder / "t.txt", folder / "enrol.csv")
    # Text-independent (untyped) trials may enrol several phrases.
    (folder / "t.txt").write_text("1 model_b spkB_2\n0 model_b spkA_2\n")
    validate(manifest, folder / "t.txt", folder / "enrol.csv")


@pytest.mark.parametrize("text, line", [
    ("1 spkA_1 spkA_2 TC x y z\n0 spkA_1 spkB_1\n", "line 1: 1 spkA_1 spkA_2 TC x y z"),
    ("1 spkA_1 spkA_2\n0 spkA_1 spkB_1 TC x y\n", "line 2: 0 spkA_1 spkB_1 TC x y"),
    ("1 spkA_1 spkA_2\n0\tspkA_1\n", "line 2: 0 spkA_1"),
])
def test_lines_with_too_many_or_too_few_fields(corpus, text, line):
    folder, manifest, _ = corpus
    (folder / "t.txt").write_text(text)
    with pytest.raises(ManifestError, match=f"lines not of the form .*\n  {line}\nFix"):
        validate(manifest, folder / "t.txt")


class _Read:
    """An ID that, as it is written, reads what a reader of ``path`` finds then (or fails)."""

    def __init__(self, path, seen, fault=None):
        self.path, self.seen, self.fault = path, seen, fault

    def __str__(self):
        self.seen.append(open(self.path, encoding="utf-8").read())
        if self.fault:
            raise self.fault
        return "u_last"


@pytest.mark.parametrize("write, table", [
    (write_manifest, lambda last: [{"ID": i, "duration": 1.0, "wav": "u.wav", "start": 0,
                                    "stop": 16000, "spk_id": "s1", "domain": "d"}
                                   for i in [*(f"u{n}" for n in range(5000)), last]]),
    (write_trials, lambda last: [(1, f"u{n}", "u0") for n in range(5000)] + [(0, last, "u0")]),
    (write_enrolment, lambda last: [{"model_id": m, "utt_ids": "u0 u1"}
                                    for m in [*(f"m{n}" for n in range(5000)), last]]),
])
def test_a_file_being_written_is_read_whole_and_a_failed_write_leaves_the_one_before(
        tmp_path, write, table):
    # A run that starts while another rewrites the condition's manifests (each
    # run's select_rows) reads the one before, not the first rows of the new one.
    path = str(tmp_path / "file")
    write(table("u_last"), path)
    before, seen = open(path, encoding="utf-8").read(), []
    write(table(_Read(path, seen)), path)
    assert seen == [before]
    assert open(path, encoding="utf-8").read().count("u_last") == 1
    # A full disk in the middle of the rows leaves the file before it.
    before = open(path, encoding="utf-8").read()
    with pytest.raises(OSError):
        write(table(_Read(path, [], OSError(28, "No space left on device"))), path)
    assert open(path, encoding="utf-8").read() == before
    assert os.listdir(tmp_path) == ["file"]


def test_the_command_line_refuses_scored_rows_longer_than_evaluation_embeds(corpus, capsys):
    """Rows beyond max_embed_seconds (hparams/common.yaml's 600 s by default) are refused."""
    folder, manifest, trials = corpus
    table = pd.read_csv(manifest)
    table.loc[table["ID"] == "spkB_2", ["duration", "stop"]] = 700.0, 700 * 8000
    table.to_csv(manifest, index=False)
    assert main([str(manifest), "--trials", str(trials), "--no-audio"]) == 1
    assert re.search(r"m.csv: 1 inputs are longer than max_embed_seconds \(600 s\).*\n  "
                     r"spkB_2 \(.*spkB_2.wav\): 700.00 s\n", capsys.readouterr().err)
    assert main([str(manifest), "--trials", str(trials), "--no-audio",
                 "--max-embed-seconds", "800"]) == 0
    assert main([str(manifest), "--trials", str(trials), "--no-audio",
                 "--max-embed-seconds", "0.9"]) == 1
    assert "4 inputs are longer than max_embed_seconds (0.9 s)" in capsys.readouterr().err
