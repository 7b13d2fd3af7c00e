"""The real-corpus conditions, prepared from fake trees shaped like the corpora."""

import os

import pandas as pd
import pytest
import yaml

import train_dann
from local import settings
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


CONDITIONS = {
    "voxceleb_to_deepmine": ["vox1_folder", "deepmine_folder", "deepmine_key"],
    "deepmine_wireless_to_telephone": ["deepmine_folder", "deepmine_key", "channel_table"],
    "voxceleb_to_farsdat": ["vox1_folder", "farsdat_folder"],
}


def prepared(name, corpora, tmp_path, **extra):
    overrides = {key: corpora[key] for key in CONDITIONS[name]}
    overrides.update(condition=f"recipes/{name}/condition.yaml",
                     manifest_folder=str(tmp_path / name), **extra)
    _, condition, model_overrides = settings.load_condition(yaml.safe_dump(overrides),
                                                              "hparams/dann_fbank.yaml")
    assert model_overrides == {}
    for prepare in condition["prepare"]:
        prepare()
    return condition


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_prepares_valid_manifests_and_trials(name, corpora, tmp_path):
    extra = {"farsdat_eval_speakers": 2} if "farsdat" in name else {}
    condition = prepared(name, corpora, tmp_path, **extra)
    assert condition["condition"] == name
    assert os.path.isfile(f"recipes/{name}/README.md")
    source = validate(condition["source_train"])
    target = validate(condition["target_train"])
    for spec in condition["evaluation"].values():
        # No speaker or file of a trial list is in the training data.
        validate(spec["manifest"], spec["trials"], spec.get("enrolment"),
                 train_manifests=[condition["source_train"], condition["target_train"]])
    if name == "deepmine_wireless_to_telephone":
        assert set(source["channel"]) == {"wireless"} and set(target["channel"]) == {"telephone"}
        assert len(source) + len(target) == len(CHANNELS)
    else:
        assert set(source["domain"]) == {"voxceleb"}
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


def test_missing_corpus_folder_is_named(corpora, tmp_path):
    with pytest.raises(ManifestError, match="nowhere: VoxCeleb1 folder does not exist"):
        prepared("voxceleb_to_farsdat", dict(corpora, vox1_folder="nowhere"), tmp_path)


def test_select_rows_refuses_a_selection_of_nothing(corpora, tmp_path):
    condition = prepared("voxceleb_to_farsdat", corpora, tmp_path, farsdat_eval_speakers=2)
    with pytest.raises(ManifestError, match=r"no row has lang in \['de'\]; its values are \['en'\]"):
        select_rows(condition["source_train"], str(tmp_path / "x.csv"), "lang", ["de"])
    with pytest.raises(ManifestError, match="has no column 'phrase'"):
        select_rows(condition["source_train"], str(tmp_path / "x.csv"), "phrase", ["01"])
