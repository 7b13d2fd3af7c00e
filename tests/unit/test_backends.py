"""The registry of back-ends: every entry scores, systems are named as the summary names them."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from local.domain_statistics import DomainAdaptation, coral
from local.evaluation.backends import (
    BACKENDS,
    TrainingEmbeddings,
    backends_of,
    chosen_backends,
    system_name,
)
from local.evaluation.metrics import eer
from local.evaluation.plda import PLDABackend
from local.evaluation.scoring import cosine_form, score_trials
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


def test_each_backend_scores_as_its_model_trained_directly_on_its_draws(data):
    """Each back-end's space, cohort and score, against the same model built from the draws."""
    training, embeddings, trials = data
    # Read from the draws themselves, not through what TrainingEmbeddings gives.
    cohort, (source, labels), target = (training.draw("cohort")[0], training.draw("source"),
                                        training.draw("target")[0])
    ridge, lda_dim = HPARAMS["whiten_ridge"], HPARAMS["lda_dim"]
    source_plda = PLDABackend(source, labels, lda_dim)
    expected = {"mean": DomainAdaptation(cohort, False, ridge),
                "whiten": DomainAdaptation(cohort, True, ridge),
                "plda": source_plda,
                "plda_adapted": source_plda.adapted(target, HPARAMS["plda_within_scale"],
                                                    HPARAMS["plda_between_scale"]),
                "coral_plda": PLDABackend(coral(source, target, ridge), labels, lda_dim)}
    backends = build_backends(list(expected), training)[0]
    for name, model in expected.items():
        backend = backends[name]
        if name in ("mean", "whiten"):  # the cohort, too, centred on (and whitened by) itself
            assert torch.equal(backend.cohort, model(cohort))
            adapted, form = model.adapt_embeddings(embeddings), cosine_form
        else:
            assert torch.equal(backend.cohort, cohort)
            adapted, form = embeddings, model.score_form
        scores = score_trials(backend.adapt(embeddings), trials, form=backend.form)
        np.testing.assert_allclose(scores, score_trials(adapted, trials, form=form),
                                   rtol=1e-6, atol=1e-6)


def test_the_source_plda_is_trained_once_and_said_once_for_its_backends(data, capsys):
    training = TrainingEmbeddings(HPARAMS, data[0].draw)
    backends = build_backends(["plda", "plda_adapted"], training)[0]
    assert backends["plda"].form.__self__ is training.source_plda
    assert capsys.readouterr().out.count("PLDA back-end: 120 source utterances, LDA to 5 "
                                         "dimensions") == 1
