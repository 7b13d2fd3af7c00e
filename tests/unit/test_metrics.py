"""EER and minDCF against a brute-force ROC and against SpeechBrain's metrics; the
calibration metrics against their definitions and a calibrated Gaussian set."""

import math
import os
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm
from speechbrain.utils.metric_stats import EER, minDCF

from local.evaluation.metrics import (
    SDSV_DCF,
    VOXCELEB_DCF,
    act_dcf,
    bayes_threshold,
    calibration_metrics,
    cllr,
    compute_metrics,
    dcf_name,
    dcf_setting,
    eer,
    eer_threshold,
    error_rates,
    min_cllr,
    min_dcf,
)
from local.evaluation.report import score_file, write_scores
from local.export import operating_points

# The published settings (VoxSRC's p_target 0.05 among them) plus ones where targets are
# common or the costs uneven.
SETTINGS = VOXCELEB_DCF + SDSV_DCF + [(0.05, 1, 1), (0.5, 1, 1), (0.05, 1, 3)]


def _random(seed, n=300, decimals=None):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = rng.normal(size=n) + 1.5 * labels
    return (scores if decimals is None else scores.round(decimals)), labels.astype(int)


CASES = {
    "random": _random(0),
    "random, unbalanced": _random(1, n=500),
    "many ties": _random(2, decimals=1),
    "ties at every score": _random(3, decimals=0),
    "all scores equal": (np.full(20, 0.3), np.arange(20) % 3 == 0),
    "one target above one non-target": ([0.9, 0.1], [1, 0]),
    "one target below one non-target": ([0.1, 0.9], [1, 0]),
    "one target tied with one non-target": ([0.5, 0.5], [1, 0]),
    "perfectly separated": (np.r_[np.linspace(1, 2, 7), np.linspace(-1, 0.5, 11)],
                            [1] * 7 + [0] * 11),
    "fully inverted": (np.r_[np.linspace(-1, 0.5, 7), np.linspace(1, 2, 11)],
                       [1] * 7 + [0] * 11),
    "separated but touching": ([0.2, 0.5, 0.5, 0.7, 0.9], [0, 0, 1, 1, 1]),
    # Their halfway point rounds to the higher.
    "separated by one float": ([0.1, np.nextafter(1.0, 0.0), 1.0], [0, 0, 1]),
}


def brute_force(scores, labels):
    """Exact (p_miss, p_fa) at every threshold in a python loop, as Fractions.

    Every score, every midpoint between neighbouring distinct scores and
    +-inf is tried with the rule "accept when score > threshold"; only the
    distinct operating points, in increasing threshold order, are kept.
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    targets, nontargets = scores[labels], scores[~labels]
    distinct = sorted(set(scores.tolist()))
    midpoints = [(a + b) / 2 for a, b in zip(distinct, distinct[1:])]
    points = []
    for threshold in sorted([-np.inf, np.inf] + distinct + midpoints):
        point = (
            Fraction(int((targets <= threshold).sum()), len(targets)),
            Fraction(int((nontargets > threshold).sum()), len(nontargets)),
        )
        if point not in points:
            points.append(point)
    return points


def brute_eer(points):
    """(p_miss + p_fa) / 2 at the first point where |p_fa - p_miss| is smallest."""
    p_miss, p_fa = min(points, key=lambda point: abs(point[1] - point[0]))
    return float((p_miss + p_fa) / 2)


def brute_min_dcf(points, p_target, c_miss, c_fa):
    p_target = Fraction(str(p_target))
    cost = min(c_miss * p_target * m + c_fa * (1 - p_target) * f for m, f in points)
    return float(cost / min(c_miss * p_target, c_fa * (1 - p_target)))


@pytest.mark.parametrize("case", CASES)
def test_operating_points_are_those_of_the_brute_force_roc(case):
    scores, labels = CASES[case]
    thresholds, p_miss, p_fa = error_rates(scores, labels)
    assert list(zip(p_miss, p_fa)) == [(float(m), float(f)) for m, f in brute_force(scores, labels)]
    assert thresholds[0] == -np.inf and np.all(np.diff(thresholds) > 0)
    assert thresholds[1:].tolist() == sorted(set(np.asarray(scores, float).tolist()))


@pytest.mark.parametrize("case", CASES)
def test_eer_and_min_dcf_equal_the_brute_force(case):
    scores, labels = CASES[case]
    points = brute_force(scores, labels)
    assert eer(scores, labels) == pytest.approx(brute_eer(points), abs=1e-6)
    for setting in SETTINGS:
        assert min_dcf(scores, labels, *setting) == pytest.approx(
            brute_min_dcf(points, *setting), abs=1e-6
        )


@pytest.mark.parametrize("case", CASES)
def test_agrees_with_speechbrain(case):
    scores, labels = CASES[case]
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    positive, negative = torch.tensor(scores[labels]), torch.tensor(scores[~labels])
    assert eer(scores, labels) == pytest.approx(EER(positive, negative)[0], abs=1e-6)
    for p_target, c_miss, c_fa in SETTINGS:
        raw, _ = minDCF(positive, negative, c_miss, c_fa, p_target)
        # SpeechBrain's minDCF is the raw cost and lacks the "accept all"
        # operating point (cost c_fa * (1 - p_target)); ours is normalised.
        normaliser = min(c_miss * p_target, c_fa * (1 - p_target))
        ours = min_dcf(scores, labels, p_target, c_miss, c_fa) * normaliser
        assert ours == pytest.approx(min(raw, c_fa * (1 - p_target)), abs=1e-6)
        if c_miss * p_target <= c_fa * (1 - p_target):  # every published setting
            assert ours == pytest.approx(raw, abs=1e-6)


def test_accept_all_is_an_operating_point_speechbrain_lacks():
    # Targets are common and the system is inverted: accepting every trial
    # (cost 0.01) beats every threshold SpeechBrain tries (0.99 at best).
    scores, labels = CASES["one target below one non-target"]
    scores = np.asarray(scores)
    labels = np.asarray(labels, bool)
    raw, _ = minDCF(torch.tensor(scores[labels]), torch.tensor(scores[~labels]), p_target=0.99)
    assert raw == pytest.approx(0.99)
    assert min_dcf(scores, labels, p_target=0.99) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "case, expected_eer",
    [("perfectly separated", 0.0), ("separated but touching", 1 / 6), ("fully inverted", 1.0),
     ("all scores equal", 0.5), ("one target tied with one non-target", 0.5)],
)
def test_known_values(case, expected_eer):
    scores, labels = CASES[case]
    assert eer(scores, labels) == pytest.approx(expected_eer)


def test_of_equally_close_operating_points_the_lowest_threshold_gives_the_eer():
    # (p_miss, p_fa) = (1/2, 2/3) after the second score and (1/2, 1/3) after
    # the third: both 1/6 apart. SpeechBrain's float32 rates make the second
    # look closer; exact counts keep the first.
    scores, labels = [1.0, 2.0, 3.0, 4.0, 5.0], [0, 1, 0, 1, 0]
    assert brute_eer(brute_force(scores, labels)) == pytest.approx(7 / 12)
    assert eer(scores, labels) == pytest.approx(7 / 12)
    assert compute_metrics(scores, labels, dcf=[])["eer"] == pytest.approx(7 / 12)
    assert eer_threshold(scores, labels) == 2.5


def test_a_tie_across_classes_is_never_split():
    # Non-targets 0.2, 0.5; targets 0.5, 0.7, 0.9. No threshold accepts the
    # target at 0.5 without the non-target at 0.5: the best operating points
    # miss 1/3 of the targets (reject both) or accept 1/2 of the non-targets.
    scores, labels = CASES["separated but touching"]
    assert eer(scores, labels) == pytest.approx((1 / 3 + 0) / 2)
    # At p_target 0.5 the normalised cost is p_miss + p_fa: 1/3 + 0 beats 0 + 1/2.
    assert min_dcf(scores, labels, p_target=0.5) == pytest.approx(1 / 3)


def per_class_points(scores, labels):
    """Miss and false-alarm counts at each distinct score and -inf, from each class's
    sorted scores (no sort of the pooled trials), and the class sizes."""
    targets, nontargets = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    thresholds = np.r_[-np.inf, np.unique(scores)]
    misses = np.searchsorted(targets, thresholds, side="right")
    false_alarms = len(nontargets) - np.searchsorted(nontargets, thresholds, side="right")
    return misses, false_alarms, len(targets), len(nontargets)


@pytest.mark.parametrize("decimals", [None, 1])
def test_ten_targets_among_a_hundred_thousand_non_targets(decimals):
    """A list as unbalanced as a few enrolled speakers against many impostors, with and
    without ties: EER and minDCF (VoxSRC's p_target 0.05 among them) of the exact counts."""
    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(10, int), np.zeros(10**5, int)]
    scores = rng.normal(size=labels.size) + 2 * labels
    scores = scores if decimals is None else scores.round(decimals)
    misses, false_alarms, n_target, n_nontarget = per_class_points(scores, labels)
    # Closest in exact integers, the lowest threshold of equally close points.
    best = np.argmin(np.abs(false_alarms * n_target - misses * n_nontarget))
    assert eer(scores, labels) == pytest.approx(
        (misses[best] / n_target + false_alarms[best] / n_nontarget) / 2, abs=1e-12)
    for p_target, c_miss, c_fa in SETTINGS:
        cost = (c_miss * p_target * misses / n_target
                + c_fa * (1 - p_target) * false_alarms / n_nontarget)
        assert min_dcf(scores, labels, p_target, c_miss, c_fa) == pytest.approx(
            cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)), abs=1e-12)


def test_compute_metrics_is_the_single_metrics_from_one_sort():
    scores, labels = CASES["many ties"]
    metrics = compute_metrics(torch.tensor(scores), torch.tensor(labels), dcf=SETTINGS)
    assert list(metrics) == ["eer"] + [dcf_name(*setting) for setting in SETTINGS]
    assert metrics["eer"] == eer(scores, labels)
    for setting in SETTINGS:
        assert metrics[dcf_name(*setting)] == min_dcf(scores, labels, *setting)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([0.1, 0.2], [1, 1], "all 2 trials are target trials"),
        ([0.1, 0.2, 0.3], [0, 0, 0], "all 3 trials are non-target trials"),
        ([], [], "no trials"),
        ([0.1, float("nan"), 0.3], [1, 0, 1],
         r"1 of 3 scores are NaN or infinite \(trials \[1\]\)"),
        ([0.1, float("inf")], [1, 0], "NaN or infinite"),
        ([0.1, 0.2], [1, 2], "labels must be 1 .target. or 0"),
        ([0.1, 0.2, 0.3], [1, 0], "same length"),
    ],
)
def test_bad_input_is_named(scores, labels, message):
    for metric in (eer, min_dcf, error_rates, compute_metrics, act_dcf, cllr, min_cllr,
                   calibration_metrics):
        with pytest.raises(ValueError, match=message):
            metric(scores, labels)


def test_bad_cost_setting_is_named():
    for metric in (min_dcf, act_dcf):
        with pytest.raises(ValueError, match="0 < p_target < 1"):
            metric([0.1, 0.2], [0, 1], p_target=1.0)
    with pytest.raises(ValueError, match="positive costs; got p_target=0.01, c_miss=1, c_fa=0"):
        bayes_threshold(0.01, c_fa=0)


@pytest.mark.parametrize("case", CASES)
def test_eer_threshold_decides_at_the_eer_operating_point(case):
    scores, labels = CASES[case]
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    threshold = eer_threshold(scores, labels)
    accepted = scores > threshold
    point = (Fraction(int((~accepted[labels]).sum()), int(labels.sum())),
             Fraction(int(accepted[~labels].sum()), int((~labels).sum())))
    points = brute_force(scores, labels)
    assert point == min(points, key=lambda p: abs(p[1] - p[0]))
    # Halfway between the scores either side of the cut, or at the edge of the scores.
    distinct = np.unique(scores)
    below, above = distinct[distinct <= threshold], distinct[distinct > threshold]
    if len(below) and len(above):
        assert threshold == pytest.approx((below[-1] + above[0]) / 2, abs=1e-12)
    elif len(above):  # every trial accepted: just below the lowest score
        assert threshold < above[0] and threshold == pytest.approx(above[0], abs=1e-12)
    else:  # every trial rejected: the highest score
        assert threshold == distinct[-1]


def test_exported_thresholds_give_the_eer_in_percent_as_the_summary_does(tmp_path):
    scores, labels = CASES["random"]
    trials = pd.DataFrame({"enrol": [f"e{i}" for i in range(len(scores))],
                           "test": [f"t{i}" for i in range(len(scores))], "label": labels})
    path = score_file(tmp_path / "verification", "target")
    os.makedirs(os.path.dirname(path))
    write_scores(path, trials, scores)
    points = operating_points(str(tmp_path), ["target"])
    assert list(points.columns) == ["trial_list", "threshold", "eer_percent"]
    assert points["eer_percent"][0] == pytest.approx(100 * eer(scores, labels))
    assert points["threshold"][0] == eer_threshold(scores, labels)


def brute_act_dcf(scores, labels, p_target, c_miss, c_fa):
    """The normalised cost of accepting the scores above log(c_fa (1 - p) / (c_miss p))."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    threshold = math.log(c_fa * (1 - p_target) / (c_miss * p_target))
    p_miss = Fraction(int((scores[labels] <= threshold).sum()), int(labels.sum()))
    p_fa = Fraction(int((scores[~labels] > threshold).sum()), int((~labels).sum()))
    p_target = Fraction(str(p_target))
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    return float(cost / min(c_miss * p_target, c_fa * (1 - p_target)))


def brute_cllr(scores, labels):
    """Cllr in bits, one trial at a time: -log2 of the right class's posterior at prior 1/2."""
    targets = [math.log2(1 + math.exp(-s)) for s, t in zip(scores, labels) if t]
    nontargets = [math.log2(1 + math.exp(s)) for s, t in zip(scores, labels) if not t]
    return (sum(targets) / len(targets) + sum(nontargets) / len(nontargets)) / 2


def brute_min_cllr(scores, labels):
    """Cllr of the pool-adjacent-violators posteriors, equal scores pooled first."""
    blocks = []  # [targets, trials] per pool, in increasing score order
    for score in sorted(set(float(s) for s in scores)):
        tied = [bool(t) for s, t in zip(scores, labels) if s == score]
        blocks.append([sum(tied), len(tied)])
        while len(blocks) > 1 and (Fraction(blocks[-2][0], blocks[-2][1])
                                   > Fraction(blocks[-1][0], blocks[-1][1])):
            targets, trials = blocks.pop()
            blocks[-1][0] += targets
            blocks[-1][1] += trials
    n_target = sum(targets for targets, _ in blocks)
    n_nontarget = sum(trials for _, trials in blocks) - n_target
    # A posterior p at the list's prior is the ratio (p / (1 - p)) / (n_target / n_nontarget).
    cost_target = cost_nontarget = 0.0
    for targets, trials in blocks:
        nontargets = trials - targets
        if targets:
            cost_target += targets * math.log2(1 + nontargets * n_target / (targets * n_nontarget))
        if nontargets:
            cost_nontarget += nontargets * math.log2(
                1 + targets * n_nontarget / (nontargets * n_target))
    return (cost_target / n_target + cost_nontarget / n_nontarget) / 2


@pytest.mark.parametrize("case", CASES)
def test_calibration_metrics_equal_their_definitions(case):
    scores, labels = CASES[case]
    # Spread the scores over the Bayes thresholds of the settings (0 to 6.9).
    scores = 4 * np.asarray(scores, float)
    metrics = calibration_metrics(scores, labels, dcf=SETTINGS)
    assert list(metrics) == [dcf_name(*s, kind="act") for s in SETTINGS] + ["cllr", "min_cllr"]
    for setting in SETTINGS:
        expected = brute_act_dcf(scores, labels, *setting)
        assert act_dcf(scores, labels, *setting) == pytest.approx(expected, abs=1e-12)
        assert metrics[dcf_name(*setting, kind="act")] == pytest.approx(expected, abs=1e-12)
        assert dcf_setting(dcf_name(*setting, kind="act")) == setting
    assert cllr(scores, labels) == pytest.approx(brute_cllr(scores, labels), abs=1e-12)
    assert metrics["cllr"] == pytest.approx(brute_cllr(scores, labels), abs=1e-12)
    assert min_cllr(scores, labels) == pytest.approx(brute_min_cllr(scores, labels), abs=1e-12)
    assert metrics["min_cllr"] == pytest.approx(brute_min_cllr(scores, labels), abs=1e-12)
    assert metrics["min_cllr"] <= metrics["cllr"] + 1e-12


def test_calibration_columns_are_named_as_the_summary_and_seed_table_read_them():
    # --metrics act_dcf_0.01 of the seed table, a fused summary's columns.
    scores, labels = CASES["random"]
    assert list(calibration_metrics(scores, labels)) == [
        "act_dcf_0.01", "act_dcf_0.001", "cllr", "min_cllr"]
    assert list(calibration_metrics(scores, labels, SDSV_DCF))[0] == "act_dcf_0.01_10_1"
    assert dcf_setting("act_dcf_0.01_10_1") == (0.01, 10.0, 1.0)


def test_a_score_at_the_bayes_threshold_is_rejected():
    # p_target 0.5: threshold 0. The target at 0 is missed, the non-target at
    # 1 accepted: cost 1, twice that of a trivial decision.
    assert act_dcf([0.0, 1.0], [1, 0], p_target=0.5) == 2.0
    assert act_dcf([0.0, 1.0], [0, 1], p_target=0.5) == 0.0


def test_min_cllr_of_separated_uninformative_and_tied_scores():
    assert min_cllr([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 0.0
    assert min_cllr([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == pytest.approx(1.0)
    assert min_cllr(np.zeros(9), np.arange(9) % 3 == 0) == pytest.approx(1.0)
    # Separated but for a tie of a target and a non-target: their pool's
    # ratio is 1, a bit each; the others' trials cost nothing.
    assert min_cllr([0.2, 0.5, 0.5, 0.7], [0, 0, 1, 1]) == pytest.approx(0.5)


MU, TRIALS = 4.0, 200_000


def gaussian_llrs(shift=0.0, seed=0):
    """Log-likelihood ratios N(+-MU, 2 MU) of targets and non-targets, plus ``shift``.

    With variance twice the mean, the log-likelihood ratio of a score s of
    these two Gaussians is s itself: the unshifted scores are calibrated.
    """
    rng = np.random.default_rng(seed)
    labels = rng.random(TRIALS) < 0.5
    scores = rng.normal(size=TRIALS) * math.sqrt(2 * MU) + np.where(labels, MU, -MU)
    return scores + shift, labels


def expected_calibration(shift, setting):
    """The population actDCF at ``setting`` and Cllr of :func:`gaussian_llrs`, by integration."""
    sigma = math.sqrt(2 * MU)
    p_target, c_miss, c_fa = setting
    threshold = math.log(c_fa * (1 - p_target) / (c_miss * p_target))
    p_miss = norm.cdf(threshold, loc=MU + shift, scale=sigma)
    p_fa = norm.sf(threshold, loc=-MU + shift, scale=sigma)
    dcf = ((c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa)
           / min(c_miss * p_target, c_fa * (1 - p_target)))
    target, _ = quad(lambda s: norm.pdf(s, MU + shift, sigma) * np.logaddexp(0, -s) / math.log(2),
                     -np.inf, np.inf)
    nontarget, _ = quad(lambda s: norm.pdf(s, -MU + shift, sigma) * np.logaddexp(0, s)
                        / math.log(2), -np.inf, np.inf)
    return dcf, (target + nontarget) / 2


@pytest.mark.parametrize("setting", VOXCELEB_DCF + SDSV_DCF)
def test_calibrated_scores_cost_their_min_dcf_and_their_cllr_by_integration(setting):
    scores, labels = gaussian_llrs()
    expected_dcf, expected_cllr = expected_calibration(0.0, setting)
    metrics = calibration_metrics(scores, labels, dcf=[setting])
    actual = metrics[dcf_name(*setting, kind="act")]
    # The Bayes threshold is the population's best: actDCF is the minDCF, up to
    # the sampling error of the false alarms (about 0.02 at p_target 0.01).
    assert actual == pytest.approx(expected_dcf, abs=0.05)
    assert min_dcf(scores, labels, *setting) <= actual
    assert actual == pytest.approx(min_dcf(scores, labels, *setting), abs=0.05)
    assert metrics["cllr"] == pytest.approx(expected_cllr, abs=0.005)
    assert metrics["min_cllr"] == pytest.approx(metrics["cllr"], abs=0.005)


@pytest.mark.parametrize("setting", VOXCELEB_DCF + SDSV_DCF)
def test_shifted_scores_cost_more_than_their_min_dcf_and_cllr(setting):
    calibrated, labels = gaussian_llrs()
    scores, _ = gaussian_llrs(shift=2.0)
    expected_dcf, expected_cllr = expected_calibration(2.0, setting)
    metrics = calibration_metrics(scores, labels, dcf=[setting])
    actual = metrics[dcf_name(*setting, kind="act")]
    assert actual == pytest.approx(expected_dcf, abs=0.05)
    assert actual > min_dcf(scores, labels, *setting) + 0.3
    assert metrics["cllr"] == pytest.approx(expected_cllr, abs=0.005)
    assert metrics["cllr"] > metrics["min_cllr"] + 0.1
    # What a monotonic map can recover is the calibrated scores' Cllr.
    assert metrics["min_cllr"] == pytest.approx(min_cllr(calibrated, labels), abs=1e-12)
