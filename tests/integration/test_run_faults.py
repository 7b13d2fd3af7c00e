"""Runs that survive faults: a second run into a folder, a damaged checkpoint, other settings."""

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
import yaml

import evaluate
import train_dann
from local import experiment, provenance
from local.errors import ManifestError
from local.evaluation import verification
from local.model.checkpoints import STAGING
from local.model.dann_brain import DANNBrain
from local.provenance import file_sha256
from tests.conftest import save_tiny_ssl
from tests.integration.test_train_dann import TINY, killed_at_batch, logged, train, train_ssl
from tests.unit.test_run_folder import holding_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONE_EPOCH = ["--number_of_epochs=1"]
OTHER_SEED = 4321  # of another demo corpus


@pytest.fixture(scope="module")
def trained(demo_corpus, tmp_path_factory):
    """A finished one-epoch run: ``(folder, results)``."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    return folder, train(demo_corpus, folder, *ONE_EPOCH)


@pytest.fixture(scope="module")
def other_corpus(tmp_path_factory):
    """The demo corpus of another seed: other utterances in every manifest."""
    from data_prep.demo import prepare_demo

    return prepare_demo(str(tmp_path_factory.mktemp("other_demo")), seed=OTHER_SEED)


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the finished run, for a test to resume or damage."""
    folder = tmp_path / "run"
    shutil.copytree(trained[0], folder)
    return folder


def contents(folder):
    """``{path: sha256}`` of every file under ``folder``."""
    return {os.path.relpath(os.path.join(root, name), folder):
            hashlib.sha256(open(os.path.join(root, name), "rb").read()).hexdigest()
            for root, _, names in os.walk(folder) for name in names}


def argv(demo_corpus, folder, *extra, hparams="hparams/dann_fbank.yaml"):
    return [hparams, f"--data_folder={os.path.dirname(demo_corpus['eval'])}",
            f"--output_folder={folder}", *TINY, *extra]


def test_second_run_into_a_held_folder_is_refused_and_changes_nothing(demo_corpus, run):
    before = contents(run)
    holder = holding_process(run)
    try:
        done = subprocess.run([sys.executable, "train_dann.py",
                               *argv(demo_corpus, run, *ONE_EPOCH)],
                              cwd=ROOT, capture_output=True, text=True)
    finally:
        holder.stdin.close()
        holder.wait()
    assert done.returncode == 1
    assert (f"\n{run}: another run writes into this folder: the run of PID {holder.pid} on "
            in "\n" + done.stderr)
    assert "Fix: wait until that run ends" in done.stderr and "Traceback" not in done.stderr
    assert contents(run) == before  # the holder's lock went with it


def test_second_run_into_a_held_save_folder_is_refused(demo_corpus, tmp_path):
    # Runs of two seeds, started at once, their checkpoints in one --save_folder.
    holder = holding_process(tmp_path / "save")
    try:
        with pytest.raises(ManifestError, match=rf"{tmp_path / 'save'}: another run writes into "
                                                rf"this folder: the run of PID {holder.pid} on "):
            train(demo_corpus, tmp_path / "other", *ONE_EPOCH,
                  f"--save_folder={tmp_path / 'save'}", "--seed=2")
    finally:
        holder.stdin.close()
        holder.wait()
    assert not (tmp_path / "other" / "hyperparams.yaml").exists()


def test_run_with_its_checkpoints_in_another_folder_exports_its_model(demo_corpus, tmp_path):
    train(demo_corpus, tmp_path / "run", *ONE_EPOCH, f"--save_folder={tmp_path / 'checkpoints'}")
    exported = tmp_path / "run" / "model" / "label_encoder.ckpt"
    assert exported.read_bytes() == (tmp_path / "checkpoints" / "label_encoder.txt").read_bytes()


def test_resume_with_other_settings_is_refused_listing_them(demo_corpus, run):
    before = contents(run)
    with pytest.raises(ManifestError, match=r"run_settings.json: the run's checkpoints were "
                                            r"trained with other settings:\n  seed: 1986 -> 5\n"
                                            r"  lr: 0.002 -> 0.0001\nFix: .*"
                                            r"--allow_changed=\[seed, lr\]"):
        train(demo_corpus, run, *ONE_EPOCH, "--lr=0.0001", "--seed=5")
    assert contents(run) == before  # hyperparams.yaml and the log included


def test_resume_with_another_emb_dim_is_refused_before_loading(demo_corpus, run):
    with pytest.raises(ManifestError, match=r"other settings:\n  emb_dim: 32 -> 64\n"):
        train(demo_corpus, run, *ONE_EPOCH, "--emb_dim=64")


def test_a_record_from_before_augmentation_reads_as_a_run_without_it(demo_corpus, run):
    """A run recorded before ``augment`` existed trained on clean crops: it is evaluated and
    resumed as such, and a resume with augmentation is refused as a change."""
    record_path = run / "save" / "run_settings.json"
    record = json.loads(record_path.read_text())
    for key in ("augment", "noise_csv", "rir_csv", "wav_augment"):
        del record[key]
    record_path.write_text(json.dumps(record))
    train(demo_corpus, run, *ONE_EPOCH, script=evaluate)
    with pytest.raises(ManifestError, match=r"other settings:\n  augment: false -> true\n"):
        train(demo_corpus, run, *ONE_EPOCH, "--augment=True")


def test_allowed_change_resumes_and_becomes_the_runs_setting(demo_corpus, run, monkeypatch,
                                                             caplog):
    with pytest.raises(ManifestError, match=r"number_of_epochs: 1 -> 2\n"):
        train(demo_corpus, run, "--number_of_epochs=2")
    report = report_records(run)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(verification, "plot_det", interrupted)  # stopped before its report
    with pytest.raises(KeyboardInterrupt), caplog.at_level(logging.WARNING):
        train(demo_corpus, run, "--number_of_epochs=2", "--allow_changed=[number_of_epochs]")
    assert "Setting changed from the run's, as allowed: number_of_epochs: 1 -> 2" in caplog.text
    # And in the run's log.txt, though logged before SpeechBrain opened it.
    assert "as allowed: number_of_epochs: 1 -> 2" in (run / "log.txt").read_text()
    with open(run / "train_log.txt") as log:
        assert [line.split(" - ")[0] for line in log if line.startswith("epoch")] == \
            ["epoch: 1", "epoch: 2"]  # resumed: epoch 2 alone was trained
    with open(run / "hyperparams.yaml") as saved:
        assert "number_of_epochs: 2\n" in saved.read()
    assert report_records(run) == report  # the one-epoch report, with its own settings
    assert "number_of_epochs: 1\n" in (run / "verification" / "hyperparams.yaml").read_text()
    monkeypatch.undo()
    train(demo_corpus, run, "--number_of_epochs=2")  # the record has the accepted value
    for name in ("hyperparams.yaml", "condition.yaml"):
        assert (run / "verification" / name).read_bytes() == (run / name).read_bytes()


def test_resumed_run_records_the_code_of_each_command_that_trained_it(demo_corpus, run,
                                                                      monkeypatch):
    first = json.loads((run / "provenance.json").read_text())
    assert first["trained_by"] == [{"code_version": first["code_version"], "first_epoch": 1}]
    for module in (experiment, provenance):
        monkeypatch.setattr(module, "code_version", lambda folder: "resumed")
    train(demo_corpus, run, "--number_of_epochs=2", "--allow_changed=[number_of_epochs]")
    record = json.loads((run / "provenance.json").read_text())
    assert record["code_version"] == "resumed"
    assert record["trained_by"] == [*first["trained_by"],
                                    {"code_version": "resumed", "first_epoch": 2}]
    assert json.loads((run / "verification" / "provenance.json").read_text()) == record
    # A command that trains no epoch is not one of them.
    monkeypatch.setattr(provenance, "code_version", lambda folder: "scored")
    train(demo_corpus, run, "--number_of_epochs=2")
    record = json.loads((run / "provenance.json").read_text())
    assert (record["code_version"], record["trained_by"][-1]["code_version"]) == \
        ("scored", "resumed")


def test_resume_that_stops_before_its_first_checkpoint_leaves_the_runs_record(demo_corpus, run,
                                                                              monkeypatch):
    records = ("hyperparams.yaml", "condition.yaml", "provenance.json", "save/run_settings.json")
    before = {name: (run / name).read_bytes() for name in records}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(DANNBrain, "fit_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(demo_corpus, run, "--number_of_epochs=2", "--allow_changed=[number_of_epochs]")
    # Its checkpoints were trained for one epoch, and the record says so.
    assert {name: (run / name).read_bytes() for name in records} == before
    monkeypatch.undo()
    train(demo_corpus, run, *ONE_EPOCH)


def test_full_disk_while_the_record_is_written_leaves_the_runs_record(demo_corpus, run,
                                                                     monkeypatch):
    records = ("hyperparams.yaml", "condition.yaml", "provenance.json", "save/run_settings.json")
    before = {name: (run / name).read_bytes() for name in records}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # The last of the records, written with the first checkpoint trained for two epochs.
    monkeypatch.setattr(experiment, "write_provenance", full)
    # It said no more than "OSError: [Errno 28] No space left on device".
    with pytest.raises(ManifestError, match=rf"{run}: the disk is full: the run's record "
                                            r"\(hyperparams.yaml, .*\nFix: free space on the "
                                            rf"disk of {run}, and run the command again"):
        train(demo_corpus, run, "--number_of_epochs=2", "--allow_changed=[number_of_epochs]")
    # Its checkpoints were trained for one epoch, and the record says so.
    assert {name: (run / name).read_bytes() for name in records} == before
    assert not list(run.rglob("*.partial"))
    monkeypatch.undo()
    train(demo_corpus, run, *ONE_EPOCH)


def test_resume_with_other_embedding_lengths_is_refused_and_an_evaluation_takes_them(
        demo_corpus, run):
    # They choose the target utterances that the pseudo-labels embed in training.
    with pytest.raises(ManifestError, match=r"other settings:\n  min_embed_seconds: 0.25 -> 0.8\n"):
        train(demo_corpus, run, *ONE_EPOCH, "--min_embed_seconds=0.8")
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, "--min_embed_seconds=0.3"))
    with open(run / "verification" / "evaluate_hyperparams.yaml") as saved:
        assert "\nmin_embed_seconds: 0.3\n" in saved.read()


def test_resume_with_other_run_options_is_refused_and_an_evaluation_takes_them(
        demo_corpus, run):
    # SpeechBrain's flags that the weights depend on are settings of the run.
    assert "\ngrad_accumulation_factor: 1\nprecision: fp32\nmax_grad_norm: 5.0\n" in \
        (run / "hyperparams.yaml").read_text()
    before = contents(run)
    with pytest.raises(ManifestError, match=r"other settings:\n  grad_accumulation_factor: 1 -> "
                                            r"2\n  max_grad_norm: 5.0 -> 1.0\n"):
        train(demo_corpus, run, *ONE_EPOCH, "--grad_accumulation_factor=2", "--max_grad_norm=1")
    assert contents(run) == before
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, "--grad_accumulation_factor=2"))


def test_resume_with_another_number_of_processes_is_refused_and_an_evaluation_takes_it(
        demo_corpus, run, monkeypatch):
    # Each DDP process takes batch_size crops a step: their number is a setting of the run.
    assert (run / "hyperparams.yaml").read_text().splitlines()[1] == \
        "# ddp_processes: 1 (torchrun --nproc_per_node)"
    assert json.loads((run / "save" / "run_settings.json").read_text())["ddp_processes"] == 1
    before = contents(run)
    monkeypatch.setattr(experiment, "training_processes", lambda: 2)
    with pytest.raises(ManifestError, match=r"other settings:\n  ddp_processes \(torchrun "
                                            r"--nproc_per_node\): 1 -> 2\n"):
        train(demo_corpus, run, *ONE_EPOCH)
    assert contents(run) == before
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH))


def test_resume_of_a_run_without_recorded_run_options_warns(demo_corpus, run, caplog):
    record = json.loads((run / "save" / "run_settings.json").read_text())
    del record["grad_accumulation_factor"], record["precision"]
    (run / "save" / "run_settings.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        train(demo_corpus, run, *ONE_EPOCH, "--grad_accumulation_factor=2")
    assert "records no grad_accumulation_factor, precision: their values are not checked" \
        in caplog.text
    record = json.loads((run / "save" / "run_settings.json").read_text())
    assert record["grad_accumulation_factor"] == 2


def test_debug_smoke_test_into_a_run_is_refused_and_changes_nothing(demo_corpus, run):
    before = contents(run)
    debug = ("--debug", "--debug_batches=2", "--debug_epochs=1")
    with pytest.raises(ManifestError, match=rf"^{run}: holds a run, whose results a --debug "):
        train(demo_corpus, run, *ONE_EPOCH, *debug)
    with pytest.raises(ManifestError, match=r"^--debug: evaluate.py verifies the checkpoints"):
        evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, *debug))
    assert contents(run) == before


def test_new_run_over_a_runs_results_or_record_is_refused(demo_corpus, run, tmp_path):
    before = contents(run)
    elsewhere = tmp_path / "elsewhere"
    # Another save_folder has no checkpoint: the run would start anew over this one.
    with pytest.raises(ManifestError, match=rf"^{run}: holds the results \(verification, model\) "
                                            rf"of a run whose checkpoints are not in {elsewhere}"):
        train(demo_corpus, run, *ONE_EPOCH, "--lr=0.05", f"--save_folder={elsewhere}")
    assert contents(run) == before
    # Before its results, its hyperparams.yaml names its checkpoints.
    for name in ("verification", "model"):
        shutil.rmtree(run / name)
    with pytest.raises(ManifestError, match=r"holds a run whose checkpoints are in .*/save, "
                                            rf"not in {elsewhere}"):
        train(demo_corpus, run, *ONE_EPOCH, "--lr=0.05", f"--save_folder={elsewhere}")
    assert not list(elsewhere.glob("CKPT*"))


@pytest.mark.parametrize("script", [evaluate, train_dann])
def test_checkpoints_of_another_run_are_refused_for_a_runs_folder(demo_corpus, trained, run,
                                                                  tmp_path, script):
    """An evaluation or a resume of another run's checkpoints into this run's folder, with that
    run's settings, would write its report and record here as this run's."""
    other = tmp_path / "other"
    shutil.copytree(run, other)  # a run of another seed, in its own folder
    record = json.loads((other / "save" / "run_settings.json").read_text())
    (other / "save" / "run_settings.json").write_text(json.dumps({**record, "seed": 5}))
    hyperparams = (other / "hyperparams.yaml").read_text()
    (other / "hyperparams.yaml").write_text(
        hyperparams.replace(f"save_folder: {trained[0] / 'save'}\n",
                            f"save_folder: {other / 'save'}\n"))
    recorded = trained[0] / "save"  # the copy's hyperparams.yaml names the original's
    before = contents(run)
    with pytest.raises(ManifestError) as refused:
        train(demo_corpus, run, *ONE_EPOCH, f"--save_folder={other / 'save'}", "--seed=5",
              script=script)
    assert str(refused.value) == (
        f"{run}: holds the run whose checkpoints its hyperparams.yaml keeps in {recorded}, not "
        f"in {other / 'save'}, those of the run in {other}: a resume or an evaluation would "
        "write the record and report of another run's checkpoints here as this run's\n"
        f"Fix: pass --save_folder={recorded} for the run of {run}, or --output_folder={other} "
        f"for the run whose checkpoints are in {other / 'save'}")
    assert contents(run) == before
    train(demo_corpus, other, *ONE_EPOCH, "--seed=5", script=evaluate)  # that run's own folder


def test_condition_naming_missing_files_is_refused_before_the_run_is_written(demo_corpus,
                                                                             tmp_path):
    with open(os.path.join(ROOT, "recipes", "demo", "condition.yaml")) as original:
        text = original.read().replace("trials_target.txt", "no_trials.txt")
    condition = tmp_path / "condition.yaml"
    condition.write_text(text.replace("target_eval.csv", "no_eval.csv"))
    folder = tmp_path / "run"
    with pytest.raises(ManifestError, match=rf"^{condition}: names data files that do not exist\n"
                                            r"  evaluation/target/manifest: .*/no_eval.csv\n"
                                            r"  evaluation/target/trials: .*/no_trials.txt\n"):
        train(demo_corpus, folder, *ONE_EPOCH, f"--condition={condition}")
    assert not folder.exists()


def test_resume_on_other_training_data_is_refused_naming_the_files(demo_corpus, other_corpus,
                                                                   run):
    before = contents(run)
    other = (f"--demo_seed={OTHER_SEED}", "--number_of_epochs=2")
    with pytest.raises(ManifestError) as refused:
        train(other_corpus, run, *other, "--allow_changed=[number_of_epochs]")
    message = str(refused.value)
    assert message.startswith(f"{run}/save/run_settings.json: the run's checkpoints were "
                              "trained on other data:\n"), message
    for role in ("source_train", "target_train"):
        assert (f"\n  {role}_sha256 ({other_corpus[role]}): \"{file_sha256(demo_corpus[role])}\""
                f" -> \"{file_sha256(other_corpus[role])}\"\n") in message + "\n", message
    assert "--allow_changed=[source_train_sha256, target_train_sha256]" in message
    assert contents(run) == before
    train(other_corpus, run, *other,
          "--allow_changed=[number_of_epochs, source_train_sha256, target_train_sha256]")
    with open(run / "provenance.json") as saved:
        assert json.load(saved)["data"]["target_train"]["sha256"] == \
            file_sha256(other_corpus["target_train"])
    # The record has the accepted data: a resume compares with them.
    train(other_corpus, run, *other)
    with pytest.raises(ManifestError, match=r"trained on other data:\n  source_train_sha256 "):
        train(demo_corpus, run, "--number_of_epochs=2")


def test_resume_of_a_run_without_recorded_data_compares_with_its_provenance(
        demo_corpus, other_corpus, run, caplog):
    record = json.loads((run / "save" / "run_settings.json").read_text())
    for role in ("source_train", "target_train"):
        record.pop(f"{role}_sha256", None)
    (run / "save" / "run_settings.json").write_text(json.dumps(record))
    with pytest.raises(ManifestError, match=r"trained on other data:\n  source_train_sha256 "):
        train(other_corpus, run, f"--demo_seed={OTHER_SEED}", *ONE_EPOCH)
    (run / "provenance.json").unlink()
    with caplog.at_level(logging.WARNING):
        train(other_corpus, run, f"--demo_seed={OTHER_SEED}", *ONE_EPOCH)
    assert "records no hash of source_train, nor does " in caplog.text
    record = json.loads((run / "save" / "run_settings.json").read_text())
    assert record["target_train_sha256"] == file_sha256(other_corpus["target_train"])


def test_evaluate_on_other_training_data_warns_and_records_them(demo_corpus, other_corpus, run,
                                                                caplog):
    record = (run / "save" / "run_settings.json").read_bytes()
    with caplog.at_level(logging.WARNING):
        evaluate.main(argv(other_corpus, run, f"--demo_seed={OTHER_SEED}", *ONE_EPOCH))
    assert (f"Training data differ from the run's: source_train_sha256 "
            f"({other_corpus['source_train']})") in caplog.text
    assert (run / "save" / "run_settings.json").read_bytes() == record
    with open(run / "verification" / "evaluate_provenance.json") as saved:
        assert json.load(saved)["data"]["source_train"]["sha256"] == \
            file_sha256(other_corpus["source_train"])


def test_evaluate_on_other_training_data_refuses_trials_of_the_runs_training_speakers(
        demo_corpus, tmp_path):
    # Trained with the target's evaluation audio in its unlabelled target manifest,
    # scored on the source list only: no trial list of the run scores them.
    data_folder = os.path.dirname(demo_corpus["eval"])
    leaked = tmp_path / "target_train.csv"
    pd.concat([pd.read_csv(demo_corpus["target_train"]),
               pd.read_csv(demo_corpus["target_eval"])]).to_csv(leaked, index=False)
    condition = tmp_path / "condition.yaml"
    condition.write_text(f"condition: demo\ndata_folder: {data_folder}\nprepare: []\n"
                         "source_train: !ref <data_folder>/source_train.csv\n"
                         f"target_train: {leaked}\nevaluation:\n    source:\n"
                         "        manifest: !ref <data_folder>/source_eval.csv\n"
                         "        trials: !ref <data_folder>/trials_source.txt\n")
    run = tmp_path / "run"
    train(demo_corpus, run, *ONE_EPOCH, f"--condition={condition}")
    # The demo condition's target manifest is another, without them; its target
    # list scores the very audio the run's weights were trained on.
    with pytest.raises(ManifestError, match=(
            r"trials_target.txt: 10 speakers and 60 audio files of these trials are in the "
            rf"training manifest {leaked}\n")):
        evaluate.main(argv(demo_corpus, run, *ONE_EPOCH))
    assert not (run / "verification" / "target").exists()
    # So is a resume that accepts the other manifest.
    with pytest.raises(ManifestError, match=rf"in the training manifest {leaked}\n"):
        train(demo_corpus, run, "--number_of_epochs=2",
              "--allow_changed=[number_of_epochs, target_train_sha256]")
    # A training manifest changed since cannot be checked: the evaluation's log says so.
    pd.read_csv(leaked)[:-1].to_csv(leaked, index=False)
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH))
    assert (f"The run's target_train, {leaked}, has changed or gone since it was trained: the "
            "trial lists are not checked against the speakers the run was trained on"
            in (run / "log.txt").read_text())


def test_evaluate_writes_its_own_settings_and_leaves_the_runs(demo_corpus, trained, run):
    hyperparams = (run / "hyperparams.yaml").read_bytes()
    environment = b"the environment of the run's training\n"
    (run / "env.log").write_bytes(environment)
    results = evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, "--score_norm=snorm",
                                 "--cohort_size=50"))
    assert results["target"] == trained[1]["target"]
    assert (run / "hyperparams.yaml").read_bytes() == hyperparams
    assert (run / "env.log").read_bytes() == environment
    with open(run / "verification" / "evaluate_hyperparams.yaml") as saved:
        assert "\nscore_norm: snorm\n" in saved.read()
    with open(run / "verification" / "evaluate_provenance.json") as saved:
        assert json.load(saved)["trained_by"] == \
            json.loads((run / "provenance.json").read_text())["trained_by"]


@pytest.mark.parametrize("batches, inside", [(16, False), (22, True)])
def test_evaluate_of_a_training_stopped_before_its_last_epoch_is_refused(demo_corpus, tmp_path,
                                                                        monkeypatch, batches,
                                                                        inside):
    # 15 batches an epoch: stopped at the start of epoch 2, or inside it after
    # its checkpoint of step 5.
    args = ("--number_of_epochs=2", "--ckpt_interval_steps=5")
    killed_at_batch(batches, monkeypatch, demo_corpus, tmp_path, *args)
    before = contents(tmp_path)
    with pytest.raises(ManifestError, match=r"the run's training stopped after 1 of 2 epochs"
                                            + " and part of the next" * inside):
        evaluate.main(argv(demo_corpus, tmp_path, *args))
    assert not (tmp_path / "verification").exists()
    assert {name: before[name] for name in before if not name.endswith("log.txt")} == {
        name: digest for name, digest in contents(tmp_path).items()
        if name in before and not name.endswith("log.txt")}
    if not inside:  # scored as what it is, a run of one epoch
        results = evaluate.main(argv(demo_corpus, tmp_path, "--number_of_epochs=1",
                                     "--allow_changed=[number_of_epochs]"))
        assert set(results) == {"source", "target"}
        with open(tmp_path / "verification" / "evaluate_hyperparams.yaml") as saved:
            assert "\nnumber_of_epochs: 1\n" in saved.read()


def test_evaluate_with_another_model_file_is_refused(demo_corpus, run, tmp_path):
    # Another model: the run's with another attention width in the encoder.
    text = open(os.path.join(ROOT, "hparams", "dann_fbank.yaml")).read()
    encoder = text[text.index("embedding_model:"):]
    model = tmp_path / "other.yaml"
    model.write_text(f"base: {ROOT}/hparams/dann_fbank.yaml\nmodel_name: other\n"
                     + encoder.replace("attention_channels: 64", "attention_channels: 32"))
    before = contents(run)
    with pytest.raises(ManifestError, match=r"other settings:\n  model_name: \"dann_fbank\" -> "
                                            r"\"other\"\n  embedding_model: .*\"attention_channels"
                                            r"\": 64.* -> .*\"attention_channels\": 32"):
        evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, hparams=str(model)))
    assert contents(run) == before


def test_evaluation_of_a_model_defined_otherwise_embeds_again(demo_corpus, trained, run,
                                                              tmp_path):
    # The run's encoder with other dilations: the same weights, other embeddings.
    text = open(os.path.join(ROOT, "hparams", "dann_fbank.yaml")).read()
    encoder = text[text.index("embedding_model:"):]
    model = tmp_path / "dilations.yaml"
    model.write_text(f"base: {ROOT}/hparams/dann_fbank.yaml\n"
                     + encoder.replace("dilations: [1, 2, 3, 4, 1]", "dilations: [1, 1, 1, 1, 1]"))
    caches = {name: digest for name, digest in contents(run).items()
              if name.startswith("embeddings_")}
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, "--allow_changed=[embedding_model]",
                       hparams=str(model)))
    after = {name: digest for name, digest in contents(run).items()
             if name.startswith("embeddings_")}
    assert len(after) == 2 * len(caches)
    assert {name: after[name] for name in caches} == caches  # the run's, kept as they were
    # Other embeddings, not the run's under other names (a one-epoch model's EER can
    # come out the same, at chance).
    assert not {after[name] for name in after if name not in caches} & set(caches.values())
    assert evaluate.main(argv(demo_corpus, run, *ONE_EPOCH)) == trained[1]


def test_resume_skips_a_truncated_newest_checkpoint(demo_corpus, trained, run, caplog):
    complete, = (run / "save").glob("CKPT*")
    newest = run / "save" / f"{complete.name}-newer"
    shutil.copytree(complete, newest)
    meta = yaml.safe_load((complete / "CKPT.yaml").read_text())
    (newest / "CKPT.yaml").write_text(yaml.dump({**meta, "unixtime": meta["unixtime"] + 60}))
    weights = (newest / "embedding_model.ckpt").read_bytes()
    (newest / "embedding_model.ckpt").write_bytes(weights[:len(weights) // 2])
    with caplog.at_level(logging.WARNING):
        results = train(demo_corpus, run, *ONE_EPOCH)
    assert results == trained[1]
    assert f"Skipping the checkpoint {newest}: embedding_model.ckpt is truncated" in caplog.text


def run_until(moment, folder, demo_corpus, *extra):
    """:mod:`tests.integration.killed_run` in a process of its own, on one thread."""
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.killed_run", *moment,
         *argv(demo_corpus, folder, *extra)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_run_killed_at_any_moment_resumes_to_the_same_result(demo_corpus, tmp_path):
    # Every domain path, pseudo-labels in epoch 2, checkpoints every 4 of the 15 steps.
    args = ("--number_of_epochs=2", "--ckpt_interval_steps=4", "--adv_weight=0.3",
            "--adv_warmup=0", "--mmd_weight=0.3", "--pseudo_label_epochs=[2]")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_until(["never"], whole, demo_corpus, *args).returncode == 0
    # In a training step after an intra-epoch checkpoint; while the end-of-epoch
    # checkpoint is written; in epoch 2 before its first checkpoint.
    for moment in (["step", "1", "6"], ["save", "1"], ["step", "2", "3"]):
        done = run_until(moment, killed, demo_corpus, *args)
        assert done.returncode == -signal.SIGKILL, (moment, done.stderr[-3000:])
        if moment[0] == "save":  # the half-written checkpoint is staged, not a checkpoint
            assert list((killed / "save" / STAGING).glob("CKPT*/embedding_model.ckpt"))
            # Resumed at the intra-epoch checkpoint of step 4 (logged, as SpeechBrain logs,
            # to stdout).
            assert re.search(r"Resuming the run from the checkpoint \S+, saved after step 4 of "
                             r"epoch 1\n", done.stdout), done.stdout[-3000:]
    done = run_until(["never"], killed, demo_corpus, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Took over the lock" in done.stdout  # logged, as SpeechBrain logs, to stdout
    for name in ("summary.csv", "source/scores.txt", "target/scores.txt"):
        assert (killed / "verification" / name).read_bytes() == \
            (whole / "verification" / name).read_bytes(), name
    assert logged(killed, "loss")[-1] == logged(whole, "loss")[-1]


@pytest.mark.slow
def test_killed_and_resumed_run_logs_each_line_once(demo_corpus, tmp_path):
    """A resume logs again what was logged after its checkpoint: killed in the save at the
    end of epoch 2, the run resumes at the end of epoch 1, and clusters and trains epoch 2
    again; a finished run resumed again verifies again."""
    args = ("--number_of_epochs=2", "--pseudo_label_epochs=[2]")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_until(["never"], whole, demo_corpus, *args).returncode == 0
    done = run_until(["save", "2"], killed, demo_corpus, *args)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    for _ in range(2):  # to its end, then once more
        done = run_until(["never"], killed, demo_corpus, *args)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (killed / "train_log.txt").read_text() == (whole / "train_log.txt").read_text()
        assert (killed / "verification" / "summary.csv").read_bytes() == \
            (whole / "verification" / "summary.csv").read_bytes()
    # log.txt, the log of each command on the folder, says where each resumed.
    resumed = re.findall(r"Resuming the run from the checkpoint (\S+), saved at the end of "
                         r"(epoch \d of \d)\n", (killed / "log.txt").read_text())
    assert [where for _, where in resumed] == ["epoch 1 of 2", "epoch 2 of 2"]
    assert all(path.startswith(f"{killed / 'save'}{os.sep}CKPT+") for path, _ in resumed)


def test_evaluate_on_other_data_files_leaves_the_runs_provenance(demo_corpus, run, tmp_path):
    provenance = (run / "provenance.json").read_bytes()
    data = tmp_path / "data"  # the same corpus, prepared, under another path
    shutil.copytree(os.path.dirname(demo_corpus["eval"]), data)
    evaluate.main([*argv(demo_corpus, run, *ONE_EPOCH), f"--data_folder={data}"])
    assert (run / "provenance.json").read_bytes() == provenance
    with open(run / "verification" / "evaluate_provenance.json") as saved:
        record = json.load(saved)
    assert record["data"]["evaluation/target/trials"]["path"] == str(data / "trials_target.txt")


def test_second_evaluation_replaces_the_whole_report(demo_corpus, run):
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, "--score_norm=snorm", "--cohort_size=50"))
    assert (run / "verification" / "target_snorm" / "scores.txt").is_file()
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH))
    report = run / "verification"
    systems = pd.read_csv(report / "summary.csv")["system"]
    # No folder of a system this evaluation did not score.
    assert sorted(path.name for path in report.iterdir() if path.is_dir()) == sorted(systems)
    assert sorted(path.name for path in run.iterdir() if path.name.startswith("verification")) \
        == ["verification"]


def report_records(folder):
    """``{path: sha256}`` of the report and of every evaluation settings file in ``folder``."""
    return {path: digest for path, digest in contents(folder).items()
            if path.startswith(f"verification{os.sep}") or "evaluate_" in path}


def test_interrupted_evaluation_leaves_the_report_and_its_settings_before_it(demo_corpus, run,
                                                                           monkeypatch):
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH))
    before = report_records(run)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # After every system's score file and table, before the figure and the summary.
    monkeypatch.setattr(verification, "plot_det", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, "--score_norm=snorm",
                           "--cohort_size=50"))
    assert report_records(run) == before  # the settings of the raw-cosine report
    monkeypatch.undo()
    evaluate.main(argv(demo_corpus, run, *ONE_EPOCH, "--score_norm=snorm", "--cohort_size=50"))
    records = report_records(run)
    assert sorted(path for path in records if "evaluate_" in path) == [
        os.path.join("verification", name) for name in
        ("evaluate_condition.yaml", "evaluate_hyperparams.yaml", "evaluate_provenance.json")]
    with open(run / "verification" / "evaluate_hyperparams.yaml") as saved:
        assert "\nscore_norm: snorm\n" in saved.read()
    with open(run / "verification" / "evaluate_provenance.json") as saved:
        assert json.load(saved)["trained_by"] == \
            json.loads((run / "provenance.json").read_text())["trained_by"]
    train(demo_corpus, run, *ONE_EPOCH)  # the training's report has the run's settings
    assert not [path for path in report_records(run) if "evaluate_" in path]
    assert (run / "verification" / "hyperparams.yaml").read_bytes() == \
        (run / "hyperparams.yaml").read_bytes()


def test_a_run_on_an_ssl_model_replaced_under_the_same_source_is_refused(demo_corpus, tmp_path,
                                                                          capfd):
    """A frozen SSL model is not in the checkpoints: its files' digest is a setting of the run,
    the same bytes wherever they are, other bytes refused by a resume and by an evaluation."""
    source = save_tiny_ssl(tmp_path / "ssl", "wavlm")
    run = tmp_path / "run"
    train_ssl(demo_corpus, run, "dann_wavlm", source, *ONE_EPOCH)
    recorded = json.loads((run / "save" / "run_settings.json").read_text())["ssl_model_sha256"]
    # Named where a user reads the run's record: its provenance and its report's copy.
    for record in (run / "provenance.json", run / "verification" / "provenance.json"):
        assert json.loads(record.read_text())["ssl_model_sha256"] == recorded
    original = shutil.copytree(source, tmp_path / "original")
    save_tiny_ssl(source, "wavlm")  # another model's files in its place
    # log.txt is left out: this process's logging still writes the first run's.
    before = contents(run)
    before.pop("log.txt")
    for script in (train_dann, evaluate):
        with pytest.raises(ManifestError, match=rf"other SSL model files:\n  ssl_model_sha256: "
                                                rf"\"{recorded}\" -> \"[0-9a-f]+\"\nFix: pass "
                                                rf"the SSL model files the run was trained with"):
            train_ssl(demo_corpus, run, "dann_wavlm", source, *ONE_EPOCH, script=script)
    assert {path: digest for path, digest in contents(run).items() if path != "log.txt"} == before
    for name in os.listdir(original):  # the run's model again, in files written anew
        shutil.copy(os.path.join(original, name), source)
    train_ssl(demo_corpus, run, "dann_wavlm", source, *ONE_EPOCH, script=evaluate)
    evaluated = json.loads((run / "verification" / "evaluate_provenance.json").read_text())
    assert evaluated["ssl_model_sha256"] == recorded
    # A record from before the digest was recorded is resumed without it, with a warning.
    record = json.loads((run / "save" / "run_settings.json").read_text())
    del record["ssl_model_sha256"]
    (run / "save" / "run_settings.json").write_text(json.dumps(record))
    save_tiny_ssl(source, "wavlm")
    capfd.readouterr()
    train_ssl(demo_corpus, run, "dann_wavlm", source, *ONE_EPOCH, script=evaluate)
    # The first run of this test set up SpeechBrain's logging, without pytest's handler.
    assert "records no digest of the SSL model's files" in capfd.readouterr().out
