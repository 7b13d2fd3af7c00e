"""The recipe test rows of ``tests/recipes/`` are complete, and each one runs and passes its checks."""

import itertools
import os

import pytest

from tests.recipes.recipe_tests import COLUMNS, RECIPE_FOLDER, ROOT, read_rows, run_row

ROWS = read_rows()
SCRIPTS = ("train_dann.py", "evaluate.py")


def test_rows_have_speechbrains_columns_and_name_existing_files():
    for path in RECIPE_FOLDER.glob("*.csv"):
        assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS), path
    for recipe_id, row in ROWS.items():
        for column in ("Script_file", "Hparam_file", "Data_prep_file", "Readme_file"):
            assert (ROOT / row[column]).is_file(), f"{recipe_id}: {column} {row[column]}"
        assert row["test_debug_flags"] and "performance_check=[" in row["test_debug_checks"]


def test_every_script_runs_with_every_hparams_file():
    # Every model file; hparams/common.yaml is their base, not a model.
    hparams = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "hparams").glob("*.yaml")
                     if path.name != "common.yaml")
    covered = {(row["Script_file"], row["Hparam_file"]) for row in ROWS.values()}
    assert covered == set(itertools.product(SCRIPTS, hparams))


@pytest.fixture(scope="module")
def outcomes(demo_corpus, tiny_ssl, tmp_path_factory):
    """Every row run once, in ID order (evaluation rows read the training rows' runs)."""
    output_folder = str(tmp_path_factory.mktemp("recipe_tests"))
    env = {"RECIPE_TEST_DATA": os.path.dirname(demo_corpus["eval"]),
           "RECIPE_TEST_WAVLM": tiny_ssl["wavlm"], "RECIPE_TEST_WAV2VEC2": tiny_ssl["wav2vec2"],
           "RECIPE_TEST_OUT": output_folder}
    return {recipe_id: run_row(recipe_id, row, output_folder, env)
            for recipe_id, row in ROWS.items()}


@pytest.mark.parametrize("recipe_id", ROWS)
def test_recipe_row_runs_and_passes_its_checks(outcomes, recipe_id):
    problems = outcomes[recipe_id]
    assert not problems, f"{recipe_id} ({ROWS[recipe_id]['Script_file']} " \
                         f"{ROWS[recipe_id]['Hparam_file']}):\n" + "\n".join(problems)
