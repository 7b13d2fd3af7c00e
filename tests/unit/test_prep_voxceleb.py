"""VoxCeleb preparation on a fake tree with the real corpora's layout and names."""

import json
import logging
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from data_prep.preparation import OptionError
from data_prep.voxceleb import (
    CONVERT_VOX2,
    main,
    prepare_voxceleb,
    read_meta,
    utterance_id,
)
from local.data.manifest_io import read_manifest, read_trials
from local.data.schema import SAMPLE_RATE
from local.data.validation import validate
from local.errors import ManifestError

# VoxCeleb1 recordings (relative to wav/) and their lengths in seconds.
VOX1 = {
    "id10001/1zcIwhmdeo4/00001.wav": 0.9,
    "id10001/1zcIwhmdeo4/00002.wav": 0.4,
    "id10001/7gWzIy6yIIk/00001.wav": 0.6,
    "id10002/0_laIeN-Q44/00001.wav": 0.7,
    "id10002/0_laIeN-Q44/00002.wav": 0.3,
    "id10003/5ablueV_1tw/00001.wav": 1.0,
    "id10003/5ablueV_1tw/00004.wav": 0.5,
    "id10004/0Pdw9OOkOwQ/00001.wav": 0.8,
    "id10270/x6uYqmx31kE/00001.wav": 0.6,
    "id10270/x6uYqmx31kE/00002.wav": 0.5,
    "id10270/8jEAjG6SegY/00008.wav": 0.7,
    "id10271/1gtz-CUIygI/00001.wav": 0.4,
    "id10271/37nktPRUJ58/00001.wav": 0.9,
    "id10300/ize_eiCFEg0/00003.wav": 0.5,
    "id10300/ize_eiCFEg0/00004.wav": 0.3,
}
VOX1_META = (
    "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
    "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
    "id10002\tA.R._Rahman\tm\tIndia\tdev\n"
    "id10003\tAamir_Khan\tm\tIndia\tdev\n"
    "id10004\tAaron_Tveit\tm\tUSA\tdev\n"
    "id10270\tEric_McCormack\tm\tCanada\ttest\n"
    "id10271\tEva_Green\tf\tFrance\ttest\n"
    "id10300\tHayley_Atwell\tf\tUK\ttest\n"
)
DEV_SPEAKERS = ("id10001", "id10002", "id10003", "id10004")
VOX1_GENDER = {"id10001": "m", "id10002": "m", "id10003": "m", "id10004": "m",
               "id10270": "m", "id10271": "f", "id10300": "f"}
# Vox1-O uses the test speakers (id10270/00002 and id10300/00004 are in no trial).
VERI_TEST2 = (
    "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
    "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n"
    "1 id10271/1gtz-CUIygI/00001.wav id10271/37nktPRUJ58/00001.wav\n"
    "0 id10271/1gtz-CUIygI/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
)
# Vox1-H draws on dev speakers too.
LIST_TEST_HARD2 = (
    "1 id10001/1zcIwhmdeo4/00001.wav id10001/7gWzIy6yIIk/00001.wav\n"
    "0 id10001/1zcIwhmdeo4/00001.wav id10002/0_laIeN-Q44/00001.wav\n"
)
# A Vox1-E-like list: every VoxCeleb1 speaker is in it.
LIST_TEST_ALL2 = VERI_TEST2 + LIST_TEST_HARD2 + (
    "0 id10003/5ablueV_1tw/00001.wav id10004/0Pdw9OOkOwQ/00001.wav\n"
    "0 id10003/5ablueV_1tw/00001.wav id10300/ize_eiCFEg0/00004.wav\n"
)
# The list form of VoxCeleb1's first release (Kaldi's voxceleb1_test.txt), with
# celebrity names instead of IDs and <youtube_id>_<number>.wav file names.
VERI_TEST_OLD = (
    "1 Eric_McCormack/Y-qKARMSO7k_0000001.wav Eric_McCormack/ZqiYB3NRAOA_0000010.wav\n"
    "0 Eric_McCormack/Y-qKARMSO7k_0000001.wav Hayley_Atwell/ize_eiCFEg0_0000003.wav\n"
)
# VoxCeleb2 dev recordings (relative to dev/aac/ or dev/wav/).
VOX2 = {
    "id00012/21Uxsk56VDQ/00001": 0.8,
    "id00012/21Uxsk56VDQ/00002": 0.5,
    "id00012/2DLq_Kkc1r8/00016": 0.4,
    "id00015/0fijmz4vTVU/00001": 0.6,
    "id00015/0fijmz4vTVU/00003": 0.9,
    "id00017/01dfn2spqyE/00001": 0.3,
}
VOX2_META = (  # the real file pads its fields with spaces
    "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \n"
    "id00012 ,n000012 ,m ,dev \n"
    "id00015 ,n000015 ,f ,dev \n"
    "id00017 ,n000017 ,m ,dev \n"
    "id09272 ,n009272 ,f ,test \n"
)
VOX2_GENDER = {"id00012": "m", "id00015": "f", "id00017": "m"}


def _write_wav(path, seconds, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * SAMPLE_RATE))
    soundfile.write(path, noise, SAMPLE_RATE, subtype="PCM_16")


def write_vox1(folder):
    """VoxCeleb1 as extracted: wav/, vox1_meta.csv and the cleaned Vox1-O/H lists."""
    for seed, (path, seconds) in enumerate(VOX1.items()):
        _write_wav(os.path.join(folder, "wav", path), seconds, seed)
    (folder / "vox1_meta.csv").write_text(VOX1_META)
    (folder / "veri_test2.txt").write_text(VERI_TEST2)
    (folder / "list_test_hard2.txt").write_text(LIST_TEST_HARD2)
    return folder


def write_vox2(folder, layout):
    """VoxCeleb2 dev: ``m4a`` as released, ``in_place`` (.wav beside each .m4a)
    or ``wav`` (a dev/wav/ tree beside the released dev/aac/)."""
    for seed, (path, seconds) in enumerate(VOX2.items()):
        m4a = os.path.join(folder, "dev", "aac", path + ".m4a")
        os.makedirs(os.path.dirname(m4a), exist_ok=True)
        with open(m4a, "wb") as out:
            out.write(b"\x00\x00\x00\x1cftypM4A ")
        if layout != "m4a":
            tree = "aac" if layout == "in_place" else "wav"
            _write_wav(os.path.join(folder, "dev", tree, path + ".wav"), seconds, 100 + seed)
    (folder / "vox2_meta.csv").write_text(VOX2_META)
    return folder


@pytest.fixture
def vox1(tmp_path):
    return write_vox1(tmp_path / "voxceleb1")


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "prepared")


def _speakers(path):
    return set(read_manifest(path)["spk_id"])


def test_rows_describe_their_files(vox1, tmp_path, out):
    vox2 = write_vox2(tmp_path / "voxceleb2", "wav")
    paths = prepare_voxceleb(str(vox1), out, ["veri_test2.txt"], vox2_folder=str(vox2))
    for name in ("train", "eval"):
        table = validate(paths[name])
        assert len(table) and set(table["domain"]) == {"voxceleb"}
        assert set(table["lang"]) == {"en"}
        for row in table.itertuples():
            speaker, session, name = row.wav.split(os.sep)[-3:]
            info = soundfile.info(row.wav)
            assert (row.start, row.stop, row.sample_rate) == (0, info.frames, SAMPLE_RATE)
            assert row.duration == pytest.approx(info.frames / SAMPLE_RATE, abs=1e-4)
            assert row.ID == f"{speaker}--{session}--{name[:-4]}"
            assert (row.spk_id, row.session) == (speaker, session)
            assert row.gender == {**VOX1_GENDER, **VOX2_GENDER}[speaker]
    # In path order, VoxCeleb1's then VoxCeleb2's, whatever order the folders list them in.
    assert list(read_manifest(paths["train"])["wav"]) == (
        sorted(str(vox1 / "wav" / p) for p in VOX1 if p[:7] in DEV_SPEAKERS)
        + sorted(str(vox2 / "dev" / "wav" / f"{p}.wav") for p in VOX2))


def test_a_trial_list_saved_with_a_byte_order_mark_is_read(vox1, out):
    plain = prepare_voxceleb(str(vox1), out, ["veri_test2.txt"])
    trials = open(plain["trials_vox1_o"], encoding="utf-8").read()
    (vox1 / "veri_test2.txt").write_text("\ufeff" + VERI_TEST2, encoding="utf-8")
    marked = prepare_voxceleb(str(vox1), out + "_bom", ["veri_test2.txt"])
    assert open(marked["trials_vox1_o"], encoding="utf-8").read() == trials


def test_the_lists_before_cleaning_are_read_as_published(vox1, out):
    """veri_test.txt and list_test_hard.txt (as list_test_all.txt) have the cleaned lists'
    form; saved on Windows (CRLF, a space before the line end, a blank line after the first,
    no newline at the end) they read the same."""
    published = {"veri_test.txt": VERI_TEST2, "list_test_hard.txt": LIST_TEST_HARD2}
    for name, text in published.items():
        first, rest = text.split("\n", 1)
        (vox1 / name).write_bytes(
            f"{first}\n\n{rest}".replace("\n", " \r\n").rstrip("\r\n").encode())
    paths = prepare_voxceleb(str(vox1), out, list(published))
    for name, text in published.items():
        trials = read_trials(paths[f"trials_{name[:-4]}"])
        assert [f"{label} {enrol} {test}" for label, enrol, test, _ in trials.itertuples(
            index=False)] == [
            f"{label} {utterance_id(enrol)} {utterance_id(test)}"
            for label, enrol, test in (line.split() for line in text.splitlines())]


def test_trial_speakers_are_kept_out_of_training(vox1, out):
    paths = prepare_voxceleb(str(vox1), out, ["veri_test2.txt", "list_test_hard2.txt"])
    assert sorted(paths) == ["eval", "train", "trials_vox1_h", "trials_vox1_o"]
    assert _speakers(paths["train"]) == {"id10003", "id10004"}
    assert _speakers(paths["eval"]) == {"id10001", "id10002", "id10270", "id10271", "id10300"}
    trial_ids = set()
    for name, source in (("vox1_o", VERI_TEST2), ("vox1_h", LIST_TEST_HARD2)):
        validate(paths["eval"], paths[f"trials_{name}"])
        expected = [" ".join([label] + [utterance_id(p) for p in pair])
                    for label, *pair in (line.split() for line in source.splitlines())]
        with open(paths[f"trials_{name}"]) as lines:
            assert lines.read().splitlines() == expected
        trials = read_trials(paths[f"trials_{name}"])
        trial_ids |= set(trials["enrol"]) | set(trials["test"])
    # eval.csv holds exactly the recordings the trials use, whole.
    assert set(read_manifest(paths["eval"])["ID"]) == trial_ids
    assert "id10270--x6uYqmx31kE--00001" in trial_ids
    assert not set(read_manifest(paths["train"])["ID"]) & trial_ids


def test_vox1_o_trains_on_the_dev_speakers(vox1, out):
    paths = prepare_voxceleb(str(vox1), out)
    assert _speakers(paths["train"]) == set(DEV_SPEAKERS)
    assert len(read_manifest(paths["train"])) == 8
    # A test speaker's recording that no trial uses goes nowhere.
    ids = set(read_manifest(paths["train"])["ID"]) | set(read_manifest(paths["eval"])["ID"])
    assert "id10300--ize_eiCFEg0--00004" not in ids


@pytest.mark.parametrize("layout", ["wav", "in_place"])
def test_converted_vox2_trees(vox1, tmp_path, out, layout):
    vox2 = write_vox2(tmp_path / "voxceleb2", layout)
    (vox1 / "list_test_all2.txt").write_text(LIST_TEST_ALL2)
    paths = prepare_voxceleb(str(vox1), out, ["list_test_all2.txt"], vox2_folder=str(vox2))
    train = validate(paths["train"])
    assert set(train["spk_id"]) == set(VOX2_GENDER)
    assert dict(zip(train["spk_id"], train["gender"])) == VOX2_GENDER
    tree = "aac" if layout == "in_place" else "wav"
    assert all(w.startswith(str(vox2 / "dev" / tree)) and w.endswith(".wav") for w in train["wav"])
    validate(paths["eval"], paths["trials_vox1_e"])


def test_chunks(vox1, out):
    paths = prepare_voxceleb(str(vox1), out, seg_dur=0.25)
    train = validate(paths["train"])
    size = SAMPLE_RATE // 4
    expected = []
    for path, seconds in VOX1.items():
        if path[:7] in DEV_SPEAKERS:
            starts = range(0, int(seconds * SAMPLE_RATE) - size + 1, size)
            expected += [f"{utterance_id(path)}_{s}_{s + size}" for s in starts]
    assert sorted(train["ID"]) == sorted(expected)
    assert (train["stop"] - train["start"] == size).all()
    assert set(train["duration"]) == {0.25}
    # Evaluation recordings stay whole.
    evaluation = read_manifest(paths["eval"])
    assert (evaluation["start"] == 0).all()
    assert (evaluation["stop"] == [soundfile.info(w).frames for w in evaluation["wav"]]).all()
    assert not evaluation["ID"].str.contains(r"--\d+_\d+_\d+$").any()


def test_no_dev_manifest_is_written_and_one_of_an_earlier_preparation_is_removed(
        vox1, tmp_path, out, capsys):
    """Training has no validation stage: recordings held out for a dev.csv would only
    be missing from training, so none are; a folder prepared with dev_ratio is redone."""
    vox2 = write_vox2(tmp_path / "voxceleb2", "wav")
    paths = prepare_voxceleb(str(vox1), out, vox2_folder=str(vox2))
    assert sorted(paths) == ["eval", "train", "trials_vox1_o"]
    train = read_manifest(paths["train"])
    assert len(train) == len(VOX2) + sum(not path.startswith(("id10270", "id10271", "id10300"))
                                         for path in VOX1)
    marker = os.path.join(out, "prepare_options.json")
    with open(marker) as saved:
        record = json.load(saved)
    record["options"].update(dev_ratio=0.5, seed=1234)
    record["outputs"].append("dev.csv")
    with open(marker, "w") as saved:
        json.dump(record, saved)
    shutil.copy(paths["train"], os.path.join(out, "dev.csv"))
    assert prepare_voxceleb(str(vox1), out, vox2_folder=str(vox2)) == paths
    assert not os.path.exists(os.path.join(out, "dev.csv"))
    # The option that asked for one is gone: the command line refuses it.
    with pytest.raises(SystemExit) as exit_:
        main(["--data_folder", str(vox1), "--save_folder", out, "--dev_ratio", "0.1"])
    assert exit_.value.code == 2
    assert "error: unrecognized arguments: --dev_ratio 0.1" in capsys.readouterr().err


def test_an_empty_trial_list_option_is_refused_with_the_fix(vox1, out):
    # From a condition file's prepare node; the command line's --trials needs one.
    with pytest.raises(ManifestError, match=r"^trial_lists: is empty(.|\n)*Fix: name at least "):
        prepare_voxceleb(str(vox1), out, trial_lists=[])
    assert not os.path.exists(os.path.join(out, "train.csv"))


def test_a_trial_list_changed_in_place_is_prepared_again(vox1, out):
    paths = prepare_voxceleb(str(vox1), out)
    trials = read_trials(paths["trials_vox1_o"])
    listed = vox1 / "veri_test2.txt"
    listed.write_text("".join(listed.read_text().splitlines(keepends=True)[:-1]))
    assert prepare_voxceleb(str(vox1), out) == paths
    assert len(read_trials(paths["trials_vox1_o"])) == len(trials) - 1


def test_rerun_with_the_same_options_is_skipped(vox1, out):
    paths = prepare_voxceleb(str(vox1), out)
    stamps = {name: os.stat(path).st_mtime_ns for name, path in paths.items()}
    os.remove(vox1 / "wav" / "id10003" / "5ablueV_1tw" / "00004.wav")  # not even scanned
    assert prepare_voxceleb(str(vox1), out) == paths
    assert {name: os.stat(path).st_mtime_ns for name, path in paths.items()} == stamps
    chunked = prepare_voxceleb(str(vox1), out, seg_dur=0.25)  # other options: redone
    assert "id10003--5ablueV_1tw--00004" not in "".join(read_manifest(chunked["train"])["ID"])
    assert read_manifest(chunked["train"])["ID"].str.contains(r"--\d+_\d+_\d+$").all()


def test_rerun_with_other_options_leaves_no_file_of_the_last_run(vox1, out):
    first = prepare_voxceleb(str(vox1), out, ["veri_test2.txt", "list_test_hard2.txt"])
    again = prepare_voxceleb(str(vox1), out, ["veri_test2.txt"])
    # No trial list of speakers now trained on stays beside the new outputs.
    assert not os.path.exists(first["trials_vox1_h"])
    assert sorted(os.listdir(out)) == sorted(
        [os.path.basename(p) for p in again.values()] + ["prepare_options.json"])


def test_corpora_reached_through_links_are_not_prepared_again(vox1, tmp_path, out):
    vox2 = write_vox2(tmp_path / "voxceleb2", "wav")
    paths = prepare_voxceleb(str(vox1), out, vox2_folder=str(vox2))
    stamps = {name: os.stat(path).st_mtime_ns for name, path in paths.items()}
    for folder in (vox1, vox2):
        os.symlink(folder, tmp_path / f"link_{folder.name}")
    assert prepare_voxceleb(str(tmp_path / "link_voxceleb1"), out,
                            vox2_folder=str(tmp_path / "link_voxceleb2")) == paths
    assert {name: os.stat(path).st_mtime_ns for name, path in paths.items()} == stamps


def _convert(vox2, tmp_path, ffmpeg):
    """Run the documented conversion of VoxCeleb2 with ``ffmpeg`` (a shell script) as ffmpeg."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir(exist_ok=True)
    (bin_folder / "ffmpeg").write_text("#!/bin/bash\n" + ffmpeg)
    (bin_folder / "ffmpeg").chmod(0o755)
    command = CONVERT_VOX2.replace("VOX2_FOLDER", str(vox2))
    subprocess.run(["bash", "-c", command],
                   env={**os.environ, "PATH": f"{bin_folder}:{os.environ['PATH']}"})


def test_a_conversion_stopped_halfway_leaves_no_truncated_wav(vox1, tmp_path, out):
    vox2 = write_vox2(tmp_path / "voxceleb2", "m4a")
    # Killed while writing: a wav header and part of the samples, then no exit 0.
    half = tmp_path / "half.wav"
    _write_wav(str(half), 0.2, 0)
    _convert(vox2, tmp_path, f'head -c 1000 {half} > "${{@: -1}}"; exit 137\n')
    assert not list((vox2 / "dev").rglob("*.wav"))
    # Run again, it converts every recording, whole.
    whole = tmp_path / "whole.wav"
    _write_wav(str(whole), 0.5, 0)
    _convert(vox2, tmp_path, f'cp {whole} "${{@: -1}}"\n')
    paths = prepare_voxceleb(str(vox1), out, vox2_folder=str(vox2))
    vox2_rows = read_manifest(paths["train"]).query("spk_id in @VOX2_GENDER")
    assert len(vox2_rows) == len(VOX2) and set(vox2_rows["duration"]) == {0.5}


def test_vox2_meta_with_padded_fields(tmp_path):
    path = tmp_path / "vox2_meta.csv"
    path.write_text("\ufeff" + VOX2_META, encoding="utf-8")
    assert read_meta(path) == {**VOX2_GENDER, "id09272": "f"}
    path.write_text(VOX1_META)
    assert read_meta(path) == VOX1_GENDER


def test_meta_genders_are_read_in_lower_case(tmp_path):
    path = tmp_path / "vox1_meta.csv"
    path.write_text(VOX1_META.replace("\tm\t", "\tM\t").replace("\tf\t", "\tF\t"))
    assert read_meta(path) == VOX1_GENDER


def test_meta_listing_a_speaker_with_two_genders_is_refused(tmp_path):
    path = tmp_path / "vox2_meta.csv"
    path.write_text(VOX2_META + "id09272 ,n009272 ,m ,test \n")
    with pytest.raises(ManifestError, match=r"vox2_meta.csv: speakers listed with two genders\n"
                       r"  line \d+: id09272 is m, line \d+ said f"):
        read_meta(path)
    path.write_text(VOX2_META + "id09272 ,n009272 ,f ,test \n")  # the same line twice: one speaker
    assert read_meta(path) == {**VOX2_GENDER, "id09272": "f"}


def test_command_line(vox1, out, capsys):
    assert main(["--data_folder", str(vox1), "--save_folder", out,
                 "--trials", "veri_test2.txt", str(vox1 / "list_test_hard2.txt")]) == 0
    printed = capsys.readouterr().out
    assert "trials_vox1_o: " in printed and os.path.isfile(os.path.join(out, "trials_vox1_h.txt"))
    assert main(["--data_folder", str(vox1 / "nowhere"), "--save_folder", out]) == 1
    assert "VoxCeleb1 folder does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("seg_dur", 0, r"seg_dur is 0: not a number in (0, inf), the training chunk length"),
])
def test_out_of_range_options(vox1, out, capsys, option, value, message):
    with pytest.raises(OptionError) as error:
        prepare_voxceleb(str(vox1), out, **{option: value})
    assert str(error.value).startswith(message)
    assert f"\nFix: choose {option} in " in str(error.value)
    assert main(["--data_folder", str(vox1), "--save_folder", out, f"--{option}", str(value)]) == 1
    printed = capsys.readouterr()
    assert printed.err.startswith(message.replace(" 0:", " 0.0:"))
    assert "Traceback" not in printed.err and not os.path.exists(out)


def _missing_folder(vox1, tmp_path):
    return dict(data_folder=str(vox1 / "nowhere"))


def _vox2_as_vox1(vox1, tmp_path):
    return dict(data_folder=str(write_vox2(tmp_path / "voxceleb2", "wav")))


def _no_meta(vox1, tmp_path):
    os.remove(vox1 / "vox1_meta.csv")


def _speaker_not_in_meta(vox1, tmp_path):
    meta = VOX1_META.replace("id10004\tAaron_Tveit\tm\tUSA\tdev\n", "")
    (vox1 / "vox1_meta.csv").write_text(meta)


def _vox1_dev_partly_extracted(vox1, tmp_path):
    shutil.rmtree(vox1 / "wav" / "id10004")


def _not_a_meta_file(vox1, tmp_path):
    (vox1 / "vox1_meta.csv").write_text("speaker,sex\nid10001,m\n")


def _old_style_list(vox1, tmp_path):
    (vox1 / "voxceleb1_test.txt").write_text(VERI_TEST_OLD)
    return dict(trial_lists=["voxceleb1_test.txt"])


def _wav_folder_itself(vox1, tmp_path):
    return dict(data_folder=str(vox1 / "wav"))


def _dev_and_test_apart(vox1, tmp_path):
    """The two archives extracted into dev/wav/ and test/wav/."""
    for part, speakers in (("dev", DEV_SPEAKERS), ("test", ("id10270", "id10271", "id10300"))):
        os.makedirs(vox1 / part / "wav")
        for speaker in speakers:
            os.rename(vox1 / "wav" / speaker, vox1 / part / "wav" / speaker)
    os.rmdir(vox1 / "wav")


def _malformed_list(vox1, tmp_path):
    (vox1 / "veri_test2.txt").write_text(VERI_TEST2 + "2 id10270/x6uYqmx31kE/00001.wav\n")


def _trial_line_of_three_recordings(vox1, tmp_path):
    (vox1 / "veri_test2.txt").write_text(
        VERI_TEST2 + "1 id10300/ize_eiCFEg0/00003.wav id10300/ize_eiCFEg0/00004.wav "
        "id10270/x6uYqmx31kE/00002.wav\n")


def _meta_line_without_its_set(vox1, tmp_path):
    (vox1 / "vox1_meta.csv").write_text(VOX1_META.replace("Aaron_Tveit\tm\tUSA\tdev",
                                                          "Aaron_Tveit\tm\tUSA"))


def _two_lists_of_one_name(vox1, tmp_path):
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "veri_test2.txt").write_text(VERI_TEST2)
    return dict(trial_lists=["veri_test2.txt", str(tmp_path / "copy" / "veri_test2.txt")])


def _trial_list_absent(vox1, tmp_path):
    return dict(trial_lists=["list_test_all2.txt"])


def _missing_wav(vox1, tmp_path):
    os.remove(vox1 / "wav" / "id10300" / "ize_eiCFEg0" / "00003.wav")


def _every_speaker_in_trials(vox1, tmp_path):
    (vox1 / "my_list.txt").write_text(LIST_TEST_ALL2)
    return dict(trial_lists=[str(vox1 / "my_list.txt")])


def _vox2_m4a_only(vox1, tmp_path):
    return dict(vox2_folder=str(write_vox2(tmp_path / "voxceleb2", "m4a")))


def _vox2_half_converted(vox1, tmp_path):
    vox2 = write_vox2(tmp_path / "voxceleb2", "in_place")
    os.remove(vox2 / "dev" / "aac" / "id00015" / "0fijmz4vTVU" / "00003.wav")
    return dict(vox2_folder=str(vox2))


def _vox2_wav_tree_incomplete(vox1, tmp_path):
    vox2 = write_vox2(tmp_path / "voxceleb2", "wav")
    os.remove(vox2 / "dev" / "wav" / "id00017" / "01dfn2spqyE" / "00001.wav")
    return dict(vox2_folder=str(vox2))


def _vox2_partly_extracted(vox1, tmp_path):
    vox2 = write_vox2(tmp_path / "voxceleb2", "wav")
    for tree in ("aac", "wav"):
        shutil.rmtree(vox2 / "dev" / tree / "id00017")
    return dict(vox2_folder=str(vox2))


def _vox2_no_meta(vox1, tmp_path):
    vox2 = write_vox2(tmp_path / "voxceleb2", "wav")
    os.remove(vox2 / "vox2_meta.csv")
    return dict(vox2_folder=str(vox2))


def _vox2_wrong_folder(vox1, tmp_path):
    return dict(vox2_folder=str(vox1))


def _vox2_dev_folder_itself(vox1, tmp_path):
    return dict(vox2_folder=str(write_vox2(tmp_path / "voxceleb2", "wav") / "dev"))


def write_vox2_speechbrain_layout(folder, vox1):
    """VoxCeleb2 as SpeechBrain's instructions leave it: converted into wav/, with
    VoxCeleb1's test set (vox1_test_wav.zip) extracted into the same wav/."""
    vox2 = write_vox2(folder, "wav")
    os.rename(vox2 / "dev" / "wav", vox2 / "wav")
    shutil.rmtree(vox2 / "dev")
    for speaker in ("id10270", "id10271", "id10300"):
        shutil.copytree(vox1 / "wav" / speaker, vox2 / "wav" / speaker)
    return vox2


def _vox2_speechbrain_layout(vox1, tmp_path):
    return dict(vox2_folder=str(write_vox2_speechbrain_layout(tmp_path / "voxceleb2", vox1)))


@pytest.mark.parametrize("breakage, message, fix", [
    (_missing_folder, r"nowhere: VoxCeleb1 folder does not exist",
     "pass as data_folder the folder that holds VoxCeleb1's wav/"),
    (_vox2_as_vox1, r"voxceleb2: no VoxCeleb1 tree wav/idXXXXX/.*; found dev/aac/, "
                    r"VoxCeleb2's layout\nFix: pass .* this one as vox2_folder",
     "pass VoxCeleb1's folder as data_folder and this one as"),
    (_no_meta, r"vox1_meta.csv: meta file not found",
     "download vox1_meta.csv from the VoxCeleb site into"),
    (_speaker_not_in_meta, r"vox1_meta.csv: 1 speakers of .*wav are not in it\n  id10004",
     "use the meta file of this corpus (vox1_meta.csv for VoxCeleb1,"),
    (_not_a_meta_file, r"vox1_meta.csv: not a VoxCeleb meta file",
     "use vox1_meta.csv / vox2_meta.csv as downloaded from the"),
    (_old_style_list, r"voxceleb1_test.txt: names speakers by celebrity name",
     "download the cleaned lists with IDs (veri_test2.txt,"),
    (_wav_folder_itself, r"voxceleb1/wav: no VoxCeleb1 tree .*; found the speaker folders "
                         r"idXXXXX/ directly in it: it is the wav/ folder itself\n"
                         r"Fix: pass the folder above it instead .*: /\S*voxceleb1$",
     "pass the folder above it instead (which holds wav/ and"),
    (_dev_and_test_apart, r"voxceleb1: no VoxCeleb1 tree .*; found dev/wav/idXXXXX/ and "
                          r"test/wav/idXXXXX/: the dev and test archives extracted apart\n"
                          r"Fix: move them .*&& mkdir wav && mv dev/wav/id\* test/wav/id\* wav/$",
     "move them into one wav/ tree: cd"),
    (_malformed_list, r"veri_test2.txt: lines not of the form .*\n  line 5: 2 id10270",
     "use the official lists from"),
    (_trial_list_absent, r"list_test_all2.txt: trial list not found",
     "download it from"),
    (_trial_line_of_three_recordings, r"veri_test2.txt: lines not of the form .*\n"
                                      r"  line 5: 1 id10300/ize_eiCFEg0/00003.wav ",
     "use the official lists from"),
    (_meta_line_without_its_set, r"vox1_meta.csv: lines without a speaker ID, gender and set\n"
                                 r"  line 5: id10004\tAaron_Tveit\tm\tUSA\nFix: ",
     "use the meta file as downloaded from the VoxCeleb site"),
    (_two_lists_of_one_name, r"copy/veri_test2.txt: two trial lists would both be written as "
                             r"trials_vox1_o.txt\nFix: pass each trial list once",
     "pass each trial list once"),
    (_missing_wav, r"veri_test2.txt: names 1 recordings .*\n  id10300/ize_eiCFEg0/00003.wav",
     "extract both vox1_dev_wav.zip and vox1_test_wav.zip into"),
    (_every_speaker_in_trials, r"no training speakers left(.|\n)*pass vox2_folder",
     "pass vox2_folder (VoxCeleb2 dev) to train on, as is usual with"),
    (_vox2_m4a_only, r"aac: 6 recordings are AAC \(.m4a\) only(.|\n)*ffmpeg",
     "convert them to 16 kHz wav: cd"),
    (_vox2_half_converted, r"1 recordings are AAC(.|\n)*id00015/0fijmz4vTVU/00003.m4a",
     "convert them to 16 kHz wav: cd"),
    (_vox2_wav_tree_incomplete, r"1 recordings are AAC(.|\n)*id00017/01dfn2spqyE/00001.m4a",
     "convert them to 16 kHz wav: cd"),
    (_vox2_no_meta, r"vox2_meta.csv: meta file not found",
     "download vox2_meta.csv from the VoxCeleb site into"),
    (_vox2_wrong_folder, r"no VoxCeleb2 tree dev/wav/idXXXXX/ or dev/aac/idXXXXX/",
     "extract vox2_dev_aac.zip here (it makes dev/aac/) and convert"),
    (_vox2_dev_folder_itself, r"voxceleb2/dev: no VoxCeleb2 tree .*; found aac/idXXXXX/ and "
                              r"wav/idXXXXX/ directly in it: it is the dev/ folder itself\n"
                              r"Fix: pass the folder above it instead .*: /\S*voxceleb2$",
     "pass the folder above it instead (which holds dev/ and"),
    (_vox2_speechbrain_layout, r"voxceleb2: no VoxCeleb2 tree .*; found VoxCeleb2 speakers "
                               r"\(id0XXXX\) in wav/ directly in it(.|\n)*"
                               r"&& mkdir -p dev/wav && mv wav/id0\* dev/wav/$",
     "move them into dev/wav/, leaving out any VoxCeleb1 speaker"),
])
def test_bad_input_is_refused_with_the_fix(vox1, tmp_path, out, breakage, message, fix):
    arguments = dict(data_folder=str(vox1), save_folder=out)
    arguments.update(breakage(vox1, tmp_path) or {})
    with pytest.raises(ManifestError, match=message) as error:
        prepare_voxceleb(**arguments)
    assert f"\nFix: {fix}" in str(error.value)
    if breakage is _old_style_list:
        assert "veri_test2.txt" in str(error.value)
    assert not os.path.exists(out)  # the save folder, made for the lock, removed again


def test_the_fix_for_speechbrains_vox2_layout_prepares_it(vox1, tmp_path, out):
    vox2 = write_vox2_speechbrain_layout(tmp_path / "voxceleb2", vox1)
    with pytest.raises(ManifestError) as error:
        prepare_voxceleb(str(vox1), out, vox2_folder=str(vox2))
    command = str(error.value).split("VoxCeleb1 speaker (id1XXXX): ", 1)[1]
    subprocess.run(["bash", "-c", command], check=True)
    paths = prepare_voxceleb(str(vox1), out, vox2_folder=str(vox2))
    assert _speakers(paths["train"]) == set(DEV_SPEAKERS) | set(VOX2_GENDER)
    assert sorted(os.listdir(vox2 / "wav")) == ["id10270", "id10271", "id10300"]


@pytest.mark.parametrize("breakage, folder, sets", [
    (_vox1_dev_partly_extracted, "voxceleb1/wav", "dev, test"),
    (_vox2_partly_extracted, "voxceleb2/dev/wav", "dev"),
])
def test_a_speaker_of_the_meta_file_without_recordings_is_named(vox1, tmp_path, out, caplog,
                                                                 breakage, folder, sets):
    arguments = dict(data_folder=str(vox1), save_folder=out)
    arguments.update(breakage(vox1, tmp_path) or {})
    with caplog.at_level(logging.WARNING):
        prepare_voxceleb(**arguments)
    missing = "id10004" if "voxceleb1" in folder else "id00017"
    assert re.search(rf"{folder}: 1 speakers that \S+_meta.csv lists \(sets {sets}\) have no "
                     rf"recordings in it and are in no manifest: {missing}\. Where an archive "
                     r"was extracted in part, extract \S+.zip", caplog.text)
    assert missing not in open(os.path.join(out, "train.csv")).read()


def _audio_is_not_read(monkeypatch):
    """Make reading any audio header a test failure: the problem must show before it."""
    def read(path):
        raise AssertionError(f"{path} read before the trial list was refused")
    monkeypatch.setattr("local.data.schema.audio_info", read)


@pytest.mark.parametrize("trials, message", [
    (VERI_TEST2 + VERI_TEST2.splitlines(keepends=True)[1],
     r"voxceleb1/my_list.txt: duplicated trials\n"
     r"  line 5: 0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav "
     r"\(repeats line 2\)\nFix: remove"),
    ("".join(line for line in VERI_TEST2.splitlines(keepends=True) if line.startswith("1")),
     r"voxceleb1/my_list.txt: all 2 trials are target trials\nFix: EER and minDCF need both"),
    (VERI_TEST2 + "1 id10271/1gtz-CUIygI/00001.wav id10271/1gtz-CUIygI/00001.wav\n",
     r"voxceleb1/my_list.txt: trials compare an utterance with itself\n"
     r"  line 5: 1 id10271/1gtz-CUIygI/00001.wav id10271/1gtz-CUIygI/00001.wav\nFix: remove"),
])
def test_a_bad_trial_list_is_refused_before_the_audio_is_read(vox1, out, monkeypatch,
                                                              trials, message):
    (vox1 / "my_list.txt").write_text(trials)
    _audio_is_not_read(monkeypatch)
    with pytest.raises(ManifestError, match=message):
        prepare_voxceleb(str(vox1), out, trial_lists=[str(vox1 / "my_list.txt")])
    assert not os.path.exists(out)  # the save folder, made for the lock, removed again


def test_an_empty_training_recording_is_refused(vox1, out):
    empty = vox1 / "wav" / "id10003" / "5ablueV_1tw" / "00004.wav"
    soundfile.write(empty, np.zeros(0), SAMPLE_RATE, subtype="PCM_16")
    with pytest.raises(ManifestError, match=r"prepared/train.csv: stop must be greater than "
                       r"start\n  row \d+: ID id10003--5ablueV_1tw--00004\nFix: "):
        prepare_voxceleb(str(vox1), out)
    assert not os.path.exists(out)  # the save folder, made for the lock, removed again

