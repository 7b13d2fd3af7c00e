"""Tiny runs of train_dann.py with --augment=True: training steps alone are augmented."""

import glob
import json
import os

import pytest
from speechbrain.augment.augmenter import Augmenter

import evaluate
from local.errors import ManifestError
from local.model.dann_brain import DANNBrain
from local.provenance import file_sha256
from local.settings import plain_values
from tests.integration.test_gan_training import same
from tests.integration.test_train_dann import (GE2E_TINY, SHORT, killed_at_batch, logged,
                                               newest_weights, train)
from tests.unit.test_augmentation import data_csv, noise_csv  # noqa: F401 (a fixture)


@pytest.fixture
def calls(monkeypatch):
    """``{"augment": [batch sizes the Augmenter took], "steps": training steps}`` of a run."""
    counts = {"augment": [], "steps": 0}
    augment, fit_batch = Augmenter.forward, DANNBrain.fit_batch

    def counted_augment(self, x, lengths):
        counts["augment"].append(len(x))
        return augment(self, x, lengths)

    def counted_step(self, batch):
        counts["steps"] += 1
        return fit_batch(self, batch)

    monkeypatch.setattr(Augmenter, "forward", counted_augment)
    monkeypatch.setattr(DANNBrain, "fit_batch", counted_step)
    return counts


def test_an_augmented_run_learns_and_augments_its_training_steps_only(
        demo_corpus, tmp_path, noise_csv, calls):  # noqa: F811
    folder = str(tmp_path / "run")
    # Pseudo-labels from epoch 2: a clustering embeds every target utterance
    # mid-run, then the verification embeds the evaluation and cohort audio.
    train(demo_corpus, folder, "--augment=True", f"--noise_csv={noise_csv}",
          "--number_of_epochs=4", "--lr=0.005", "--pseudo_label_epochs=[2]")
    losses = logged(folder, "speaker_loss")
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    # One augmentation of each step's 16 source and 16 target crops, and no other.
    assert calls["steps"] == sum(logged(folder, "steps")) > 0
    assert calls["augment"] == [32] * calls["steps"]
    # Read whole: a long path is written on the line after its key.
    recorded = plain_values(os.path.join(folder, "hyperparams.yaml"))
    assert (recorded["augment"], recorded["noise_csv"]) == (True, noise_csv)
    with pytest.raises(ManifestError, match=r"run_settings.json: the run's checkpoints were "
                                            r"trained with other settings:\n  augment: true -> "
                                            r"false\n"):
        train(demo_corpus, folder, "--noise_csv=null", "--number_of_epochs=5", "--lr=0.005",
              "--pseudo_label_epochs=[2]")


def test_a_run_without_augment_never_augments(demo_corpus, tmp_path, calls):
    train(demo_corpus, tmp_path / "run", *SHORT)
    assert calls["steps"] > 0 and calls["augment"] == []


def test_ge2e_trains_on_augmented_speaker_major_batches(demo_corpus, tmp_path, calls):
    train(demo_corpus, tmp_path / "run", *SHORT, "--augment=True",
          hparams="hparams/ge2e_fbank.yaml", tiny=GE2E_TINY)
    assert calls["augment"] == [32] * calls["steps"] and calls["steps"] > 0


def test_a_resume_on_a_changed_noise_csv_is_refused_and_evaluate_does_not_read_it(
        demo_corpus, tmp_path, noise_csv):  # noqa: F811
    folder = tmp_path / "run"
    augmented = ("--augment=True", f"--noise_csv={noise_csv}")
    train(demo_corpus, folder, *augmented, "--number_of_epochs=1")
    with open(folder / "provenance.json") as saved:
        assert json.load(saved)["data"]["noise_csv"] == {"path": noise_csv,
                                                         "sha256": file_sha256(noise_csv)}
    before = file_sha256(noise_csv)
    with open(noise_csv) as original:
        rows = original.read().splitlines()
    with open(noise_csv, "w") as fewer:  # one recording of the two
        fewer.write("\n".join(rows[:2]) + "\n")
    more = ("--number_of_epochs=2", "--allow_changed=[number_of_epochs]")
    with pytest.raises(ManifestError, match=(
            rf"trained on other data:\n  noise_csv_sha256 \({noise_csv}\): \"{before}\" -> "
            rf"\"{file_sha256(noise_csv)}\"\n")):
        train(demo_corpus, folder, *augmented, *more)
    # The evaluation embeds clean audio: it reads no noise, even gone.
    os.remove(noise_csv)
    train(demo_corpus, folder, *augmented, "--number_of_epochs=1", script=evaluate)


def killed_inside_an_epoch(tmp_path):
    """15 steps of 32 crops; a checkpoint after step 5, to be killed in step 8. The noise
    loader reads 10 files in batches of 32, the RIR loader 3 files one a step: the
    checkpoint finds both inside a pass."""
    return ("--number_of_epochs=1", "--ckpt_interval_steps=5", "--augment=True",
            f"--noise_csv={data_csv(tmp_path, 'noise', 10, 1.2)}",
            f"--rir_csv={data_csv(tmp_path, 'rir', 3, 0.1)}")


def test_a_run_killed_inside_an_epoch_resumes_with_the_noises_of_an_uninterrupted_one(
        demo_corpus, tmp_path, monkeypatch):
    args = killed_inside_an_epoch(tmp_path)
    train(demo_corpus, tmp_path / "whole", *args)
    killed_at_batch(8, monkeypatch, demo_corpus, tmp_path / "killed", *args)
    train(demo_corpus, tmp_path / "killed", *args)
    for name in ("embedding_model", "classifier", "domain_discriminator"):
        assert same(newest_weights(tmp_path / "whole", name),
                    newest_weights(tmp_path / "killed", name)), name


def test_a_checkpoint_saved_before_the_loaders_positions_were_kept_resumes(
        demo_corpus, tmp_path, monkeypatch):
    """A run checkpointed by an earlier version of the recipe, without
    augmentation_data.ckpt, resumes (its loaders at their first files) rather than
    failing on the missing file."""
    args = killed_inside_an_epoch(tmp_path)
    killed_at_batch(8, monkeypatch, demo_corpus, tmp_path / "older", *args)
    positions = glob.glob(str(tmp_path / "older" / "save" / "CKPT*" / "augmentation_data.ckpt"))
    assert positions
    for path in positions:
        os.remove(path)
    with pytest.warns(UserWarning, match="missing a load path for augmentation_data"):
        train(demo_corpus, tmp_path / "older", *args)
    assert len(logged(tmp_path / "older", "speaker_loss")) == 1
