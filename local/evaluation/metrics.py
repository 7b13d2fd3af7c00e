"""Verification metrics from scores and labels: error rates, EER, minDCF and calibration.

One sort of the scores gives every operating point: a threshold may only cut
between two distinct score values (a tie is never split), so with ``D``
distinct scores there are ``D + 1`` operating points, from "accept every
trial" to "reject every trial". EER and minDCF are read off those points.

Conventions, as in :mod:`speechbrain.utils.metric_stats` (``EER``,
``minDCF``): a trial is accepted when its score is above the threshold; the
EER is ``(p_miss + p_fa) / 2`` at the operating point where the two are
closest (the lowest threshold among equally close ones). Two differences:
:func:`min_dcf` is *normalised* (divided by the cost of the better trivial
system, ``min(c_miss * p_target, c_fa * (1 - p_target))``), as the VoxCeleb
and SdSV evaluation tools report it, where SpeechBrain's ``minDCF`` returns
the raw detection cost; and SpeechBrain has no "accept every trial"
operating point, which only matters when accepting everything is cheaper
than rejecting everything (``c_fa * (1 - p_target) < c_miss * p_target``,
none of the settings below). SpeechBrain's functions are also quadratic in
the number of trials; these are ``O(n log n)``.

The calibration metrics (:func:`calibration_metrics`) read the scores as
log-likelihood ratios, as a logistic fusion gives them
(:mod:`local.evaluation.fusion`), and measure what deciding by them costs,
as NIST SRE and Brümmer's BOSARIS toolkit do: the actual DCF
(:func:`act_dcf`), the cost at the Bayes threshold of each setting,
normalised as minDCF is, and Cllr (:func:`cllr`) with its minimum over
monotonic transformations of the scores (:func:`min_cllr`), in bits.
"""

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.special import logit

# Detection cost settings (p_target, c_miss, c_fa) each evaluation reports.
VOXCELEB_DCF = [(0.01, 1, 1), (0.001, 1, 1)]
SDSV_DCF = [(0.01, 10, 1)]


def _checked(scores, labels):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"scores and labels must be 1-D and of the same length; "
            f"got shapes {scores.shape} and {labels.shape}"
        )
    if scores.size == 0:
        raise ValueError("no trials: scores and labels are empty")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(
            f"{bad.size} of {scores.size} scores are NaN or infinite "
            f"(trials {bad[:5].tolist()}{' ...' if bad.size > 5 else ''})"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"labels must be 1 (target) or 0 (non-target); found {np.unique(labels)[:5].tolist()}"
        )
    labels = labels.astype(bool)
    targets = int(labels.sum())
    if targets in (0, labels.size):
        kind = "non-target" if targets == 0 else "target"
        raise ValueError(
            f"all {labels.size} trials are {kind} trials: EER and minDCF need "
            "both target and non-target trials"
        )
    return scores, labels


def _error_counts(scores, labels):
    """Thresholds, miss and false-alarm counts per operating point, and class sizes."""
    scores, labels = _checked(scores, labels)
    order = np.argsort(scores)
    ordered = scores[order]
    # Position of the last trial of each run of equal scores: the only places
    # a threshold can cut.
    last = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    targets_below = np.cumsum(labels[order])[last]
    n_target = targets_below[-1]
    n_nontarget = labels.size - n_target
    misses = np.append(0, targets_below)
    false_alarms = n_nontarget - np.append(0, last + 1 - targets_below)
    thresholds = np.append(-np.inf, ordered[last])
    return thresholds, misses, false_alarms, n_target, n_nontarget


def _eer_point(misses, false_alarms, n_target, n_nontarget):
    # |p_fa - p_miss| in units of 1 / (n_target * n_nontarget): exact integers,
    # so equally close operating points tie exactly rather than by rounding.
    gap = np.abs(false_alarms * n_target - misses * n_nontarget)
    return np.argmin(gap)


def _eer(misses, false_alarms, n_target, n_nontarget):
    best = _eer_point(misses, false_alarms, n_target, n_nontarget)
    return float((misses[best] / n_target + false_alarms[best] / n_nontarget) / 2)


def _check_setting(p_target, c_miss, c_fa):
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise ValueError(
            f"need 0 < p_target < 1 and positive costs; got p_target={p_target}, "
            f"c_miss={c_miss}, c_fa={c_fa}"
        )


def _dcf(p_miss, p_fa, p_target, c_miss, c_fa):
    """Normalised detection cost of each operating point."""
    _check_setting(p_target, c_miss, c_fa)
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    return cost / min(c_miss * p_target, c_fa * (1 - p_target))


def _min_dcf(p_miss, p_fa, p_target, c_miss, c_fa):
    return float(_dcf(p_miss, p_fa, p_target, c_miss, c_fa).min())


def bayes_threshold(p_target, c_miss=1, c_fa=1):
    """The threshold at which log-likelihood ratios minimise the expected cost of a setting.

    ``log(c_fa (1 - p_target) / (c_miss p_target))``, that is
    ``-logit`` of the effective target prior
    ``c_miss p_target / (c_miss p_target + c_fa (1 - p_target))``: a trial
    is accepted when its log-likelihood ratio is above it.

    Arguments
    ---------
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of rejecting a target trial.
    c_fa : float
        Cost of accepting a non-target trial.

    Returns
    -------
    float
        The threshold.

    Raises
    ------
    ValueError
        Unless ``0 < p_target < 1`` and both costs are positive.

    Example
    -------
    >>> round(bayes_threshold(0.01), 4), round(bayes_threshold(0.01, 10, 1), 4)
    (4.5951, 2.2925)
    """
    _check_setting(p_target, c_miss, c_fa)
    return float(np.log(c_fa * (1 - p_target)) - np.log(c_miss * p_target))


def _act_dcf(thresholds, misses, false_alarms, n_target, n_nontarget, setting):
    """The normalised cost of the operating point at the setting's Bayes threshold."""
    # The point that rejects every score up to the threshold: thresholds[0] is -inf.
    point = np.searchsorted(thresholds, bayes_threshold(*setting), side="right") - 1
    return float(_dcf(misses[point] / n_target, false_alarms[point] / n_nontarget, *setting))


def _cllr(ratios, targets, nontargets):
    """Cllr in bits of log-likelihood ratios, each of ``targets`` and ``nontargets`` trials."""
    # -log2 of the posterior of the right class at prior 0.5, averaged per
    # class; a ratio of no trials of a class (an infinite one) costs nothing.
    costs = [counts[counts > 0] @ np.logaddexp(0, sign * ratios[counts > 0]) / counts.sum()
             for counts, sign in ((targets, -1), (nontargets, 1))]
    return float(sum(costs) / (2 * np.log(2)))


def _min_cllr(misses, false_alarms, n_target, n_nontarget):
    """Cllr of the optimal monotonic (pool-adjacent-violators) map of the distinct scores."""
    targets = np.diff(misses)  # per distinct score, increasing
    trials = targets + false_alarms[:-1] - false_alarms[1:]
    posterior = isotonic_regression(targets / trials, weights=trials).x
    # Posterior at the list's own prior to log-likelihood ratio: a run of
    # non-targets alone has -inf, of targets alone +inf, each costing 0.
    with np.errstate(divide="ignore"):
        ratios = logit(posterior) - np.log(n_target / n_nontarget)
    return _cllr(ratios, targets, trials - targets)


def error_rates(scores, labels):
    """Miss and false-alarm rates at every operating point.

    Operating point ``k`` rejects the trials scoring at most ``thresholds[k]``
    and accepts the others; the thresholds are ``-inf`` (accept all) followed
    by each distinct score in increasing order (the last rejects all).

    Arguments
    ---------
    scores : array-like
        One score per trial (higher means more likely the same speaker).
    labels : array-like
        1 for a target trial, 0 for a non-target trial.

    Returns
    -------
    thresholds : numpy.ndarray
        Increasing, length ``distinct scores + 1``.
    p_miss : numpy.ndarray
        Fraction of target trials rejected (non-decreasing).
    p_fa : numpy.ndarray
        Fraction of non-target trials accepted (non-increasing).

    Raises
    ------
    ValueError
        On empty input, NaN or infinite scores, labels other than 0/1, or
        trials of one class only.

    Example
    -------
    >>> thresholds, p_miss, p_fa = error_rates([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1])
    >>> thresholds.tolist(), p_miss.tolist(), p_fa.tolist()
    ([-inf, 0.1, 0.5, 0.9], [0.0, 0.0, 0.5, 1.0], [1.0, 0.5, 0.0, 0.0])
    """
    thresholds, misses, false_alarms, n_target, n_nontarget = _error_counts(scores, labels)
    return thresholds, misses / n_target, false_alarms / n_nontarget


def eer(scores, labels):
    """Equal error rate, as a fraction.

    Arguments
    ---------
    scores : array-like
        One score per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.

    Returns
    -------
    float
        ``(p_miss + p_fa) / 2`` where the two are closest.

    Example
    -------
    >>> eer([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    0.5
    >>> eer([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    0.0
    """
    return _eer(*_error_counts(scores, labels)[1:])


def eer_threshold(scores, labels):
    """The decision threshold of the EER operating point: accept a trial when its score is above it.

    Halfway between the highest score rejected and the lowest accepted there
    (the highest score when all are rejected, just below the lowest when all
    are accepted), so that scores recomputed with a rounding difference fall
    on the same side (of two neighbouring floats, the lower).

    Arguments
    ---------
    scores : array-like
        One score per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.

    Returns
    -------
    float
        The threshold.

    Example
    -------
    >>> eer_threshold([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    0.25
    """
    thresholds, misses, false_alarms, n_target, n_nontarget = _error_counts(scores, labels)
    best = _eer_point(misses, false_alarms, n_target, n_nontarget)
    if best == len(thresholds) - 1:
        return float(thresholds[best])
    accepted = thresholds[best + 1]
    below_accepted = np.nextafter(accepted, -np.inf)
    if best == 0:
        return float(below_accepted)
    # Of neighbouring floats, the halfway point may round up to the accepted score.
    return float(min((thresholds[best] + accepted) / 2, below_accepted))


def min_dcf(scores, labels, p_target=0.01, c_miss=1, c_fa=1):
    """Normalised minimum detection cost.

    ``min over thresholds of (c_miss p_target p_miss + c_fa (1 - p_target) p_fa)``
    divided by ``min(c_miss p_target, c_fa (1 - p_target))``, the cost of the
    better of "accept all" and "reject all": 1 means no better than that.

    Arguments
    ---------
    scores : array-like
        One score per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of rejecting a target trial.
    c_fa : float
        Cost of accepting a non-target trial.

    Returns
    -------
    float
        Between 0 (perfect) and 1.

    Example
    -------
    >>> min_dcf([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    0.0
    >>> min_dcf([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], p_target=0.5)
    1.0
    """
    _, p_miss, p_fa = error_rates(scores, labels)
    return _min_dcf(p_miss, p_fa, p_target, c_miss, c_fa)


def act_dcf(scores, labels, p_target=0.01, c_miss=1, c_fa=1):
    """Normalised actual detection cost of scores that are log-likelihood ratios.

    The cost of accepting the trials whose score is above the setting's
    :func:`bayes_threshold`, normalised as :func:`min_dcf`. For calibrated
    scores it is close to the minDCF; the gap is the cost of their
    miscalibration at that setting, and it may exceed 1 (worse than
    accepting or rejecting every trial).

    Arguments
    ---------
    scores : array-like
        One log-likelihood ratio per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of rejecting a target trial.
    c_fa : float
        Cost of accepting a non-target trial.

    Returns
    -------
    float
        0 when perfect, 1 for the better trivial decision, above 1 when worse.

    Example
    -------
    >>> act_dcf([-1.0, 5.0], [0, 1], p_target=0.01)
    0.0
    >>> act_dcf([-1.0, 4.0], [0, 1], p_target=0.01)
    1.0
    """
    return _act_dcf(*_error_counts(scores, labels), (p_target, c_miss, c_fa))


def cllr(scores, labels):
    """Log-likelihood-ratio cost of scores that are log-likelihood ratios, in bits.

    ``(mean over targets of log2(1 + exp(-s)) + mean over non-targets of
    log2(1 + exp(s))) / 2``: the mean information lost by deciding with these
    ratios over every setting; 0 when perfect, 1 for ratios of 0 (no
    information), above 1 when the ratios mislead.

    Arguments
    ---------
    scores : array-like
        One log-likelihood ratio (natural logarithm) per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.

    Returns
    -------
    float
        Cllr, in bits.

    Example
    -------
    >>> cllr([0.0, 0.0], [0, 1])
    1.0
    >>> round(cllr([-20.0, 20.0], [0, 1]), 6)
    0.0
    """
    scores, labels = _checked(scores, labels)
    return _cllr(scores, labels, ~labels)


def min_cllr(scores, labels):
    """The Cllr of the best monotonic transformation of the scores, in bits.

    The scores mapped to log-likelihood ratios by the pool-adjacent-violators
    algorithm (the isotonic regression of the labels on the scores, equal
    scores pooled), as Brümmer's BOSARIS toolkit computes it: what is left of
    :func:`cllr` when the scores are perfectly calibrated on these trials.

    Arguments
    ---------
    scores : array-like
        One score per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.

    Returns
    -------
    float
        Between 0 (separated) and 1 (no information), in bits.

    Example
    -------
    >>> min_cllr([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    0.0
    >>> min_cllr([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0])
    1.0
    """
    return _min_cllr(*_error_counts(scores, labels)[1:])


def calibration_metrics(scores, labels, dcf=VOXCELEB_DCF):
    """actDCF of each setting, Cllr and min Cllr of log-likelihood-ratio scores, from one sort.

    Arguments
    ---------
    scores : array-like
        One log-likelihood ratio per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.
    dcf : list of tuple
        ``(p_target, c_miss, c_fa)`` settings, such as :data:`VOXCELEB_DCF`.

    Returns
    -------
    dict
        ``{dcf_name(setting, "act"): ..., "cllr": ..., "min_cllr": ...}``.

    Example
    -------
    >>> metrics = calibration_metrics([-3.0, -1.0, 1.0, 3.0], [0, 1, 0, 1], dcf=SDSV_DCF)
    >>> {name: round(value, 3) for name, value in metrics.items()}
    {'act_dcf_0.01_10_1': 0.5, 'cllr': 0.982, 'min_cllr': 0.5}
    """
    counts = _error_counts(scores, labels)
    metrics = {dcf_name(*setting, kind="act"): _act_dcf(*counts, setting) for setting in dcf}
    metrics["cllr"] = cllr(scores, labels)
    metrics["min_cllr"] = _min_cllr(*counts[1:])
    return metrics


def dcf_name(p_target, c_miss=1, c_fa=1, kind="min"):
    """Column name of a DCF setting: ``<kind>_dcf_<p_target>[_<c_miss>_<c_fa>]``.

    Arguments
    ---------
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of rejecting a target trial (left out of the name when 1).
    c_fa : float
        Cost of accepting a non-target trial (left out of the name when 1).
    kind : str
        ``min`` for the minDCF, ``act`` for the actual DCF (:func:`act_dcf`).

    Returns
    -------
    str
        The column name.

    Example
    -------
    >>> [dcf_name(*setting) for setting in VOXCELEB_DCF + SDSV_DCF]
    ['min_dcf_0.01', 'min_dcf_0.001', 'min_dcf_0.01_10_1']
    >>> dcf_name(0.01, 10, 1, kind="act")
    'act_dcf_0.01_10_1'
    """
    costs = "" if (c_miss, c_fa) == (1, 1) else f"_{c_miss:g}_{c_fa:g}"
    return f"{kind}_dcf_{p_target:g}{costs}"


def repeated_dcf(settings):
    """The settings that name the column (:func:`dcf_name`) of an earlier one, with that one.

    Two such settings would be scored into one column, the second over the
    first, and the table would have a setting fewer than was asked for.

    Arguments
    ---------
    settings : list of sequence
        ``(p_target, c_miss, c_fa)`` settings, in order.

    Returns
    -------
    list of tuple
        ``(setting, earlier setting)`` of each repeat, in order.

    Example
    -------
    >>> repeated_dcf([[0.01, 1, 1], [0.001, 1, 1], [0.01, 1.0, 1.0]])
    [([0.01, 1.0, 1.0], [0.01, 1, 1])]
    >>> repeated_dcf([(0.01, 10, 1), (0.01, 1, 10)])
    []
    """
    first, repeats = {}, []
    for setting in settings:
        earlier = first.setdefault(dcf_name(*setting), setting)
        if earlier is not setting:
            repeats.append((setting, earlier))
    return repeats


def dcf_setting(name):
    """The ``(p_target, c_miss, c_fa)`` setting of a DCF column name, the inverse of :func:`dcf_name`.

    Arguments
    ---------
    name : str
        ``<kind>_dcf_<p_target>[_<c_miss>_<c_fa>]``.

    Returns
    -------
    tuple of float

    Example
    -------
    >>> dcf_setting("min_dcf_0.001"), dcf_setting("act_dcf_0.01_10_1")
    ((0.001, 1.0, 1.0), (0.01, 10.0, 1.0))
    """
    values = [float(value) for value in name.split("_", 2)[2].split("_")]
    return tuple(values + [1.0, 1.0] if len(values) == 1 else values)


def compute_metrics(scores, labels, dcf=VOXCELEB_DCF):
    """EER and the normalised minDCF of each setting, from one sort.

    Arguments
    ---------
    scores : array-like
        One score per trial.
    labels : array-like
        1 for a target trial, 0 for a non-target trial.
    dcf : list of tuple
        ``(p_target, c_miss, c_fa)`` settings, such as :data:`VOXCELEB_DCF`.

    Returns
    -------
    dict
        ``{"eer": ..., dcf_name(setting): ...}``.

    Example
    -------
    >>> compute_metrics([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], dcf=SDSV_DCF)
    {'eer': 0.5, 'min_dcf_0.01_10_1': 0.5}
    """
    _, misses, false_alarms, n_target, n_nontarget = _error_counts(scores, labels)
    metrics = {"eer": _eer(misses, false_alarms, n_target, n_nontarget)}
    for setting in dcf:
        metrics[dcf_name(*setting)] = _min_dcf(
            misses / n_target, false_alarms / n_nontarget, *setting
        )
    return metrics
