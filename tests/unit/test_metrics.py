"""EER and minDCF against a brute-force ROC and against SpeechBrain's metrics."""

import os
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from speechbrain.utils.metric_stats import EER, minDCF

from local.evaluation.metrics import (
    SDSV_DCF,
    VOXCELEB_DCF,
    compute_metrics,
    dcf_name,
    eer,
    eer_threshold,
    error_rates,
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
    for metric in (eer, min_dcf, error_rates, compute_metrics):
        with pytest.raises(ValueError, match=message):
            metric(scores, labels)


def test_bad_cost_setting_is_named():
    with pytest.raises(ValueError, match="0 < p_target < 1"):
        min_dcf([0.1, 0.2], [0, 1], p_target=1.0)


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
