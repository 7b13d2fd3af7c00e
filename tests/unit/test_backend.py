"""Back-end adaptation: centring and whitening against numpy, and in a verification run."""

import glob
import os

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from local.data.manifest_io import read_trials
from local.errors import ManifestError
from local.domain_statistics import DomainAdaptation, coral
from local.evaluation.report import score_file
from local.evaluation.scoring import score_trials
from local.evaluation.verification import check_score_norm
from test_scoring import loop_scores
from test_verification import NORM, verify_demo

DIM = 6


def unit_rows(matrix):
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def zca(domain, ridge=0.0):
    """Mean and ZCA whitening matrix of a domain's unit embeddings, the direct way."""
    units = unit_rows(domain)
    covariance = np.cov(units, rowvar=False)
    covariance += ridge * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    return units.mean(axis=0), np.linalg.inv(scipy.linalg.sqrtm(covariance).real)


@pytest.fixture
def domain():
    """Correlated, off-centre embeddings of varied norms: far from white."""
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(DIM, DIM)) * np.linspace(0.2, 3, DIM)
    vectors = rng.normal(size=(300, DIM)) @ mixing + rng.normal(size=DIM) * 2
    return vectors * rng.uniform(0.5, 5, size=(300, 1))


def test_whitened_domain_has_zero_mean_and_identity_covariance(domain):
    units = unit_rows(domain)
    assert np.abs(np.cov(units, rowvar=False) - np.eye(DIM)).max() > 0.5  # not white before
    adapted = DomainAdaptation(torch.from_numpy(domain), whiten=True)(domain).numpy()
    np.testing.assert_allclose(adapted.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.cov(adapted, rowvar=False), np.eye(DIM), atol=1e-10)


def test_ridge_shrinks_each_whitened_variance_as_expected(domain):
    eigenvalues = np.linalg.eigvalsh(np.cov(unit_rows(domain), rowvar=False))
    ridge = 0.5 * eigenvalues.mean()
    adapted = DomainAdaptation(domain, whiten=True, ridge=0.5)(domain).numpy()
    np.testing.assert_allclose(np.linalg.eigvalsh(np.cov(adapted, rowvar=False)),
                               eigenvalues / (eigenvalues + ridge), atol=1e-10)


def test_mean_subtraction_is_the_direct_formula(domain):
    rng = np.random.default_rng(4)
    vectors = torch.from_numpy(rng.normal(size=(5, DIM))).float()
    adapted = DomainAdaptation(domain)(vectors)
    assert adapted.dtype == torch.float32
    expected = unit_rows(vectors.double().numpy()) - unit_rows(domain).mean(axis=0)
    np.testing.assert_allclose(adapted.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("whiten, ridge", [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_adapted_scores_equal_a_direct_computation(domain, whiten, ridge):
    rng = np.random.default_rng(5)
    embeddings = {f"u{i}": torch.from_numpy(rng.normal(size=DIM) + domain[i]) for i in range(6)}
    enrolment = {"m": ["u0", "u1"]}
    trials = pd.DataFrame({"enrol": ["m", "u2", "u3", "m"], "test": ["u4", "u5", "u2", "u2"]})
    mean, matrix = zca(domain, ridge)
    if not whiten:
        matrix = np.eye(DIM)
    direct = {utt: matrix @ (unit_rows(vector.numpy()[None])[0] - mean)
              for utt, vector in embeddings.items()}
    expected = [
        unit_rows(np.mean(unit_rows(np.stack([direct[u] for u in enrolment.get(e, [e])])),
                          axis=0)[None])[0] @ unit_rows(direct[t][None])[0]
        for e, t in zip(trials["enrol"], trials["test"])
    ]
    adapt = DomainAdaptation(domain, whiten, ridge)
    scores = score_trials(adapt.adapt_embeddings(embeddings), trials, enrolment)
    np.testing.assert_allclose(scores, expected, atol=1e-10)
    assert np.abs(scores - score_trials(embeddings, trials, enrolment)).max() > 0.01


def test_a_domain_that_does_not_span_its_dimensions_needs_a_ridge(domain):
    few = domain[:DIM - 1]
    with pytest.raises(ManifestError, match=r"cohort: 5 embeddings, fewer than the 7 that a "
                                            r"covariance spanning their 6 dimensions needs\n"
                                            r"Fix: set whiten_ridge above 0, or raise "
                                            r"cohort_size and the cohort's training manifest to "
                                            r"7 utterances or more"):
        DomainAdaptation(few, whiten=True)
    adapted = DomainAdaptation(few, whiten=True, ridge=0.1)(domain)
    assert torch.isfinite(adapted).all()
    DomainAdaptation(few)  # centring alone needs no covariance


def test_enough_embeddings_that_do_not_span_their_dimensions_are_not_asked_to_be_more(domain):
    # Twice as many embeddings as dimensions, all in a plane of them.
    flat = domain[:2 * DIM].copy()
    flat[:, 0] = flat[:, 1]
    with pytest.raises(ManifestError, match=r"cohort: its 12 embeddings do not span their 6 "
                                            r"dimensions(.|\n)*\nFix: set whiten_ridge above 0, "
                                            r"or check the model and the audio they were drawn "
                                            r"from$"):
        DomainAdaptation(flat, whiten=True)


@pytest.mark.parametrize("few", ["target", "source"])
def test_coral_names_the_domain_that_does_not_span_its_dimensions_and_its_own_fix(domain, few):
    vectors = {"target": domain[:100], "source": domain[100:]}
    vectors[few] = vectors[few][:DIM - 1]
    with pytest.raises(ManifestError, match=rf"^{few}: 5 embeddings, fewer than the 7 that a "
                                            rf"covariance spanning their 6 dimensions needs\n"
                                            rf"Fix: set whiten_ridge above 0, or raise "
                                            rf"backend_max_utterances and the {few} training "
                                            rf"manifest to 7 utterances or more") as err:
        coral(vectors["source"], vectors["target"])
    assert "cohort" not in str(err.value)
    coral(vectors["source"], vectors["target"], ridge=0.1)


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_one_embedding_has_no_covariance_to_whiten_by(domain, ridge):
    with pytest.raises(ManifestError, match=r"cohort: 1 embeddings, fewer than the 2 that a "
                                            r"covariance to whiten by needs\nFix: raise "
                                            r"cohort_size and the cohort's training manifest "
                                            r"to 2 utterances or more"):
        DomainAdaptation(domain[:1], whiten=True, ridge=ridge)
    DomainAdaptation(domain[:1])  # centring alone needs no covariance


@pytest.mark.parametrize("ridge", [0.0, 0.1])
@pytest.mark.parametrize("dim", [4, DIM])
def test_identical_embeddings_are_named_whatever_the_ridge(ridge, dim):
    # Of different norms: the same once of unit length.
    same = torch.arange(1.0, 11.0)[:, None] * torch.linspace(-1, 2, dim)
    with pytest.raises(ManifestError, match=r"cohort: its 10 embeddings are all the same: they "
                                            r"have no covariance to whiten by\nFix: check the "):
        DomainAdaptation(same, whiten=True, ridge=ridge)


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_float32_embeddings_alike_to_their_rounding_are_all_the_same(ridge):
    """A float32 model embeds utterances of digital silence of any length to within 1e-7."""
    rng = np.random.default_rng(0)
    silence = rng.normal(size=DIM)
    alike = torch.from_numpy(silence * (1 + 1e-7 * rng.normal(size=(25, DIM)))).float()
    with pytest.raises(ManifestError, match=r"cohort: its 25 embeddings are all the same: they "
                                            r"have no covariance to whiten by\nFix: check the "):
        DomainAdaptation(alike, whiten=True, ridge=ridge)


def test_coral_names_the_domain_of_bad_embeddings(domain):
    target = domain.copy()
    target[3, 0] = np.nan
    with pytest.raises(ManifestError, match=r"^target: embeddings with NaN or infinite values"
                                            r"\n  row 3"):
        coral(domain, target, 0.1)


def test_non_finite_domain_rows_are_named(domain):
    domain[7, 2] = np.inf
    with pytest.raises(ManifestError, match=r"cohort: embeddings with NaN or infinite values\n  row 7"):
        DomainAdaptation(domain, whiten=True)


@pytest.mark.parametrize("change, message", [
    ({"backend_adaptation": "lda"}, "backend_adaptation must be null, mean or whiten"),
    ({"whiten_ridge": -0.1}, "whiten_ridge must be a number >= 0; got -0.1"),
    ({"whiten_ridge": "1e-3"}, "whiten_ridge must be a number >= 0; got '1e-3'"),
    ({"backend_adaptation": "whiten", "cohort_size": 1}, "cohort_size must be an integer >= 2"),
])
def test_bad_backend_settings(change, message):
    with pytest.raises(ValueError, match=message):
        check_score_norm(dict(NORM, **change))
    check_score_norm(dict(NORM, backend_adaptation="whiten", whiten_ridge=0))


@pytest.fixture(scope="module")
def verified(demo_corpus, tmp_path_factory):
    return verify_demo(demo_corpus, str(tmp_path_factory.mktemp("backend")),
                       score_norm="asnorm", backend_adaptation="whiten", whiten_ridge=0.1)


def test_one_run_reports_with_and_without_adaptation(verified, demo_corpus):
    folder, results, embed = verified
    systems = ["source", "source_asnorm", "source_whiten", "source_whiten_asnorm",
               "target", "target_asnorm", "target_whiten", "target_whiten_asnorm"]
    assert list(results) == systems
    summary = pd.read_csv(os.path.join(folder, "verification", "summary.csv"))
    assert list(summary["system"]) == systems
    # The cohort is embedded once, for both the adaptation and the normalisation.
    utterances = sum(len(pd.read_csv(demo_corpus[k])) for k in ("source_eval", "target_eval"))
    assert embed.embedded == utterances + NORM["cohort_size"]


def test_adapted_systems_score_as_a_direct_computation(verified, demo_corpus):
    folder, _, _ = verified
    embeddings, cohort = (torch.load(cache) for name in ("target", "cohort_target50")
                          for cache in glob.glob(os.path.join(folder, f"embeddings_{name}_*.pt")))
    cohort = np.stack([vector.double().numpy() for _, vector in sorted(cohort.items())])
    mean, matrix = zca(cohort, ridge=0.1)
    adapted = {utt: torch.from_numpy(matrix @ (unit_rows(v.double().numpy()[None])[0] - mean))
               for utt, v in embeddings.items()}
    adapted_cohort = (unit_rows(cohort) - mean) @ matrix.T
    trials = read_trials(demo_corpus["trials_target"])
    for system, expected in (
        ("target_whiten", loop_scores(adapted, {}, trials)),
        ("target_whiten_asnorm", loop_scores(adapted, {}, trials, adapted_cohort, top_k=10)),
    ):
        scores = pd.read_csv(score_file(os.path.join(folder, "verification"), system),
                             sep=" ", header=None, names=["enrol", "test", "score", "label"])
        np.testing.assert_allclose(scores["score"], expected, atol=1e-4)
