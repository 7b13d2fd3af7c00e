"""Verification metrics from scores and labels: error rates, EER and minDCF.

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
"""

import numpy as np

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


def _min_dcf(p_miss, p_fa, p_target, c_miss, c_fa):
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise ValueError(
            f"need 0 < p_target < 1 and positive costs; got p_target={p_target}, "
            f"c_miss={c_miss}, c_fa={c_fa}"
        )
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


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


def dcf_name(p_target, c_miss=1, c_fa=1):
    """Column name of a minDCF setting: ``min_dcf_<p_target>[_<c_miss>_<c_fa>]``.

    Arguments
    ---------
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of rejecting a target trial (left out of the name when 1).
    c_fa : float
        Cost of accepting a non-target trial (left out of the name when 1).

    Returns
    -------
    str
        The column name.

    Example
    -------
    >>> [dcf_name(*setting) for setting in VOXCELEB_DCF + SDSV_DCF]
    ['min_dcf_0.01', 'min_dcf_0.001', 'min_dcf_0.01_10_1']
    """
    costs = "" if (c_miss, c_fa) == (1, 1) else f"_{c_miss:g}_{c_fa:g}"
    return f"min_dcf_{p_target:g}{costs}"


def dcf_setting(name):
    """The ``(p_target, c_miss, c_fa)`` setting of a minDCF column name, the inverse of :func:`dcf_name`.

    Arguments
    ---------
    name : str
        ``min_dcf_<p_target>[_<c_miss>_<c_fa>]``.

    Returns
    -------
    tuple of float

    Example
    -------
    >>> dcf_setting("min_dcf_0.001"), dcf_setting("min_dcf_0.01_10_1")
    ((0.001, 1.0, 1.0), (0.01, 10.0, 1.0))
    """
    values = [float(value) for value in name[len("min_dcf_"):].split("_")]
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
