"""Text-dependent verification: hparams/tdsv_wavlm.yaml on the text-dependent demo condition."""

import glob
import os

import pandas as pd
import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder

import train_dann
from data_prep.deepmine import prepare_deepmine
from local.data.dataio import collate_pairs, speaker_classes
from local.data.manifest_io import read_manifest
from local.errors import ManifestError
from local.experiment import prepare_experiment
from local.model.ssl_frontend import SSLFrontend
from tests.conftest import TINY_SSL_DIM
from tests.unit.test_prep_deepmine import TASK1_ENROLMENT, TASK1_TRAIN, TASK1_TRIALS, write_task
from tests.integration.test_train_dann import GE2E_TINY, SHORT, TINY, logged

CONDITION = "--condition=recipes/demo_text_dependent/condition.yaml"
TYPE_PAIRS = {"TC vs IC", "TC vs IW", "TC vs TW"}


def train_tdsv(folder, data_folder, source, *extra):
    """A run of hparams/tdsv_wavlm.yaml with a tiny WavLM checkpoint folder."""
    tiny = [t for t in TINY if not t.startswith("--n_mels")]
    return train_dann.main([
        "hparams/tdsv_wavlm.yaml", CONDITION, f"--data_folder={data_folder}",
        f"--output_folder={folder}", f"--ssl_source={source}", f"--ssl_dim={TINY_SSL_DIM}",
        f"--ssl_cache={folder}/cache", *tiny, *extra])


@pytest.fixture(scope="module")
def run(tiny_ssl, tmp_path_factory):
    """Two epochs of tdsv_wavlm on the text-dependent demo, which the run prepares."""
    folder = tmp_path_factory.mktemp("tdsv")
    data_folder = folder / "data"
    results = train_tdsv(folder / "run", data_folder, tiny_ssl["wavlm"], "--number_of_epochs=2")
    return folder / "run", data_folder, results


def test_speaker_phrase_training_lowers_the_loss(run):
    folder, _, results = run
    losses = logged(folder, "speaker_loss")
    assert len(losses) == 2 and losses[1] < 0.9 * losses[0], losses
    assert set(results) == {"source", "target"}
    assert all(0.0 < metrics["eer"] < 0.6 for metrics in results.values())


def test_lists_are_scored_at_the_sdsv_min_dcf(run):
    folder, _, _ = run
    summary = pd.read_csv(folder / "verification" / "summary.csv")
    assert [c for c in summary.columns if c.startswith("min_dcf")] == ["min_dcf_0.01_10_1"]


@pytest.mark.parametrize("trial_list", ["source", "target"])
def test_report_has_eer_per_phrase_and_per_trial_type(run, trial_list):
    folder, _, _ = run
    table = pd.read_csv(folder / "verification" / trial_list / "conditions.csv",
                        keep_default_na=False, dtype={"value": str})
    phrases = table[(table["condition"] == "phrase") & ~table["value"].str.contains("/")]
    assert list(phrases["value"]) == ["01", "02", "03", "04", "05"]
    types = table[table["condition"] == "trial_type"]
    assert set(types["value"]) == TYPE_PAIRS
    for rows in (phrases, types):
        assert (rows["targets"] > 0).all() and (rows["note"] == "").all()
        assert all(0.0 <= float(eer) <= 100.0 for eer in rows["eer_percent"])
    # Each pair holds every target trial (TC) and all trials of its non-target type.
    trials = pd.read_csv(run[1] / f"trials_{trial_list}.txt", sep=" ", header=None,
                         names=["label", "enrol", "test", "type"])
    counts = trials["type"].value_counts()
    for row in types.itertuples():
        target, other = row.value.split(" vs ")
        assert row.trials == counts[target] + counts[other] and row.targets == counts[target]


def test_label_encoder_has_exactly_the_manifests_speaker_phrase_pairs(run):
    folder, data_folder, _ = run
    manifest = pd.read_csv(data_folder / "source_train.csv", dtype=str)
    pairs = set(zip(manifest["spk_id"], manifest["phrase"]))
    assert len(pairs) == 24 * 5
    encoder = CategoricalEncoder()
    encoder.load(str(folder / "save" / "label_encoder.txt"))
    assert set(encoder.lab2ind) == pairs
    classifier = glob.glob(str(folder / "save" / "CKPT*" / "classifier.ckpt"))[0]
    assert torch.load(classifier)["weight"].shape[0] == len(pairs)  # no reserved rows


def test_ge2e_groups_its_batches_by_speaker_and_phrase(run, tmp_path):
    _, data_folder, _ = run
    _, hparams, _, data = prepare_experiment([
        "hparams/ge2e_fbank.yaml", CONDITION, f"--data_folder={data_folder}",
        f"--output_folder={tmp_path}", *GE2E_TINY, "--speaker_label=spk_phrase"])
    train = os.path.join(data_folder, "source_train.csv")
    classes = speaker_classes(read_manifest(train), "spk_phrase", train)
    speakers, utterances = hparams["speaker_head"].batch_layout
    sampler = data["train_pairs"].source_batches
    sampler.set_epoch(1)
    for batch in sampler:
        groups = [batch[k:k + utterances] for k in range(0, len(batch), utterances)]
        # Each of the loss's rows is one class: one speaker saying one phrase.
        assert all(len({classes[i] for i in group}) == 1 for group in groups), groups
        assert len({classes[group[0]] for group in groups}) == speakers


def test_ge2e_leaves_a_repeated_utterance_out_of_its_own_centroid(run, tmp_path):
    # Each speaker x phrase class has 3 utterances, fewer than the batch's 4 a
    # class: a class repeats one, which the loss must not take for another
    # utterance (at ge2e_fbank.yaml's 2 s crops, longer than every utterance,
    # the same audio twice).
    _, data_folder, _ = run
    brain, hparams, _, data = prepare_experiment([
        "hparams/ge2e_fbank.yaml", CONDITION, f"--data_folder={data_folder}",
        f"--output_folder={tmp_path}", *GE2E_TINY, "--speaker_label=spk_phrase"])
    brain.on_fit_start()
    brain.train_pairs = pairs = data["train_pairs"]
    brain.steps_per_epoch = pairs.steps_per_epoch(hparams["batch_size"])
    brain.modules.eval()  # each crop's embedding is its own
    source, target = batch = collate_pairs(
        [pairs[i] for i in pairs.process_batches(hparams["batch_size"])[0]])
    assert len(set(source.id)) < len(source.id)
    with torch.no_grad():
        embeddings, features = brain.compute_forward(batch, sb.Stage.TRAIN)
        brain.compute_objectives((embeddings, features), batch, sb.Stage.TRAIN)
        head = brain.modules.speaker_head
        crops = embeddings[:len(source)]
        expected, _ = head(crops, None, None, None, source.id)
        as_distinct, _ = head(crops, None, None, None)
    assert brain.stats.means()["speaker_loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() != pytest.approx(as_distinct.item(), rel=1e-3)


def test_the_ssl_model_is_fine_tuned(run, tiny_ssl, tmp_path):
    """Unlike dann_wavlm.yaml's frozen default (tests/integration/test_train_dann.py)."""
    folder, _, _ = run
    checkpoint = glob.glob(str(folder / "save" / "CKPT*"))[0]
    tuned = torch.load(os.path.join(checkpoint, "frontend.ckpt"))
    initial = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "cache")).state_dict()
    moved = {k for k, v in initial.items()
             if k.startswith("ssl.") and not torch.equal(v, tuned[k])}
    assert any("encoder.layers" in k for k in moved)
    assert all("feature_extractor" not in k for k in moved)  # the CNN stays fixed
    assert os.path.isfile(os.path.join(checkpoint, "ssl_optimizer.ckpt"))


def test_speaker_phrase_labels_need_a_phrase_column(demo_corpus, tiny_ssl, tmp_path):
    data_folder = os.path.dirname(demo_corpus["eval"])
    with pytest.raises(ManifestError, match="source_train.csv: speaker_label: spk_phrase needs "
                       "a 'phrase' column in the source training manifest(.|\n)*Fix: pass "
                       "--speaker_label=spk_id, or train on a text-dependent source "
                       r"\(--condition=recipes/demo_text_dependent/condition.yaml"):
        train_dann.main(["hparams/tdsv_wavlm.yaml", f"--data_folder={data_folder}",
                         f"--output_folder={tmp_path}", f"--ssl_source={tiny_ssl['wavlm']}"])
    assert not os.path.exists(tmp_path / "hyperparams.yaml")  # stopped before the run began


def test_unknown_speaker_label_fails_before_training(run, tiny_ssl, tmp_path):
    with pytest.raises(ValueError, match="speaker_label must be spk_id .* got 'phrase'"):
        train_tdsv(tmp_path, run[1], tiny_ssl["wavlm"], "--speaker_label=phrase")
    assert not os.path.exists(tmp_path / "hyperparams.yaml")


def test_label_encoder_of_another_labelling_fails_before_training(run, tiny_ssl, tmp_path):
    """A run folder whose label encoder has speakers, trained again with speaker x phrase."""
    encoder = CategoricalEncoder()
    speakers = pd.read_csv(run[1] / "source_train.csv")["spk_id"].unique()
    encoder.update_from_iterable(speakers)
    (tmp_path / "save").mkdir()
    encoder.save(str(tmp_path / "save" / "label_encoder.txt"))
    with pytest.raises(ValueError, match=r"lacks 120 classes \(spk_phrase\) of the source "
                       r"training data, e.g. \('sout000', '01'\).*: it was made by a run with "
                       "another speaker_label"):
        train_tdsv(tmp_path, run[1], tiny_ssl["wavlm"], *SHORT)
    assert not glob.glob(str(tmp_path / "save" / "CKPT*"))  # no step was trained


def test_deepmine_task1_training_rows_give_speaker_phrase_classes(tmp_path):
    """The classes tdsv_wavlm.yaml trains on a DeepMine (SdSV task 1) source."""
    folder = write_task(tmp_path / "task1", TASK1_ENROLMENT, TASK1_TRAIN, TASK1_TRIALS)
    train = prepare_deepmine(str(folder), str(tmp_path / "prepared"))["train"]
    assert speaker_classes(read_manifest(train), "spk_phrase", train) == [
        ("spk_000001", "09"), ("spk_000001", "01"), ("spk_000002", "09"),
        ("spk_000002", "03"), ("spk_000003", "06"), ("spk_000003", "10")]


def test_exported_model_classifies_speaker_phrase_pairs_and_scores_as_the_run(run, tmp_path):
    """The exported classifier and label encoder are the run's speaker x phrase classes."""
    from speechbrain.inference.speaker import SpeakerRecognition

    folder, data_folder, _ = run
    model = SpeakerRecognition.from_hparams(source=str(folder / "model"),
                                            savedir=str(tmp_path))
    encoder = model.hparams.label_encoder
    assert len(encoder) == model.mods.classifier.weight.shape[0] == 24 * 5
    manifest = pd.read_csv(data_folder / "source_train.csv", dtype=str)
    _, _, _, labels = model.classify_batch(model.load_audio(manifest["wav"][0]).unsqueeze(0))
    assert labels[0] in set(zip(manifest["spk_id"], manifest["phrase"]))
    # verify_files gives the cosine score of the run's own evaluation.
    wavs = pd.read_csv(data_folder / "target_eval.csv").set_index("ID")["wav"]
    trial = pd.read_csv(folder / "verification" / "target" / "scores.txt", sep=" ",
                        names=["enrol", "test", "score", "label"]).iloc[0]
    score, _ = model.verify_files(wavs[trial["enrol"]], wavs[trial["test"]])
    assert float(score) == pytest.approx(trial["score"], abs=1e-5)
