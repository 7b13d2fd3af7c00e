"""PLDA, its unsupervised adaptation and CORAL against direct formulas; the back-end systems in a run."""

import logging
import os

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from scipy.stats import multivariate_normal

from local.errors import ManifestError
from local.domain_statistics import coral
from local.evaluation.plda import PLDA, PLDABackend, class_covariances
from local.evaluation.report import read_scores, score_file
from local.evaluation.scoring import score_trials
from local.evaluation.backends import (
    TrainingEmbeddings, Unscorable, backends_of, target_pseudo_speakers)
from local.evaluation.verification import build_backends, check_score_norm
from local.model.pseudo_labels import PseudoLabels
from test_backend import unit_rows
from test_scoring import loop_scores, unit
from test_verification import NORM, verify_demo

DIM = 4


def random_covariance(rng, scale=1.0):
    factor = rng.normal(size=(DIM, DIM)) * scale
    return factor @ factor.T + 0.1 * np.eye(DIM)


@pytest.fixture
def model():
    """A PLDA of known mean, within- and between-class covariances."""
    rng = np.random.default_rng(11)
    mean = rng.normal(size=DIM)
    within, between = random_covariance(rng, 0.5), random_covariance(rng)
    return PLDA(mean, within, between), mean, within, between


def llr(plda, enrol, test):
    left, right, offset = plda.score_form(np.stack([enrol, test]))
    return left[0] @ right[1] + offset[0] + offset[1]


def gaussian_llr(mean, within, between, enrol, test):
    """Same speaker (joint Gaussian, shared speaker offset) against two independent speakers."""
    total = within + between
    joint = multivariate_normal(np.concatenate([mean, mean]),
                                np.block([[total, between], [between, total]]))
    marginal = multivariate_normal(mean, total)
    return joint.logpdf(np.concatenate([enrol, test])) - marginal.logpdf(enrol) - marginal.logpdf(
        test)


def covariances_of(plda):
    """The within- and between-class covariances a PLDA's transform and psi stand for."""
    back = np.linalg.inv(plda.transform)
    return back @ back.T, back @ np.diag(plda.psi) @ back.T


def test_llr_is_the_closed_form_gaussian_ratio(model):
    plda, mean, within, between = model
    rng = np.random.default_rng(12)
    for _ in range(5):
        enrol, test = rng.normal(size=(2, DIM)) * 2
        assert llr(plda, enrol, test) == pytest.approx(
            gaussian_llr(mean, within, between, enrol, test), abs=1e-9)
        assert llr(plda, enrol, test) == pytest.approx(llr(plda, test, enrol), abs=1e-12)


def test_model_keeps_its_covariances(model):
    plda, _, within, between = model
    np.testing.assert_allclose(covariances_of(plda), (within, between), atol=1e-10)
    assert (np.diff(plda.psi) <= 0).all()


def test_class_covariances_are_the_direct_sums():
    rng = np.random.default_rng(13)
    labels = rng.choice(["a", "b", "c"], size=40)
    vectors = rng.normal(size=(40, DIM)) + (labels == "a")[:, None] * 3
    mean, within, between = class_covariances(vectors, labels)
    expected_within = sum(np.outer(v - vectors[labels == k].mean(0), v - vectors[labels == k].mean(0))
                          for v, k in zip(vectors, labels)) / 40
    expected_between = sum(np.outer(vectors[labels == k].mean(0) - mean,
                                    vectors[labels == k].mean(0) - mean) for k in labels) / 40
    np.testing.assert_allclose(within, expected_within, atol=1e-12)
    np.testing.assert_allclose(between, expected_between, atol=1e-12)
    np.testing.assert_allclose(within + between, np.cov(vectors, rowvar=False, bias=True),
                               atol=1e-12)


def kaldi_adaptation(mean, within, between, in_domain, within_scale, between_scale):
    """ivector-adapt-plda's update, written over the symmetric square root of the total covariance."""
    adapted_mean = in_domain.mean(axis=0)
    shift = adapted_mean - mean
    variance = np.cov(in_domain, rowvar=False, bias=True) + np.outer(shift, shift)
    root = scipy.linalg.sqrtm(within + between).real
    inverse_root = np.linalg.inv(root)
    eigenvalues, directions = np.linalg.eigh(inverse_root @ variance @ inverse_root)
    excess = directions @ np.diag(np.maximum(eigenvalues - 1, 0)) @ directions.T
    return (adapted_mean, within + within_scale * root @ excess @ root,
            between + between_scale * root @ excess @ root)


def test_adapted_covariances_are_kaldis(model):
    plda, mean, within, between = model
    rng = np.random.default_rng(14)
    # Wider than the model along some directions, narrower along others, and shifted.
    in_domain = rng.normal(size=(500, DIM)) * [3.0, 0.3, 1.5, 0.5] @ scipy.linalg.sqrtm(
        within + between).real + mean + 0.7
    adapted = plda.adapted(in_domain, within_scale=0.3, between_scale=0.7)
    expected_mean, expected_within, expected_between = kaldi_adaptation(
        mean, within, between, in_domain, 0.3, 0.7)
    np.testing.assert_allclose(adapted.mean, expected_mean, atol=1e-12)
    np.testing.assert_allclose(covariances_of(adapted), (expected_within, expected_between),
                               atol=1e-8)
    assert np.abs(expected_within - within).max() > 0.1  # the adaptation did something
    # Variances only grow.
    assert np.linalg.eigvalsh(covariances_of(adapted)[0] - within).min() > -1e-9
    np.testing.assert_allclose(covariances_of(plda), (within, between), atol=1e-10)  # unchanged


def test_adaptation_to_the_models_own_distribution_changes_nothing(model):
    plda, mean, within, between = model
    rng = np.random.default_rng(15)
    white = rng.normal(size=(400, DIM))
    white = (white - white.mean(0)) @ np.linalg.inv(scipy.linalg.sqrtm(np.cov(white.T, bias=True)))
    in_domain = white @ scipy.linalg.sqrtm(within + between).real + mean
    adapted = plda.adapted(in_domain)
    np.testing.assert_allclose(covariances_of(adapted), (within, between), atol=1e-8)


def test_coral_gives_the_targets_mean_and_covariance():
    rng = np.random.default_rng(16)
    source = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 1.0
    target = rng.normal(size=(200, 6)) * np.linspace(0.2, 2, 6) - 0.5
    recoloured = coral(torch.from_numpy(source), target).numpy()
    units = target / np.linalg.norm(target, axis=1, keepdims=True)
    np.testing.assert_allclose(recoloured.mean(axis=0), units.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(np.cov(recoloured, rowvar=False), np.cov(units, rowvar=False),
                               atol=1e-12)
    source_units = source / np.linalg.norm(source, axis=1, keepdims=True)
    assert np.abs(np.cov(source_units, rowvar=False) - np.cov(units, rowvar=False)).max() > 0.05


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_coral_is_the_symmetric_square_roots_transform(ridge):
    """Sun et al.'s D_s C_s^(-1/2) C_t^(1/2): a target drawn like the source moves it little."""
    rng = np.random.default_rng(23)
    source = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 1.0
    target = source[rng.permutation(400)[:200]]
    units, target_units = unit_rows(source), unit_rows(target)

    def root(vectors, power):
        covariance = np.cov(vectors, rowvar=False)
        covariance += ridge * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
        return scipy.linalg.fractional_matrix_power(covariance, power).real

    expected = ((units - units.mean(axis=0)) @ root(units, -0.5) @ root(target_units, 0.5)
                + target_units.mean(axis=0))
    recoloured = coral(torch.from_numpy(source), target, ridge).numpy()
    np.testing.assert_allclose(recoloured, expected, atol=1e-10)
    assert np.abs(recoloured - units).max() < 0.2


@pytest.fixture
def backend():
    """A PLDA back-end on five speakers' 8-dimensional embeddings."""
    rng = np.random.default_rng(17)
    speakers = rng.normal(size=(5, 8)) * 2
    labels = np.repeat([f"s{i}" for i in range(5)], 30)
    return PLDABackend(speakers[np.arange(150) // 30] + rng.normal(size=(150, 8)), labels, 3)


def test_trials_and_asnorm_score_as_a_per_trial_loop(backend):
    rng = np.random.default_rng(18)
    embeddings = {f"u{i}": torch.from_numpy(rng.normal(size=8) * rng.uniform(0.5, 5))
                  for i in range(8)}
    enrolment = {"m": ["u0", "u1", "u2"]}
    trials = pd.DataFrame({"enrol": ["m", "u3", "m", "u4"], "test": ["u5", "u6", "u7", "u3"]})
    cohort = rng.normal(size=(10, 8))

    def pair(enrol, test):
        return llr(backend.plda, *backend.project(np.stack([enrol, test])))

    np.testing.assert_allclose(
        score_trials(embeddings, trials, enrolment, form=backend.score_form),
        loop_scores(embeddings, enrolment, trials, pair=pair), atol=1e-10)
    np.testing.assert_allclose(
        score_trials(embeddings, trials, enrolment, cohort, 4, backend.score_form),
        loop_scores(embeddings, enrolment, trials, cohort, 4, pair=pair), atol=1e-10)


def test_backend_scores_are_the_gaussian_llr_with_its_estimated_covariances():
    """B and W of the projected training embeddings by their definitions; each trial
    scored by the ratio of scipy's normal densities, enrolment models included."""
    rng = np.random.default_rng(24)
    means = rng.normal(size=(6, 8)) * 2
    labels = np.repeat(np.arange(6), 25)
    training = means[labels] + rng.normal(size=(150, 8))
    backend = PLDABackend(training, labels, 4)
    projected = backend.project(training)
    centre = projected.mean(axis=0)
    within, between = np.zeros((4, 4)), np.zeros((4, 4))
    for speaker in range(6):
        own = projected[labels == speaker]
        within += (own - own.mean(axis=0)).T @ (own - own.mean(axis=0)) / len(projected)
        between += len(own) * np.outer(own.mean(axis=0) - centre, own.mean(axis=0) - centre) / len(
            projected)

    truth = np.repeat(np.arange(6), 4)
    embeddings = {f"u{i}": torch.from_numpy((means[k] + rng.normal(size=8)) * rng.uniform(0.5, 5))
                  for i, k in enumerate(truth)}
    enrolment = {f"m{k}": [f"u{4 * k}", f"u{4 * k + 1}", f"u{4 * k + 2}"] for k in range(6)}
    trials = pd.DataFrame([(f"m{k}", f"u{i}") for k in range(6) for i in range(24) if i % 4 == 3]
                          + [(f"u{i}", f"u{j}") for i in range(0, 24, 4) for j in range(1, 24, 4)],
                          columns=["enrol", "test"])
    expected = [
        gaussian_llr(centre, within, between,
                     *backend.project(np.stack([
                         np.mean([unit(embeddings[u].numpy()) for u in enrolment.get(e, [e])],
                                 axis=0),
                         embeddings[t].numpy()])))
        for e, t in zip(trials["enrol"], trials["test"])
    ]
    scores = score_trials(embeddings, trials, enrolment, form=backend.score_form)
    np.testing.assert_allclose(scores, expected, atol=1e-9)
    np.testing.assert_array_equal(np.argsort(scores), np.argsort(expected))


def test_backend_projects_by_the_lda_of_the_unit_training_embeddings():
    """Unit length, centring on the unit training embeddings' mean, their LDA (scipy's
    generalised eigenvectors of the direct between- and within-class sums, largest first,
    the speakers minus one of them), unit length again: off-centre embeddings of varied norms
    project there, each LDA direction up to its sign."""
    rng = np.random.default_rng(25)
    means = rng.normal(size=(6, 8)) * 2 + 3
    labels = np.repeat(np.arange(6), 25)
    training = (means[labels] + rng.normal(size=(150, 8))) * rng.uniform(0.5, 5, size=(150, 1))
    backend = PLDABackend(training, labels, lda_dim=10)
    units = unit_rows(training)
    centre = units.mean(axis=0)
    within, between = np.zeros((8, 8)), np.zeros((8, 8))
    for speaker in range(6):
        own = units[labels == speaker]
        within += (own - own.mean(axis=0)).T @ (own - own.mean(axis=0)) / len(units)
        between += len(own) * np.outer(own.mean(axis=0) - centre,
                                       own.mean(axis=0) - centre) / len(units)
    lda = scipy.linalg.eigh(between, within)[1][:, ::-1][:, :5].T
    signs = np.sign((backend.lda * lda).sum(axis=1))
    tests = (means[rng.integers(0, 6, 10)] + rng.normal(size=(10, 8))) * rng.uniform(
        0.1, 10, size=(10, 1))
    np.testing.assert_allclose(backend.project(tests), unit_rows((unit_rows(tests) - centre)
                                                                 @ lda.T) * signs, atol=1e-9)


def test_an_adapted_backend_is_kaldis_adaptation_of_a_copy(backend):
    """plda_adapted adapts the source PLDA that plda scores with: in the projected space by
    Kaldi's update at its two scales, leaving the source back-end as it was."""
    rng = np.random.default_rng(26)
    in_domain = rng.normal(size=(200, 8)) * np.linspace(0.5, 3, 8) + 1.0
    vectors = rng.normal(size=(6, 8))
    before = [part.clone() for part in backend.score_form(vectors)]
    source = backend.plda.mean, *covariances_of(backend.plda)
    adapted = backend.adapted(in_domain, within_scale=0.2, between_scale=0.9)
    for part, was in zip(backend.score_form(vectors), before):
        torch.testing.assert_close(part, was, atol=0, rtol=0)
    expected_mean, *expected = kaldi_adaptation(*source, backend.project(in_domain), 0.2, 0.9)
    np.testing.assert_allclose(adapted.plda.mean, expected_mean, atol=1e-12)
    np.testing.assert_allclose(covariances_of(adapted.plda), expected, atol=1e-8)
    in_domain[3, 2] = np.inf
    with pytest.raises(ManifestError, match=r"plda: embeddings with NaN or infinite values\n"
                                            r"  row 3"):
        backend.adapted(in_domain, 0.2, 0.9)


def test_lda_keeps_at_most_the_speakers_minus_one_dimensions(backend):
    assert backend.lda.shape == (3, 8)
    rng = np.random.default_rng(19)
    wide = PLDABackend(rng.normal(size=(60, 8)), np.repeat(["a", "b", "c"], 20), lda_dim=6)
    assert wide.lda.shape == (2, 8)
    projected = wide.project(rng.normal(size=(4, 8)))
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0)


@pytest.mark.parametrize("count", [1, 2])
def test_fewer_than_three_speakers_cannot_train_a_plda(count):
    # Two speakers would leave one LDA dimension, whose unit length is its sign:
    # every trial would score one of three values.
    rng = np.random.default_rng(22)
    labels = np.arange(60) % count
    with pytest.raises(Unscorable, match=rf"its training embeddings have {count} speakers, "
                                         r"fewer than the 3 .*; it needs a training manifest "
                                         r"of 3 speakers or more"):
        PLDABackend(rng.normal(size=(60, 8)) + 0.3 * labels[:, None], labels, 2)


def test_non_finite_training_embeddings_are_named():
    rng = np.random.default_rng(21)
    vectors = rng.normal(size=(12, 3))
    labels = np.repeat(["a", "b", "c"], 4)
    backend = PLDABackend(vectors, labels, 2)
    vectors[5, 1] = np.nan
    message = r"plda: embeddings with NaN or infinite values\n  row 5\nFix: check the model"
    with pytest.raises(ManifestError, match=message):
        PLDABackend(vectors, labels, 2)
    with pytest.raises(ManifestError, match=message):
        backend.adapted(vectors, 0.3, 0.7)


@pytest.mark.parametrize("lda_dim", [2, 1])
def test_too_few_utterances_for_the_dimensions_are_refused(lda_dim):
    # The LDA is found in all 8 dimensions: a lower lda_dim cannot help.
    rng = np.random.default_rng(20)
    with pytest.raises(Unscorable, match=r"the within-class covariance of the 8-dimensional "
                                         r"training embeddings is singular; it needs more "
                                         r"utterances than the embeddings have dimensions and "
                                         r"speakers"):
        PLDABackend(rng.normal(size=(6, 8)), ["a", "a", "b", "b", "c", "c"], lda_dim)


@pytest.mark.parametrize("case", ["a dimension of zeros", "copies of two recordings each"])
def test_embeddings_enough_to_span_the_dimensions_that_do_not_vary_are_said_so(case):
    # 60 utterances of 6 speakers in 8 dimensions: 54 within-speaker degrees of freedom.
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 6
    if case == "a dimension of zeros":
        vectors = 8 * np.eye(8)[labels] + rng.normal(size=(60, 8))
        vectors[:, 3] = 0.0
    else:  # each speaker's 10 utterances are 5 copies each of 2 recordings: rank 6 of 8
        recordings = 8 * np.eye(8)[np.arange(12) // 2] + rng.normal(size=(12, 8))
        vectors = recordings[2 * labels + np.arange(60) // 6 % 2]
    with pytest.raises(Unscorable) as refusal:
        PLDABackend(vectors, labels, 5)
    assert str(refusal.value).startswith(
        "the within-class covariance of the 8-dimensional training embeddings is singular, though "
        "their 54 within-speaker degrees of freedom (utterances minus speakers) would span it: in "
        "some direction no speaker's embeddings vary")
    assert "backend_max_utterances" not in str(refusal.value)


@pytest.mark.parametrize("seed", range(10))
def test_one_utterance_short_of_a_full_rank_within_class_covariance_is_refused(seed):
    # 10 utterances of 3 speakers in 8 dimensions: a within-class covariance
    # of rank 7, which rounding alone can let through as positive definite.
    vectors = np.random.default_rng(seed).normal(size=(10, 8))
    with pytest.raises(Unscorable, match="within-class covariance of the 8-dimensional"):
        PLDABackend(vectors, np.arange(10) % 3, 2)
    PLDABackend(np.random.default_rng(seed).normal(size=(11, 8)), np.arange(11) % 3, 2)


@pytest.mark.parametrize("change, message", [
    ({"backend": ["lda"]}, r"backend must be a list of plda, plda_adapted, coral_plda, plda_target, "
                           r"plda_pooled \(or \[\]\); "
                           r"got \['lda'\]"),
    ({"backend": "plda"}, "backend must be a list of"),
    ({"lda_dim": 0}, "lda_dim must be an integer >= 1; got 0"),
    ({"lda_dim": 1.5}, "lda_dim must be an integer >= 1; got 1.5"),
    ({"plda_within_scale": -0.1}, "plda_within_scale must be a number >= 0; got -0.1"),
    ({"backend_max_utterances": 0}, "backend_max_utterances must be an integer >= 1; got 0"),
])
def test_bad_backend_settings(change, message):
    with pytest.raises(ValueError, match=message):
        check_score_norm(dict(NORM, **change))
    check_score_norm(dict(NORM, backend=["plda", "coral_plda"]))


BACKENDS = {"backend": backends_of("backend"), "lda_dim": 10, "score_norm": "asnorm",
            "pseudo_labels": PseudoLabels(offset=0, neighbours=5, whiten=True)}


@pytest.fixture(scope="module")
def verified(demo_corpus, tmp_path_factory):
    return verify_demo(demo_corpus, str(tmp_path_factory.mktemp("plda")), **BACKENDS)


def test_one_run_reports_every_backend(verified):
    folder, results, _ = verified
    systems = [f"{name}{suffix}" for name in ("source", "target")
               for backend in ("", "_plda", "_plda_adapted", "_coral_plda", "_plda_target",
                               "_plda_pooled")
               for suffix in (backend, f"{backend}_asnorm")]
    assert backends_of("backend") == ["plda", "plda_adapted", "coral_plda", "plda_target",
                                      "plda_pooled"]
    assert list(results) == systems
    summary = pd.read_csv(os.path.join(folder, "verification", "summary.csv"))
    assert list(summary["system"]) == systems
    for system in systems:
        assert os.path.isfile(os.path.join(folder, "verification", system, "conditions.csv"))
    # The fixed spectral 'model' tells the source speakers apart far better
    # through a PLDA trained on them than by cosine.
    assert results["source_plda"]["eer"] < results["source"]["eer"] - 0.1
    # Each back-end is its own system.
    scores = {system: read_scores(score_file(os.path.join(folder, "verification"), system))
              ["score"] for system in systems[12:]}
    assert len({round(float(s.iloc[0]), 6) for s in scores.values()}) == len(scores)


def test_target_speaker_labels_are_never_read(verified, demo_corpus, tmp_path):
    _, results, _ = verified
    table = pd.read_csv(demo_corpus["target_train"])
    scrambled, blank = tmp_path / "scrambled.csv", tmp_path / "blank.csv"
    table.assign(spk_id=table["spk_id"].sample(frac=1.0, random_state=0).to_numpy()).to_csv(
        scrambled, index=False)
    table.assign(spk_id="").to_csv(blank, index=False)
    for target in (scrambled, blank):
        folder = tmp_path / target.stem
        folder.mkdir()
        _, again, _ = verify_demo(demo_corpus, str(folder), str(target), **BACKENDS)
        assert again == results


def test_the_target_backends_train_on_the_target_pseudo_speakers():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 8)
    target = torch.from_numpy(8 * np.eye(6)[truth] + rng.normal(size=(32, 6))).float()
    hparams = {"pseudo_labels": PseudoLabels(offset=0, neighbours=5), "seed": 1}
    kept, speakers = target_pseudo_speakers(hparams, target)
    assert kept == list(range(32))  # well separated: every utterance keeps its speaker
    assert len(set(speakers)) == 4 and all(name.startswith("pseudo") for name in speakers)
    assert all(len({speakers[i] for i in range(s * 8, s * 8 + 8)}) == 1 for s in range(4))


def test_without_the_oracle_the_target_manifest_speakers_change_nothing():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 8)
    target = torch.from_numpy(8 * np.eye(6)[truth] + rng.normal(size=(32, 6))).float()
    hparams = {"pseudo_labels": PseudoLabels(offset=0, neighbours=5), "seed": 1}
    clustered = target_pseudo_speakers(hparams, target)
    # Wrong speakers, one per utterance: taken, they would give 32 pseudo-speakers.
    assert target_pseudo_speakers(hparams, target, [f"x{i}" for i in range(32)]) == clustered


def test_the_oracle_backend_takes_the_target_manifest_speakers():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 8)
    target = torch.from_numpy(rng.normal(size=(32, 6))).float()  # nothing to cluster
    names = [f"speaker{s}" for s in truth]
    hparams = {"pseudo_labels": PseudoLabels(offset=0, neighbours=5, oracle=True), "seed": 1}
    kept, speakers = target_pseudo_speakers(hparams, target, names)
    assert kept == list(range(32))
    assert len(set(speakers)) == 4
    assert all(len({speakers[i] for i in range(s * 8, s * 8 + 8)}) == 1 for s in range(4))
    with pytest.raises(ValueError, match="pseudo_oracle takes the target manifest's spk_id"):
        target_pseudo_speakers(hparams, target, names[:-1] + [""])


def training(hparams, source, target):
    """The training embeddings of the back-ends: six source speakers in turn, and ``target``."""
    speakers = [f"s{i % 6}" for i in range(len(source))]
    return TrainingEmbeddings(hparams, {"source": (source, speakers), "target": (target, None)}.get)


@pytest.mark.parametrize("speakers, each, dim, lda_dim, neighbours, message", [
    # 20 utterances of 4 speakers: 16 spare in 17 dimensions.
    (4, 5, 17, 10, 3, "20 target utterances of 4 pseudo-speakers leave 16"),
    # 38 spare in 8 dimensions, but two speakers.
    (2, 20, 8, 6, 5, "the target's 2 pseudo-speakers are fewer than the 3"),
])
def test_a_target_plda_that_cannot_train_is_said_and_pooled_still_scores(
        caplog, speakers, each, dim, lda_dim, neighbours, message):
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(speakers), each)
    target = torch.from_numpy(8 * np.eye(dim)[truth] + rng.normal(size=(len(truth), dim))).float()
    source = torch.from_numpy(8 * np.eye(dim)[np.arange(60) % 6]
                              + rng.normal(size=(60, dim))).float()
    hparams = dict(NORM, backend=["plda_target", "plda_pooled"], lda_dim=lda_dim, seed=1,
                   pseudo_labels=PseudoLabels(offset=0, neighbours=neighbours))
    with caplog.at_level("WARNING"):
        backends, unscored = build_backends(hparams["backend"], training(hparams, source, target))
    assert list(backends) == ["plda_pooled"]
    assert f"plda_target not scored: {message}" in caplog.text
    assert unscored["plda_target"].startswith(message)


def test_a_target_plda_of_as_many_spare_degrees_of_freedom_as_dimensions_is_scored():
    """20 utterances of 4 speakers: 16 spare in 16 dimensions, which PLDABackend trains on."""
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(4), 5)
    target = torch.from_numpy(8 * np.eye(16)[truth] + rng.normal(size=(20, 16))).float()
    source = torch.from_numpy(8 * np.eye(16)[np.arange(60) % 6] + rng.normal(size=(60, 16))).float()
    hparams = dict(NORM, backend=["plda_target"], lda_dim=10, seed=1,
                   pseudo_labels=PseudoLabels(offset=0, neighbours=3))
    data = training(hparams, source, target)
    assert data.pseudo_speakers[0] == list(range(20)) and len(set(data.pseudo_speakers[1])) == 4
    backends, unscored = build_backends(hparams["backend"], data)
    assert not unscored
    left, right, offset = backends["plda_target"].form(target)
    assert torch.isfinite(left @ right.T + offset[:, None] + offset[None, :]).all()


def test_pooled_plda_keeps_a_source_speaker_named_like_a_pseudo_speaker_apart():
    rng = np.random.default_rng(3)
    truth = np.repeat(np.arange(4), 8)
    target = torch.from_numpy(8 * np.eye(16)[truth + 6] + rng.normal(size=(32, 16))).float()
    source = torch.from_numpy(8 * np.eye(16)[np.arange(60) % 6] + rng.normal(size=(60, 16))).float()
    hparams = dict(NORM, lda_dim=15, seed=1, pseudo_labels=PseudoLabels(offset=0, neighbours=5))
    names = [f"pseudo{i % 6}" for i in range(len(source))]
    data = TrainingEmbeddings(hparams, {"source": (source, names), "target": (target, None)}.get)
    assert len(set(data.pseudo_speakers[1])) == 4
    pooled = build_backends(["plda_pooled"], data)[0]["plda_pooled"]
    assert len(pooled.form.__self__.lda) == 9  # 6 + 4 speakers: 9 LDA dimensions


def test_the_target_backends_train_on_the_utterances_that_keep_a_pseudo_speaker():
    """Two lone utterances first, then four speakers: the PLDAs train on the speakers' rows."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 8)
    target = torch.from_numpy(np.concatenate([rng.normal(size=(2, 16)),
                                              8 * np.eye(16)[truth] + rng.normal(size=(32, 16))]))
    source = torch.from_numpy(8 * np.eye(16)[np.arange(60) % 6] + rng.normal(size=(60, 16)))
    names = [f"s{i % 6}" for i in range(60)]
    hparams = dict(NORM, lda_dim=15, seed=1, pseudo_labels=PseudoLabels(offset=0, neighbours=5))
    data = TrainingEmbeddings(hparams, {"source": (source, names), "target": (target, None)}.get)
    assert data.pseudo_speakers[0] == list(range(2, 34))  # the lone utterances keep none
    expected = {"plda_target": PLDABackend(target[2:], [f"t{s}" for s in truth], 15),
                "plda_pooled": PLDABackend(torch.cat([source, target[2:]]),
                                           names + [f"t{s}" for s in truth], 15)}
    backends = build_backends(list(expected), data)[0]
    embeddings = {f"u{i}": torch.from_numpy(rng.normal(size=16)) for i in range(6)}
    trials = pd.DataFrame({"enrol": ["u0", "u1", "u2"], "test": ["u3", "u4", "u5"]})
    for name, plda in expected.items():
        np.testing.assert_allclose(score_trials(embeddings, trials, form=backends[name].form),
                                   score_trials(embeddings, trials, form=plda.score_form),
                                   rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("count", [7, 10])  # 10: as many as pseudo_neighbours
def test_a_target_too_small_to_cluster_leaves_out_the_pseudo_speaker_backends(caplog, count):
    source = torch.from_numpy(np.random.default_rng(2).normal(size=(60, 8))).float()
    hparams = dict(NORM, backend=["plda", "plda_pooled"], lda_dim=4, seed=1,
                   pseudo_labels=PseudoLabels(offset=0, neighbours=10))
    with caplog.at_level("WARNING"):
        backends, _ = build_backends(hparams["backend"], training(hparams, source, source[:count]))
    assert list(backends) == ["plda"]
    assert (f"plda_pooled not scored: the target's {count} training utterances are too few"
            in caplog.text)


@pytest.mark.parametrize("count, each, message", [
    # Two source speakers: no LDA beyond the sign of one dimension.
    (2, 30, "plda not scored: its training embeddings have 2 speakers, fewer than the 3"),
    # 6 utterances of 3 speakers in 8 dimensions: a singular within-class covariance.
    (3, 2, "plda not scored: the within-class covariance of the 8-dimensional training "
           "embeddings is singular"),
])
def test_a_source_plda_that_cannot_train_is_said_and_the_others_still_score(
        caplog, count, each, message):
    rng = np.random.default_rng(4)
    truth = np.repeat(np.arange(4), 20)
    target = torch.from_numpy(8 * np.eye(8)[truth] + rng.normal(size=(80, 8))).float()
    labels = np.arange(count * each) % count
    source = torch.from_numpy(8 * np.eye(8)[labels] + rng.normal(size=(len(labels), 8))).float()
    hparams = dict(NORM, backend=["plda", "plda_adapted", "coral_plda", "plda_pooled"], lda_dim=6,
                   seed=1, pseudo_labels=PseudoLabels(offset=0, neighbours=5))
    data = TrainingEmbeddings(hparams, {"source": (source, [f"s{i}" for i in labels]),
                                        "target": (target, None)}.get)
    with caplog.at_level("WARNING"):
        backends, unscored = build_backends(["cosine", *hparams["backend"]], data)
    assert list(backends) == ["cosine", "plda_pooled"]
    assert list(unscored) == ["plda", "plda_adapted", "coral_plda"]
    assert message in caplog.text


@pytest.mark.parametrize("sources, targets, domain", [(60, 1, "target"), (1, 80, "source")])
def test_a_domain_too_small_to_re_colour_by_leaves_coral_plda_out(caplog, sources, targets,
                                                                  domain):
    rng = np.random.default_rng(6)
    source = torch.from_numpy(8 * np.eye(8)[np.arange(60) % 6] + rng.normal(size=(60, 8))).float()
    target = torch.from_numpy(rng.normal(size=(80, 8))).float()
    hparams = dict(NORM, lda_dim=4, seed=1, pseudo_labels=PseudoLabels(offset=0, neighbours=5))
    data = training(hparams, source[:sources], target[:targets])
    with caplog.at_level("WARNING"):
        backends, unscored = build_backends(["cosine", "plda_adapted", "coral_plda"], data)
    assert "coral_plda" not in backends and "cosine" in backends
    assert unscored["coral_plda"].startswith(
        f"the {domain}'s 1 training utterances are fewer than the 2 of a covariance")
    assert f"coral_plda not scored: the {domain}'s 1" in caplog.text


def test_a_pooled_plda_of_no_target_pseudo_speaker_is_said_not_scored_as_the_source_plda(caplog):
    rng = np.random.default_rng(1)
    source = torch.from_numpy(8 * np.eye(8)[np.arange(60) % 6] + rng.normal(size=(60, 8))).float()
    target = torch.from_numpy(rng.normal(size=(40, 8))).float()  # no speakers to find
    hparams = dict(NORM, lda_dim=6, seed=1,
                   pseudo_labels=PseudoLabels(offset=0, neighbours=5, min_silhouette=0.99))
    data = training(hparams, source, target)
    assert data.pseudo_speakers == ([], [])
    with caplog.at_level("WARNING"):
        backends, unscored = build_backends(["plda", "plda_pooled"], data)
    assert list(backends) == ["plda"]
    assert unscored["plda_pooled"].startswith(
        "none of the target's 40 training utterances keeps a pseudo-speaker")
    assert "plda_pooled not scored: none of the target's 40" in caplog.text


def test_the_backends_clustering_names_the_target_utterances_in_its_warnings(caplog):
    rng = np.random.default_rng(0)
    target = torch.from_numpy(8 * np.eye(6)[np.repeat(np.arange(4), 8)]
                              + rng.normal(size=(32, 6))).float()
    target[8:16] = target[8]  # one recording under eight IDs
    ids = [f"utt{i}" for i in range(32)]
    hparams = {"pseudo_labels": PseudoLabels(offset=0, neighbours=5), "seed": 1}
    with caplog.at_level("WARNING"):
        kept, speakers = target_pseudo_speakers(hparams, target, None, ids)
    assert kept == list(range(32)) and len(set(speakers[8:16])) == 1
    assert "8 utterances (utt8, utt9, utt10, ...)" in caplog.text


@pytest.mark.parametrize("found", ["speakers", "barely any"])
def test_a_target_clustering_of_the_backends_that_barely_keeps_warns_as_training_does(
        caplog, found):
    rng = np.random.default_rng(0)
    if found == "speakers":
        target = torch.from_numpy(8 * np.eye(6)[np.repeat(np.arange(4), 8)]
                                  + rng.normal(size=(32, 6))).float()
    else:
        target = torch.from_numpy(rng.normal(size=(40, 8))).float()  # no speakers to find
    hparams = {"pseudo_labels": PseudoLabels(offset=0, neighbours=5, min_silhouette=0.9),
               "seed": 1}
    with caplog.at_level("WARNING"):
        kept, _ = target_pseudo_speakers(hparams, target)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if found == "speakers":
        assert len(kept) == 32 and not warned
    else:
        assert 0 < len(kept) < 4 and len(warned) == 1
        assert warned[0].startswith("target pseudo-speakers of the back-ends: ")
        # Either target back-end may be scored alone: neither is said to be trained by both.
        assert "of 40 target utterances kept: the target barely trains the target back-ends " \
               "(plda_target, plda_pooled). Lower pseudo_min_silhouette (now 0.9)" in warned[0]


def test_the_oracle_target_backends_train_on_a_target_too_small_to_cluster():
    """The oracle clusters nothing: a target of fewer utterances than pseudo_neighbours trains."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 2)
    target = torch.from_numpy(8 * np.eye(6)[truth] + rng.normal(size=(8, 6))).float()
    hparams = {"pseudo_labels": PseudoLabels(offset=0, neighbours=10, oracle=True), "seed": 1}
    names = [f"speaker{s}" for s in truth]
    data = TrainingEmbeddings(hparams, {"target": (target, names, None)}.get)
    kept, speakers = data.pseudo_speakers
    assert kept == list(range(8)) and len(set(speakers)) == 4


def test_the_backends_cluster_the_target_with_the_runs_seed(monkeypatch):
    seeds = []
    cluster = PseudoLabels.cluster

    def seen(self, embeddings, seed=0):
        seeds.append(seed)
        return cluster(self, embeddings, seed=seed)

    monkeypatch.setattr(PseudoLabels, "cluster", seen)
    rng = np.random.default_rng(0)
    target = torch.from_numpy(8 * np.eye(6)[np.repeat(np.arange(4), 8)]
                              + rng.normal(size=(32, 6))).float()
    hparams = {"pseudo_labels": PseudoLabels(offset=0, neighbours=5), "seed": 7}
    target_pseudo_speakers(hparams, target)
    assert seeds == [7]


def test_a_target_plda_of_as_many_pseudo_speakers_as_a_plda_needs_is_scored():
    """Three pseudo-speakers, the fewest a PLDA trains on, of 27 spare degrees of freedom in 8."""
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 10)
    target = torch.from_numpy(8 * np.eye(8)[truth] + rng.normal(size=(30, 8))).float()
    hparams = dict(NORM, lda_dim=2, seed=1, pseudo_labels=PseudoLabels(offset=0, neighbours=5))
    data = training(hparams, target, target)
    assert len(set(data.pseudo_speakers[1])) == 3
    backends, unscored = build_backends(["plda_target"], data)
    assert not unscored and list(backends) == ["plda_target"]
