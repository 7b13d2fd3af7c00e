"""The real-corpus conditions, prepared from fake trees shaped like the corpora.

A real-corpus condition is a ``recipes/*/condition.yaml`` with ``!PLACEHOLDER``
keys; the ``corpora`` fixture fills each such key with a fake tree.
"""

import glob
import logging
import os
import re

import pandas as pd
import pytest
import yaml

import train_dann
from local import experiment, settings
from data_prep import farsdat
from data_prep.preparation import select_rows
from local.data.validation import validate
from local.errors import ManifestError
from tests.unit.test_prep_deepmine import TASK2_ENROLMENT, TASK2_KEY, TASK2_TRAIN, TASK2_TRIALS, write_task
from tests.unit.test_prep_farsdat import write_tree
from tests.unit.test_prep_voxceleb import write_vox1
from tests.integration.test_train_dann import SHORT, TINY

CHANNELS = {"trn_101064": "wireless", "trn_101065": "telephone", "trn_101066": "telephone"}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    deepmine = write_task(root / "sdsv_task2", TASK2_ENROLMENT, TASK2_TRAIN, TASK2_TRIALS)
    (root / "task2_key.txt").write_text(TASK2_KEY)
    utterances = [path[:-4] for folder in ("train", "enrollment", "evaluation")
                  for path in os.listdir(deepmine / "wav" / folder)]
    pd.DataFrame({"utt": utterances,
                  "channel": [CHANNELS.get(u, "wireless") for u in utterances]}).to_csv(
        root / "channels.csv", index=False)
    return {
        "vox1_folder": str(write_vox1(root / "voxceleb1")),
        "deepmine_folder": str(deepmine),
        "deepmine_key": str(root / "task2_key.txt"),
        "channel_table": str(root / "channels.csv"),
        "farsdat_folder": str(write_tree(root / "big_farsdat")),
    }


def condition_keys(name, value=""):
    """Top-level keys of ``recipes/<name>/condition.yaml`` whose value starts with ``value``."""
    with open(f"recipes/{name}/condition.yaml", encoding="utf-8") as condition:
        return re.findall(rf"^(\w+): *{re.escape(value)}", condition.read(), re.M)


# The keys the user fills (the corpora), of each condition that has any.
CONDITIONS = {name: condition_keys(name, "!PLACEHOLDER")
              for name in sorted(os.path.basename(os.path.dirname(path))
                                 for path in glob.glob("recipes/*/condition.yaml"))
              if condition_keys(name, "!PLACEHOLDER")}
# Options that the fake trees are too small for.
SMALL = {"farsdat_eval_speakers": 2}


def prepared(name, corpora, tmp_path, **extra):
    unknown = sorted(set(CONDITIONS[name]) - set(corpora))
    assert not unknown, f"recipes/{name}/condition.yaml: give the corpora fixture a fake {unknown}"
    overrides = {key: corpora[key] for key in CONDITIONS[name]}
    overrides.update(condition=f"recipes/{name}/condition.yaml",
                     manifest_folder=str(tmp_path / name), **extra)
    _, condition, model_overrides, _ = settings.load_condition(yaml.safe_dump(overrides),
                                                                 "hparams/dann_fbank.yaml")
    assert model_overrides == {}
    for prepare in condition["prepare"]:
        prepare()
    return condition


def test_the_real_corpus_conditions_are_found():
    assert {"voxceleb_to_deepmine", "deepmine_wireless_to_telephone",
            "voxceleb_to_farsdat"} <= set(CONDITIONS)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_prepares_valid_manifests_and_trials(name, corpora, tmp_path):
    extra = {key: value for key, value in SMALL.items() if key in condition_keys(name)}
    condition = prepared(name, corpora, tmp_path, **extra)
    assert condition["condition"] == name
    assert os.path.isfile(f"recipes/{name}/README.md")
    source = validate(condition["source_train"])
    target = validate(condition["target_train"])
    for spec in condition["evaluation"].values():
        # No speaker or file of a trial list is in the training data.
        validate(spec["manifest"], spec["trials"], spec.get("enrolment"),
                 train_manifests=[condition["source_train"], condition["target_train"]])
    if "channel_table" in CONDITIONS[name]:  # one corpus, split by channel
        assert set(source["channel"]) == {"wireless"} and set(target["channel"]) == {"telephone"}
        assert len(source) + len(target) == len(CHANNELS)
    else:
        assert set(source["domain"]) == {name.split("_to_")[0]}
        assert set(target["domain"]) == {name.split("_to_")[1]}


def test_a_model_file_trains_on_a_real_corpus_condition(corpora, tmp_path):
    """Fbank model, VoxCeleb source, 8 kHz Big FARSDAT target (resampled on the fly)."""
    args = [f"--{key}={corpora[key]}" for key in CONDITIONS["voxceleb_to_farsdat"]]
    results = train_dann.main([
        "hparams/dann_fbank.yaml", "--condition=recipes/voxceleb_to_farsdat/condition.yaml",
        *args, f"--manifest_folder={tmp_path}/data", "--farsdat_eval_speakers=2",
        f"--output_folder={tmp_path}/run", *TINY, "--batch_size=2", *SHORT])
    assert set(results) == {"voxceleb1_o", "farsdat"}
    assert pd.read_csv(tmp_path / "run" / "verification" / "summary.csv")["trials"].min() > 0


def test_a_corpus_prepared_by_its_readme_command_is_not_prepared_again(corpora, tmp_path,
                                                                     caplog):
    """recipes/voxceleb_to_farsdat/README.md prepares Big FARSDAT by hand, with the
    default --pattern, before training runs the condition's preparation."""
    assert farsdat.main(["--data_folder", corpora["farsdat_folder"], "--save_folder",
                         str(tmp_path / "voxceleb_to_farsdat" / "farsdat"),
                         "--n_eval_speakers", "2", "--seg_dur", "3.0"]) == 0
    with caplog.at_level(logging.INFO, logger="data_prep.preparation"):
        prepared("voxceleb_to_farsdat", corpora, tmp_path, farsdat_eval_speakers=2)
    assert "Big FARSDAT already prepared" in caplog.text


def test_missing_corpus_folder_is_named(corpora, tmp_path):
    with pytest.raises(ManifestError, match="nowhere: VoxCeleb1 folder does not exist"):
        prepared("voxceleb_to_farsdat", dict(corpora, vox1_folder="nowhere"), tmp_path)


@pytest.mark.parametrize("option, message", [
    ("vox1_folder", "VoxCeleb1 folder does not exist"),
    ("farsdat_folder", "does not exist"),
])
def test_a_training_command_names_the_option_of_a_refused_corpus_folder(corpora, tmp_path,
                                                                         option, message):
    """The preparation's fix names its own argument (data_folder); the training
    command's user passed the condition's option, which the message names."""
    args = {key: corpora[key] for key in CONDITIONS["voxceleb_to_farsdat"]}
    args[option] = str(tmp_path / "nowhere")
    with pytest.raises(ManifestError, match=message) as error:
        train_dann.main(["hparams/dann_fbank.yaml",
                         "--condition=recipes/voxceleb_to_farsdat/condition.yaml",
                         *(f"--{key}={value}" for key, value in args.items()),
                         f"--manifest_folder={tmp_path}/data", f"--output_folder={tmp_path}/run"])
    assert str(error.value).endswith(
        f"(the path is given by --{option}={tmp_path / 'nowhere'}: "
        "recipes/voxceleb_to_farsdat/condition.yaml passes it to the data preparation)")


def test_a_refused_path_names_the_option_it_lies_in_not_one_it_only_begins_with(tmp_path):
    def refused():
        raise ManifestError(f"{tmp_path / 'vox_fa' / 'x'}: does not exist")

    condition = {"vox1_folder": str(tmp_path / "vox"), "farsdat_folder": str(tmp_path / "vox_fa")}
    with pytest.raises(ManifestError) as error:
        experiment.prepared(refused, "recipes/voxceleb_to_farsdat/condition.yaml", condition)
    assert str(error.value).endswith(
        f"(the path is given by --farsdat_folder={tmp_path / 'vox_fa'}: "
        "recipes/voxceleb_to_farsdat/condition.yaml passes it to the data preparation)")


def test_select_rows_refuses_a_selection_of_nothing(corpora, tmp_path):
    condition = prepared("voxceleb_to_farsdat", corpora, tmp_path, farsdat_eval_speakers=2)
    with pytest.raises(ManifestError, match=r"no row has lang in \['de'\]; its values are \['en'\]"):
        select_rows(condition["source_train"], str(tmp_path / "x.csv"), "lang", ["de"])
    with pytest.raises(ManifestError, match="has no column 'phrase'"):
        select_rows(condition["source_train"], str(tmp_path / "x.csv"), "phrase", ["01"])
