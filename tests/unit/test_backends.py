"""The registry of back-ends: every entry scores, systems are named as the summary names them."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from local.evaluation.backends import (
    BACKENDS,
    TrainingEmbeddings,
    backends_of,
    chosen_backends,
    system_name,
)
from local.evaluation.metrics import eer
from local.evaluation.scoring import score_trials
from local.evaluation.verification import build_backends, list_systems
from local.model.pseudo_labels import PseudoLabels

DIM = 8
HPARAMS = {"lda_dim": 6, "whiten_ridge": 0.1, "plda_within_scale": 0.3,
           "plda_between_scale": 0.7, "seed": 1,
           "pseudo_labels": PseudoLabels(offset=0, neighbours=5, whiten=True)}


def speakers(rng, count, utterances, shift):
    """``[count * utterances, DIM]`` embeddings around ``count`` speaker means, and speakers."""
    means = 4 * rng.normal(size=(count, DIM)) + shift
    labels = np.repeat(np.arange(count), utterances)
    vectors = means[labels] + rng.normal(size=(len(labels), DIM))
    return torch.from_numpy(vectors).float(), [f"s{label}" for label in labels]


@pytest.fixture(scope="module")
def data():
    """Training embeddings for every back-end, and a trial list of every pair of 16 utterances."""
    rng = np.random.default_rng(5)
    source, labels = speakers(rng, 6, 20, shift=0.0)
    target, _ = speakers(rng, 4, 20, shift=1.0)
    cohort, _ = speakers(rng, 5, 6, shift=1.0)
    evaluation, truth = speakers(rng, 4, 4, shift=1.0)
    training = TrainingEmbeddings(HPARAMS, {"cohort": (cohort, None), "source": (source, labels),
                                            "target": (target, None)}.get)
    embeddings = {f"u{i}": vector for i, vector in enumerate(evaluation)}
    pairs = list(itertools.combinations(range(len(truth)), 2))
    trials = pd.DataFrame({"enrol": [f"u{i}" for i, _ in pairs],
                           "test": [f"u{j}" for _, j in pairs],
                           "label": [int(truth[i] == truth[j]) for i, j in pairs]})
    return training, embeddings, trials


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("top_k", [None, 10])
def test_every_backend_scores_a_trial_list(data, name, top_k):
    training, embeddings, trials = data
    backend = build_backends([name], training)[0][name]
    cohort = backend.cohort if top_k else None
    scores = score_trials(backend.adapt(embeddings), trials, cohort=cohort, top_k=top_k,
                          form=backend.form)
    assert scores.shape == (len(trials),) and np.isfinite(scores).all()
    assert 0 <= eer(scores, trials["label"]) < 0.3  # four well separated speakers: far from chance


def test_every_backend_is_chosen_by_one_setting():
    assert [name for name, kind in BACKENDS.items() if kind.setting is None] == ["cosine"]
    assert set(BACKENDS) == {"cosine", *backends_of("backend_adaptation"), *backends_of("backend")}
    every = chosen_backends({"backend_adaptation": "mean", "backend": backends_of("backend")})
    assert every == [name for name in BACKENDS if name != "whiten"]
    assert chosen_backends({"backend_adaptation": None, "backend": []}) == ["cosine"]


def test_system_names_are_the_summary_rows():
    assert [system_name("target", backend, norm) for backend, norm in (
        ("cosine", None), ("cosine", "asnorm"), ("whiten", None), ("plda_pooled", "asnorm"))] == [
        "target", "target_asnorm", "target_whiten", "target_plda_pooled_asnorm"]
    systems = list_systems(["source", "target"], ["cosine", "whiten", "plda"], "snorm")
    assert [system.name for system in systems] == [
        f"{trial_list}{suffix}" for trial_list in ("source", "target")
        for suffix in ("", "_snorm", "_whiten", "_whiten_snorm", "_plda", "_plda_snorm")]
    assert [system.name for system in list_systems(["target"], ["cosine"], None)] == ["target"]
