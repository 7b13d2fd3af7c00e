"""End-to-end runs of train_dann.py on the demo corpus with a tiny model."""

import glob
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import soundfile

import speechbrain as sb
import torch
import yaml

import train_dann
from local import experiment, settings
from local.data.validation import check_manifest_audio_once
from local.errors import ManifestError
from local.export import condition_trial_lists
from local.model.dann_brain import DANNBrain
from local.model.epoch_statistics import EpochStatistics
from local.model.ssl_frontend import SSLFrontend
from tests.conftest import ROOT, TINY_SSL, TINY_SSL_DIM
from tests.unit.test_verification import copied_manifest

# A tiny model, scored with raw cosine only (the recipe rows run the default back-end too).
TINY = ["--channels=[32, 32, 32, 32, 96]", "--emb_dim=32", "--n_mels=40",
        "--discriminator_neurons=[32]", "--batch_size=16", "--crop_seconds=1.0",
        "--num_workers=0", "--check_audio=False", "--backend_adaptation=null", "--backend=[]"]
SHORT = ["--number_of_epochs=1", "--debug", "--debug_batches=3", "--debug_epochs=1"]
# The adversary alone: the other domain losses off.
ADVERSARY_ONLY = ["--mmd_weight=0", "--pseudo_label_epochs=[]"]  # with an adv_weight
# Every path that reads target data: the adversary, CORAL, MMD and pseudo-labels
# (clustered before epoch 1, so that a short run uses them).
ALL_TARGET_PATHS = ["--adv_warmup=0", "--coral_weight=1", "--mmd_weight=1",
                    "--pseudo_label_epochs=[1]"]


def train(demo_corpus, folder, *extra, hparams="hparams/dann_fbank.yaml", tiny=TINY,
          script=train_dann):
    """A tiny run of ``script`` (or, with ``script=evaluate``, its evaluation)."""
    data_folder = os.path.dirname(demo_corpus["eval"])
    argv = [hparams, f"--data_folder={data_folder}", f"--output_folder={folder}", *tiny, *extra]
    return script.main(argv)


def train_ssl(demo_corpus, folder, model, source, *extra, script=train_dann):
    """A run of hparams/<model>.yaml on a tiny SSL checkpoint folder."""
    tiny = [t for t in TINY if not t.startswith("--n_mels")]
    return train(demo_corpus, folder, f"--ssl_source={source}", f"--ssl_dim={TINY_SSL_DIM}",
                 f"--ssl_cache={folder}/cache", *extra, hparams=f"hparams/{model}.yaml",
                 tiny=tiny, script=script)


def logged(folder, key):
    """Per-epoch values of ``train <key>`` in the run's train_log.txt."""
    with open(os.path.join(folder, "train_log.txt")) as log:
        return [float(m.group(1)) for m in re.finditer(rf"train {key}: ([-+.e\d]+)", log.read())]


@pytest.fixture(scope="module")
def runs(demo_corpus, tmp_path_factory):
    """A baseline (adv_weight 0) and a DANN run, 4 epochs each, same seed."""
    folders = {}
    for name, weight in (("baseline", 0.0), ("dann", 1.0)):
        folder = str(tmp_path_factory.mktemp(name))
        results = train(demo_corpus, folder, "--number_of_epochs=4", f"--adv_weight={weight}",
                        "--lr=0.005", *ADVERSARY_ONLY)
        folders[name] = (folder, results)
    return folders


def test_speaker_loss_goes_down(runs):
    for folder, _ in runs.values():
        losses = logged(folder, "speaker_loss")
        assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses


def test_adversary_pushes_domain_accuracy_towards_chance(runs):
    baseline = logged(runs["baseline"][0], "domain_accuracy")
    dann = logged(runs["dann"][0], "domain_accuracy")
    assert logged(runs["baseline"][0], "adv_coefficient") == [0.0] * 4
    assert baseline[-1] > 0.75, baseline  # the domains are easy to tell apart
    assert abs(dann[-1] - 0.5) < abs(baseline[-1] - 0.5) - 0.1, (baseline, dann)


def test_run_ends_with_verification_on_both_trial_lists(runs):
    for folder, results in runs.values():
        assert set(results) == {"source", "target"}
        assert all(0.0 < metrics["eer"] < 0.6 for metrics in results.values())
        caches = sorted(f.split("_CKPT")[0] for f in os.listdir(folder) if "_CKPT" in f)
        assert caches == ["embeddings_source", "embeddings_target"]
        for saved in ("hyperparams.yaml", "condition.yaml", "save/label_encoder.txt"):
            assert os.path.isfile(os.path.join(folder, saved)), saved


def test_run_ends_with_the_verification_report(runs):
    folder, results = runs["dann"]
    report = os.path.join(folder, "verification")
    summary = pd.read_csv(os.path.join(report, "summary.csv"))
    assert list(summary["system"]) == ["source", "target"]
    # Unrounded: what a table over seeds averages.
    assert list(summary["eer_percent"]) == [100 * results[s]["eer"] for s in ("source", "target")]
    scores = pd.read_csv(os.path.join(report, "target", "scores.txt"), sep=" ", header=None)
    assert len(scores) == 1770
    conditions = pd.read_csv(os.path.join(report, "target", "conditions.csv"))
    assert {"all", "lang", "channel", "domain"} <= set(conditions["condition"])
    assert os.path.getsize(os.path.join(report, "det.png")) > 10_000


def test_the_log_gives_the_eer_in_percent_as_the_report_does(runs):
    folder, _ = runs["dann"]
    with open(os.path.join(folder, "train_log.txt")) as log:
        line = log.read().splitlines()[-1]
    assert line.startswith("verification: EER (%) - "), line
    summary = pd.read_csv(os.path.join(folder, "verification", "summary.csv"))
    for system, percent in zip(summary["system"], summary["eer_percent"]):
        logged_eer = float(re.search(rf"test {system} EER: ([-+.e\d]+)", line).group(1))
        assert logged_eer == pytest.approx(percent, abs=0.01), (system, line)


def test_evaluate_reproduces_the_run_from_its_checkpoint(runs, demo_corpus, tmp_path):
    import evaluate

    folder = shutil.copytree(runs["dann"][0], tmp_path / "run")  # the others read the run's
    results = runs["dann"][1]
    data_folder = os.path.dirname(demo_corpus["eval"])
    argv = ["hparams/dann_fbank.yaml", f"--data_folder={data_folder}",
            f"--output_folder={folder}", *TINY, "--number_of_epochs=4", "--adv_weight=1.0",
            "--lr=0.005", *ADVERSARY_ONLY]
    for cache in glob.glob(os.path.join(folder, "embeddings_*.pt")):
        os.remove(cache)  # embed again, from the checkpoint
    assert evaluate.main(argv) == results
    normalised = evaluate.main(argv + ["--score_norm=asnorm", "--cohort_size=100",
                                       "--cohort_top_k=20", "--backend=[plda_adapted]"])
    assert set(normalised) == {"source", "source_asnorm", "source_plda_adapted",
                               "source_plda_adapted_asnorm", "target", "target_asnorm",
                               "target_plda_adapted", "target_plda_adapted_asnorm"}
    assert normalised["target"] == results["target"]
    assert os.path.isfile(os.path.join(folder, "verification", "target_asnorm", "scores.txt"))


def test_evaluate_embeds_again_after_the_audio_changed_under_the_same_ids(runs, demo_corpus,
                                                                         tmp_path):
    import evaluate

    folder = shutil.copytree(runs["baseline"][0], tmp_path / "run")
    manifest, table = copied_manifest(demo_corpus["target_eval"], str(tmp_path / "audio"))
    evaluation = {"target": {"manifest": manifest, "trials": demo_corpus["trials_target"]}}
    argv = ["hparams/dann_fbank.yaml", f"--data_folder={os.path.dirname(demo_corpus['eval'])}",
            f"--output_folder={folder}", *TINY, "--number_of_epochs=4", "--adv_weight=0.0",
            "--lr=0.005", *ADVERSARY_ONLY, f"--evaluation={json.dumps(evaluation)}"]
    first = evaluate.main(argv)
    assert first["target"] == runs["baseline"][1]["target"]  # the same audio, copied
    before = {path: path.read_bytes() for path in folder.glob("embeddings_*.pt")}
    noise = torch.Generator().manual_seed(0)
    for wav, rate in table[["wav", "sample_rate"]][:30].itertuples(index=False):
        samples = soundfile.info(wav).frames
        soundfile.write(wav, 0.1 * torch.randn(samples, generator=noise).numpy(), rate)
    second = evaluate.main(argv)
    assert second["target"]["eer"] != first["target"]["eer"]
    after = set(folder.glob("embeddings_*.pt"))
    assert len(after) == len(before) + 1
    assert all(path.read_bytes() == content for path, content in before.items())


def test_evaluate_embeds_in_the_eval_precision_it_records(runs, demo_corpus, tmp_path):
    import evaluate

    folder = shutil.copytree(runs["baseline"][0], tmp_path / "run")
    argv = ["hparams/dann_fbank.yaml", f"--data_folder={os.path.dirname(demo_corpus['eval'])}",
            f"--output_folder={folder}", *TINY, "--number_of_epochs=4", "--adv_weight=0.0",
            "--lr=0.005", *ADVERSARY_ONLY]
    before = {path: path.read_bytes() for path in folder.glob("embeddings_*.pt")}
    bf16 = evaluate.main(argv + ["--eval_precision=bf16"])
    assert set(bf16) == set(runs["baseline"][1])
    made = set(folder.glob("embeddings_*.pt")) - set(before)
    assert made and all("_bf16_" in path.name for path in made)
    assert all(path.read_bytes() == content for path, content in before.items())
    # Embedded again in bf16: near the fp32 embeddings of the same utterances, not them (an
    # EER of a list this small may come out the same either way).
    for path in made:
        fp32 = torch.load(folder / path.name.replace("_bf16_", "_"))
        embedded = torch.load(path)
        assert embedded.keys() == fp32.keys()
        new, old = (torch.stack([vectors[utt] for utt in fp32]) for vectors in (embedded, fp32))
        assert not torch.equal(new, old)
        assert torch.nn.functional.cosine_similarity(new, old).min() > 0.98
    with open(folder / "verification" / "evaluate_hyperparams.yaml", encoding="utf-8") as fin:
        assert "\neval_precision: bf16\n" in fin.read()
    assert evaluate.main(argv) == runs["baseline"][1]  # the fp32 caches, unchanged
    with open(folder / "verification" / "evaluate_hyperparams.yaml", encoding="utf-8") as fin:
        assert "\neval_precision: fp32\n" in fin.read()


@pytest.mark.parametrize("made", [False, True])
def test_evaluate_without_a_checkpoint_says_to_train(demo_corpus, tmp_path, made):
    import evaluate

    folder = tmp_path / "run"
    if made:  # a run stopped before its first checkpoint
        (folder / "save").mkdir(parents=True)
    data_folder = os.path.dirname(demo_corpus["eval"])
    with pytest.raises(SystemExit, match=f"No checkpoint in {folder}/save: train the system"):
        evaluate.main(["hparams/dann_fbank.yaml", f"--data_folder={data_folder}",
                       f"--output_folder={folder}", *TINY])
    # A folder that was no run is left no run.
    assert sorted(path.name for path in tmp_path.rglob("*")) == (["run", "save"] if made else [])


def test_evaluate_of_a_run_trained_with_another_save_folder_names_it(demo_corpus, tmp_path):
    import evaluate

    folder, saved = tmp_path / "run", tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(f"save_folder: {saved}\n")
    data_folder = os.path.dirname(demo_corpus["eval"])
    with pytest.raises(SystemExit, match=rf"No checkpoint in {folder}/save: .*: pass "
                                         rf"--save_folder={saved}\.$"):
        evaluate.main(["hparams/dann_fbank.yaml", f"--data_folder={data_folder}",
                       f"--output_folder={folder}", *TINY])


def test_bad_score_norm_fails_before_training(demo_corpus, tmp_path):
    with pytest.raises(ValueError, match="score_norm must be null, snorm, asnorm, znorm or tnorm"):
        train(demo_corpus, tmp_path, "--score_norm=z-norm")
    assert not os.path.exists(tmp_path / "hyperparams.yaml")  # stopped before the run began


def test_a_min_dcf_setting_given_twice_fails_before_training(demo_corpus, tmp_path):
    """Both were scored, after training, into the one column min_dcf_0.01 of summary.csv."""
    settings = "[[0.01, 1, 1], [0.001, 1, 1], [0.01, 1.0, 1]]"
    with pytest.raises(ManifestError, match=r"condition.yaml: trial list target of evaluation "
                       r"has min_dcf settings given twice\n  \[0.01, 1.0, 1\] repeats "
                       r"\[0.01, 1, 1\] \(min_dcf_0.01\)\nFix: give each setting once"):
        train(demo_corpus, tmp_path, f"--evaluation={{target: {{min_dcf: {settings}}}}}")
    assert not os.path.exists(tmp_path / "hyperparams.yaml")  # stopped before the run began


def test_too_small_a_cohort_fails_before_training(demo_corpus, tmp_path):
    # The demo's 240 target training utterances, fewer than cohort_top_k.
    with pytest.raises(ManifestError, match=r"target_train.csv: 240 embeddings, fewer than the "
                                            r"300 .*\nFix: draw the cohort"):
        train(demo_corpus, tmp_path, "--score_norm=asnorm", "--cohort_top_k=300")
    assert not os.path.exists(tmp_path / "train_log.txt")


def test_results_folder_records_the_data_and_code_it_used(runs, demo_corpus):
    with open(os.path.join(runs["baseline"][0], "provenance.json")) as saved:
        record = json.load(saved)
    assert set(record["data"]) == {
        "source_train", "target_train", "evaluation/source/manifest",
        "evaluation/source/trials", "evaluation/target/manifest", "evaluation/target/trials"}
    source = record["data"]["source_train"]
    assert source["path"] == os.path.abspath(demo_corpus["source_train"])
    assert source["sha256"] == hashlib.sha256(open(source["path"], "rb").read()).hexdigest()
    assert record["code_version"]  # the repository is a git checkout


def test_the_recorded_condition_is_the_one_the_run_trained_and_scored(demo_corpus, tmp_path):
    """The condition's overrides (--data_folder, a list of its own) are in its record, which
    runs as the same condition; the export reads its trial lists there."""
    evaluation = {"target": {"manifest": demo_corpus["target_eval"],
                             "trials": demo_corpus["trials_target"]}}
    train(demo_corpus, tmp_path, f"--evaluation={json.dumps(evaluation)}", *SHORT)
    for record in (tmp_path / "condition.yaml", tmp_path / "verification" / "condition.yaml"):
        _, condition, _, _ = settings.load_condition(f"condition: {record}",
                                                     "hparams/dann_fbank.yaml")
        assert condition["source_train"] == demo_corpus["source_train"]
        assert condition["evaluation"] == evaluation
    assert condition_trial_lists(str(tmp_path)) == ["target"]


def test_target_speaker_labels_are_never_used(demo_corpus, tmp_path):
    table = pd.read_csv(demo_corpus["target_train"])
    table["spk_id"] = table["spk_id"].sample(frac=1.0, random_state=0).to_numpy()
    scrambled = tmp_path / "target_scrambled.csv"
    table.to_csv(scrambled, index=False)
    table.assign(spk_id="").to_csv(tmp_path / "target_unlabelled.csv", index=False)
    losses = []
    for name, target in (("orig", demo_corpus["target_train"]), ("scrambled", scrambled),
                         ("unlabelled", tmp_path / "target_unlabelled.csv")):
        folder = tmp_path / name
        train(demo_corpus, folder, f"--target_train={target}", *SHORT, *ALL_TARGET_PATHS)
        losses.append([logged(folder, key) for key in (
            "loss", "domain_loss", "coral_loss", "mmd_loss", "pseudo_labelled", "clusters")])
    assert all(values for values in losses[0]), losses[0]  # every path took part
    assert losses[0] == losses[1] == losses[2]


# 1e30 is a string to YAML 1.1 and the float it means to the recipe.
@pytest.mark.parametrize("lr", ["1.0e+30", "1e30"])
def test_non_finite_loss_stops_with_the_step(demo_corpus, tmp_path, lr):
    with pytest.raises(RuntimeError, match=r"Non-finite loss at epoch 1, step \d+"):
        train(demo_corpus, tmp_path, "--number_of_epochs=1", f"--lr={lr}",
              "--debug", "--debug_batches=5", "--debug_epochs=1")


@pytest.mark.parametrize("setting, message", [
    ("--adv_weight=abc", r"hparams/dann_fbank.yaml: --adv_weight=abc is not a number \(its "
                         r"default is 0.3\)\nFix: pass a number, such as --adv_weight=0.3"),
    ("--number_of_epochs=[2]", r"--number_of_epochs=\[2\] is not a number"),
    ("--check_audio=maybe", r"--check_audio=maybe is not True or False \(its default is "
                            r"True\)\nFix: pass --check_audio=True or --check_audio=False"),
    ("--demo_seed=1e3x", r"recipes/demo/condition.yaml: --demo_seed=1e3x is not a number"),
])
def test_override_of_a_number_or_switch_with_another_type_names_the_key(demo_corpus, tmp_path,
                                                                       setting, message):
    with pytest.raises(ManifestError, match=message):
        train(demo_corpus, tmp_path, setting)
    assert not os.path.exists(tmp_path / "train_log.txt")


@pytest.mark.parametrize("script", ["train_dann.py", "evaluate.py"])
def test_bad_override_on_the_command_line_is_a_message_not_a_traceback(script, tmp_path):
    done = subprocess.run([sys.executable, script, "hparams/dann_fbank.yaml", "--adv_weight=abc",
                           f"--output_folder={tmp_path}"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("hparams/dann_fbank.yaml: --adv_weight=abc is not a number")
    assert "Fix: pass a number" in done.stderr and "Traceback" not in done.stderr


def test_a_run_from_another_folder_logs_where_it_prepares_the_data(demo_corpus, tmp_path):
    """The condition's data_folder, data/demo, is read from the working directory."""
    root = os.path.dirname(os.path.abspath(train_dann.__file__))
    os.makedirs(tmp_path / "data")
    os.symlink(os.path.dirname(demo_corpus["eval"]), tmp_path / "data" / "demo")
    done = subprocess.run([sys.executable, os.path.join(root, "evaluate.py"),
                           os.path.join(root, "hparams", "dann_fbank.yaml"), "--output_folder=run"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert "No checkpoint in run/save" in done.stderr  # after the preparation
    assert (f"relative paths are read from the working directory, {tmp_path}\n"
            f"data_prep.preparation - Demo corpus already prepared in {tmp_path}/data/demo, "
            "skipping") in done.stdout


@pytest.mark.parametrize("script", ["train_dann.py", "evaluate.py"])
def test_help_describes_the_script_before_speechbrains_run_options(script):
    done = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    description, options = done.stdout.split("usage: ")
    assert "python " + script + " hparams/dann_fbank.yaml" in description
    assert "--condition=recipes/" in description and "--device DEVICE" in options


def test_a_bad_option_refused_while_the_models_are_built_is_a_message(demo_corpus, tmp_path):
    # Raised inside a constructor that hyperpyyaml calls, after the data preparation.
    data_folder = os.path.dirname(demo_corpus["eval"])
    done = subprocess.run([sys.executable, "train_dann.py", "hparams/dann_fbank.yaml",
                           "--adversary=grll", f"--data_folder={data_folder}",
                           f"--output_folder={tmp_path}"], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.endswith("--adversary=grll: adversary 'grll' is not one of grl, vanilla, "
                                "least_squares, relativistic, auxiliary_classifier\n"
                                "Fix: pass one of them, such as --adversary=grl\n")


@pytest.mark.parametrize("setting, message", [
    # 240 source and 240 target utterances: 240 pairs an epoch.
    ("--batch_size=241", r"hparams/dann_fbank.yaml: --batch_size=241 is more than the 240 "
                         r"training pairs of an epoch \(240 source, 240 target utterances\): no "
                         r"step would run\nFix: pass --batch_size=240 or less"),
    # 15 steps of 16 pairs: gradients accumulated over 16 steps would never reach the optimisers.
    ("--grad_accumulation_factor=16", r"hparams/dann_fbank.yaml: --grad_accumulation_factor=16 "
                                      r"is not from 1 to the 15 steps of an epoch: the "
                                      r"optimisers would never step\nFix: pass "
                                      r"--grad_accumulation_factor=1 to 15"),
    ("--grad_accumulation_factor=0", r"--grad_accumulation_factor=0 is not from 1 to the 15 "
                                     r"steps of an epoch"),
    ("--batch_size=0", r"--batch_size=0 trains nothing\nFix: pass an integer of at least 1, "
                       r"such as --batch_size=16"),
    ("--number_of_epochs=0", r"--number_of_epochs=0 trains nothing\nFix: .* "
                             r"--number_of_epochs=8"),
    ("--number_of_epochs=-1", "--number_of_epochs=-1 trains nothing"),
    ("--crop_seconds=0", r"--crop_seconds=0 is shorter than the shortest input the models "
                         r"take, min_embed_seconds \(0.25\)\nFix: pass --crop_seconds=0.25 "
                         r"or more"),
    ("--train_dataloader_options={batch_size: 8, drop_last: True, persistent_workers: True}",
     r"train_dataloader_options persistent_workers: True keeps the data loader's workers "
     r"across epochs, and with them the first epoch's pairing .*\nFix: leave out "
     r"persistent_workers"),
    ("--train_dataloader_options={batch_size: 8, drop_last: False}",
     r"train_dataloader_options drop_last: False makes a last, smaller batch that the domain "
     r"losses' schedule does not count\nFix: keep drop_last: True"),
    # YAML reads {num_workers:4} as the key "num_workers:4", which the DataLoader
    # would refuse at the first epoch, after the run's records are written.
    ("--train_dataloader_options={num_workers:4}",
     r"train_dataloader_options \['num_workers:4'\] are no options of torch's DataLoader; did "
     r"you mean num_workers\?\nFix: write each as key: value, a space after the colon"),
    # What a shell leaves of an unquoted {batch_size: 16,drop_last: True}.
    ("--train_dataloader_options=drop_last:True",
     r"--train_dataloader_options=drop_last:True is no mapping of DataLoader options\nFix: "),
    # Steps of 8 pairs, where the schedule and the record count steps of 16.
    ("--train_dataloader_options={batch_size: 8}",
     r"train_dataloader_options batch_size: 8 differs from batch_size \(16\), by which the "
     r"domain losses' schedule counts an epoch's steps\nFix: pass --batch_size=8 instead"),
    (f"--device=cuda:{torch.cuda.device_count()}",
     rf"--device=cuda:{torch.cuda.device_count()}: this machine has "
     rf"{torch.cuda.device_count()} CUDA GPUs that torch can use\nFix: pass --device=cpu"),
    ("--numbr_of_epochs=3", r"hparams/dann_fbank.yaml: --numbr_of_epochs is not a setting of "
                            r"it or of .*recipes/demo/condition.yaml\nFix: did you mean "
                            r"--number_of_epochs\?$"),
])
def test_a_run_that_could_not_train_is_refused_before_any_work(demo_corpus, tmp_path, setting,
                                                               message):
    with pytest.raises(ManifestError, match=message):
        train(demo_corpus, tmp_path, setting)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("option", ["--precision=fp16", "--eval_precision=fp16"])
def test_fp16_on_the_cpu_is_refused_before_any_work(demo_corpus, tmp_path, option):
    with pytest.raises(ManifestError, match=rf"{option}: fp16 needs a CUDA device; this run is "
                                            rf"on the CPU\nFix: pass {option[:-4]}bf16"):
        train(demo_corpus, tmp_path, "--device=cpu", option)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag, precision", [
    ("--bfloat16_mix_prec", "bf16"),
    ("--auto_mix_prec", r"bf16 \(mixed precision on the CPU\) or fp32"),  # not fp16, refused
])
def test_deprecated_precision_flags_are_refused_before_any_work(demo_corpus, tmp_path, flag,
                                                                precision):
    # SpeechBrain's Brain would train in their precision, and the run's
    # settings record --precision, fp32 here.
    with pytest.raises(ManifestError, match=rf"{flag}: a deprecated SpeechBrain flag, which the "
                                            rf"run's settings would not record\nFix: pass "
                                            rf"--precision={precision} instead"):
        train(demo_corpus, tmp_path, "--device=cpu", flag)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("setting, message", [
    ("bfloat16_mix_prec: True", r"bfloat16_mix_prec: True is a deprecated SpeechBrain flag, "
                                r"which the run's settings would not record\nFix: remove it and "
                                r"set precision: bf16 instead"),
    ("precision: fp16", r"precision: fp16 needs a CUDA device; this run is on the CPU\n"),
])
def test_precision_settings_of_a_model_file_are_refused_as_on_the_command_line(
        demo_corpus, tmp_path, setting, message):
    # SpeechBrain's Brain takes its run options from the model file too.
    model = tmp_path / "model.yaml"
    model.write_text(f"base: {ROOT}/hparams/dann_fbank.yaml\n{setting}\n")
    with pytest.raises(ManifestError, match=rf"^{model}: {message}"):
        train(demo_corpus, tmp_path / "run", "--device=cpu", hparams=str(model))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("removed, message", [
    ("prepare:\n    - !name:data_prep.demo.prepare_demo\n        save_folder: !ref <data_folder>\n"
     "        seed: !ref <demo_seed>\n",
     r"condition.yaml: condition file without prepare\nFix: name the condition, its prepare "
     r"steps \(\[\] when the manifests exist\)"),
    ("        trials: !ref <data_folder>/trials_source.txt\n",
     r"condition.yaml: trial list source of evaluation without trials\nFix: give each"),
])
def test_a_condition_file_without_a_required_key_names_it(demo_corpus, tmp_path, removed,
                                                          message):
    text = open("recipes/demo/condition.yaml").read()
    assert removed in text
    (tmp_path / "condition.yaml").write_text(text.replace(removed, ""))
    with pytest.raises(ManifestError, match=message):
        train(demo_corpus, tmp_path / "run", f"--condition={tmp_path / 'condition.yaml'}")
    assert not os.path.exists(tmp_path / "run")


def test_exponent_notation_without_a_dot_is_the_number_it_means():
    overrides = {"lr": "5e-4", "weight_decay": "-1E+2", "number_of_epochs": "2e1",
                 "margin": "2e-1", "model_name": "1e3"}  # a name stays a name
    typed = settings.typed_overrides("hparams/dann_fbank.yaml", overrides)
    assert typed == {"lr": 0.0005, "weight_decay": -100.0, "number_of_epochs": 20,
                     "margin": 0.2, "model_name": "1e3"}
    assert isinstance(typed["number_of_epochs"], int)  # its default is an integer


def test_save_folder_override_reaches_the_model_and_manifest_folder_the_condition(
        demo_corpus, tmp_path):
    data_folder = os.path.dirname(demo_corpus["eval"])
    brain, hparams, condition, _ = experiment.prepare_experiment([
        "hparams/dann_fbank.yaml", f"--data_folder={data_folder}",
        f"--output_folder={tmp_path}/run", f"--save_folder={tmp_path}/checkpoints", *TINY])
    assert hparams["save_folder"] == f"{tmp_path}/checkpoints"
    assert str(brain.checkpointer.checkpoints_dir) == f"{tmp_path}/checkpoints"
    assert os.path.isfile(tmp_path / "checkpoints" / "label_encoder.txt")
    assert condition["source_train"] == demo_corpus["source_train"]


def test_condition_file_sharing_a_key_with_the_model_file_is_refused(demo_corpus, tmp_path):
    condition = tmp_path / "condition.yaml"
    condition.write_text(open("recipes/demo/condition.yaml").read()
                         + "save_folder: data/prepared\n")
    with pytest.raises(ManifestError, match=r"condition.yaml: defines \['save_folder'\], which "
                                            r"hparams/dann_fbank.yaml defines too.*\nFix: rename"):
        train(demo_corpus, tmp_path / "run", f"--condition={condition}")


def test_missing_condition_file_is_a_clear_error(demo_corpus, tmp_path):
    with pytest.raises(ManifestError, match="nowhere.yaml: no such condition file"):
        train(demo_corpus, tmp_path, "--condition=nowhere.yaml")


def test_resumed_run_ends_like_an_uninterrupted_one(demo_corpus, tmp_path, monkeypatch):
    # The pseudo-labels of epoch 1 must come back from the checkpoint for epoch 2.
    args = ("--number_of_epochs=2", "--adv_weight=1.0", *ALL_TARGET_PATHS)
    whole = train(demo_corpus, tmp_path / "whole", *args)

    original = DANNBrain.on_stage_end

    def killed_after_first_epoch(self, stage, stage_loss, epoch=None):
        original(self, stage, stage_loss, epoch)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(DANNBrain, "on_stage_end", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(demo_corpus, tmp_path / "resumed", *args)
    monkeypatch.setattr(DANNBrain, "on_stage_end", original)
    resumed = train(demo_corpus, tmp_path / "resumed", *args)
    assert logged(tmp_path / "resumed", "loss")[-1] == logged(tmp_path / "whole", "loss")[-1]
    assert logged(tmp_path / "resumed", "pseudo_labelled")[-1] > 0
    assert resumed == whole


def torchrun(demo_corpus, folder, hparams, *extra, epochs=1, timeout=600, file_size=None,
             moment=None):
    """A tiny run of train_dann.py in two processes (gloo, on the CPU), for ``epochs``.

    A run still going after ``timeout`` seconds (its processes waiting for
    each other at different collectives) fails the test. torchrun is stopped
    with SIGTERM, which it passes on to the processes it started: killed, it
    would leave them waiting. With ``file_size``, no file written grows beyond
    that many bytes (RLIMIT_FSIZE; a larger write fails with EFBIG): the main
    process alone writes the run's files, so that the disk is full for it alone. With
    ``moment``, the run is killed then (:mod:`tests.integration.killed_run`).
    """
    data_folder = os.path.dirname(demo_corpus["eval"])
    tiny = [t for t in TINY if not t.startswith("--batch_size")]
    script = ["-m", "tests.integration.killed_run", *moment] if moment else ["train_dann.py"]
    command = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node=2",
               "--standalone", *script,
               hparams, f"--data_folder={data_folder}",
               f"--output_folder={folder}", *tiny, *extra, f"--number_of_epochs={epochs}",
               "--distributed_backend=gloo", "--device=cpu"]
    limited = (None if file_size is None else
               lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size)))
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__)))), preexec_fn=limited) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            stdout, stderr = process.communicate(timeout=60)
            pytest.fail(f"train_dann.py still ran in two processes after {timeout} s:\n"
                        f"{stdout[-2000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("hparams, batches, steps", [
    # 240 source crops, batches of 8, two processes: 15 steps each instead of 30.
    # With pseudo-labels at epoch 1: the speaker head's classifier grows inside DDP.
    ("hparams/dann_fbank.yaml", ["--batch_size=8", "--pseudo_label_epochs=[1]"], 15.0),
    # 17 GE2E batches of 7 speakers x 2 crops, 18 in two processes, dealt out whole: 9 each.
    ("hparams/ge2e_fbank.yaml", ["--ge2e_speakers=7", "--ge2e_utterances=2"], 9.0),
    # 1 batch of 8 speakers x 16 crops, 2 in two processes: one each, which SpeechBrain's
    # dealing of batches gave as 128 batches of one index (a TypeError at the first step),
    # and which was refused as more than each process's half of the 240 pairs.
    ("hparams/ge2e_fbank.yaml", ["--ge2e_speakers=8", "--ge2e_utterances=16"], 1.0),
])
def test_two_processes_with_gloo_split_the_data_and_finish(demo_corpus, tmp_path, hparams,
                                                           batches, steps):
    done = torchrun(demo_corpus, tmp_path, hparams, *batches)
    assert done.returncode == 0, done.stderr[-3000:]
    assert logged(tmp_path, "steps") == [steps]
    assert json.loads((tmp_path / "save" / "run_settings.json").read_text())["ddp_processes"] == 2
    assert done.stdout.count("Verification (demo)") == 1


@pytest.mark.parametrize("refused", ["run folder", "data preparation", "clustering",
                                     "verification"])
def test_a_run_the_main_process_refuses_stops_every_process_with_its_message(demo_corpus,
                                                                             tmp_path, refused):
    # The main process alone checks the run folder, prepares the data and verifies the
    # trained model; the other one stopped at its next collective, with an error of the
    # connection ("Connection closed by peer").
    if refused == "run folder":
        (tmp_path / "verification").mkdir()
        extra, message = [], f"{tmp_path}: holds the results (verification) of a run"
    elif refused == "data preparation":
        # Refused before the corpus is touched.
        extra = ["--condition=recipes/demo_text_dependent/condition.yaml", "--n_eval_speakers=1"]
        message = "n_eval_speakers is 1: not an integer in"
    elif refused == "clustering":
        # Without the audio check, a truncated target file is found when the pseudo-labels
        # embed it, before epoch 1: in the main process's share (the first half of the
        # target), which the other one waited for at the gathering of the shares.
        manifest, table = copied_manifest(demo_corpus["target_train"], str(tmp_path / "audio"))
        with open(table["wav"][3], "r+b") as audio:
            audio.truncate(1000)
        extra = [f"--target_train={manifest}", "--pseudo_label_epochs=[1]"]
        message = f"{table['wav'][3]}: has "
    else:
        # Without the audio check, the truncated file is found when it is embedded, after
        # training.
        manifest, table = copied_manifest(demo_corpus["target_eval"], str(tmp_path / "audio"))
        with open(table["wav"][3], "r+b") as audio:
            audio.truncate(1000)
        evaluation = {"target": {"manifest": manifest, "trials": demo_corpus["trials_target"]}}
        extra = [f"--evaluation={json.dumps(evaluation)}"]
        message = f"{table['wav'][3]}: has "
    done = torchrun(demo_corpus, tmp_path, "hparams/dann_fbank.yaml", "--batch_size=8", *extra)
    assert done.returncode != 0
    assert done.stderr.count(message) == 2, done.stderr[-3000:]
    assert "Connection closed" not in done.stderr  # torchrun's own traceback stays


@pytest.mark.parametrize("written", ["experiment folder", "record", "training log"])
def test_a_file_the_main_process_cannot_write_stops_every_process_with_its_error(demo_corpus,
                                                                                tmp_path,
                                                                                written):
    # The main process alone writes the run's files; the other one went on to its next
    # collective operation, where it failed with "Connection closed by peer".
    error = "OSError: [Errno 27] File too large"
    if written == "experiment folder":
        # SpeechBrain's copy of train_dann.py (4 kB) into the run's folder, after which
        # the other process went on to the label encoder's creation.
        file_size = 1_000
    elif written == "record":
        # save/run_settings.json (8 kB), then hyperparams.yaml (16 kB), written once the
        # data are accepted; the other process went on to the DDP wrapping.
        file_size = 12_000
    else:
        # train_log.txt, which the main process reads as the training starts, and writes
        # without the lines of a run killed before its first checkpoint: a folder.
        file_size, error = None, "IsADirectoryError: [Errno 21] Is a directory"
        (tmp_path / "train_log.txt").mkdir()
    done = torchrun(demo_corpus, tmp_path, "hparams/dann_fbank.yaml", "--batch_size=8",
                    file_size=file_size, timeout=300)
    assert done.returncode != 0
    assert f"RuntimeError: the main process failed with {error}" in done.stderr, \
        done.stderr[-3000:]
    assert "Connection closed" not in done.stderr
    assert not list(tmp_path.glob("save/CKPT*"))
    if written == "record":
        for record in ("hyperparams.yaml", "condition.yaml", "provenance.json",
                       "save/run_settings.json"):
            assert not os.path.exists(tmp_path / record), record


def test_a_debug_run_of_two_epochs_in_two_processes_finishes(demo_corpus, tmp_path):
    # SpeechBrain's --debug gave each process a temporary checkpoint folder of its own: at
    # the second epoch's save_and_keep_only, the main process deleted the first checkpoint
    # and the other, which had none to delete, waited for it at another collective, for ever.
    done = torchrun(demo_corpus, tmp_path, "hparams/dann_fbank.yaml", "--batch_size=8",
                    "--debug", "--debug_batches=2", "--debug_epochs=2", epochs=2, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert logged(tmp_path, "steps") == [2.0, 2.0]
    assert "Deleted checkpoint in" in done.stdout + done.stderr
    assert not list(tmp_path.glob("save/CKPT*"))  # they were in the temporary folder


@pytest.mark.slow
def test_two_processes_killed_in_a_save_resume_to_the_uninterrupted_runs_log_and_results(
        demo_corpus, tmp_path):
    # Killed while the checkpoint of epoch 2 is written: resumed at the end of epoch 1, the
    # run clusters the target again, each process embedding its share. Each embedded it with
    # the running statistics of its own last batch's BatchNorm, which the checkpoint keeps
    # only of the main process: the resumed run's clusters were other ones.
    args = ("hparams/dann_fbank.yaml", "--batch_size=8", "--pseudo_label_epochs=[2]")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = torchrun(demo_corpus, whole, *args, epochs=2, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    done = torchrun(demo_corpus, killed, *args, epochs=2, timeout=300, moment=["save", "2"])
    assert done.returncode != 0 and list(killed.glob("save/.saving/CKPT*")), done.stderr[-3000:]
    done = torchrun(demo_corpus, killed, *args, epochs=2, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (killed / "train_log.txt").read_text() == (whole / "train_log.txt").read_text()
    assert (killed / "verification" / "summary.csv").read_bytes() == \
        (whole / "verification" / "summary.csv").read_bytes()
    resumed = re.findall(r"Resuming the run from the checkpoint \S+, saved at the end of "
                         r"(epoch \d of \d)\n", (killed / "log.txt").read_text())
    assert resumed == ["epoch 1 of 2"]


def test_bad_trial_list_fails_before_training(demo_corpus, tmp_path):
    first, second = pd.read_csv(demo_corpus["target_eval"])["ID"][:2]
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 {first} {second}\n0 {first} ghost_007\n")
    with pytest.raises(ManifestError, match="trials name IDs that are not in .*\n  line 2: test 'ghost_007'"):
        train(demo_corpus, tmp_path / "run", f"--evaluation={{target: {{manifest: {demo_corpus['target_eval']}, trials: {trials}}}}}")
    assert not os.path.exists(tmp_path / "run" / "save" / "label_encoder.txt")


def test_evaluation_speakers_in_the_training_data_fail_before_training(demo_corpus, tmp_path):
    leaked = tmp_path / "target_train.csv"
    pd.concat([pd.read_csv(demo_corpus["target_train"]),
               pd.read_csv(demo_corpus["target_eval"])[:2]]).to_csv(leaked, index=False)
    with pytest.raises(ManifestError, match=(
            r"trials_target.txt: 1 speakers and 2 audio files of these trials are in the "
            r"training manifest .*target_train.csv\n  speaker tare000: 2 training utterances")):
        train(demo_corpus, tmp_path / "run", f"--target_train={leaked}")
    assert not os.path.exists(tmp_path / "run" / "save" / "label_encoder.txt")
    data_folder = os.path.dirname(demo_corpus["eval"])
    _, hparams, _, _ = experiment.prepare_experiment([
        "hparams/dann_fbank.yaml", f"--data_folder={data_folder}", f"--target_train={leaked}",
        f"--output_folder={tmp_path}/allowed", "--allow_speaker_overlap=True", *TINY])
    assert hparams["allow_speaker_overlap"] is True


def test_audio_truncated_after_the_stamped_check_is_named(demo_corpus, tmp_path):
    manifest, table = copied_manifest(demo_corpus["target_eval"], str(tmp_path / "audio"))
    assert check_manifest_audio_once(manifest)
    wav = table["wav"][3]
    with open(wav, "r+b") as audio:
        audio.truncate(1000)
    evaluation = {"target": {"manifest": manifest, "trials": demo_corpus["trials_target"]}}
    # The stamp no longer vouches for the audio: the check before the run names the row.
    with pytest.raises(ManifestError, match=rf"{table['ID'][3]}: stop \d+ beyond the file's "
                                            r"\d+ samples"):
        train(demo_corpus, tmp_path / "checked", f"--evaluation={json.dumps(evaluation)}",
              *SHORT, tiny=[t for t in TINY if not t.startswith("--check_audio")])
    # Without the check (or after it), reading the file names it.
    with pytest.raises(ManifestError, match=rf"{wav}: has \d+ samples from sample 0 on, where "
                                            r"the manifest's row needs \d+"):
        train(demo_corpus, tmp_path / "run", f"--evaluation={json.dumps(evaluation)}", *SHORT)


def test_evaluation_utterances_shorter_than_the_models_take_fail_before_training(demo_corpus,
                                                                                 tmp_path):
    # The demo's shortest evaluation utterances last 0.81 s.
    with pytest.raises(ManifestError, match=r"source_eval.csv: \d+ inputs are shorter than "
                                            r"min_embed_seconds \(1.0 s\)"):
        train(demo_corpus, tmp_path, "--min_embed_seconds=1.0", "--crop_seconds=1.0")
    # Nothing records a run that never trained.
    for record in ("hyperparams.yaml", "condition.yaml", "provenance.json",
                   "save/run_settings.json", "save/label_encoder.txt"):
        assert not os.path.exists(tmp_path / record), record


def test_audio_is_checked_once_per_manifest_by_the_main_process(demo_corpus, tmp_path,
                                                                monkeypatch):
    evaluation = {name: {"manifest": demo_corpus["eval"], "trials": demo_corpus[f"trials_{name}"]}
                  for name in ("source", "target")}
    argv = ["hparams/dann_fbank.yaml", f"--data_folder={os.path.dirname(demo_corpus['eval'])}",
            f"--output_folder={tmp_path}", f"--evaluation={json.dumps(evaluation)}", *TINY]
    _, hparams, condition, _ = experiment.prepare_experiment(argv)
    checked = []
    monkeypatch.setattr(experiment, "check_manifest_audio_once", checked.append)
    hparams["check_audio"] = True
    monkeypatch.setattr(sb.utils.distributed, "if_main_process", lambda: False)
    experiment.dataio_prep(hparams, condition)
    assert checked == []
    monkeypatch.setattr(sb.utils.distributed, "if_main_process", lambda: True)
    experiment.dataio_prep(hparams, condition)
    assert checked == [demo_corpus["source_train"], demo_corpus["target_train"],
                       demo_corpus["eval"]]


@pytest.mark.parametrize("model, family, extra", [
    ("dann_wavlm", "wavlm", []),
    ("dann_wav2vec2", "wav2vec2", []),
    ("dann_wavlm_xvector", "wavlm", ["--adv_layer=blocks.14", "--adv_input_size=96"]),
])
def test_ssl_hparams_train_and_write_the_layer_weights(demo_corpus, tiny_ssl, model, family,
                                                       extra, tmp_path):
    results = train_ssl(demo_corpus, tmp_path, model, tiny_ssl[family], *extra, *SHORT)
    assert set(results) == {"source", "target"}
    weights = pd.read_csv(tmp_path / "layer_weights.csv")
    assert len(weights) == TINY_SSL["num_hidden_layers"] + 1
    assert weights["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    assert weights["weight"].std() > 0  # they trained away from uniform
    assert os.path.isfile(tmp_path / "layer_weights.png")


def test_frozen_ssl_is_not_trained_and_fine_tuned_ssl_is(demo_corpus, tiny_ssl, tmp_path):
    def checkpointed(folder):
        checkpoint = next(p for p in os.listdir(folder / "save") if p.startswith("CKPT"))
        return torch.load(folder / "save" / checkpoint / "frontend.ckpt"), \
            sorted(os.listdir(folder / "save" / checkpoint))

    frozen, fine_tuned = tmp_path / "frozen", tmp_path / "fine_tuned"
    train_ssl(demo_corpus, frozen, "dann_wavlm", tiny_ssl["wavlm"], "--number_of_epochs=1")
    train_ssl(demo_corpus, fine_tuned, "dann_wavlm", tiny_ssl["wavlm"], "--freeze_ssl=False",
              "--number_of_epochs=1")
    # Frozen, the checkpoint holds what trained (the layer weights), not the SSL model.
    frozen_state, frozen_files = checkpointed(frozen)
    assert list(frozen_state) == ["layer_sum.weights"]
    # Nor an optimiser of the SSL model, which takes no step.
    assert "ssl_optimizer.ckpt" not in frozen_files
    initial = {k: v for k, v in SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "cache"))
               .state_dict().items() if k.startswith("ssl.")}
    tuned_state, files = checkpointed(fine_tuned)
    tuned = {k: v for k, v in tuned_state.items() if k.startswith("ssl.")}
    assert initial.keys() == tuned.keys() and len(tuned) > 10
    # The same random checkpoint in both runs: fine-tuning moves the transformer (own
    # optimiser) but not the CNN feature encoder.
    moved = {k for k in initial if not torch.equal(initial[k], tuned[k])}
    assert moved and all("feature_extractor" not in k for k in moved)
    assert any("encoder.layers" in k for k in moved)
    assert "ssl_optimizer.ckpt" in files


def test_ssl_dim_other_than_the_models_hidden_size_is_refused_before_training(
        demo_corpus, tiny_ssl, tmp_path):
    tiny = [t for t in TINY if not t.startswith("--n_mels")]
    with pytest.raises(ManifestError, match=rf"--ssl_dim=768 is not the hidden size of "
                                            rf"{tiny_ssl['wav2vec2']}, {TINY_SSL_DIM}\n"
                                            rf"Fix: pass --ssl_dim={TINY_SSL_DIM}$"):
        train(demo_corpus, tmp_path, f"--ssl_source={tiny_ssl['wav2vec2']}",
              f"--ssl_cache={tmp_path}/cache", hparams="hparams/dann_wav2vec2.yaml", tiny=tiny)
    assert not (tmp_path / "hyperparams.yaml").exists()


def test_frozen_ssl_checkpoint_recovers_the_same_embeddings(demo_corpus, tiny_ssl, tmp_path):
    import evaluate

    options = [f"--ssl_source={tiny_ssl['wavlm']}", f"--ssl_dim={TINY_SSL_DIM}",
               f"--ssl_cache={tmp_path}/cache", "--number_of_epochs=1"]
    results = train_ssl(demo_corpus, tmp_path, "dann_wavlm", tiny_ssl["wavlm"], options[-1])
    caches = sorted(glob.glob(os.path.join(tmp_path, "embeddings_*.pt")))
    assert caches
    trained = [torch.load(cache) for cache in caches]
    for cache in caches:
        os.remove(cache)  # embed again, from the checkpoint
    data_folder = os.path.dirname(demo_corpus["eval"])
    tiny = [t for t in TINY if not t.startswith("--n_mels")]
    assert evaluate.main(["hparams/dann_wavlm.yaml", f"--data_folder={data_folder}",
                          f"--output_folder={tmp_path}", *tiny, *options]) == results
    for cache, embeddings in zip(caches, trained):
        recovered = torch.load(cache)
        assert recovered.keys() == embeddings.keys()
        assert all(torch.equal(recovered[utt], vector) for utt, vector in embeddings.items())


def test_frame_level_adversary_trains(demo_corpus, tmp_path):
    # With an update of the discriminator's own, on the frames it keeps from the step.
    train(demo_corpus, tmp_path, "--adv_layer=mfa", "--adv_input_size=96", "--adv_warmup=0",
          "--adv_weight=0.3", "--disc_steps=2", *SHORT)
    assert 0.0 < logged(tmp_path, "domain_loss")[0] < 5.0
    assert logged(tmp_path, "adv_coefficient")[0] > 0.0


def killed_at_batch(number, monkeypatch, demo_corpus, folder, *args):
    """A run of ``args`` into ``folder`` stopped as a kill would stop it, as its ``number``-th batch starts."""
    original, batches = DANNBrain.fit_batch, []

    def interrupted(self, batch):
        batches.append(self.step)
        if len(batches) == number:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(DANNBrain, "fit_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(demo_corpus, folder, *args)
    monkeypatch.setattr(DANNBrain, "fit_batch", original)


def test_a_run_started_again_after_a_kill_before_its_first_checkpoint_logs_each_line_once(
        demo_corpus, tmp_path, monkeypatch):
    # The clustering of epoch 1 is logged before its first batch, where the kill comes.
    args = ("--number_of_epochs=1", "--adv_weight=1.0", *ALL_TARGET_PATHS)
    killed_at_batch(1, monkeypatch, demo_corpus, tmp_path, *args)
    assert len(logged(tmp_path, "clusters")) == 1
    train(demo_corpus, tmp_path, *args)
    assert len(logged(tmp_path, "clusters")) == 1 and len(logged(tmp_path, "loss")) == 1


def test_a_run_resumed_inside_a_clustered_epoch_keeps_the_epochs_pseudo_labels(
        demo_corpus, tmp_path, monkeypatch):
    # Pseudo-labels clustered at the start of epoch 1, a checkpoint after its step 5.
    args = ("--number_of_epochs=1", "--ckpt_interval_steps=5", "--adv_weight=1.0",
            *ALL_TARGET_PATHS)
    whole = train(demo_corpus, tmp_path / "whole", *args)
    killed_at_batch(8, monkeypatch, demo_corpus, tmp_path / "resumed", *args)
    original, clustered = DANNBrain.update_pseudo_labels, []
    monkeypatch.setattr(DANNBrain, "update_pseudo_labels", lambda self, epoch: (
        clustered.append(epoch), original(self, epoch)))
    resumed = train(demo_corpus, tmp_path / "resumed", *args)
    # The checkpoint's pseudo-labels, not a clustering by the model of step 5.
    assert clustered == []
    assert logged(tmp_path / "resumed", "loss") == logged(tmp_path / "whole", "loss")
    assert resumed == whole


def test_run_resumes_inside_an_epoch_from_an_intra_epoch_checkpoint(demo_corpus, tmp_path,
                                                                    monkeypatch):
    args = ("--number_of_epochs=1", "--ckpt_interval_steps=5", "--adv_weight=0.3",
            "--mmd_weight=0.3")
    # Every step's values, as the epoch's statistics receive them.
    steps, add = [], EpochStatistics.add
    monkeypatch.setattr(EpochStatistics, "add", lambda self, **values: (
        steps[-1].update({k: float(v.detach()) for k, v in values.items()}), add(self, **values)))
    monkeypatch.setattr(DANNBrain, "on_fit_batch_start",
                        lambda self, batch, should_step: steps.append({}))
    killed_at_batch(8, monkeypatch, demo_corpus, tmp_path, *args)
    before_checkpoint = steps[:5]
    steps.clear()
    original, counted = DANNBrain.fit_batch, []
    monkeypatch.setattr(DANNBrain, "fit_batch",
                        lambda self, batch: counted.append(1) or original(self, batch))
    logged_stats, on_stage_end = [], DANNBrain.on_stage_end
    monkeypatch.setattr(DANNBrain, "on_stage_end", lambda self, *a, **k: (
        logged_stats.append(self.stats.means()), on_stage_end(self, *a, **k)))
    train(demo_corpus, tmp_path, *args)
    # 15 steps an epoch; the checkpoint after step 5 leaves 10 to run.
    assert len(counted) == 10 and len(steps) == 10
    assert logged(tmp_path, "steps") == [15.0]
    # The epoch's means are over its 15 steps, the 5 before the checkpoint included.
    whole_epoch = before_checkpoint + steps
    for key in ("speaker_loss", "domain_loss", "domain_accuracy", "adv_coefficient",
                "mmd_loss"):
        assert logged_stats[0][key] == pytest.approx(
            sum(step[key] for step in whole_epoch) / 15, rel=1e-12), key


def recorded_discriminator_updates(monkeypatch):
    """``(optimizer steps so far, modules changed)`` of each call with discriminator updates."""
    original, updates = DANNBrain.train_discriminator, []

    def compared(self, steps):
        before = {name: p.detach().clone() for name, p in self.modules.named_parameters()}
        original(self, steps)
        if steps:
            updates.append((self.optimizer_step, {
                name.split(".")[0] for name, p in self.modules.named_parameters()
                if not torch.equal(p, before[name])}))

    monkeypatch.setattr(DANNBrain, "train_discriminator", compared)
    return updates


def test_extra_discriminator_updates_change_the_discriminator_alone(demo_corpus, tmp_path,
                                                                     monkeypatch):
    updates = recorded_discriminator_updates(monkeypatch)
    train(demo_corpus, tmp_path, "--disc_steps=3", "--disc_lr=0.01", *SHORT)
    assert [changed for _, changed in updates] == [{"domain_discriminator"}] * 3


def test_pseudo_labels_add_target_classes_to_the_speaker_head(demo_corpus, tmp_path):
    # Centred embeddings and a low confidence bar, whose share of kept crops this checks.
    train(demo_corpus, tmp_path, "--number_of_epochs=2", "--pseudo_label_epochs=[2]",
          "--pseudo_whiten=False", "--pseudo_min_silhouette=0.0")
    assert logged(tmp_path, "pseudo_labelled")[0] > 0.5  # epoch 2 only: labels from epoch 2 on
    assert logged(tmp_path, "clusters")[0] >= 2
    assert 0 < logged(tmp_path, "nmi")[0] <= 1  # the demo's target manifest has its speakers
    save = glob.glob(os.path.join(tmp_path, "save", "CKPT*"))[0]
    pseudo_speakers = json.load(open(os.path.join(save, "pseudo_labels.ckpt")))["n_speakers"]
    # The classifier grew from the 24 source speakers by a row per pseudo-speaker.
    assert pseudo_speakers >= 2
    assert torch.load(os.path.join(save, "classifier.ckpt"))["weight"].shape[0] == \
        24 + pseudo_speakers


def test_the_oracle_trains_on_the_target_manifest_speakers(demo_corpus, tmp_path):
    # More neighbours than target utterances: the oracle builds no neighbour graph.
    train(demo_corpus, tmp_path / "oracle", "--number_of_epochs=2", "--pseudo_label_epochs=[2]",
          "--pseudo_oracle=True", "--pseudo_neighbours=1000")
    assert logged(tmp_path / "oracle", "nmi") == [1.0]
    assert logged(tmp_path / "oracle", "kept") == [1.0]
    assert logged(tmp_path / "oracle", "pseudo_labelled")[0] == 1.0
    unlabelled = tmp_path / "target_unlabelled.csv"
    pd.read_csv(demo_corpus["target_train"]).assign(spk_id="").to_csv(unlabelled, index=False)
    # Refused from the manifest, which the message names, before any audio is read.
    with pytest.raises(ValueError, match=f"{unlabelled}: pseudo_oracle takes the target "
                                         "manifest's spk_id"):
        train(demo_corpus, tmp_path / "no_labels", f"--target_train={unlabelled}",
              "--pseudo_label_epochs=[1]", "--pseudo_oracle=True", *SHORT)


@pytest.mark.parametrize("setting, message", [
    ("--pseudo_neighbours=0", "pseudo_neighbours must be an integer >= 1; got 0"),
    ("--pseudo_neighbours=240", "with 240 neighbours per utterance needs more target utterances "
                                "than that; got 240"),
    ("--pseudo_label_epochs=[0, 2]", r"pseudo_label_epochs \[0, 2\] must be epochs of the run"),
    # An epoch that is no whole number would never come: the run would train without them.
    ("--pseudo_label_epochs=[1.5]", r"pseudo_label_epochs \[1.5\] must be epochs of the run, "
                                    "whole numbers from 1"),
    ("--pseudo_neighbour_search=hnsw", "pseudo_neighbour_search must be one of exact, ivf"),
    ("--pseudo_infomap_trials=0", "pseudo_infomap_trials must be an integer >= 1; got 0"),
    ("--pseudo_min_silhouette=1", "pseudo_min_silhouette must be a number below 1; got 1"),
    ("--disc_steps=0", "disc_steps must be an integer >= 1; got 0"),
    ("--domain_label_smoothing=1", r"domain_label_smoothing must be in \[0, 1\); got 1"),
    ("--mmd_weight=-1", "mmd_weight must be >= 0; got -1"),
    ("--adversary=wgan", "adversary 'wgan' is not one of grl, vanilla, least_squares"),
    ("--margin_type=arc", "margin_type 'arc' is not one of aam, am"),
])
def test_bad_domain_settings_fail_before_training(demo_corpus, tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        train(demo_corpus, tmp_path, setting)
    assert not os.path.exists(tmp_path / "train_log.txt")


@pytest.mark.parametrize("oracle", [False, True])
def test_a_target_of_no_utterance_to_embed_fails_naming_the_limits_before_training(
        demo_corpus, tmp_path, oracle):
    # Every target utterance below min_embed_seconds: fewer neighbours would not help, nor
    # the oracle's labels, which label the same utterances.
    table = pd.read_csv(demo_corpus["target_train"])
    table["stop"] = table["start"] + table["sample_rate"] // 5
    table["duration"] = (table["stop"] - table["start"]) / table["sample_rate"]
    table.to_csv(tmp_path / "target_short.csv", index=False)
    with pytest.raises(ManifestError) as refused:
        train(demo_corpus, tmp_path / "run", f"--target_train={tmp_path / 'target_short.csv'}",
              "--pseudo_neighbours=5", "--number_of_epochs=2", "--pseudo_label_epochs=[2]",
              f"--pseudo_oracle={oracle}")
    assert "none of the 240 target training utterances is within min_embed_seconds and " \
           "max_embed_seconds" in str(refused.value)
    assert "cut the target's recordings into rows (start, stop)" in str(refused.value)
    assert "pseudo_neighbours" not in str(refused.value)
    assert not os.path.exists(tmp_path / "run" / "train_log.txt")


def test_too_few_target_utterances_to_embed_for_the_neighbours_fail_before_training(
        demo_corpus, tmp_path):
    # 240 target utterances, of which the 200 below min_embed_seconds are never clustered.
    table = pd.read_csv(demo_corpus["target_train"])
    table.loc[40:, "stop"] = table.loc[40:, "start"] + table.loc[40:, "sample_rate"] // 5
    table["duration"] = (table["stop"] - table["start"]) / table["sample_rate"]
    table.to_csv(tmp_path / "target_short.csv", index=False)
    with pytest.raises(ManifestError, match="with 50 neighbours per utterance needs more "
                                            "target utterances than that; got 40"):
        train(demo_corpus, tmp_path / "run", f"--target_train={tmp_path / 'target_short.csv'}",
              "--pseudo_neighbours=50", "--number_of_epochs=2", "--pseudo_label_epochs=[2]")
    assert not os.path.exists(tmp_path / "run" / "train_log.txt")
    assert "200 of 240 target training utterances are outside min_embed_seconds" in (
        tmp_path / "run" / "log.txt").read_text()


# The GE2E head: batches of 4 speakers x 4 crops, the tiny model of the others.
GE2E_TINY = [t for t in TINY if not t.startswith("--batch_size")] + [
    "--ge2e_speakers=4", "--ge2e_utterances=4"]


def train_ge2e(demo_corpus, folder, *extra):
    return train(demo_corpus, folder, *extra, hparams="hparams/ge2e_fbank.yaml", tiny=GE2E_TINY)


@pytest.fixture
def one_thread():
    """torch on one thread for the test, whatever OMP_NUM_THREADS says.

    Multi-threaded kernels sum in an order that depends on the number of
    threads, and a few epochs of training amplify the last-bit differences
    into different trajectories: one thread makes a short training run the
    same at any thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ge2e_head_trains_on_speaker_batches_and_verifies(demo_corpus, tmp_path, monkeypatch,
                                                          one_thread):
    original, batches = DANNBrain.fit_batch, []

    def recorded(self, batch):
        batches.append(batch[0].spk_id_encoded.data.flatten().tolist())
        return original(self, batch)

    monkeypatch.setattr(DANNBrain, "fit_batch", recorded)
    # The speaker head alone: the domain losses, which pull against it once
    # their warm-up ends, would make its loss curve a measure of them too.
    results = train_ge2e(demo_corpus, tmp_path, "--number_of_epochs=3", "--lr=0.005",
                         "--adv_weight=0", "--mmd_weight=0")
    # 240 source and 240 target crops: 15 batches of 16 an epoch, each 4 speakers x 4.
    assert logged(tmp_path, "steps") == [15.0] * 3 and len(batches) == 45
    for speakers in batches:
        blocks = torch.tensor(speakers).reshape(4, 4)
        assert (blocks == blocks[:, :1]).all() and len(set(blocks[:, 0].tolist())) == 4
    losses = logged(tmp_path, "speaker_loss")
    assert losses[-1] < 0.8 * losses[0], losses
    assert set(results) == {"source", "target"}
    assert all(0.0 < metrics["eer"] < 0.6 for metrics in results.values())
    checkpoint, = glob.glob(os.path.join(tmp_path, "save", "CKPT*"))
    assert "classifier.ckpt" not in os.listdir(checkpoint)
    head = torch.load(os.path.join(checkpoint, "ge2e_loss.ckpt"))
    assert float(head["w"]) != 10.0 and float(head["b"]) != -5.0  # trained with the model


@pytest.mark.parametrize("domain", ["source", "target"])
def test_a_ge2e_epoch_takes_the_batches_of_the_longer_training_set(demo_corpus, tmp_path, domain):
    # 240 crops of one domain and 120 of the other: 15 batches of 16, as the margin heads'.
    table = pd.read_csv(demo_corpus[f"{domain}_train"])
    halved = tmp_path / f"{domain}_half.csv"
    table[table["spk_id"].isin(sorted(set(table["spk_id"]))[:12])].to_csv(halved, index=False)
    data_folder = os.path.dirname(demo_corpus["eval"])
    _, _, _, data = experiment.prepare_experiment([
        "hparams/ge2e_fbank.yaml", f"--data_folder={data_folder}",
        f"--output_folder={tmp_path / 'run'}", *GE2E_TINY, f"--{domain}_train={halved}"])
    assert len(pd.read_csv(halved)) == 120
    assert data["train_pairs"].steps_per_epoch(16) == 15


@pytest.mark.parametrize("setting, message", [
    ("--pseudo_label_epochs=[2]", r"pseudo_label_epochs \[2\] train target pseudo-speakers in "
                                  "the speaker classifier, and the GE2E head has none"),
    ("--batch_size=32", r"batch_size must be ge2e_speakers \* ge2e_utterances \(4 \* 4 = 16\); "
                        "got 32"),
    ("--ge2e_utterances=1", "ge2e_speakers and ge2e_utterances must be integers >= 2"),
    ("--ge2e_speakers=30", "ge2e_speakers 30 exceeds the 24 speakers of the source"),
])
def test_bad_ge2e_settings_fail_before_training(demo_corpus, tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        train_ge2e(demo_corpus, tmp_path, setting)
    assert not os.path.exists(tmp_path / "hyperparams.yaml")  # stopped before the run began


def test_another_model_file_on_a_ge2e_run_is_told_how_it_differs(demo_corpus, tmp_path):
    """Its checkpoints have no classifier.ckpt, which dann_fbank.yaml's modules need: they
    are the run's all the same, so evaluating or resuming the run with that file is refused
    by the run's settings, not taken for a run without checkpoints (\"train it first\")."""
    import evaluate

    train_ge2e(demo_corpus, tmp_path, *SHORT, "--debug_persistently")
    differs = r"save/run_settings.json: the run's checkpoints were trained with other " \
              r"settings:\n  model_name: \"ge2e_fbank\" -> \"dann_fbank\""
    for script in (evaluate, train_dann):
        with pytest.raises(ManifestError, match=differs):
            train(demo_corpus, tmp_path, "--number_of_epochs=1", script=script)


def test_a_ge2e_batch_too_large_for_the_epoch_names_the_settings_that_make_it(demo_corpus,
                                                                               tmp_path):
    """The GE2E head refuses a --batch_size: the fix names ge2e_speakers and ge2e_utterances."""
    # 240 pairs an epoch: 16 x 16 crops fill no batch, 4 x 4 fill 15.
    with pytest.raises(ManifestError, match=r"--batch_size=256 is more than the 240 training "
                                            r"pairs .*\nFix: pass --ge2e_speakers and "
                                            r"--ge2e_utterances whose product is 240 or less"):
        train_ge2e(demo_corpus, tmp_path, "--ge2e_speakers=16", "--ge2e_utterances=16")
    with pytest.raises(ManifestError, match=r"not from 1 to the 15 steps of an epoch: .*\nFix: "
                                            r"pass --grad_accumulation_factor=1 to 15, or a "
                                            r"smaller --ge2e_speakers or --ge2e_utterances$"):
        train_ge2e(demo_corpus, tmp_path, "--grad_accumulation_factor=16")
    assert not os.path.exists(tmp_path / "hyperparams.yaml")


def test_gradient_accumulation_and_mixed_precision_with_extra_discriminator_updates(
        demo_corpus, tmp_path, monkeypatch):
    """bf16 autocast (CPU), optimisers stepping every 2 batches, 2 discriminator updates a step."""
    updates, batches = recorded_discriminator_updates(monkeypatch), []
    monkeypatch.setattr(DANNBrain, "on_fit_batch_end",
                        lambda self, batch, outputs, loss, should_step: batches.append(
                            (should_step, self.progress())))
    train(demo_corpus, tmp_path, "--precision=bf16", "--grad_accumulation_factor=2",
          "--disc_steps=2", "--number_of_epochs=1", "--debug", "--debug_batches=4",
          "--debug_epochs=1")
    # The extra update follows each optimiser step, and only those.
    assert [should_step for should_step, _ in batches] == [False, True, False, True]
    assert updates == [(1, {"domain_discriminator"}), (2, {"domain_discriminator"})]
    # The schedule counts batches (15 an epoch), as without accumulation.
    assert [progress for _, progress in batches] == pytest.approx([1 / 15, 2 / 15, 3 / 15, 4 / 15])
    assert logged(tmp_path, "steps") == [4.0]


def test_an_epochs_batches_past_its_last_step_do_not_reach_the_next_epochs_discriminator(
        demo_corpus, tmp_path, monkeypatch):
    # 3 batches an epoch, steps every 2: the third batch adds no step, as SpeechBrain
    # drops its gradients at the next epoch's start.
    read, original = [], DANNBrain.train_discriminator

    def counted(self, steps):
        read.append(len(self.domain_items))
        original(self, steps)

    monkeypatch.setattr(DANNBrain, "train_discriminator", counted)
    train(demo_corpus, tmp_path, "--adversary=vanilla", "--grad_accumulation_factor=2",
          "--number_of_epochs=2", "--debug", "--debug_batches=3", "--debug_epochs=2",
          *ADVERSARY_ONLY)
    # At each epoch's one step, both calls (the GAN's updates before the encoder's loss,
    # none after) read its two batches.
    assert read == [2, 2, 2, 2]


def newest_weights(folder, module="embedding_model"):
    """The parameters of ``module`` in the run's newest checkpoint."""
    return torch.load(max(glob.glob(os.path.join(folder, "save", "CKPT*", f"{module}.ckpt"))))


def test_intra_epoch_checkpoint_waits_for_the_step_of_accumulated_gradients(
        demo_corpus, tmp_path, monkeypatch):
    # The optimisers step at every second batch; a checkpoint is due after batch 3.
    args = ("--number_of_epochs=1", "--grad_accumulation_factor=2", "--ckpt_interval_steps=3",
            "--adv_weight=0.3", "--adv_warmup=0", *ADVERSARY_ONLY)
    train(demo_corpus, tmp_path / "whole", *args)
    killed_at_batch(6, monkeypatch, demo_corpus, tmp_path / "killed", *args)
    # Saved after batch 4, whose gradients, with batch 3's, the optimisers took.
    saved = glob.glob(str(tmp_path / "killed" / "save" / "CKPT*" / "brain.ckpt"))
    assert [yaml.safe_load(open(path))["step"] for path in saved] == [4]
    train(demo_corpus, tmp_path / "killed", *args)
    whole, resumed = newest_weights(tmp_path / "whole"), newest_weights(tmp_path / "killed")
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
