"""Model files on their bases: what a model file sets replaces its base's value, in place."""

import os
import re
import sys
from types import SimpleNamespace

import pytest
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml

from local import settings
from local.data.manifest_io import write_manifest
from local.errors import ManifestError
from local.evaluation.verification import check_score_norm
from local.model.adversaries import adversary_class, make_adversary
from local.model.domain_branch import AdversarialSchedule
from local.model.pseudo_labels import check_min_silhouette, check_neighbours, check_trials
from local.model.speaker_heads import margin_softmax_loss
from local.settings import (
    check_condition_files,
    check_device,
    check_precision,
    check_ssl_dim,
    check_trainable,
    load_condition,
    load_model_hparams,
    model_text,
    parse_arguments,
    passed_options,
    plain_values,
    referenced_defaults,
    typed_overrides,
)


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


BASE = """\
width: 4
depth: 2
model: !PLACEHOLDER
layer: !new:torch.nn.Linear
    in_features: !ref <width>
    out_features: !ref <depth>
"""


def test_a_model_file_replaces_its_base_values_in_place_and_adds_its_own(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "base: base.yaml\nwidth: 8\nmodel: small\nextra: 1\n")
    text = model_text(child)
    assert [line.split(":")[0] for line in text.splitlines() if line and line[0] != " "] == [
        "width", "depth", "model", "layer", "extra"]
    hparams = load_hyperpyyaml(text)
    assert hparams["layer"].in_features == 8 and hparams["model"] == "small"
    # Overrides reach the base's keys through the model file.
    assert load_model_hparams(child, {"depth": 3})["layer"].out_features == 3
    assert plain_values(child) == {"width": 8, "depth": 2, "model": "small", "layer": None,
                                   "extra": 1}
    assert typed_overrides(child, {"depth": "5e0"}) == {"depth": 5}


def test_bases_chain_and_the_nearest_value_wins(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "middle.yaml", "base: base.yaml\nwidth: 6\nmodel: m\n")
    child = write(tmp_path, "child.yaml", "base: middle.yaml\nwidth: 7\n")
    hparams = load_model_hparams(child, {})
    assert (hparams["layer"].in_features, hparams["model"]) == (7, "m")


def test_a_missing_or_circular_base_is_a_message(tmp_path):
    missing = write(tmp_path, "child.yaml", "base: nowhere.yaml\nwidth: 1\n")
    with pytest.raises(ManifestError, match="its base nowhere.yaml does not exist"):
        model_text(missing)
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ManifestError, match="is its own base"):
        model_text(str(tmp_path / "a.yaml"))


def test_a_module_that_refuses_its_values_is_named_with_the_line_that_refused_them(tmp_path):
    # SpeechBrain's ResNet takes four stages and says so by a bare assert.
    with pytest.raises(ManifestError, match=r"^hparams/dann_resnet.yaml: a module cannot be built "
                                            r"with these settings: AssertionError at .*ResNet.py:"
                                            r"\d+: assert len\(channels\) == 4\nFix: check"):
        load_model_hparams("hparams/dann_resnet.yaml", {
            "condition": "demo", "n_speakers": 24, "output_folder": str(tmp_path),
            "channels": [8, 8, 8, 8, 8]})


def test_every_model_file_loads_whole(tmp_path):
    for name in ("dann_fbank", "dann_resnet", "gan_resnet", "ge2e_fbank"):
        hparams = load_model_hparams(f"hparams/{name}.yaml", {
            "condition": "demo", "n_speakers": 24, "output_folder": str(tmp_path)})
        assert set(hparams["modules"]) == {"frontend", "embedding_model", "speaker_head",
                                           "domain_discriminator"}
    assert type(hparams["speaker_head"]).__name__ == "GE2EHead"
    assert hparams["classifier"] is None


DEMO_TRIALS = "        trials: !ref <data_folder>/trials_target.txt\n"


@pytest.mark.parametrize("added, message", [
    ("        min_dcf: [0.01, 10, 1]\n",
     r"trial list target of evaluation has min_dcf: \[0.01, 10, 1\], not a list of "
     r"\[p_target, c_miss, c_fa\] settings\nFix: give min_dcf a list of settings"),
    ("        min_dcf: [[0.01, 10]]\n", r"has min_dcf: \[\[0.01, 10\]\], not a list of"),
    ("        min_dcf: [[1, 10, 1]]\n", r"has min_dcf: \[\[1, 10, 1\]\], not a list of"),
])
def test_a_malformed_min_dcf_is_refused_on_loading_the_condition(tmp_path, added, message):
    text = open("recipes/demo/condition.yaml", encoding="utf-8").read()
    assert DEMO_TRIALS in text
    condition = write(tmp_path, "condition.yaml", text.replace(DEMO_TRIALS, DEMO_TRIALS + added))
    with pytest.raises(ManifestError, match=message):
        load_condition(f"condition: {condition}", "hparams/dann_fbank.yaml")
    well_formed = text.replace(DEMO_TRIALS, DEMO_TRIALS + "        min_dcf: [[0.01, 10, 1]]\n")
    condition = write(tmp_path, "condition.yaml", well_formed)
    spec = load_condition(f"condition: {condition}", "hparams/dann_fbank.yaml")[1]
    assert spec["evaluation"]["target"]["min_dcf"] == [[0.01, 10, 1]]


def test_a_trial_lists_min_dcf_is_set_from_the_command_line_keeping_its_files():
    """docs/evaluation.md's VoxSRC setting: the override merges into the list's entry."""
    settings = "[[0.01, 1, 1], [0.001, 1, 1], [0.05, 1, 1]]"
    condition = load_condition(f"evaluation: {{target: {{min_dcf: {settings}}}}}",
                               "hparams/dann_fbank.yaml")[1]["evaluation"]
    assert condition["target"] == {"manifest": "data/demo/target_eval.csv",
                                   "trials": "data/demo/trials_target.txt",
                                   "min_dcf": [[0.01, 1, 1], [0.001, 1, 1], [0.05, 1, 1]]}
    assert "min_dcf" not in condition["source"]
    with pytest.raises(ManifestError, match=r"has min_dcf: \[0.05, 1, 1\], not a list"):
        load_condition("evaluation: {target: {min_dcf: [0.05, 1, 1]}}", "hparams/dann_fbank.yaml")


def test_a_misspelt_key_of_a_trial_list_is_refused_not_ignored(tmp_path):
    text = open("recipes/demo/condition.yaml", encoding="utf-8").read()
    misspelt = DEMO_TRIALS + "        enrollment: !ref <data_folder>/enrolment.csv\n"
    condition = write(tmp_path, "condition.yaml", text.replace(DEMO_TRIALS, misspelt))
    with pytest.raises(ManifestError, match=r"condition.yaml: trial list target of evaluation "
                                            r"has keys \['enrollment'\] that nothing reads\n"
                                            r"Fix: did you mean enrolment\? a trial list names "
                                            r"only manifest, trials, enrolment, min_dcf$"):
        load_condition(f"condition: {condition}", "hparams/dann_fbank.yaml")


def test_a_model_or_condition_file_that_does_not_exist_names_the_ones_there():
    with pytest.raises(ManifestError, match=r"hparams/dann_fbnak.yaml: no such model hparams "
                                            r"file\nFix: pass one of hparams/dann_fbank.yaml, "
                                            r"hparams/dann_resnet.yaml, .*tdsv_wavlm.yaml$"):
        load_condition("", "hparams/dann_fbnak.yaml")
    with pytest.raises(ManifestError, match=r"recipes/dem/condition.yaml: no such condition "
                                            r"file\nFix: pass --condition=recipes/<name>/"
                                            r"condition.yaml, one of recipes/deepmine_wireless"
                                            r"_to_telephone/condition.yaml, recipes/demo/"):
        load_condition("condition: recipes/dem/condition.yaml", "hparams/dann_fbank.yaml")


def test_the_files_named_when_one_does_not_exist_are_paths_from_the_working_directory(
        tmp_path, monkeypatch):
    recipe = os.getcwd()
    monkeypatch.chdir(tmp_path)
    for argument in ("", "condition: recipes/demo/condition.yaml"):
        with pytest.raises(ManifestError) as refused:
            load_condition(argument, os.path.join(recipe, "hparams/dann_fbank.yaml")
                           if argument else "hparams/dann_fbank.yaml")
        named = re.search(r"one of (.*)$", str(refused.value)).group(1).split(", ")
        assert len(named) > 1 and all(os.path.isfile(path) for path in named)
    # A key of another model file is named with the files that have it.
    with pytest.raises(ManifestError, match=r"Fix: it is a setting of \.\./.*dann_wavlm.yaml"):
        load_condition("ssl_source: x", os.path.join(recipe, "hparams/dann_fbank.yaml"))


@pytest.mark.parametrize("argv", [["recipes/demo/condition.yaml"],
                                  ["recipes/demo/condition.yaml", "--lr=0.1"], ["-lr=0.1"]])
def test_arguments_that_are_no_key_value_settings_are_refused_naming_the_fix(argv):
    # sb.parse_arguments turns them into YAML text that holds no mapping, or no YAML.
    _, _, overrides = sb.parse_arguments(["hparams/dann_fbank.yaml", *argv])
    with pytest.raises(ManifestError, match=r"hparams/dann_fbank.yaml: the arguments after it "
                                            r"are no --key=value settings(.|\n)*\nFix: pass each "
                                            r"setting as --key=value, the condition as "
                                            r"--condition=recipes/<name>/condition.yaml$"):
        load_condition(overrides, "hparams/dann_fbank.yaml")


@pytest.mark.parametrize("argv, setting", [
    (["--output_folder=results/x", "recipes/demo/condition.yaml"], "--output_folder=results/x"),
    (["--seed=3", "--backend=[plda]", "plda_pooled"], "--backend=[plda]"),
])
def test_a_word_after_a_setting_is_refused_not_read_into_its_value(argv, setting):
    # sb.parse_arguments alone reads it as part of the setting before it.
    with pytest.raises(ManifestError, match=rf"hparams/dann_fbank.yaml: '{argv[-1]}' is no "
                                            rf"--key=value setting, and SpeechBrain would read "
                                            rf"it as part of {re.escape(setting)}\nFix: pass "
                                            r"each setting as --key=value"):
        parse_arguments(["hparams/dann_fbank.yaml", *argv])


@pytest.mark.parametrize("argv", [["--seed=2", "--debug", "x"], ["--debug", "x", "--seed=2"]])
def test_a_word_after_a_run_option_that_takes_none_is_refused(argv):
    # sb.parse_arguments reads it as part of the setting before the option, or as YAML text.
    with pytest.raises(ManifestError, match=r"hparams/dann_fbank.yaml: 'x' is no --key=value "
                                            r"setting, and --debug takes no value\nFix: pass "
                                            r"each setting as --key=value"):
        parse_arguments(["hparams/dann_fbank.yaml", *argv])


def test_the_words_a_setting_takes_are_read_as_speechbrain_reads_them():
    _, run_opts, overrides = parse_arguments(
        ["hparams/dann_fbank.yaml", "--device", "cpu", "--seed", "3",
         "--backend=[plda,", "plda_pooled]", "--debug", "--jit_module_keys", "a", "b",
         "--lr=0.1"])
    assert run_opts["device"] == "cpu" and run_opts["debug"]
    assert run_opts["jit_module_keys"] == ["a", "b"]
    assert yaml.safe_load(overrides) == {"seed": 3, "backend": ["plda", "plda_pooled"], "lr": 0.1}


@pytest.mark.parametrize("override, fix", [
    ("freeze_ssl: yes", r"it is a setting of hparams/dann_wav2vec2.yaml, hparams/dann_wavlm.yaml, "
                        r"hparams/dann_wavlm_xvector.yaml, hparams/tdsv_wavlm.yaml: train one of "
                        r"them"),
    ("ge2e_speakers: 4", r"it is a setting of hparams/ge2e_fbank.yaml: train one of them"),
    ("lrr: 0.1", r"did you mean --lr\?"),
])
def test_an_override_of_another_model_file_names_the_files_that_have_it(override, fix):
    with pytest.raises(ManifestError, match=rf"dann_fbank.yaml: --{override.split(':')[0]} is not "
                                            rf"a setting of it or of .*condition.yaml\nFix: {fix}$"):
        load_condition(override, "hparams/dann_fbank.yaml")


@pytest.mark.parametrize("override, flags", [
    ("margin: 0.5", "--margin"),
    ("margin_type: bogus", "--margin_type"),
    ("{scale: 64, lr: 0.01}", "--scale"),
])
def test_an_override_that_the_model_file_leaves_unused_is_refused(override, flags):
    # The GE2E head takes none of the margin softmax's settings: they would
    # be recorded in the run's hyperparams.yaml and change nothing.
    with pytest.raises(ManifestError, match=rf"ge2e_fbank.yaml: {flags} would change nothing: it "
                                            rf"defines speaker_head anew, without it\nFix: leave "
                                            rf"out {flags}, or train a model file that uses it, "
                                            rf"such as hparams/dann_fbank.yaml$"):
        load_condition(override, "hparams/ge2e_fbank.yaml")
    load_condition(override, "hparams/dann_fbank.yaml")


def test_an_override_of_the_speaker_count_is_refused_not_replaced():
    # prepare_experiment counts the classes in the source manifest and sets n_speakers.
    with pytest.raises(ManifestError, match=r"dann_fbank.yaml: --n_speakers=100 would change "
                                            r"nothing: the speaker head's classes are counted in "
                                            r"the source training manifest\nFix: leave out "
                                            r"--n_speakers"):
        load_condition("n_speakers: 100", "hparams/dann_fbank.yaml")


def test_the_overrides_of_the_model_and_the_condition_are_checked_and_typed_on_loading():
    """Each file's overrides reach it as numbers of the type of its defaults, or are refused."""
    for key, path in (("seed", "hparams/dann_fbank.yaml"), ("demo_seed", "condition.yaml")):
        with pytest.raises(ManifestError, match=rf"{path}: --{key}=1.5 is not an integer"):
            load_condition(f"{key}: 1.5", "hparams/dann_fbank.yaml")
    _, condition, model, mine = load_condition("seed: 2.0\ndemo_seed: 7.0\nlr: 1e-3",
                                               "hparams/dann_fbank.yaml")
    assert (model, mine, condition["demo_seed"]) == ({"seed": 2, "lr": 0.001}, {"demo_seed": 7}, 7)
    assert isinstance(model["seed"], int) and isinstance(condition["demo_seed"], int)


def test_a_generated_corpus_folder_given_to_a_real_corpus_names_the_folders_it_takes():
    with pytest.raises(ManifestError, match=r"--data_folder is not a setting of it or of "
                                            r"recipes/voxceleb_to_deepmine/condition.yaml\nFix: "
                                            r".* gives its preparation vox1_folder and "
                                            r"deepmine_folder as data_folder: pass --vox1_folder "
                                            r"or --deepmine_folder$"):
        load_condition("{condition: recipes/voxceleb_to_deepmine/condition.yaml, "
                       "data_folder: /corpora/voxceleb}", "hparams/dann_fbank.yaml")


@pytest.mark.parametrize("old, new, message", [
    ("target_train:", "target_trian:", r"condition file without target_train\nFix: rename "
                                       r"target_trian to target_train; name the condition"),
    ("demo_seed: 1234", "demo_sed: 1234", r"cannot be loaded \(The reference \"demo_seed\" is "
                                          r"not valid\)\nFix: every !ref <key> must name a key "
                                          r"of the file"),
    ("demo_seed: 1234", "demo_seed: 1234\ndemo_sead: 5", r"defines \['demo_sead'\], which nothing "
                                                       r"reads\nFix: remove them.*; did you mean "
                                                       r"demo_seed\?$"),
    # A trial list's key, at the top.
    ("demo_seed: 1234", "demo_seed: 1234\nmin_dcf: [0.01, 1, 1]", r"defines \['min_dcf'\], which "
                                                                r"nothing reads\nFix: remove them, "
                                                                r"or refer to them \(!ref <key>\) "
                                                                r"where they are meant to go$"),
])
def test_a_condition_key_misspelt_missing_or_unread_is_named(tmp_path, old, new, message):
    text = open("recipes/demo/condition.yaml", encoding="utf-8").read()
    assert old in text
    condition = write(tmp_path, "condition.yaml", text.replace(old, new))
    with pytest.raises(ManifestError, match=rf"condition.yaml: {message}"):
        load_condition(f"condition: {condition}", "hparams/dann_fbank.yaml")


@pytest.mark.parametrize("value", [2.5, 0])
def test_an_eval_batch_size_of_no_whole_utterances_is_refused_before_training(value):
    # Embedding reads it only after an epoch (pseudo-labels) or after training.
    overrides = {"condition": "demo", "n_speakers": 24, "eval_batch_size": value}
    with pytest.raises(ManifestError, match=rf"dann_fbank.yaml: --eval_batch_size={value} embeds "
                                            r"no target or evaluation audio\nFix: pass "
                                            r"an integer of at least 1, such as "
                                            r"--eval_batch_size=16$"):
        check_trainable("hparams/dann_fbank.yaml", overrides, condition={})


@pytest.mark.parametrize("loader, refused", [
    # YAML's reading of {num_workers:4}, without a space after the colon.
    ({"num_workers:4": None}, r"train_dataloader_options \['num_workers:4'\] are no options of "
                              r"torch's DataLoader; did you mean num_workers\?"),
    ({"batch_size": 16, "shufle": True}, r"train_dataloader_options \['shufle'\] are no "
                                         r"options of torch's DataLoader; did you mean "
                                         r"shuffle\?"),
    # A shell splits an unquoted {a: 1,b: 2}: SpeechBrain keeps the last piece.
    ("drop_last:True", r"--train_dataloader_options=drop_last:True is no mapping of DataLoader "
                       r"options"),
])
def test_train_dataloader_options_that_a_dataloader_refuses_are_refused_before_training(
        loader, refused):
    # The DataLoader would refuse them at the first epoch, after the run's records are written.
    overrides = {"condition": "demo", "n_speakers": 24, "train_dataloader_options": loader}
    with pytest.raises(ManifestError, match=rf"dann_fbank.yaml: {refused}\nFix: write each as "
                                            r"key: value, a space after the colon, in one "
                                            r"quoted argument: --train_dataloader_options="
                                            r'"\{batch_size: 16, num_workers: 4\}"$'):
        check_trainable("hparams/dann_fbank.yaml", overrides, condition={})


def _training_manifests(demo_corpus):
    """The condition's training manifests of the demo corpus."""
    return {f"{domain}_train": demo_corpus[f"{domain}_train"] for domain in ("source", "target")}


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("speakers, utterances, accumulation", [(8, 16, 1), (7, 2, 9)])
def test_ge2e_batches_that_one_process_trains_are_trained_in_two(demo_corpus, monkeypatch,
                                                                 processes, speakers,
                                                                 utterances, accumulation):
    # 240 pairs fill one batch of 8 speakers x 16 crops, and 17 of 7 x 2: dealt out whole,
    # the batches of an epoch are rounded up to a multiple of the processes, so two
    # processes take one batch each, 9 each of 7 x 2, where half the pairs of each, 120,
    # fill no batch of 128 and 8 of 14.
    monkeypatch.setattr(settings, "training_processes", lambda: processes)
    overrides = {"condition": "demo", "n_speakers": 24, "ge2e_speakers": speakers,
                 "ge2e_utterances": utterances}
    _, run_opts, _ = sb.parse_arguments(["x.yaml", f"--grad_accumulation_factor={accumulation}"])
    check_trainable("hparams/ge2e_fbank.yaml", overrides, _training_manifests(demo_corpus),
                    run_opts)


@pytest.mark.parametrize("processes", [1, 2])
def test_ge2e_batches_that_the_pairs_do_not_fill_are_refused_in_any_number_of_processes(
        demo_corpus, monkeypatch, processes):
    monkeypatch.setattr(settings, "training_processes", lambda: processes)
    overrides = {"condition": "demo", "n_speakers": 24, "ge2e_speakers": 16,
                 "ge2e_utterances": 16}
    with pytest.raises(ManifestError, match=r"ge2e_fbank.yaml: --batch_size=256 is more than "
                                            r"the 240 training pairs of an epoch \(240 source, "
                                            r"240 target utterances\): no step would run\nFix: "
                                            r"pass --ge2e_speakers and --ge2e_utterances whose "
                                            r"product is 240 or less, or train on more "
                                            r"utterances$"):
        check_trainable("hparams/ge2e_fbank.yaml", overrides, _training_manifests(demo_corpus))


@pytest.mark.parametrize("model, key, value, refused", [
    ("dann_fbank", "lr", 0, "the learning rate must be above 0"),
    ("dann_fbank", "lr", -0.001, "the learning rate must be above 0"),
    ("dann_fbank", "disc_lr", -0.002, "is refused by torch's optimisers"),
    ("gan_resnet", "disc_lr", -0.003, "is refused by torch's optimisers"),
    ("dann_fbank", "weight_decay", -1, "is refused by torch's optimisers"),
    ("tdsv_wavlm", "ssl_lr", -2e-05, "is refused by torch's optimisers"),
])
def test_optimiser_settings_that_train_nothing_or_that_torch_refuses_are_refused_before_training(
        model, key, value, refused):
    # torch's optimisers refuse a negative one only when built, after the run's records are
    # written; an lr of 0 would train the run without moving a weight of its encoder.
    default = referenced_defaults(f"hparams/{model}.yaml")[key]
    overrides = {"condition": "demo", "n_speakers": 24, key: value}
    with pytest.raises(ManifestError, match=rf"{model}.yaml: --{key}={value}:? "
                                            rf"{re.escape(refused)}.*\nFix: pass a value such "
                                            rf"as --{key}={default}$"):
        check_trainable(f"hparams/{model}.yaml", overrides, condition={})


@pytest.mark.parametrize("model, key, value", [("dann_fbank", "disc_lr", 0),
                                               ("dann_fbank", "weight_decay", 0),
                                               ("tdsv_wavlm", "ssl_lr", 0),
                                               ("dann_fbank", "lr", "1e30")])
def test_optimiser_settings_that_train_pass_the_check(demo_corpus, model, key, value):
    # 1e30 is text to YAML 1.1 and the number it means to the recipe.
    overrides = {"condition": "demo", "n_speakers": 24, key: value}
    check_trainable(f"hparams/{model}.yaml", overrides, _training_manifests(demo_corpus))


def test_coral_on_batches_of_one_is_refused_before_training():
    # The covariance of one embedding is 0 / 0: the first step's loss would be NaN.
    overrides = {"condition": "demo", "n_speakers": 24, "coral_weight": 1.0, "batch_size": 1}
    with pytest.raises(ManifestError, match=r"dann_fbank.yaml: --coral_weight=1.0 compares the "
                                            r"covariances .* --batch_size=1 has none\nFix: pass "
                                            r"--batch_size=2 or more, or --coral_weight=0$"):
        check_trainable("hparams/dann_fbank.yaml", overrides, condition={})


@pytest.mark.parametrize("model, overrides, refused", [
    ("dann_wavlm", {"ssl_lr": 0.5}, "--ssl_lr=0.5 would change nothing: it sets"),
    ("dann_wavlm", {"freeze_ssl_cnn": False, "ssl_lr": 0.5},
     "--ssl_lr=0.5 --freeze_ssl_cnn=False would change nothing: they set"),
    ("tdsv_wavlm", {"freeze_ssl": True, "ssl_lr": 0.5}, "--ssl_lr=0.5 would change nothing: it sets"),
    ("dann_wavlm", {"freeze_ssl": False, "ssl_lr": 0.5}, None),
    ("tdsv_wavlm", {"ssl_lr": 0.5, "freeze_ssl_cnn": False}, None),
])
def test_fine_tuning_settings_of_a_frozen_ssl_model_are_refused(demo_corpus, model, overrides,
                                                               refused):
    # A frozen SSL model has no optimiser: the run would record a learning rate it never used.
    overrides = {"condition": "demo", "n_speakers": 24, **overrides}
    condition = {f"{domain}_train": demo_corpus[f"{domain}_train"]
                 for domain in ("source", "target")}
    if refused is None:
        check_trainable(f"hparams/{model}.yaml", overrides, condition)
        return
    with pytest.raises(ManifestError, match=rf"{model}.yaml: {refused} the fine-tuning of the SSL "
                                            r"model, which freeze_ssl: True keeps fixed\nFix: "
                                            r"pass --freeze_ssl=False to fine-tune it, or leave "
                                            r"out --ssl_lr"):
        check_trainable(f"hparams/{model}.yaml", overrides, condition)


@pytest.mark.parametrize("key, value", [("seed", 1.5), ("emb_dim", 191.5), ("num_workers", 1.5),
                                        ("batch_size", "5e-1")])
def test_a_fractional_override_of_an_integer_is_refused(key, value):
    default = plain_values("hparams/dann_fbank.yaml")[key]
    with pytest.raises(ManifestError, match=rf"dann_fbank.yaml: --{key}=\S+ is not an integer "
                                            rf"\(its default is {default}\)\nFix: pass a whole "
                                            rf"number, such as --{key}={default}$"):
        typed_overrides("hparams/dann_fbank.yaml", {key: value})


def test_a_whole_float_of_an_integer_key_is_the_integer_and_fractional_keys_take_any():
    typed = typed_overrides("hparams/dann_fbank.yaml", {"seed": 2.0, "max_embed_seconds": 90.5,
                                                        "scale": 32.5, "lr": 1})
    assert typed == {"seed": 2, "max_embed_seconds": 90.5, "scale": 32.5, "lr": 1}
    assert isinstance(typed["seed"], int)


def test_a_key_whose_default_is_another_key_is_checked_as_that_key():
    # disc_lr: !ref <lr>, adv_input_size: !ref <emb_dim>, in hparams/common.yaml.
    typed = typed_overrides("hparams/dann_fbank.yaml", {"disc_lr": "5e-4", "adv_input_size": 96.0})
    assert typed == {"disc_lr": 0.0005, "adv_input_size": 96}
    assert isinstance(typed["adv_input_size"], int)
    with pytest.raises(ManifestError, match=r"--disc_lr=fast is not a number \(its default is "
                                            r"0.002\)\nFix: pass a number, such as --disc_lr=0.002"):
        typed_overrides("hparams/dann_fbank.yaml", {"disc_lr": "fast"})


def test_max_embed_seconds_takes_null_for_no_limit_and_other_numbers_do_not():
    assert typed_overrides("hparams/dann_fbank.yaml", {"max_embed_seconds": None}) == {
        "max_embed_seconds": None}
    for key in ("min_embed_seconds", "lr", "seed"):
        with pytest.raises(ManifestError, match=rf"--{key}=None is not a number"):
            typed_overrides("hparams/dann_fbank.yaml", {key: None})


@pytest.mark.parametrize("key", ["lr", "seed", "max_embed_seconds"])
def test_true_or_false_is_no_number(key):
    """YAML reads --lr=yes as True, which Python would count as the number 1."""
    with pytest.raises(ManifestError, match=rf"--{key}=True is not a number"):
        typed_overrides("hparams/dann_fbank.yaml", {key: True})


@pytest.mark.parametrize("key, value", [("augment", "Flase"), ("augment", 1),
                                        ("check_audio", "no_thanks"), ("check_audio", None)])
def test_a_switch_takes_only_true_or_false(key, value):
    """A misspelt False would be a true string to the run, and be recorded as its setting."""
    default = plain_values("hparams/dann_fbank.yaml")[key]
    with pytest.raises(ManifestError, match=rf"--{key}={value} is not True or False \(its "
                                            rf"default is {default}\)\nFix: pass --{key}=True "
                                            rf"or --{key}=False$"):
        typed_overrides("hparams/dann_fbank.yaml", {key: value})
    assert typed_overrides("hparams/dann_fbank.yaml", {key: not default}) == {key: not default}


@pytest.mark.parametrize("key, value, example", [
    ("discriminator_neurons", 256, r"\[256\]"), ("pseudo_label_epochs", 3, r"\[3\]"),
    ("backend", None, r"\[\]")])
def test_a_list_key_takes_only_a_list(key, value, example):
    with pytest.raises(ManifestError, match=rf"--{key}={value} is not a list \(its default is "
                                            rf".*\)\nFix: pass a list, such as --{key}={example}$"):
        typed_overrides("hparams/dann_fbank.yaml", {key: value})
    assert typed_overrides("hparams/dann_fbank.yaml", {key: [3]}) == {key: [3]}
    # allow_changed also takes one key alone, or none.
    overrides = {"allow_changed": "lr"}
    assert typed_overrides("hparams/dann_fbank.yaml", overrides) == overrides


def test_a_model_file_without_the_common_keys_names_them_and_its_base(tmp_path):
    common = open("hparams/common.yaml", encoding="utf-8").read()
    cut = common.replace("crop_seconds: 2.0", "").replace("check_audio: True", "")
    model = write(tmp_path, "model.yaml", cut)
    base = os.path.relpath(os.path.abspath("hparams/common.yaml"), str(tmp_path))
    with pytest.raises(ManifestError, match=re.escape(
            f"model.yaml: model file without ['check_audio', 'crop_seconds'], which the recipe "
            f"reads\nFix: add `base: {base}` (a path relative to the file, to "
            "hparams/common.yaml) or define them")):
        load_condition("", model)
    write(tmp_path, "model.yaml", f"base: {base}\nmodel_name: m\nfrontend: null\n"
                                  "embedding_model: null\n")
    assert load_condition("", model)[2] == {}


def test_an_unset_placeholder_of_the_condition_file_names_the_option_to_pass():
    condition = "recipes/voxceleb_to_deepmine/condition.yaml"
    with pytest.raises(ManifestError, match=re.escape(
            f"{condition}: deepmine_key is not set (!PLACEHOLDER)\nFix: pass --deepmine_key=... "
            "(the recipe's README says what it is)")):
        load_condition(f"{{condition: {condition}, vox1_folder: v, deepmine_folder: d}}",
                       "hparams/dann_fbank.yaml")
    with pytest.raises(ManifestError, match=re.escape(
            "vox1_folder, deepmine_folder, deepmine_key are not set (!PLACEHOLDER)\nFix: pass "
            "--vox1_folder=... --deepmine_folder=... --deepmine_key=... (the recipe's README "
            "says what they are)")):
        load_condition(f"condition: {condition}", "hparams/dann_fbank.yaml")


def test_an_unset_placeholder_of_the_model_file_names_the_option_to_pass(tmp_path):
    # condition and n_speakers, placeholders too, are filled in from the condition.
    model = write(tmp_path, "model.yaml", f"base: "
                  f"{os.path.abspath('hparams/dann_fbank.yaml')}\nfrontend: !PLACEHOLDER\n")
    with pytest.raises(ManifestError, match=re.escape(
            "model.yaml: frontend is not set (!PLACEHOLDER)\nFix: pass --frontend=... "
            "(hparams/common.yaml says what it is)")):
        load_condition("", model)


@pytest.mark.parametrize("check, message", [
    (lambda: adversary_class("grll"), "--adversary=grll: adversary 'grll' is not one of grl"),
    (lambda: margin_softmax_loss("aamm"), "--margin_type=aamm: margin_type 'aamm' is not one of"),
    (lambda: margin_softmax_loss("aam", scale=0), "--scale=0: scale must be > 0"),
    (lambda: margin_softmax_loss("am", scale=-30), "--scale=-30: scale must be > 0"),
    (lambda: check_neighbours(0), "--pseudo_neighbours=0: pseudo_neighbours must be an integer"),
    (lambda: AdversarialSchedule(warmup=2), r"--adv_warmup=2: adv_warmup must be in \[0, 1\)"),
    (lambda: AdversarialSchedule(weight=-0.3), "--adv_weight=-0.3: adv_weight must be >= 0"),
    (lambda: AdversarialSchedule(gamma=0), "--adv_gamma=0: adv_gamma must be > 0"),
    (lambda: AdversarialSchedule(gamma=-10), "--adv_gamma=-10: adv_gamma must be > 0"),
    (lambda: check_score_norm({"score_norm": "s-norm"}), "--score_norm=s-norm: score_norm must be"),
    (lambda: check_trials(0), "--pseudo_infomap_trials=0: pseudo_infomap_trials must be"),
    (lambda: check_min_silhouette(1), "--pseudo_min_silhouette=1: pseudo_min_silhouette must be"),
    (lambda: make_adversary("grl", disc_steps=0), "--disc_steps=0: disc_steps must be"),
    (lambda: make_adversary("grl", smoothing=1), "--domain_label_smoothing=1: domain_label_"),
])
def test_option_checks_of_the_models_name_the_option_and_the_fix(check, message):
    with pytest.raises(ManifestError, match=rf"^{message}.*\nFix: pass ") as refused:
        check()
    # The value each fix suggests (score_norm's lists its values) is the model files' own.
    suggested = re.search(r"\nFix: .*--(\w+)=(\S+)$", str(refused.value))
    assert suggested or message.startswith("--score_norm=")
    if suggested:
        key, value = suggested.groups()
        assert yaml.safe_load(value) == referenced_defaults("hparams/dann_fbank.yaml")[key]


@pytest.mark.parametrize("device, instead", [("cpu", "bf16 (mixed precision on the CPU) or fp32"),
                                             ("cuda:0", "fp16")])
def test_a_deprecated_precision_flag_names_a_precision_the_device_takes(device, instead):
    # Passed as written, the fix must not be refused in turn (fp16 on the CPU).
    with pytest.raises(ManifestError, match=re.escape(f"Fix: pass --precision={instead} instead")):
        check_precision({"device": device, "auto_mix_prec": True})


def test_a_lobes_own_refusal_reaches_the_user_as_the_lobe_raised_it(tmp_path):
    # local's lobes refuse their values with a message of their own, naming the option.
    with pytest.raises(ManifestError, match=r"^--adversary=grll: adversary 'grll' is not one of "
                                            r"grl, .*\nFix: pass one of them"):
        load_model_hparams("hparams/dann_fbank.yaml", {
            "condition": "demo", "n_speakers": 24, "output_folder": str(tmp_path),
            "adversary": "grll"})


def test_a_module_given_a_value_of_another_type_is_named_with_the_line_that_refused_it(tmp_path):
    # SpeechBrain's ResNet takes a list of channels; len() of a number is a TypeError.
    with pytest.raises(ManifestError, match=r"^hparams/dann_resnet.yaml: a module cannot be built "
                                            r"with these settings: TypeError .*has no len\(\).* "
                                            r"at .*ResNet.py:\d+: "):
        load_model_hparams("hparams/dann_resnet.yaml", {
            "condition": "demo", "n_speakers": 24, "output_folder": str(tmp_path),
            "channels": 8})


def test_only_a_key_that_refers_to_another_key_alone_takes_its_default(tmp_path):
    model = write(tmp_path, "model.yaml", "rate: 0.5\nname: a\nsame: !ref <rate>\n"
                                          "double: !ref <rate> * 2\nfolder: !ref <name>/x\n")
    defaults = referenced_defaults(model)
    assert (defaults["same"], defaults["double"], defaults["folder"]) == (0.5, None, None)
    assert plain_values(model)["same"] is None


@pytest.mark.parametrize("min_dcf", ["[[0, 10, 1]]", "[[0.01, 0, 1]]", "[[0.01, 10, 0]]",
                                     "[[0.01, -1, 1]]", "[[0.01, 10, 1, 1]]", "[[0.01, true, 1]]",
                                     "[[0.01, 10, 1], [0.5, 1]]", "[]"])
def test_a_min_dcf_setting_outside_its_ranges_is_refused(min_dcf):
    # p_target in (0, 1), two costs above 0, for each setting of a list of at least one.
    with pytest.raises(ManifestError, match=r"trial list target of evaluation has min_dcf: .*, "
                                            r"not a list of \[p_target, c_miss, c_fa\]"):
        load_condition(f"evaluation: {{target: {{min_dcf: {min_dcf}}}}}",
                       "hparams/dann_fbank.yaml")


@pytest.mark.parametrize("argv, setting", [
    (["--seed", "3", "x"], "--seed"),
    (["--backend=[plda,", "plda_pooled]", "x"], "--backend=[plda,"),
    (["--backend=[plda", "--seed=3", "x"], "--seed=3"),
])
def test_a_word_after_the_words_a_setting_takes_is_refused(argv, setting):
    # --seed takes one word, a list ends with its bracket, and a setting starts anew.
    with pytest.raises(ManifestError, match=rf"'x' is no --key=value setting, and SpeechBrain "
                                            rf"would read it as part of {re.escape(setting)}\n"):
        parse_arguments(["hparams/dann_fbank.yaml", *argv])


def test_a_mapping_of_a_setting_takes_the_words_up_to_its_closing_brace():
    _, _, overrides = parse_arguments(["hparams/dann_fbank.yaml",
                                       "--train_dataloader_options={batch_size: 16,",
                                       "num_workers: 0}", "--seed=3"])
    assert yaml.safe_load(overrides) == {
        "train_dataloader_options": {"batch_size": 16, "num_workers": 0}, "seed": 3}


def test_words_before_the_first_setting_are_left_to_the_loading_of_the_condition():
    _, _, overrides = parse_arguments(["hparams/dann_fbank.yaml", "recipes/demo/condition.yaml"])
    with pytest.raises(ManifestError, match=r"the arguments after it are no --key=value "
                                            r"settings \(read as 'recipes/demo/condition.yaml'\)"):
        load_condition(overrides, "hparams/dann_fbank.yaml")


def test_the_command_line_is_read_from_the_script_arguments_by_default(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_dann.py", "hparams/dann_fbank.yaml", "--seed=3"])
    hparams_file, _, overrides = parse_arguments()
    assert (hparams_file, yaml.safe_load(overrides)) == ("hparams/dann_fbank.yaml", {"seed": 3})


def test_the_options_a_condition_passes_are_the_arguments_that_are_an_option_alone():
    text = ("vox1_folder: /data\nnoise: /noise\nprepare:\n  - !name:f\n"
            "    data_folder: !ref <vox1_folder>  # VoxCeleb1\n"
            "    save_folder: !ref <vox1_folder>/manifests\n"
            "    noise_folder:   !ref  <noise>\n")
    assert passed_options(text) == [("data_folder", "vox1_folder"), ("noise_folder", "noise")]


@pytest.mark.parametrize("count, device, refused", [
    (0, "cuda", True), (0, "cuda:0", True), (2, "cuda", False), (2, "cuda:1", False),
    (2, "cuda:2", True), (0, "cpu", False), (0, None, False)])
def test_a_cuda_device_is_refused_unless_the_machine_has_it(monkeypatch, count, device, refused):
    # --device=cuda is the first GPU, cuda:N the N+1-th.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if not refused:
        check_device(device)
        return
    gpus = ", or cuda:0 to cuda:1" if count else ""
    with pytest.raises(ManifestError, match=re.escape(
            f"--device={device}: this machine has {count} CUDA GPUs that torch can use\n"
            f"Fix: pass --device=cpu{gpus}")):
        check_device(device)


def test_fp16_is_refused_on_the_cpu_only():
    check_precision({"device": "cuda:0", "precision": "fp16", "eval_precision": "fp16"})
    check_precision({"device": "cuda"}, "m.yaml", {"precision": "fp16"})
    with pytest.raises(ManifestError, match=r"^--precision=fp16: fp16 needs a CUDA device"):
        check_precision({"device": "cpu", "precision": "fp16"})


@pytest.mark.parametrize("argv, refused", [
    (["--device=cpu", "--precision=bf16"], False), (["--device=cpu"], True),
    (["--device", "cpu", "--eval_precision=fp32"], True)])
def test_the_command_lines_precision_wins_over_the_model_files(argv, refused):
    # SpeechBrain's Brain takes an option from the command line, else from the model file.
    _, run_opts, _ = sb.parse_arguments(["m.yaml", *argv])
    if not refused:
        check_precision(run_opts, "m.yaml", {"precision": "fp16"})
        return
    with pytest.raises(ManifestError, match=r"^m.yaml: precision: fp16 needs a CUDA device; this "
                                            r"run is on the CPU\nFix: set precision: bf16 "):
        check_precision(run_opts, "m.yaml", {"precision": "fp16"})


def test_a_frontend_whose_hidden_size_is_not_ssl_dim_is_refused_smaller_or_larger():
    for size in (512, 1024):
        frontend = SimpleNamespace(output_size=size, source="m")
        with pytest.raises(ManifestError, match=rf"--ssl_dim=768 is not the hidden size of m, "
                                                rf"{size}\nFix: pass --ssl_dim={size}$"):
            check_ssl_dim("m.yaml", {"frontend": frontend, "ssl_dim": 768})
    check_ssl_dim("m.yaml", {"frontend": SimpleNamespace(output_size=768, source="m"),
                             "ssl_dim": 768})
    # A front end that is no SSL model has no hidden size to match, and no ssl_dim.
    check_ssl_dim("m.yaml", {"frontend": SimpleNamespace()})


def test_exponent_notation_with_a_sign_or_without_a_leading_digit_is_the_number_it_means():
    typed = typed_overrides("hparams/dann_fbank.yaml", {"lr": "-1e-3", "disc_lr": ".5e-3",
                                                        "weight_decay": "+2E-4"})
    assert typed == {"lr": -0.001, "disc_lr": 0.0005, "weight_decay": 0.0002}


def test_the_training_processes_are_torchruns_world_size_else_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert settings.training_processes() == 1
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert settings.training_processes() == 3


def _manifests(folder, source, target):
    """A condition's training manifests of ``source`` and ``target`` utterances, without audio."""
    condition = {}
    for domain, count in (("source", source), ("target", target)):
        condition[f"{domain}_train"] = str(folder / f"{domain}.csv")
        write_manifest([{"ID": f"{domain}{i}", "duration": 3.0, "wav": f"{domain}{i}.wav",
                         "start": 0, "stop": 48000, "spk_id": f"s{i % 4}", "domain": domain}
                        for i in range(count)], condition[f"{domain}_train"])
    return condition


MODEL = {"condition": "demo", "n_speakers": 4}


def _accumulating(factor):
    return sb.parse_arguments(["x.yaml", f"--grad_accumulation_factor={factor}"])[1]


def test_an_epoch_has_as_many_pairs_as_the_longer_training_set(tmp_path):
    condition = _manifests(tmp_path, 10, 40)
    check_trainable("hparams/dann_fbank.yaml", {**MODEL, "batch_size": 40}, condition)
    with pytest.raises(ManifestError, match=r"dann_fbank.yaml: --batch_size=41 is more than the "
                                            r"40 training pairs of an epoch \(10 source, 40 "
                                            r"target utterances\): no step would run\nFix: pass "
                                            r"--batch_size=40 or less, or train on more"):
        check_trainable("hparams/dann_fbank.yaml", {**MODEL, "batch_size": 41}, condition)


def test_each_process_takes_its_share_of_the_pairs(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "training_processes", lambda: 2)
    condition = _manifests(tmp_path, 40, 40)
    check_trainable("hparams/dann_fbank.yaml", {**MODEL, "batch_size": 20}, condition)
    with pytest.raises(ManifestError, match=r"--batch_size=21 is more than the 20 training pairs "
                                            r"of an epoch \(40 source, 40 target utterances, 20 "
                                            r"for each of 2 processes\): no step would run\nFix: "
                                            r"pass --batch_size=20 or less"):
        check_trainable("hparams/dann_fbank.yaml", {**MODEL, "batch_size": 21}, condition)


@pytest.mark.parametrize("processes, steps", [(1, 2), (2, 1)])
def test_gradients_are_accumulated_over_at_most_the_whole_steps_of_an_epoch(
        tmp_path, monkeypatch, processes, steps):
    # 40 pairs in batches of 16: two whole steps, the last 8 pairs left out; one step in
    # each of two processes, which take 20 pairs each.
    monkeypatch.setattr(settings, "training_processes", lambda: processes)
    condition = _manifests(tmp_path, 40, 40)
    overrides = {**MODEL, "batch_size": 16}
    check_trainable("hparams/dann_fbank.yaml", overrides, condition, _accumulating(steps))
    for factor in (0, steps + 1):
        with pytest.raises(ManifestError, match=rf"--grad_accumulation_factor={factor} is not "
                                                rf"from 1 to the {steps} steps of an epoch: the "
                                                rf"optimisers would never step\nFix: pass "
                                                rf"--grad_accumulation_factor=1 to {steps}, or a "
                                                rf"smaller --batch_size$"):
            check_trainable("hparams/dann_fbank.yaml", overrides, condition,
                            _accumulating(factor))


@pytest.mark.parametrize("processes, steps", [(1, 5), (2, 3)])
def test_ge2e_gradients_are_accumulated_over_at_most_each_process_steps(
        tmp_path, monkeypatch, processes, steps):
    # 20 pairs fill 5 batches of 2 speakers x 2 crops, rounded up to 6 for two
    # processes: 3 for each.
    monkeypatch.setattr(settings, "training_processes", lambda: processes)
    condition = _manifests(tmp_path, 20, 20)
    overrides = {**MODEL, "ge2e_speakers": 2, "ge2e_utterances": 2}
    check_trainable("hparams/ge2e_fbank.yaml", overrides, condition, _accumulating(steps))
    with pytest.raises(ManifestError, match=rf"--grad_accumulation_factor={steps + 1} is not "
                                            rf"from 1 to the {steps} steps of an epoch: .*\nFix: "
                                            rf"pass --grad_accumulation_factor=1 to {steps}, or "
                                            rf"a smaller --ge2e_speakers or --ge2e_utterances$"):
        check_trainable("hparams/ge2e_fbank.yaml", overrides, condition,
                        _accumulating(steps + 1))


def test_batches_of_one_and_crops_of_the_shortest_input_train(tmp_path):
    # Without coral_weight nothing compares a batch's embeddings; min_embed_seconds: 0.25.
    condition = _manifests(tmp_path, 4, 4)
    check_trainable("hparams/dann_fbank.yaml", {**MODEL, "batch_size": 1, "crop_seconds": 0.25},
                    condition)
    with pytest.raises(ManifestError, match=r"--crop_seconds=0.2 is shorter than the shortest "
                                            r"input the models take, min_embed_seconds \(0.25\)"):
        check_trainable("hparams/dann_fbank.yaml", {**MODEL, "crop_seconds": 0.2}, condition)


@pytest.mark.parametrize("loader, refused", [
    ({"batch_size": 16, "drop_last": True}, None),
    # SpeechBrain's make_dataloader takes these before the DataLoader.
    ({"batch_size": 16, "drop_last": True, "ckpt_prefix": "loader_", "looped_nominal_epoch": 5},
     None),
    ({"batch_size": 16, "drop_last": True, "dataset": "x"}, r"\['dataset'\] are no options"),
    ({"batch_size": 16, "persistent_workers": True}, "persistent_workers: True keeps the"),
    ({"batch_size": 16, "drop_last": False}, "drop_last: False makes a last, smaller batch"),
    ({"batch_size": 8, "drop_last": True}, r"batch_size: 8 differs from batch_size \(16\)")])
def test_train_dataloader_options_that_train_as_counted_pass_and_others_are_refused(
        tmp_path, loader, refused):
    condition = _manifests(tmp_path, 40, 40)
    overrides = {**MODEL, "train_dataloader_options": loader}
    if refused is None:
        check_trainable("hparams/dann_fbank.yaml", overrides, condition)
        return
    with pytest.raises(ManifestError, match=rf"dann_fbank.yaml: train_dataloader_options "
                                            rf"{refused}"):
        check_trainable("hparams/dann_fbank.yaml", overrides, condition)


def test_cached_ssl_features_of_a_fine_tuned_ssl_model_are_refused():
    # The cache holds the frozen model's features: a fine-tuned one changes them every step.
    overrides = {**MODEL, "freeze_ssl": False, "cache_ssl_features": True}
    with pytest.raises(ManifestError, match=r"^hparams/dann_wavlm.yaml: --cache_ssl_features=True: "
                                            r"cache_ssl_features needs a frozen SSL model"):
        check_trainable("hparams/dann_wavlm.yaml", overrides, condition={})


def test_the_condition_option_names_the_file_and_overrides_no_key_of_it():
    path, condition, model, mine = load_condition("condition: recipes/demo/condition.yaml",
                                                  "hparams/dann_fbank.yaml")
    assert path == "recipes/demo/condition.yaml"
    assert condition["condition"] == plain_values(path)["condition"] == "demo"
    assert (model, mine) == ({}, {})


@pytest.mark.parametrize("evaluation, message", [
    ("evaluation: {}\n", "evaluation is not a mapping of trial lists"),
    ("evaluation: [source, target]\n", "evaluation is not a mapping of trial lists"),
    ("evaluation:\n    target: !ref <data_folder>/trials_target.txt\n",
     "trial list target of evaluation without manifest, trials"),
])
def test_an_evaluation_that_is_no_mapping_of_trial_lists_is_refused(tmp_path, evaluation,
                                                                    message):
    text = open("recipes/demo/condition.yaml", encoding="utf-8").read()
    condition = write(tmp_path, "condition.yaml", text[:text.index("evaluation:")] + evaluation)
    with pytest.raises(ManifestError, match=rf"condition.yaml: {message}\nFix: give "):
        load_condition(f"condition: {condition}", "hparams/dann_fbank.yaml")


def test_a_folder_where_a_condition_names_a_data_file_is_refused(tmp_path):
    (tmp_path / "source.csv").mkdir()
    (tmp_path / "target.csv").write_text("")
    with pytest.raises(ManifestError, match=rf"^c.yaml: names data files that do not exist\n"
                                            rf"  source_train: {re.escape(str(tmp_path))}"
                                            rf"/source.csv\nFix: "):
        check_condition_files("c.yaml", {"source_train": str(tmp_path / "source.csv"),
                                         "target_train": str(tmp_path / "target.csv"),
                                         "evaluation": {}})
