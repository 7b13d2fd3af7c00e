"""Training and verification on a fake SdSV task 1 (text-dependent DeepMine) corpus.

The fake task has the release's layout, docs/ files and file names
(``data_prep/deepmine.py``), with audio long enough to crop and embed: the
demo corpus's voices saying fixed phrases, the Persian phrases (01-05) in the
demo's language l1 and the English ones (06-10) in l2. A channel table splits
it for ``recipes/deepmine_wireless_to_telephone``: the wireless training
speakers are the source, the telephone ones the target.
"""

import itertools
import os

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

import train_dann
from data_prep.demo import draw_speaker, random_words, session_effects, synthesize
from local.data.manifest_io import read_manifest
from local.evaluation.report import read_scores
from tests.integration.test_train_dann import TINY, logged
from tests.unit.test_prep_deepmine import write_task

PHRASES = ["01", "02", "07"]
REPEATS = 2  # times each speaker says each phrase, in training and in the tests
SOURCE_SPEAKERS = [f"spk_{i:06d}" for i in range(1, 6)]  # wireless
TARGET_SPEAKERS = [f"spk_{i:06d}" for i in range(6, 9)]  # telephone
EVAL_SPEAKERS = [f"spk_{i:06d}" for i in range(101, 104)]  # not in docs/, as in the release
ENROLMENTS = 3  # files per model, as in task 1
SYLLABLES = 9  # 1.2 to 2 s a phrase, longer than the crops (TINY: 1 s)
CONDITION = "recipes/deepmine_wireless_to_telephone/condition.yaml"
EPOCHS = 4


def _task1():
    """docs/ texts, key, channels and ``{file: (speaker, phrase)}`` of a fake task 1.

    Each evaluation speaker has a model per phrase and says each phrase
    ``REPEATS`` times in the tests, the second time over the telephone; every
    model is tried against every test file.
    """
    said, channels = {}, {}
    train = ["train-file-id speaker-id phrase-id"]
    for spk, phrase, _ in itertools.product(SOURCE_SPEAKERS + TARGET_SPEAKERS, PHRASES,
                                            range(REPEATS)):
        utt = f"trn_{len(said) + 1:06d}"
        train.append(f"{utt} {spk} {phrase}")
        said[utt] = (spk, phrase)
        channels[utt] = "wireless" if spk in SOURCE_SPEAKERS else "telephone"
    enrolment = ["model-id phrase-id enroll-file-id1 enroll-file-id2 enroll-file-id3"]
    models, tests = {}, []
    for spk, phrase in itertools.product(EVAL_SPEAKERS, PHRASES):
        model = f"model_{len(models):05d}"
        files = [f"enr_{7000 + len(models) * ENROLMENTS + i:06d}" for i in range(ENROLMENTS)]
        enrolment.append(" ".join([model, phrase, *files]))
        models[model] = (spk, phrase)
        said.update(dict.fromkeys(files, (spk, phrase)))
        channels.update(dict.fromkeys(files, "wireless"))
        for repeat in range(REPEATS):
            utt = f"evl_{18 + 2 * len(tests):06d}"
            tests.append(utt)
            said[utt] = (spk, phrase)
            channels[utt] = ["wireless", "telephone"][repeat]
    trials, key = ["model-id evaluation-file-id"], ["model-id evaluation-file-id trial-type"]
    for model, test in itertools.product(models, tests):
        kind = (("T" if models[model][0] == said[test][0] else "I")
                + ("C" if models[model][1] == said[test][1] else "W"))
        trials.append(f"{model} {test}")
        key.append(f"{model} {test} {kind}")
    texts = ["\n".join(lines) + "\n" for lines in (enrolment, train, trials, key)]
    return (*texts, channels, said)


ENROLMENT, TRAIN, TRIALS, KEY, CHANNELS, SAID = _task1()


def _voices(seed=0):
    """``audio(file ID, index)`` for :func:`write_task`: each speaker's voice saying its phrase."""
    rng = np.random.default_rng(seed)
    speakers = {spk: draw_speaker(rng, spk) for spk in dict.fromkeys(s for s, _ in SAID.values())}
    words = {phrase: random_words(rng, "l1" if phrase <= "05" else "l2", SYLLABLES)
             for phrase in PHRASES}

    def audio(utt, index):
        spk, phrase = SAID[utt]
        lang = "l1" if phrase <= "05" else "l2"
        utterance = np.random.default_rng(index)
        wave = session_effects(utterance, synthesize(utterance, speakers[spk], lang, words[phrase]))
        return np.clip(wave, -1, 1)

    return audio


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A few epochs of the fbank model, speaker x phrase classes, on the condition."""
    root = tmp_path_factory.mktemp("deepmine")
    task = write_task(root / "sdsv_task1", ENROLMENT, TRAIN, TRIALS, audio=_voices())
    (root / "task1_key.txt").write_text(KEY)
    pd.DataFrame({"utt": list(CHANNELS), "channel": list(CHANNELS.values())}).to_csv(
        root / "channels.csv", index=False)
    results = train_dann.main([
        "hparams/dann_fbank.yaml", f"--condition={CONDITION}", f"--deepmine_folder={task}",
        f"--deepmine_key={root / 'task1_key.txt'}", f"--channel_table={root / 'channels.csv'}",
        f"--manifest_folder={root / 'data'}", f"--output_folder={root / 'run'}", *TINY,
        "--batch_size=8", f"--number_of_epochs={EPOCHS}", "--lr=0.005",
        "--speaker_label=spk_phrase", "--pseudo_label_epochs=[]"])
    return {"task": task, "data": root / "data", "run": root / "run", "results": results}


def _docs(text):
    return [line.split() for line in text.splitlines()[1:]]


def test_manifests_hold_the_files_of_the_task(run):
    data, task = run["data"], run["task"]
    train = read_manifest(data / "train.csv")
    assert {utt: (spk, phrase) for utt, spk, phrase in _docs(TRAIN)} == dict(
        zip(train["ID"], zip(train["spk_id"], train["phrase"])))
    for name, speakers in (("train_source.csv", SOURCE_SPEAKERS),
                           ("train_target.csv", TARGET_SPEAKERS)):
        split = read_manifest(data / name)
        assert set(split["spk_id"]) == set(speakers)
        assert set(split["channel"]) == {"wireless" if name == "train_source.csv" else "telephone"}
    evaluation = read_manifest(data / "eval.csv")
    enrolled = [f for fields in _docs(ENROLMENT) for f in fields[2:]]
    tested = list(dict.fromkeys(fields[1] for fields in _docs(TRIALS)))
    assert list(evaluation["ID"]) == enrolled + tested
    assert dict(zip(evaluation["ID"], evaluation["channel"])) == {
        utt: CHANNELS[utt] for utt in enrolled + tested}
    for table, folder in ((train, "train"), (evaluation, None)):
        for row in table.itertuples():
            kind = folder or {"enr": "enrollment", "evl": "evaluation"}[row.ID[:3]]
            assert row.wav == str(task / "wav" / kind / f"{row.ID}.wav")
            info = soundfile.info(row.wav)
            assert (row.start, row.stop) == (0, info.frames) and info.duration > 1.0


def test_training_lowers_the_loss_and_verification_gives_a_finite_eer(run):
    losses = logged(run["run"], "speaker_loss")
    assert len(losses) == EPOCHS and losses[-1] < losses[0], losses
    assert list(run["results"]) == ["deepmine"]
    assert 0.0 <= run["results"]["deepmine"]["eer"] < 1.0
    assert run["results"]["deepmine"]["trials"] == len(_docs(TRIALS))


def test_trials_are_scored_against_the_mean_of_each_models_enrolment_embeddings(run):
    scores = read_scores(run["run"] / "verification" / "deepmine" / "scores.txt")
    key = pd.DataFrame(_docs(KEY), columns=["enrol", "test", "type"])
    assert (scores[["enrol", "test"]] == key[["enrol", "test"]]).all(axis=None)
    assert list(scores["label"]) == list((key["type"] == "TC").astype(int))
    [cache] = [name for name in os.listdir(run["run"]) if name.startswith("embeddings_deepmine_")]
    embeddings = torch.load(run["run"] / cache)
    unit = torch.nn.functional.normalize
    models = {fields[0]: unit(sum(unit(embeddings[utt], dim=0) for utt in fields[2:]), dim=0)
              for fields in _docs(ENROLMENT)}
    expected = [float(models[m] @ unit(embeddings[t], dim=0))
                for m, t in zip(scores["enrol"], scores["test"])]
    np.testing.assert_allclose(scores["score"], expected, rtol=1e-5, atol=1e-6)


def test_conditions_break_the_trials_down_by_phrase_language_channel_and_type(run):
    table = pd.read_csv(run["run"] / "verification" / "deepmine" / "conditions.csv",
                        keep_default_na=False, dtype={"value": str})
    key = pd.DataFrame(_docs(KEY), columns=["model", "test", "type"])
    phrase = dict((fields[0], fields[1]) for fields in _docs(ENROLMENT))
    key["phrase"] = key["model"].map(phrase)
    key["lang"] = np.where(key["phrase"] <= "05", "fa", "en")
    key["target"] = key["type"] == "TC"
    key["channel"] = key["test"].map(CHANNELS).map({"wireless": "wireless",
                                                   "telephone": "wireless / telephone"})

    def counts(condition):
        rows = table[table["condition"] == condition].set_index("value")
        return {value: (row.trials, row.targets) for value, row in rows.iterrows()}

    def expected(column):
        groups = key.groupby(column)["target"]
        return {value: (len(group), int(group.sum())) for value, group in groups}

    # A test file's phrase and language are not known: its model's are.
    assert counts("phrase (enrolment)") == expected("phrase")
    assert counts("lang (enrolment)") == expected("lang")
    assert counts("channel") == expected("channel")
    assert "phrase" not in set(table["condition"])
    pairs = counts("trial_type")
    assert set(pairs) == {"TC vs IC", "TC vs IW", "TC vs TW"}
    for pair, (trials, targets) in pairs.items():
        types = key["type"].isin(pair.split(" vs "))
        assert (trials, targets) == (int(types.sum()), int(key["target"].sum()))
    broken_down = table[table["condition"] != "all"]
    assert (broken_down["note"] == "").all() and (broken_down["targets"] > 0).all()
    assert np.isfinite(broken_down["eer_percent"].astype(float)).all()
