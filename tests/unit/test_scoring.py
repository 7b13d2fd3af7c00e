"""Cosine scoring, enrolment models and S-norm/AS-norm/Z-norm/T-norm against per-trial loops."""

import numpy as np
import pandas as pd
import pytest
import torch

import local.evaluation.scoring
from local.errors import ManifestError
from local.evaluation.scoring import cohort_stats, normalize_scores, score_trials, side_vectors

DIM = 8


@pytest.fixture
def system():
    """Embeddings of varied norms, two enrolment models, trials and a small cohort."""
    rng = np.random.default_rng(7)
    utterances = [f"u{i}" for i in range(10)]
    embeddings = {
        utt: torch.from_numpy(rng.normal(size=DIM) * rng.uniform(0.1, 10)) for utt in utterances
    }
    enrolment = {"m1": ["u0", "u1", "u2"], "m2": ["u3"]}
    trials = pd.DataFrame(
        [("u0", "u1"), ("u1", "u0"), ("u4", "u5"), ("m1", "u6"), ("m2", "u7"), ("m1", "u7"),
         ("u8", "u9"), ("u4", "u9"), ("m2", "u3"), ("u3", "u3")],
        columns=["enrol", "test"],
    )
    cohort = rng.normal(size=(12, DIM))
    return embeddings, enrolment, trials, cohort


def unit(vector):
    return vector / np.linalg.norm(vector)


def loop_side(embeddings, enrolment, side):
    """A side's vector the direct way: the mean of its unit embeddings."""
    members = enrolment.get(side, [side])
    return np.mean([unit(embeddings[utt].numpy()) for utt in members], axis=0)


def loop_scores(embeddings, enrolment, trials, cohort=None, top_k=None, pair=np.dot,
                norm_sides=("enrol", "test")):
    """Cosine (or ``pair(enrol, test)`` of the sides' unit vectors) score and
    S-norm/AS-norm (or Z-norm/T-norm, one of ``norm_sides``), one trial at a time."""
    scores = []
    for enrol_id, test_id in zip(trials["enrol"], trials["test"]):
        enrol = unit(loop_side(embeddings, enrolment, enrol_id))
        test = unit(embeddings[test_id].numpy())
        score = pair(enrol, test)
        if cohort is not None:
            normalised = []
            for name, side in (("enrol", enrol), ("test", test)):
                if name not in norm_sides:
                    continue
                cohort_scores = np.array([pair(side, unit(member)) for member in cohort])
                if top_k is not None:
                    cohort_scores = np.sort(cohort_scores)[-top_k:]
                normalised.append((score - cohort_scores.mean()) / cohort_scores.std(ddof=1))
            score = np.mean(normalised)
        scores.append(score)
    return np.array(scores)


def test_cosine_scores_equal_a_per_trial_loop(system):
    embeddings, enrolment, trials, _ = system
    scores = score_trials(embeddings, trials, enrolment)
    assert scores.dtype == np.float64 and scores.shape == (len(trials),)
    np.testing.assert_allclose(scores, loop_scores(embeddings, enrolment, trials), atol=1e-12)


@pytest.mark.parametrize("top_k", [None, 2, 5, 12])
def test_snorm_and_asnorm_equal_a_per_trial_loop(system, top_k):
    embeddings, enrolment, trials, cohort = system
    scores = score_trials(embeddings, trials, enrolment, cohort=cohort, top_k=top_k)
    expected = loop_scores(embeddings, enrolment, trials, cohort, top_k)
    np.testing.assert_allclose(scores, expected, atol=1e-10)


def numpy_norm(embeddings, enrolment, trials, cohort, side):
    """Z-norm (``side`` "enrol") or T-norm ("test") of cosine scores, in whole-matrix numpy."""
    def units(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def vectors(ids, models):
        return units(np.stack([units(np.stack([embeddings[u].numpy() for u in models.get(i, [i])]))
                               .mean(axis=0) for i in ids]))

    enrol, test = vectors(trials["enrol"], enrolment), vectors(trials["test"], {})
    against = units(np.asarray(cohort)) @ (enrol if side == "enrol" else test).T
    raw = np.sum(enrol * test, axis=1)
    return (raw - against.mean(axis=0)) / against.std(axis=0, ddof=1)


@pytest.mark.parametrize("side", ["enrol", "test"])
def test_znorm_and_tnorm_equal_a_numpy_computation(system, side):
    """Z-norm standardises by the enrolment side's cohort statistics, T-norm by the test side's."""
    embeddings, enrolment, trials, cohort = system
    scores = score_trials(embeddings, trials, enrolment, cohort=cohort, norm_sides=(side,))
    np.testing.assert_allclose(scores, numpy_norm(embeddings, enrolment, trials, cohort, side),
                               atol=1e-10)
    np.testing.assert_allclose(
        scores, loop_scores(embeddings, enrolment, trials, cohort, norm_sides=(side,)), atol=1e-10)
    # The sides differ: the two normalisations are not one.
    other = numpy_norm(embeddings, enrolment, trials, cohort, {"enrol": "test"}.get(side, "enrol"))
    assert np.abs(scores - other).max() > 0.1


@pytest.mark.parametrize("top_k", [None, 4])
def test_snorm_is_the_mean_of_znorm_and_tnorm(system, top_k):
    embeddings, enrolment, trials, cohort = system
    znorm, tnorm, snorm = (score_trials(embeddings, trials, enrolment, cohort, top_k,
                                        norm_sides=sides)
                           for sides in [("enrol",), ("test",), ("enrol", "test")])
    np.testing.assert_allclose(snorm, (znorm + tnorm) / 2, atol=1e-12)


def test_only_the_normalised_sides_are_scored_against_the_cohort(system):
    """A zero test-only embedding scores 0 raw: Z-norm never reads its cohort statistics."""
    embeddings, enrolment, trials, cohort = system
    embeddings["u9"] = torch.zeros(DIM, dtype=torch.float64)
    znorm = score_trials(embeddings, trials, enrolment, cohort=cohort, norm_sides=("enrol",))
    assert np.isfinite(znorm).all()
    for sides in [("test",), ("enrol", "test")]:
        with pytest.raises(ManifestError, match=r"cohort: 1 trial sides(.|\n)*\n  u9\nFix"):
            score_trials(embeddings, trials, enrolment, cohort=cohort, norm_sides=sides)
    with pytest.raises(ValueError, match="norm_sides must be one or both of 'enrol' and 'test'"):
        score_trials(embeddings, trials, enrolment, cohort=cohort, norm_sides=("model",))


@pytest.mark.parametrize("top_k", [4, 5, 7])
def test_asnorm_counts_tied_cohort_scores_as_often_as_they_occur(system, top_k):
    """Each cohort member thrice: the top k cut through a tie, and keep k scores, not k values."""
    embeddings, enrolment, trials, cohort = system
    tied = np.tile(cohort[:4], (3, 1))
    scores = score_trials(embeddings, trials, enrolment, cohort=tied, top_k=top_k)
    np.testing.assert_allclose(scores, loop_scores(embeddings, enrolment, trials, tied, top_k),
                               atol=1e-10)


def test_asnorm_with_the_whole_cohort_is_snorm(system):
    embeddings, enrolment, trials, cohort = system
    np.testing.assert_allclose(
        score_trials(embeddings, trials, enrolment, cohort=cohort, top_k=len(cohort)),
        score_trials(embeddings, trials, enrolment, cohort=cohort),
        atol=1e-12,
    )


def test_chunks_do_not_change_the_scores(system, monkeypatch):
    embeddings, enrolment, trials, cohort = system
    whole = score_trials(embeddings, trials, enrolment, cohort=cohort, top_k=3)
    monkeypatch.setattr(local.evaluation.scoring, "CHUNK_TRIALS", 3)
    monkeypatch.setattr(local.evaluation.scoring, "CHUNK_ELEMENTS", 25)  # two sides per cohort chunk
    np.testing.assert_allclose(
        score_trials(embeddings, trials, enrolment, cohort=cohort, top_k=3), whole, atol=1e-12
    )


def test_enrolment_model_is_the_mean_of_length_normalised_embeddings(system):
    embeddings, enrolment, _, _ = system
    embeddings["u0"] = embeddings["u0"] * 1000  # a loud utterance does not dominate
    trials = pd.DataFrame({"enrol": ["m1"], "test": ["u6"]})
    model = np.mean([unit(embeddings[u].numpy()) for u in ("u0", "u1", "u2")], axis=0)
    expected = unit(model) @ unit(embeddings["u6"].numpy())
    assert score_trials(embeddings, trials, enrolment)[0] == pytest.approx(expected, abs=1e-12)
    raw_mean = np.mean([embeddings[u].numpy() for u in ("u0", "u1", "u2")], axis=0)
    assert abs(expected - unit(raw_mean) @ unit(embeddings["u6"].numpy())) > 1e-3
    # A one-utterance model scores as its utterance.
    two = pd.DataFrame({"enrol": ["m2", "u3"], "test": ["u7", "u7"]})
    first, second = score_trials(embeddings, two, enrolment)
    assert first == pytest.approx(second, abs=1e-15)


def test_a_model_named_like_an_utterance_is_the_model_on_the_enrolment_side(system):
    embeddings, _, _, _ = system
    trials = pd.DataFrame({"enrol": ["u5", "u6"], "test": ["u5", "u5"]})
    scores = score_trials(embeddings, trials, enrolment={"u5": ["u1", "u2"]})
    expected = loop_scores(embeddings, {"u5": ["u1", "u2"]}, trials)
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    assert scores[0] < 0.99  # not the utterance against itself


def test_each_trial_reads_exactly_its_own_embeddings(system):
    embeddings, enrolment, trials, _ = system
    before = score_trials(embeddings, trials, enrolment)
    embeddings["unused"] = torch.full((DIM,), float("nan"))  # not in any trial: never read
    embeddings["u9"] = -embeddings["u9"]
    after = score_trials(embeddings, trials, enrolment)
    uses_u9 = (trials["test"] == "u9").to_numpy()
    np.testing.assert_allclose(after[uses_u9], -before[uses_u9], atol=1e-12)
    np.testing.assert_array_equal(after[~uses_u9], before[~uses_u9])
    # Trials naming the same sides get the same score wherever they are.
    assert before[0] == pytest.approx(before[1], abs=1e-15)


def test_missing_embeddings_are_listed(system):
    embeddings, enrolment, trials, _ = system
    for utt in ("u1", "u2", "u5", "u6", "u7", "u8", "u9"):
        del embeddings[utt]
    with pytest.raises(ManifestError) as error:
        score_trials(embeddings, trials, enrolment)
    message = str(error.value)
    assert message.startswith(
        "embeddings: 7 of the 10 utterances the trials need have no embedding")
    # Enrolment sides first (u1 and u2 through model m1), then test sides.
    assert "  u1\n  u2\n  u8\n  u5\n  u6\n  ... and 2 more" in message
    assert "Fix: embed every utterance" in message


def test_a_single_missing_embedding_is_named_not_a_key_error(system):
    embeddings, enrolment, trials, _ = system
    del embeddings["u2"]  # in model m1 only
    with pytest.raises(ManifestError, match=r"^embeddings: 1 of the 10 utterances the trials "
                                            r"need have no embedding\n  u2\nFix: embed"):
        score_trials(embeddings, trials, enrolment)


def test_nan_embeddings_and_cohort_are_named(system):
    embeddings, enrolment, trials, cohort = system
    cohort[3, 1] = np.nan
    with pytest.raises(ManifestError,
                       match=r"cohort: embeddings with NaN or infinite values\n  row 3"):
        score_trials(embeddings, trials, enrolment, cohort=cohort)
    embeddings["u2"] = embeddings["u2"].clone()
    embeddings["u2"][0] = float("nan")
    with pytest.raises(ManifestError, match=r"embeddings with NaN or infinite values\n  u2\n"):
        score_trials(embeddings, trials, enrolment)


def test_top_k_below_two_is_refused(system):
    embeddings, enrolment, trials, cohort = system
    with pytest.raises(ValueError, match="top_k must be at least 2; got 1"):
        score_trials(embeddings, trials, enrolment, cohort=cohort, top_k=1)


@pytest.mark.parametrize("size, top_k", [(12, 13), (1, None)])
def test_a_cohort_too_small_for_its_statistics_is_refused(system, size, top_k):
    """A drawn cohort can be smaller than cohort_size: its manifest's utterances are all there are."""
    embeddings, enrolment, trials, cohort = system
    needed = top_k or 2
    with pytest.raises(ManifestError, match=rf"cohort: {size} embeddings, fewer than the {needed}"
                                            r"(.|\n)*Fix: draw the cohort from a training manifest"):
        score_trials(embeddings, trials, enrolment, cohort=cohort[:size], top_k=top_k)


@pytest.mark.parametrize("top_k", [None, 4])
def test_sides_whose_cohort_scores_do_not_vary_are_named(system, top_k):
    """Their standard deviation is 0: a NaN or infinite score, not a number, is all they give."""
    embeddings, enrolment, trials, cohort = system
    with pytest.raises(ManifestError, match=r"cohort: 10 trial sides score the same against every "
                                            r"cohort member(.|\n)*\n  u0 u1 u2\n"):
        score_trials(embeddings, trials, enrolment, cohort=np.tile(cohort[:1], (5, 1)),
                     top_k=top_k)
    embeddings["u9"] = torch.zeros(DIM, dtype=torch.float64)
    with pytest.raises(ManifestError, match=r"cohort: 1 trial sides(.|\n)*\n  u9\nFix: check "
                                            r"the model: it gives these utterances, or the "
                                            r"cohort's, identical or zero embeddings$"):
        score_trials(embeddings, trials, enrolment, cohort=cohort, top_k=top_k)


def test_a_cohort_alike_up_to_rounding_is_named_for_sides_of_any_score(system):
    """One float32 embedding at 12 loudnesses: its unit vectors differ by rounding alone, and a
    side nearly orthogonal to it (cosine 0.001) has cohort scores spread by about 1e-8. That is
    rounding at the scale of a cosine, not of its mean, and would divide the scores by 1e-8."""
    _, _, _, cohort = system
    direction = torch.from_numpy(cohort[0]).float()
    direction /= direction.norm()
    loud = direction[None] * torch.linspace(0.5, 7, 12)[:, None]
    other = torch.from_numpy(cohort[1]).float()
    side = other - (other @ direction) * direction + 1e-3 * direction * other.norm()
    embeddings = {"e": torch.from_numpy(cohort[2]).float(), "t": side}
    trials = pd.DataFrame({"enrol": ["e"], "test": ["t"]})
    for sides, named in [(("test",), "1 trial sides(.|\n)*\n  t"),
                         (("enrol", "test"), "2 trial sides(.|\n)*\n  e\n  t")]:
        with pytest.raises(ManifestError, match=rf"cohort: {named}\nFix"):
            score_trials(embeddings, trials, cohort=loud, norm_sides=sides)


def test_building_blocks_compose_into_score_trials(system):
    embeddings, enrolment, trials, cohort = system
    enrol = side_vectors(embeddings, [enrolment.get(e, [e]) for e in trials["enrol"]])
    test = side_vectors(embeddings, [[t] for t in trials["test"]])
    raw = (enrol * test).sum(dim=1).numpy()
    normalised = normalize_scores(
        raw, cohort_stats(enrol, cohort, 4), cohort_stats(test, cohort, 4))
    np.testing.assert_allclose(
        normalised, score_trials(embeddings, trials, enrolment, cohort, top_k=4), atol=1e-12
    )
