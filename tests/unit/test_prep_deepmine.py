"""DeepMine (SdSV) preparation on fake task folders with the real layout and names."""

import os

import numpy as np
import pytest
import soundfile

from data_prep.deepmine import language, main, prepare_deepmine
from data_prep.preparation import OptionError, select_rows
from local.data.manifest_io import read_enrolment, read_manifest
from local.data.schema import SAMPLE_RATE
from local.data.validation import validate
from local.errors import ManifestError

# Task 1 (text-dependent) docs/, as released: a header line, then the entries
# (headers and entries as in the SdSV Challenge evaluation plans, 2020 and 2021).
TASK1_ENROLMENT = (
    "model-id phrase-id enroll-file-id1 enroll-file-id2 enroll-file-id3\n"
    "model_00000 07 enr_007492 enr_023277 enr_012882\n"
    "model_00001 02 enr_000101 enr_000102 enr_000103\n"
)
TASK1_TRAIN = (
    "train-file-id speaker-id phrase-id\n"
    "trn_000001 spk_000001 09\n"
    "trn_000002 spk_000001 01\n"
    "trn_000003 spk_000002 09\n"
    "trn_000004 spk_000002 03\n"
    "trn_000005 spk_000003 06\n"
    "trn_000006 spk_000003 10\n"
)
TASK1_TRIALS = (
    "model-id evaluation-file-id\n"
    "model_00000 evl_000018\n"
    "model_00000 evl_000042\n"
    "model_00001 evl_000018\n"
    "model_00001 evl_000077\n"
)
TASK1_KEY = (  # SdSV trial types, in any case
    "model-id evaluation-file-id trial-type\n"
    "model_00000 evl_000018 TC\n"
    "model_00000 evl_000042 tw\n"
    "model_00001 evl_000018 IW\n"
    "model_00001 evl_000077 IC\n"
)
TASK1_TRIAL_LIST = [
    "1 model_00000 evl_000018 TC",
    "0 model_00000 evl_000042 TW",
    "0 model_00001 evl_000018 IW",
    "0 model_00001 evl_000077 IC",
]
# Task 2 (text-independent): no phrases, any number of enrolment files.
TASK2_ENROLMENT = (
    "model-id enroll-file-ids ...\n"
    "model_15005 enr_188426 enr_303480 enr_100001 enr_100002\n"
    "model_15006 enr_200002\n"
)
TASK2_TRAIN = (
    "train-file-id speaker-id\n"
    "trn_101064 spk_001000\n"
    "trn_101065 spk_001000\n"
    "trn_101066 spk_001001\n"
)
TASK2_TRIALS = (
    "model-id evaluation-file-id\n"
    "model_15005 evl_500001\n"
    "model_15006 evl_500001\n"
    "model_15006 evl_500002\n"
)
TASK2_KEY = (
    "model_15005 evl_500001 target\n"
    "model_15006 evl_500001 nontarget\n"
    "model_15006 evl_500002 Target\n"
)
WAV_FOLDER = {"trn": "train", "enr": "enrollment", "evl": "evaluation"}


def _entries(text):
    """The fields of each line of a docs file, without its header."""
    return [line.split() for line in text.splitlines()[1:]]


def short_noise(name, seed):
    """0.2 to 1.0 s of noise: enough to prepare, some too short to embed or crop."""
    seconds = 0.2 + 0.1 * (seed % 9)
    return np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * SAMPLE_RATE))


def write_task(folder, enrolment, train, trials, audio=short_noise):
    """One SdSV task as extracted: docs/ and wav/{train,enrollment,evaluation}/.

    ``audio(file ID, index)`` gives each file's 16 kHz samples.
    """
    docs = folder / "docs"
    docs.mkdir(parents=True)
    (docs / "model_enrollment.txt").write_text(enrolment)
    (docs / "train_labels.txt").write_text(train)
    (docs / "trials.txt").write_text(trials)
    names = ([fields[0] for fields in _entries(train)]
             + [f for fields in _entries(enrolment) for f in fields if f.startswith("enr_")]
             + [fields[1] for fields in _entries(trials)])
    for seed, name in enumerate(dict.fromkeys(names)):
        path = folder / "wav" / WAV_FOLDER[name[:3]] / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, audio(name, seed), SAMPLE_RATE, subtype="PCM_16")
    return folder


@pytest.fixture
def task1(tmp_path):
    folder = write_task(tmp_path / "task1", TASK1_ENROLMENT, TASK1_TRAIN, TASK1_TRIALS)
    (tmp_path / "task1_key.txt").write_text(TASK1_KEY)
    return folder


@pytest.fixture
def task2(tmp_path):
    return write_task(tmp_path / "task2", TASK2_ENROLMENT, TASK2_TRAIN, TASK2_TRIALS)


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "prepared")


def _key(task1):
    return str(task1.parent / "task1_key.txt")


def _check_rows(table, folder):
    """Every row is its whole file, under the wav/ folder of its kind."""
    assert set(table["domain"]) == {"deepmine"}
    for row in table.itertuples():
        assert row.wav == str(folder / "wav" / WAV_FOLDER[row.ID[:3]] / f"{row.ID}.wav")
        info = soundfile.info(row.wav)
        assert (row.start, row.stop, row.sample_rate) == (0, info.frames, SAMPLE_RATE)
        assert row.duration == pytest.approx(info.frames / SAMPLE_RATE, abs=1e-4)


def _check_split(paths, enrolment, trials):
    """train.csv holds the training files only; eval.csv every other file, once."""
    train, evaluation = read_manifest(paths["train"]), read_manifest(paths["eval"])
    enrolled = [f for fields in _entries(enrolment) for f in fields if f.startswith("enr_")]
    tested = [fields[1] for fields in _entries(trials)]
    assert list(evaluation["ID"]) == list(dict.fromkeys(enrolled + tested))
    assert set(train["ID"]).isdisjoint(evaluation["ID"])
    assert all(utt.startswith("trn_") for utt in train["ID"])
    assert set(evaluation["spk_id"]) == {""}


def test_task1_rows_describe_their_files(task1, out):
    paths = prepare_deepmine(str(task1), out, key_file=_key(task1))
    assert sorted(paths) == ["enrolment", "eval", "train", "trials"]
    train = validate(paths["train"])
    evaluation = validate(paths["eval"], paths["trials"], paths["enrolment"])
    for table in (train, evaluation):
        _check_rows(table, task1)
        assert set(table["channel"]) == {""}
    expected = {utt: (spk, phrase) for utt, spk, phrase in _entries(TASK1_TRAIN)}
    assert dict(zip(train["ID"], zip(train["spk_id"], train["phrase"]))) == expected
    assert train["spk_id"].nunique() == 3
    assert list(train["lang"]) == ["en", "fa", "en", "fa", "en", "en"]
    _check_split(paths, TASK1_ENROLMENT, TASK1_TRIALS)
    # Enrolment files say their model's phrase; evaluation files may not.
    text = {u: (model[1], language(model[1])) for model in _entries(TASK1_ENROLMENT)
            for u in model[2:]}
    text.update({u: ("", "") for u in ("evl_000018", "evl_000042", "evl_000077")})
    assert dict(zip(evaluation["ID"], zip(evaluation["phrase"], evaluation["lang"]))) == text
    assert text["enr_007492"] == ("07", "en") and text["enr_000101"] == ("02", "fa")


@pytest.mark.parametrize("phrase, lang", [
    *((f"{n:02d}", "fa") for n in range(1, 6)), *((f"{n:02d}", "en") for n in range(6, 11))])
def test_phrases_01_to_05_are_persian_and_06_to_10_english(phrase, lang):
    # SdSV task 1's phrase list: five Persian phrases, then five English ones.
    assert language(phrase) == lang


def test_task1_enrolment_and_typed_trials(task1, out):
    paths = prepare_deepmine(str(task1), out, key_file=_key(task1))
    models, table = read_enrolment(paths["enrolment"])
    assert models == {"model_00000": ["enr_007492", "enr_023277", "enr_012882"],
                      "model_00001": ["enr_000101", "enr_000102", "enr_000103"]}
    assert list(table.columns) == ["model_id", "utt_ids", "phrase"]
    assert list(table["phrase"]) == ["07", "02"]
    with open(paths["trials"]) as lines:
        assert lines.read().splitlines() == TASK1_TRIAL_LIST


def test_key_of_labels_alone_in_trial_order(task1, tmp_path, out):
    (tmp_path / "keys.txt").write_text("1\n0\n0\n0\n")  # the CodaLab scoring key
    paths = prepare_deepmine(str(task1), out, key_file=str(tmp_path / "keys.txt"))
    with open(paths["trials"]) as lines:
        assert lines.read().splitlines() == [t.rsplit(" ", 1)[0] for t in TASK1_TRIAL_LIST]


def test_task2(task2, tmp_path, out):
    (tmp_path / "task2_key.txt").write_text(TASK2_KEY)
    paths = prepare_deepmine(str(task2), out, key_file=str(tmp_path / "task2_key.txt"))
    train = validate(paths["train"])
    evaluation = validate(paths["eval"], paths["trials"], paths["enrolment"])
    for table in (train, evaluation):
        _check_rows(table, task2)
        assert "phrase" not in table.columns
    assert dict(zip(train["ID"], train["spk_id"])) == dict(_entries(TASK2_TRAIN))
    assert set(train["lang"]) == {"fa"}
    _check_split(paths, TASK2_ENROLMENT, TASK2_TRIALS)
    # Enrolment is Persian; a test may be Persian or English.
    assert list(evaluation["lang"]) == ["fa"] * 5 + ["", ""]
    models, table = read_enrolment(paths["enrolment"])
    assert list(table.columns) == ["model_id", "utt_ids"]
    assert models == {"model_15005": ["enr_188426", "enr_303480", "enr_100001", "enr_100002"],
                      "model_15006": ["enr_200002"]}
    with open(paths["trials"]) as lines:
        assert lines.read().splitlines() == [
            "1 model_15005 evl_500001", "0 model_15006 evl_500001", "1 model_15006 evl_500002"]


@pytest.mark.parametrize("header", ["model-id evaluation-file-id trial-type",
                                    "model segment target_type", "enrollment test key"])
def test_key_header_line_is_skipped(task1, tmp_path, out, header):
    (tmp_path / "task1_key.txt").write_text(header + "\n" + TASK1_KEY.split("\n", 1)[1])
    paths = prepare_deepmine(str(task1), out, key_file=_key(task1))
    with open(paths["trials"]) as lines:
        assert lines.read().splitlines() == TASK1_TRIAL_LIST


def test_key_of_labels_alone_with_a_header(task1, tmp_path, out):
    (tmp_path / "keys.txt").write_text("label\n1\n0\n0\n0\n")
    paths = prepare_deepmine(str(task1), out, key_file=str(tmp_path / "keys.txt"))
    with open(paths["trials"]) as lines:
        assert lines.read().splitlines() == [t.rsplit(" ", 1)[0] for t in TASK1_TRIAL_LIST]


def test_task2_key_with_tgt_and_imp(task2, tmp_path, out):
    key = TASK2_KEY.replace("nontarget", "imp").replace("Target", "TGT").replace("target", "tgt")
    (tmp_path / "task2_key.txt").write_text(key)
    paths = prepare_deepmine(str(task2), out, key_file=str(tmp_path / "task2_key.txt"))
    with open(paths["trials"]) as lines:
        assert lines.read().splitlines() == [
            "1 model_15005 evl_500001", "0 model_15006 evl_500001", "1 model_15006 evl_500002"]


def test_key_repeating_a_trial_with_the_same_label_is_taken_once(task1, tmp_path, out):
    _append(_key(task1), "model_00000 evl_000042 TW\n")
    paths = prepare_deepmine(str(task1), out, key_file=_key(task1))
    with open(paths["trials"]) as lines:
        assert lines.read().splitlines() == TASK1_TRIAL_LIST


def test_a_trial_repeated_in_the_middle_of_the_key_leaves_the_others_labels(task1, tmp_path,
                                                                            out):
    lines = TASK1_KEY.splitlines(keepends=True)
    (tmp_path / "task1_key.txt").write_text("".join(lines[:2] + lines[1:]))
    paths = prepare_deepmine(str(task1), out, key_file=_key(task1))
    with open(paths["trials"]) as trials:
        assert trials.read().splitlines() == TASK1_TRIAL_LIST


def test_a_key_in_another_order_labels_every_trial_by_its_pair(tmp_path, out):
    # Every model with every evaluation file: pairs that share a model or a file.
    models = ["model_00000", "model_00001"]
    tests = ["evl_000018", "evl_000042", "evl_000077"]
    pairs = [(model, test) for model in models for test in tests]
    types = dict(zip(pairs, ["TC", "TW", "IC", "IW", "TC", "IC"]))
    task = write_task(tmp_path / "task1", TASK1_ENROLMENT, TASK1_TRAIN,
                      "model-id evaluation-file-id\n"
                      + "".join(f"{m} {t}\n" for m, t in pairs))
    (tmp_path / "key.txt").write_text("".join(f"{m} {t} {types[m, t]}\n"
                                              for m, t in reversed(pairs)))
    paths = prepare_deepmine(str(task), out, key_file=str(tmp_path / "key.txt"))
    with open(paths["trials"]) as trials:
        assert trials.read().splitlines() == [
            f"{int(types[m, t] == 'TC')} {m} {t} {types[m, t]}" for m, t in pairs]


def test_key_labelling_a_trial_two_ways_is_refused(task1, tmp_path, out):
    _append(_key(task1), "model_00001 evl_000077 TC\n")
    with pytest.raises(ManifestError, match=r"task1_key.txt: labels the same trial differently"
                       r" on different lines\n  line 5: model_00001 evl_000077 IC\n"
                       r"  line 6: model_00001 evl_000077 TC\nFix: keep one line per trial"):
        prepare_deepmine(str(task1), out, key_file=_key(task1))


def test_without_a_key_no_trial_list_is_written(task1, out):
    paths = prepare_deepmine(str(task1), out)
    assert sorted(paths) == ["enrolment", "eval", "train"]
    assert not os.path.exists(os.path.join(out, "trials.txt"))
    validate(paths["eval"], enrolment_path=paths["enrolment"])
    _check_split(paths, TASK1_ENROLMENT, TASK1_TRIALS)


def test_channel_table(task1, tmp_path, out):
    table = tmp_path / "channels.csv"
    table.write_text("utt,channel,note\ntrn_000002,phone_a,x\nenr_023277,phone_b,\n"
                     "evl_000042,,\n")
    paths = prepare_deepmine(str(task1), out, channel_table=str(table))
    channels = {}
    for name in ("train", "eval"):
        manifest = read_manifest(paths[name])
        channels.update(zip(manifest["ID"], manifest["channel"]))
    assert {utt: c for utt, c in channels.items() if c} == {"trn_000002": "phone_a",
                                                            "enr_023277": "phone_b"}


def test_a_channel_table_changed_in_place_is_prepared_again(task1, tmp_path, out):
    # The same options, another table: the manifests follow the table.
    table = tmp_path / "channels.csv"
    table.write_text("utt,channel\ntrn_000002,wireless\nevl_000042,wireless\n")
    paths = prepare_deepmine(str(task1), out, channel_table=str(table))
    table.write_text("utt,channel\ntrn_000002,wireless\nevl_000042,telephone\n")
    assert prepare_deepmine(str(task1), out, channel_table=str(table)) == paths
    manifest = read_manifest(paths["eval"]).set_index("ID")
    assert manifest.loc["evl_000042", "channel"] == "telephone"


def test_selecting_channels_refuses_one_no_row_has_and_logs_what_it_leaves_out(
        task1, tmp_path, out, caplog):
    # What the wireless-to-telephone condition does with --source_channels.
    table = tmp_path / "channels.csv"
    table.write_text("utt,channel\ntrn_000001,wireless\ntrn_000002,telephone\n")
    train = prepare_deepmine(str(task1), out, channel_table=str(table))["train"]
    rows = len(read_manifest(train))
    with pytest.raises(ManifestError, match=r"train.csv: no row has channel in \['telephon'\]; "
                                            r"its values are \['', 'telephone', 'wireless'\]\n"
                                            r"Fix: choose channel values the corpus has"):
        select_rows(train, str(tmp_path / "x.csv"), "channel", ["wireless", "telephon"])
    caplog.set_level("INFO", logger="data_prep.preparation")
    selected = select_rows(train, str(tmp_path / "x.csv"), "channel", ["wireless"])
    assert list(selected["ID"]) == ["trn_000001"]
    assert (f"x.csv: 1 rows with channel in ['wireless'] kept, {rows - 1} left out "
            f"({rows - 2} of them without a channel)") in caplog.text


def test_chunks(task1, out):
    paths = prepare_deepmine(str(task1), out, seg_dur=0.25)
    train = validate(paths["train"])
    size = SAMPLE_RATE // 4
    expected = []
    for utt, *_ in _entries(TASK1_TRAIN):
        frames = soundfile.info(str(task1 / "wav" / "train" / f"{utt}.wav")).frames
        starts = range(0, frames - size + 1, size) if frames > size else [None]
        expected += [utt if s is None else f"{utt}_{s}_{s + size}" for s in starts]
    assert list(train["ID"]) == expected
    assert set(train["phrase"]) == {"01", "03", "06", "09", "10"}
    evaluation = read_manifest(paths["eval"])
    assert (evaluation["stop"] == [soundfile.info(w).frames for w in evaluation["wav"]]).all()


def test_rerun_with_the_same_options_is_skipped(task1, out):
    paths = prepare_deepmine(str(task1), out)
    stamps = {name: os.stat(path).st_mtime_ns for name, path in paths.items()}
    wav = str(task1 / "wav" / "train" / "trn_000006.wav")
    os.rename(wav, wav + ".away")  # not even looked for
    assert prepare_deepmine(str(task1), out) == paths
    assert {name: os.stat(path).st_mtime_ns for name, path in paths.items()} == stamps
    with pytest.raises(ManifestError, match="wav/train/trn_000006.wav"):
        prepare_deepmine(str(task1), out, seg_dur=0.25)  # other options: redone
    # Refused, it left the earlier preparation as it was.
    assert {name: os.stat(path).st_mtime_ns for name, path in paths.items()} == stamps
    assert prepare_deepmine(str(task1), out) == paths
    os.rename(wav + ".away", wav)
    chunked = prepare_deepmine(str(task1), out, seg_dur=0.25)
    assert read_manifest(chunked["train"])["ID"].str.contains(r"_\d+_\d+$").any()
    assert os.path.exists(os.path.join(out, "prepare_options.json"))


def test_command_line(task1, out, capsys):
    assert main(["--data_folder", str(task1), "--save_folder", out,
                 "--key_file", _key(task1), "--seg_dur", "0.5"]) == 0
    assert f"trials: {os.path.join(out, 'trials.txt')}" in capsys.readouterr().out
    assert read_manifest(os.path.join(out, "train.csv"))["ID"].str.contains("_0_8000").any()
    assert main(["--data_folder", str(task1 / "nowhere"), "--save_folder", out]) == 1
    assert "DeepMine folder does not exist" in capsys.readouterr().err


def test_out_of_range_seg_dur(task1, out, capsys):
    message = "seg_dur is -1.0: not a number in (0, inf), the training chunk length in seconds"
    with pytest.raises(OptionError) as error:
        prepare_deepmine(str(task1), out, seg_dur=-1.0)
    assert str(error.value).startswith(message)
    assert main(["--data_folder", str(task1), "--save_folder", out, "--seg_dur", "-1"]) == 1
    printed = capsys.readouterr()
    assert printed.err.startswith(message) and "Traceback" not in printed.err
    assert printed.err.endswith("Fix: choose seg_dur in (0, inf) (--seg_dur on the command line)\n")


def _append(path, text):
    with open(path, "a") as lines:
        lines.write(text)


def _missing_folder(task1, tmp_path):
    return dict(data_folder=str(task1 / "nowhere"))


def _no_docs(task1, tmp_path):
    return dict(data_folder=str(task1 / "wav"))


def _missing_wav(task1, tmp_path):
    os.remove(task1 / "wav" / "evaluation" / "evl_000042.wav")


def _malformed_train_line(task1, tmp_path):
    _append(task1 / "docs" / "train_labels.txt", "trn_000007 spk_000004\n")


def _unknown_phrase(task1, tmp_path):
    _append(task1 / "docs" / "train_labels.txt", "trn_000007 spk_000004 11\n")


def _train_file_listed_twice(task1, tmp_path):
    _append(task1 / "docs" / "train_labels.txt", "trn_000001 spk_000009 05\n")


def _malformed_first_train_line(task1, tmp_path):
    (task1 / "docs" / "train_labels.txt").write_text(
        TASK1_TRAIN.replace("trn_000001 spk_000001 09", "trn_000001 spk_000001"))


def _task2_first_enrolment_line(task1, tmp_path):
    (task1 / "docs" / "model_enrollment.txt").write_text(
        TASK1_ENROLMENT.replace("model_00000 07", "model_00000")
        + "model_00002 02 enr_000102 enr_000103\n")


def _task2_enrolment_line(task1, tmp_path):
    _append(task1 / "docs" / "model_enrollment.txt", "model_00002 enr_188426\n")


def _first_enrolment_phrase(phrase):
    """A breakage: the first enrolment line's phrase ID replaced by ``phrase``."""
    def breakage(task1, tmp_path):
        (task1 / "docs" / "model_enrollment.txt").write_text(
            TASK1_ENROLMENT.replace("model_00000 07", f"model_00000 {phrase}"))
    return breakage


def _enrolment_file_of_two_phrases(task1, tmp_path):
    _append(task1 / "docs" / "model_enrollment.txt", "model_00002 07 enr_000101 enr_000104\n")


def _tasks_mixed(task1, tmp_path):
    (task1 / "docs" / "model_enrollment.txt").write_text(TASK2_ENROLMENT)


def _malformed_trial(task1, tmp_path):
    _append(task1 / "docs" / "trials.txt", "model_00001 evl_000018 TC\n")


def _unknown_model(task1, tmp_path):
    _append(task1 / "docs" / "trials.txt", "model_00009 evl_000018\n")


def _bad_key_label(task1, tmp_path):
    _append(_key(task1), "model_00001 evl_000099 TX\n")


def _key_lacks_a_trial(task1, tmp_path):
    (tmp_path / "task1_key.txt").write_text(TASK1_KEY.rsplit("model_00001", 1)[0])


def _key_of_labels_too_short(task1, tmp_path):
    (tmp_path / "task1_key.txt").write_text("1\n0\n0\n")


def _key_of_labels_too_long(task1, tmp_path):
    (tmp_path / "task1_key.txt").write_text("1\n0\n0\n0\n1\n")


def _channel_table_repeating_a_file(task1, tmp_path):
    (tmp_path / "channels.csv").write_text("utt,channel\ntrn_000001,a\ntrn_000001,b\n")
    return dict(channel_table=str(tmp_path / "channels.csv"))


def _key_absent(task1, tmp_path):
    os.remove(_key(task1))


def _channel_table_columns(task1, tmp_path):
    (tmp_path / "channels.csv").write_text("file,device\ntrn_000001,phone\n")
    return dict(channel_table=str(tmp_path / "channels.csv"))


def _channel_table_short_row(task1, tmp_path):
    (tmp_path / "channels.csv").write_text("utt,channel\ntrn_000001,phone\ntrn_000002\n")
    return dict(channel_table=str(tmp_path / "channels.csv"))


def _channel_of_unknown_file(task1, tmp_path):
    (tmp_path / "channels.csv").write_text("utt,channel\ntrn_000001,a\ntrn_999999,b\n")
    return dict(channel_table=str(tmp_path / "channels.csv"))


@pytest.mark.parametrize("breakage, message, fix", [
    (_missing_folder, r"nowhere: DeepMine folder does not exist",
     "pass as data_folder the folder that an SdSV task's archives"),
    (_no_docs, r"wav: not an SdSV task folder: it lacks docs/model_enrollment.txt",
     "extract an SdSV task's archives here, so that"),
    (_missing_wav, r"task1: 1 files named in docs/ are missing\n  wav/evaluation/evl_000042",
     "extract all of the task's audio archives here, into wav/train,"),
    (_malformed_train_line, r"train_labels.txt: lines not of the form 'train-file-id "
                            r"speaker-id phrase-id' .*\n  line 8: trn_000007 spk_000004\n",
     "use docs/train_labels.txt as extracted; extract each task's"),
    # The task is the form of most lines: a malformed first line is the one named.
    (_malformed_first_train_line, r"train_labels.txt: lines not of the form 'train-file-id "
                                  r"speaker-id phrase-id' \(task 1, as 5 of its 6 lines are\)"
                                  r".*\n  line 2: trn_000001 spk_000001\nFix: ",
     "use docs/train_labels.txt as extracted; extract each task's"),
    (_task2_first_enrolment_line, r"model_enrollment.txt: lines not of the form 'model-id "
                                  r"phrase-id .*\n  line 2: model_00000 enr_007492 enr_023277 "
                                  r"enr_012882\nFix: ",
     "use docs/model_enrollment.txt as extracted; extract each task's"),
    (_unknown_phrase, r"train_labels.txt: lines not .*\n  line 8: trn_000007 spk_000004 11",
     "use docs/train_labels.txt as extracted; extract each task's"),
    (_train_file_listed_twice, r"train_labels.txt: lines not .*, or files listed twice\n"
                               r"  line 8: trn_000001 spk_000009 05\n",
     "use docs/train_labels.txt as extracted; extract each task's"),
    (_task2_enrolment_line, r"model_enrollment.txt: lines not of the form 'model-id "
                            r"phrase-id .*\n  line 4: model_00002 enr_188426\n",
     "use docs/model_enrollment.txt as extracted; extract each task's"),
    (_tasks_mixed, r"model_enrollment.txt: is task 2's .*/train_labels.txt is task 1's",
     "extract each task's archives to a folder of its own, so that"),
    (_first_enrolment_phrase("7"), r"model_enrollment.txt: lines not of the form 'model-id "
                                   r"phrase-id .*' \(task 1\) with phrase-id 01 to 10, or "
                                   r"models listed twice\n  line 2: model_00000 7 enr_007492",
     "use docs/model_enrollment.txt as extracted; extract each task's"),
    (_first_enrolment_phrase("11"), r"model_enrollment.txt: lines not .*\n"
                                    r"  line 2: model_00000 11 enr_007492",
     "use docs/model_enrollment.txt as extracted; extract each task's"),
    (_enrolment_file_of_two_phrases, r"model_enrollment.txt: enrolment files of models of "
                                     r"different phrases\n  enr_000101: phrase 02 in "
                                     r"model_00001, 07 in model_00002\nFix: ",
     "use docs/model_enrollment.txt as extracted: each enrolment file"),
    (_malformed_trial, r"trials.txt: lines not of the form 'model-id evaluation-file-id'"
                       r"\n  line 6: model_00001 evl_000018 TC",
     "use docs/trials.txt as extracted"),
    (_unknown_model, r"trials.txt: trials name models that are not in docs/model_enrollment"
                     r".txt\n  line 6: model_00009 evl_000018\n",
     "use the docs/ files of one task, as extracted; extract each"),
    (_bad_key_label, r"task1_key.txt: key lines not .* with a known label\n"
                     r"  line 6: model_00001 evl_000099 TX",
     "give one line 'model-id evaluation-file-id label' per trial of"),
    (_key_lacks_a_trial, r"does not label exactly the trials of docs/trials.txt\n"
                         r"  not in the key: model_00001 evl_000077\n",
     "use the key of this task's docs/trials.txt: give one line"),
    (_key_of_labels_too_short, r"task1_key.txt: 3 labels for the 4 trials",
     "use the key of this task's docs/trials.txt: give one line"),
    (_key_of_labels_too_long, r"task1_key.txt: 5 labels for the 4 trials",
     "use the key of this task's docs/trials.txt: give one line"),
    (_key_absent, r"task1_key.txt: file does not exist",
     "give one line 'model-id evaluation-file-id label' per trial of"),
    (_channel_table_columns, r"channels.csv: missing columns \['utt', 'channel'\]",
     "a channel table is a CSV with the header utt,channel, one row"),
    (_channel_table_short_row, r"channels.csv: line 3 has 1 fields, the header 2",
     "give every row as many comma-separated fields as the header"),
    (_channel_of_unknown_file, r"channels.csv: 1 files are not in this task's docs/\n"
                               r"  trn_999999\n",
     "name the task's file IDs (trn_..., enr_..., evl_...) as in its"),
    (_channel_table_repeating_a_file, r"channels.csv: files listed more than once\n"
                                      r"  trn_000001\nFix: ",
     "a channel table is a CSV with the header utt,channel, one row"),
])
def test_bad_input_is_refused_with_the_fix(task1, tmp_path, out, breakage, message, fix):
    arguments = dict(data_folder=str(task1), save_folder=out, key_file=_key(task1))
    arguments.update(breakage(task1, tmp_path) or {})
    with pytest.raises(ManifestError, match=message) as error:
        prepare_deepmine(**arguments)
    assert f"\nFix: {fix}" in str(error.value)
    assert not os.path.exists(out)  # the save folder, made for the lock, removed again


def _audio_is_not_read(monkeypatch):
    """Make reading any audio header a test failure: the problem must show before it."""
    def read(path):
        raise AssertionError(f"{path} read before the trial list was refused")
    monkeypatch.setattr("local.data.schema.audio_info", read)


def _one_class_key(task1, tmp_path):
    (tmp_path / "task1_key.txt").write_text(TASK1_KEY.replace(" TC", " TW"))


def _trial_listed_twice(task1, tmp_path):
    _append(task1 / "docs" / "trials.txt", "model_00000 evl_000042\n")


@pytest.mark.parametrize("breakage, message", [
    (_one_class_key, r"trials.txt: all 4 trials are non-target trials\nFix: EER and minDCF"),
    (_trial_listed_twice, r"trials.txt: duplicated trials\n  line 5: 0 model_00000 evl_000042 "
                          r"TW \(repeats line 2\)\n"),
])
def test_a_bad_trial_list_is_refused_before_the_audio_is_read(task1, tmp_path, out,
                                                              monkeypatch, breakage, message):
    breakage(task1, tmp_path)
    _audio_is_not_read(monkeypatch)
    with pytest.raises(ManifestError, match=message):
        prepare_deepmine(str(task1), out, key_file=_key(task1))
    assert not os.path.exists(out)  # the save folder, made for the lock, removed again
