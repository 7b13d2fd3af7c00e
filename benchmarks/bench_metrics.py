"""Speed of the verification metrics and of AS-norm on a million trials.

1. AS-norm (top 300 of a 5,000-utterance cohort) on 10^6 trials between
   100,000 utterances (about VoxCeleb1-E/H's density) with
   :func:`local.evaluation.scoring.score_trials`, against a direct numpy loop over the
   trials, timed on its first trials and extrapolated linearly.
   Then each score normalisation (S-norm, Z-norm, T-norm, AS-norm) against
   the same cohort, beside raw cosine, on the same trials.
2. EER + minDCF at both VoxCeleb operating points on 10^6 random trials with
   :func:`local.evaluation.metrics.compute_metrics`, against SpeechBrain's ``EER`` +
   2 x ``minDCF`` in the same run. SpeechBrain's are quadratic in time (and
   ``minDCF`` in memory: a thresholds x trials matrix, terabytes at 10^6), so
   they run on subsets of growing size, their values are compared with ours on
   each subset, and their time is extrapolated to 10^6 from the largest
   subset as n^2 (their complexity; the measured growth is printed too).
3. The calibration metrics of a logistic fusion on 10^6 calibrated
   log-likelihood ratios: :func:`local.evaluation.metrics.calibration_metrics`
   (actDCF at both VoxCeleb operating points, Cllr, min Cllr), against
   :func:`local.evaluation.metrics.eer` on the same trials in the same run.

Run from the repository root (40 to 50 seconds on 2 CPU cores, benchmarks/README.md)::

    .venv/bin/python benchmarks/bench_metrics.py

The last line prints the time ratios.
"""

import argparse
import math
import os
import resource
import sys
import time

# The package measured is the checkout's, not an installed one.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The per-trial loop's small matrix-vector products are fastest on one BLAS
# thread (with more, on a busy machine, they are many times slower). This
# gives the loop its best setting; the library's matrix products run in
# torch, whose threads it does not limit.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from speechbrain.utils.metric_stats import EER, minDCF  # noqa: E402

from local.evaluation.metrics import (  # noqa: E402
    VOXCELEB_DCF,
    calibration_metrics,
    cllr,
    compute_metrics,
    dcf_name,
    eer,
    min_cllr,
    min_dcf,
)
from local.evaluation.scoring import score_trials  # noqa: E402

TRIALS = 10**6
SUBSETS = [4000, 8000, 16000]
UTTERANCES, DIM, COHORT, TOP_K = 100_000, 192, 5000, 300
LOOP_TRIALS = 3000


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def speechbrain_metrics(scores, labels):
    positive, negative = torch.from_numpy(scores[labels]), torch.from_numpy(scores[~labels])
    values = {"eer": EER(positive, negative)[0]}
    for p_target, c_miss, c_fa in VOXCELEB_DCF:
        raw, _ = minDCF(positive, negative, c_miss, c_fa, p_target)
        # SpeechBrain's minDCF is not normalised; ours is.
        values[dcf_name(p_target)] = raw / min(c_miss * p_target, c_fa * (1 - p_target))
    return values


def bench_metrics():
    rng = np.random.default_rng(0)
    labels = rng.random(TRIALS) < 0.5
    scores = rng.normal(size=TRIALS) + 2.0 * labels
    ours, ours_time = min((timed(compute_metrics, scores, labels) for _ in range(3)),
                          key=lambda result: result[1])
    _, separate_time = timed(
        lambda: [eer(scores, labels)] + [min_dcf(scores, labels, *s) for s in VOXCELEB_DCF])
    print(f"ours, {TRIALS:,} trials: {ours_time:.3f} s with compute_metrics (one sort), "
          f"{separate_time:.3f} s as eer + 2 x min_dcf; "
          + ", ".join(f"{k} {v:.5f}" for k, v in ours.items()))
    times = []
    for n in SUBSETS:
        theirs, their_time = timed(speechbrain_metrics, scores[:n], labels[:n])
        mine = compute_metrics(scores[:n], labels[:n])
        gap = max(abs(theirs[k] - mine[k]) for k in mine)
        times.append(their_time)
        print(f"SpeechBrain, first {n:,} trials: {their_time:.2f} s, largest difference from ours "
              f"{gap:.1e} (" + ", ".join(f"{k} {v:.5f}" for k, v in theirs.items()) + ")")
    exponent = math.log(times[-1] / times[-2]) / math.log(SUBSETS[-1] / SUBSETS[-2])
    # Both loop over every threshold and compare it with every trial: n^2.
    extrapolated = times[-1] * (TRIALS / SUBSETS[-1]) ** 2
    print(f"SpeechBrain time grows as n^{exponent:.2f} here; extrapolated to {TRIALS:,} trials "
          f"as n^2: {extrapolated:,.0f} s ({extrapolated / 3600:.1f} h)")
    return extrapolated / ours_time


def bench_calibration():
    """Best of 3 times of the calibration metrics and of the EER on the same trials."""
    rng = np.random.default_rng(2)
    labels = rng.random(TRIALS) < 0.5
    # Calibrated: targets N(2, 4), non-targets N(-2, 4) are their own log-likelihood ratios.
    scores = 2.0 * rng.normal(size=TRIALS) + np.where(labels, 2.0, -2.0)
    best = {}
    for name, function in (("eer", eer), ("calibration_metrics", calibration_metrics),
                           ("cllr", cllr), ("min_cllr", min_cllr)):
        best[name] = min((timed(function, scores, labels) for _ in range(3)),
                         key=lambda result: result[1])
    print(f"calibration, {TRIALS:,} calibrated log-likelihood ratios: "
          + ", ".join(f"{name} {seconds:.3f} s" for name, (_, seconds) in best.items()) + "; "
          + ", ".join(f"{k} {v:.5f}" for k, v in best["calibration_metrics"][0].items()))
    return best["calibration_metrics"][1] / best["eer"][1]


def loop_asnorm(enrol, test, cohort, top_k):
    """AS-norm of one trial, straight from the formula."""
    enrol, test = enrol / np.linalg.norm(enrol), test / np.linalg.norm(test)
    score = enrol @ test
    normalised = []
    for side in (enrol, test):
        top = np.partition(cohort @ side, -top_k)[-top_k:]
        normalised.append((score - top.mean()) / top.std(ddof=1))
    return (normalised[0] + normalised[1]) / 2


def bench_asnorm():
    rng = np.random.default_rng(1)
    vectors = torch.from_numpy(rng.normal(size=(UTTERANCES, DIM)).astype(np.float32))
    embeddings = {f"utt{i}": vector for i, vector in enumerate(vectors)}
    pairs = rng.integers(0, UTTERANCES, size=(TRIALS, 2))
    trials = pd.DataFrame({"enrol": [f"utt{i}" for i in pairs[:, 0]],
                           "test": [f"utt{i}" for i in pairs[:, 1]]})
    cohort = rng.normal(size=(COHORT, DIM)).astype(np.float32)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scores, ours_time = timed(score_trials, embeddings, trials, cohort=cohort, top_k=TOP_K)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"score_trials with AS-norm (top {TOP_K} of {COHORT:,}), {TRIALS:,} trials between "
          f"{UTTERANCES:,} utterances of dim {DIM}: {ours_time:.2f} s; peak memory "
          f"{peak_before:,.0f} MiB before, {peak_after:,.0f} MiB after")
    unit_cohort = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    start = time.perf_counter()
    looped = [loop_asnorm(vectors[e].numpy(), vectors[t].numpy(), unit_cohort, TOP_K)
              for e, t in pairs[:LOOP_TRIALS]]
    loop_time = (time.perf_counter() - start) * TRIALS / LOOP_TRIALS
    gap = np.abs(np.array(looped) - scores[:LOOP_TRIALS]).max()
    print(f"numpy loop, timed on the first {LOOP_TRIALS:,} trials and extrapolated linearly: "
          f"{loop_time:,.0f} s for {TRIALS:,}; largest difference from ours {gap:.1e}")
    time_normalisations(embeddings, trials, cohort)
    return loop_time / ours_time


def cpu_time(function, *args, **kwargs):
    """The CPU time of one call (the cores may be shared)."""
    start = time.process_time()
    function(*args, **kwargs)
    return time.process_time() - start


def time_normalisations(embeddings, trials, cohort):
    """CPU time of score_trials with each score normalisation, over raw cosine's."""
    settings = {"snorm": {}, "znorm": {"norm_sides": ("enrol",)},
                "tnorm": {"norm_sides": ("test",)}, "asnorm": {"top_k": TOP_K}}
    raw = cpu_time(score_trials, embeddings, trials)
    times = []
    for name, keywords in settings.items():
        seconds = cpu_time(score_trials, embeddings, trials, cohort=cohort, **keywords)
        times.append(f"{name} {seconds:.2f} s ({seconds / raw:.1f}x)")
    print(f"score_trials CPU time, {len(trials):,} trials: raw cosine {raw:.2f} s; " + ", ".join(times))


def main(argv=None):
    """Run the measurements; the script takes no options."""
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    # AS-norm first, so that its peak memory is not hidden by SpeechBrain's minDCF.
    asnorm_ratio = bench_asnorm()
    metrics_ratio = bench_metrics()
    calibration_ratio = bench_calibration()
    print(f"time ratios on {TRIALS:,} trials: SpeechBrain EER + 2 minDCF / ours = "
          f"{metrics_ratio:,.0f}x; numpy loop AS-norm / ours = {asnorm_ratio:,.0f}x; "
          f"calibration_metrics / eer = {calibration_ratio:.2f}x")


if __name__ == "__main__":
    main()
