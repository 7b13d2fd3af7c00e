"""Cosine (or PLDA) scoring of a trial list, optionally normalised against a cohort.

Each side of a trial is a unit vector: a test utterance's length-normalised
embedding, or an enrolment model's mean of its utterances' length-normalised
embeddings (normalised again). Every distinct side is built once, however
many trials name it, and the score is the dot product of the two sides. A
back-end's score is a bilinear form of the same sides (see
:func:`cosine_form`), such as the PLDA log-likelihood ratio of
:mod:`local.evaluation.plda`.

Score normalisation follows SpeechBrain's
``recipes/VoxCeleb/SpeakerRec/speaker_verification_cosine.py``: each side is
scored against a cohort of impostor embeddings, and with the mean ``mu`` and
standard deviation ``sigma`` (unbiased, as its ``torch.std``) of those cohort scores

    s' = ((s - mu_enrol) / sigma_enrol + (s - mu_test) / sigma_test) / 2

over the whole cohort (S-norm) or over each side's ``top_k`` highest cohort
scores only (adaptive S-norm, AS-norm; Matejka et al., Interspeech 2017).
Z-norm keeps the enrolment side's term alone, ``(s - mu_enrol) / sigma_enrol``,
and T-norm the test side's, as SpeechBrain's ``z-norm`` and ``t-norm`` do:
S-norm is the mean of the two. The statistics depend on the side, not on the
trial, so they are computed once per distinct side that is normalised, in
chunks that bound the memory to ``CHUNK_ELEMENTS`` cohort scores.
"""

import numpy as np
import pandas as pd
import torch

from local.domain_statistics import check_finite
from local.errors import fail

# Trials scored per step, and cohort scores held at once: bound the memory of
# a million-trial list to a few hundred MB.
CHUNK_TRIALS = 2**16
CHUNK_ELEMENTS = 2**24
# A side's cohort scores whose standard deviation is within this many machine
# epsilons of their magnitude do not vary: identical cohort embeddings score
# alike to the bit (a spread of 0), and ones equal up to rounding within a few
# epsilons. A real if small spread is kept: the top 10 of a cohort of a barely
# trained model spread by 3e-5 in float32 and float64 alike (250 epsilons).
ROUNDING_SPREAD = 10
# The trial sides whose cohort statistics standardise a score: S-norm's (and
# AS-norm's) both, Z-norm's the enrolment side, T-norm's the test side.
BOTH_SIDES = ("enrol", "test")


def _unit(vectors):
    return torch.nn.functional.normalize(vectors, dim=-1)


def side_vectors(embeddings, groups):
    """Unit vectors of trial sides, each the normalised mean of unit embeddings.

    Arguments
    ---------
    embeddings : dict
        ``{utterance ID: tensor [dim]}``.
    groups : list of sequence of str
        The utterance IDs of each side: one ID for a test utterance, several
        for an enrolment model.

    Returns
    -------
    torch.Tensor
        ``[len(groups), dim]``, unit length, in the embeddings' dtype.

    Raises
    ------
    ManifestError
        Naming the first utterances without an embedding or with NaN/inf values.

    Example
    -------
    >>> embeddings = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.0, 0.5])}
    >>> side_vectors(embeddings, [["a"], ["a", "b"]])
    tensor([[1.0000, 0.0000],
            [0.7071, 0.7071]])
    """
    index = {}
    members = [[index.setdefault(utt, len(index)) for utt in group] for group in groups]
    utterances = list(index)
    missing = [utt for utt in utterances if utt not in embeddings]
    if missing:
        fail(
            "embeddings",
            f"{len(missing)} of the {len(utterances)} utterances the trials need have no embedding",
            rows=missing,
            fix="embed every utterance of the trial list's manifest and enrolment table",
        )
    matrix = torch.stack([torch.as_tensor(embeddings[utt]) for utt in utterances])
    bad = (~torch.isfinite(matrix).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        fail("embeddings", "embeddings with NaN or infinite values",
             rows=[utterances[i] for i in bad],
             fix="check the model and the audio of these utterances")
    rows = torch.tensor([utt for group in members for utt in group])
    owners = torch.repeat_interleave(torch.tensor([len(group) for group in members]))
    # The mean of the unit embeddings has the direction of their sum.
    sums = torch.zeros(len(groups), matrix.shape[1], dtype=matrix.dtype)
    return _unit(sums.index_add_(0, owners, _unit(matrix)[rows]))


def cosine_form(vectors):
    """Cosine scoring as the form ``score(e, t) = left_e . right_t + offset_e + offset_t``.

    Arguments
    ---------
    vectors : torch.Tensor
        ``[n, dim]``.

    Returns
    -------
    tuple of torch.Tensor
        ``(left [n, dim], right [n, dim], offset [n])``: the unit vectors
        twice, and zeros.
    """
    units = _unit(vectors)
    return units, units, torch.zeros(len(units), dtype=units.dtype)


def check_cohort_size(size, top_k=None, where="cohort"):
    """Fail when a cohort of ``size`` is too small for S-norm, or for AS-norm over ``top_k``.

    Arguments
    ---------
    size : int
        The cohort's embeddings, or the utterances it will be drawn from.
    top_k : int, optional
        AS-norm's ``cohort_top_k``; ``None`` for S-norm, which needs 2.
    where : str
        What the cohort is drawn from, named in the message.

    Example
    -------
    >>> check_cohort_size(150, top_k=200)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: cohort: 150 embeddings, fewer than the 200 that each trial side's mean and standard deviation of cohort scores are taken over
    Fix: draw the cohort from a training manifest with more utterances within min_embed_seconds and max_embed_seconds, or lower cohort_top_k
    """
    needed = top_k or 2
    if size < needed:
        fail(where, f"{size} embeddings, fewer than the {needed} that each trial side's "
             "mean and standard deviation of cohort scores are taken over",
             fix="draw the cohort from a training manifest with more utterances within "
                 "min_embed_seconds and max_embed_seconds, or lower cohort_top_k")


def cohort_stats(vectors, cohort, top_k=None, form=cosine_form):
    """Mean and standard deviation of each vector's (top ``top_k``) cohort scores.

    Arguments
    ---------
    vectors : torch.Tensor or numpy.ndarray
        ``[n, dim]``, one row per trial side.
    cohort : torch.Tensor or numpy.ndarray
        ``[cohort size, dim]`` impostor embeddings.
    top_k : int, optional
        Keep only each row's ``top_k`` highest cohort scores (AS-norm);
        ``None`` keeps them all (S-norm).
    form : callable
        The score as a bilinear form (:func:`cosine_form`).

    Returns
    -------
    tuple of numpy.ndarray
        ``(mean, std)``, each ``[n]``.

    Raises
    ------
    ManifestError
        When the cohort has NaN/inf values, or fewer than ``top_k`` (S-norm:
        2) embeddings.

    Example
    -------
    >>> cohort = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> mean, std = cohort_stats(torch.tensor([[2.0, 0.0]]), cohort, top_k=2)
    >>> mean.round(4), std.round(4)
    (array([0.5], dtype=float32), array([0.7071], dtype=float32))
    """
    vectors = torch.as_tensor(vectors)
    cohort = torch.as_tensor(cohort)
    check_finite(cohort, "cohort")
    if top_k is not None and top_k < 2:
        raise ValueError(f"top_k must be at least 2; got {top_k}")
    size = cohort.shape[0]
    check_cohort_size(size, top_k)
    left, _, offset = form(vectors)
    _, cohort, cohort_offset = form(cohort.to(vectors.dtype))
    step = max(1, CHUNK_ELEMENTS // size)
    means, stds = [], []
    for chunk, chunk_offset in zip(left.split(step), offset.split(step)):
        # Matrix products in torch (its threads only); the rest in numpy, whose
        # partition is several times faster on a CPU than torch.topk.
        scores = (chunk @ cohort.T + chunk_offset[:, None] + cohort_offset).numpy()
        if top_k is not None:
            scores.partition(size - top_k, axis=1)
            scores = scores[:, size - top_k:]
        means.append(scores.mean(axis=1))
        stds.append(scores.std(axis=1, ddof=1))
    return np.concatenate(means), np.concatenate(stds)


def normalize_scores(scores, enrol_stats=None, test_stats=None):
    """The mean of the scores standardised by each given side's cohort statistics.

    Both sides give S-norm (AS-norm with top-k statistics), the enrolment
    side alone Z-norm, the test side alone T-norm.

    Arguments
    ---------
    scores : array-like
        Raw scores, one per trial.
    enrol_stats : tuple, optional
        ``(mean, std)`` of each trial's enrolment side, as from :func:`cohort_stats`.
    test_stats : tuple, optional
        ``(mean, std)`` of each trial's test side.

    Returns
    -------
    Same type as ``scores``
        The normalised scores.

    Example
    -------
    >>> enrol, test = (np.array([0.5]), np.array([0.25])), (np.array([0.25]), np.array([0.125]))
    >>> normalize_scores(np.array([1.0]), enrol, test)
    array([4.])
    >>> normalize_scores(np.array([1.0]), enrol), normalize_scores(np.array([1.0]), test_stats=test)
    (array([2.]), array([6.]))
    """
    stats = [side for side in (enrol_stats, test_stats) if side is not None]
    if not stats:
        raise ValueError("normalize_scores needs the statistics of at least one side")
    return sum((scores - mean) / std for mean, std in stats) / len(stats)


def score_trials(embeddings, trials, enrolment=None, cohort=None, top_k=None, form=cosine_form,
                 norm_sides=BOTH_SIDES):
    """Cosine (or back-end) score of every trial, optionally normalised against a cohort.

    Arguments
    ---------
    embeddings : dict
        ``{utterance ID: tensor [dim]}``, as from :func:`local.embedding.compute_embeddings`.
    trials : pandas.DataFrame
        With ``enrol`` and ``test`` columns, as from
        :func:`local.data.manifest_io.read_trials`.
    enrolment : dict, optional
        ``{model ID: [utterance IDs]}`` (the first item
        :func:`local.data.manifest_io.read_enrolment` returns). An enrolment side
        listed here is that model, any other is an utterance ID.
    cohort : torch.Tensor or numpy.ndarray, optional
        ``[cohort size, dim]`` impostor embeddings: when given, the scores are
        normalised against them (:func:`normalize_scores`).
    top_k : int, optional
        With ``cohort``: each side's statistics over its ``top_k`` closest
        cohort members (AS-norm) instead of over all of them.
    form : callable
        The score as a bilinear form of the sides' unit vectors
        (:func:`cosine_form`, or a back-end's ``score_form``); the cohort is
        scored with it too.
    norm_sides : tuple of str
        With ``cohort``: the trial sides whose statistics standardise the
        score, ``("enrol", "test")`` (S-norm, AS-norm), ``("enrol",)``
        (Z-norm) or ``("test",)`` (T-norm).

    Returns
    -------
    numpy.ndarray
        float64 scores, in the order of ``trials``.

    Raises
    ------
    ManifestError
        When utterances have no embedding or non-finite values, or (with
        ``cohort``) when a normalised side's cohort scores do not vary, which
        would make its normalised scores infinite.

    Example
    -------
    >>> embeddings = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 1.0]),
    ...               "c": torch.tensor([0.0, 2.0])}
    >>> trials = pd.DataFrame({"enrol": ["a", "m"], "test": ["b", "c"]})
    >>> score_trials(embeddings, trials, enrolment={"m": ["a", "b"]}).round(4)
    array([0.7071, 0.3827])
    """
    enrolment = enrolment or {}
    enrol_codes, enrol_ids = pd.factorize(trials["enrol"])
    test_codes, test_ids = pd.factorize(trials["test"])
    # An utterance on both sides of the trial list, or two models of the same
    # utterances, is one side: its vector and cohort statistics are computed once.
    sides = {}
    side_codes = np.array([
        sides.setdefault(members, len(sides))
        for members in [tuple(enrolment.get(side, [side])) for side in enrol_ids]
        + [(side,) for side in test_ids]
    ])
    vectors = side_vectors(embeddings, list(sides))
    enrol_side = side_codes[enrol_codes]
    test_side = side_codes[len(enrol_ids) + test_codes]
    # numpy's take gathers rows several times faster than torch indexing on a CPU.
    left, right, offset = (part.numpy() for part in form(vectors))
    scores = np.concatenate([
        np.einsum("nd,nd->n", left.take(enrol, axis=0), right.take(test, axis=0))
        + offset.take(enrol) + offset.take(test)
        for enrol, test in ((enrol_side[start:start + CHUNK_TRIALS],
                             test_side[start:start + CHUNK_TRIALS])
                            for start in range(0, len(trials), CHUNK_TRIALS))
    ])
    if cohort is not None:
        trial_sides = {"enrol": enrol_side, "test": test_side}
        if not norm_sides or not set(norm_sides) <= set(trial_sides):
            raise ValueError(f"norm_sides must be one or both of 'enrol' and 'test'; "
                             f"got {norm_sides!r}")
        # Only the sides the normalisation reads are scored against the cohort.
        normalised = np.unique(np.concatenate([trial_sides[side] for side in norm_sides]))
        mean, std = cohort_stats(vectors[normalised], cohort, top_k, form)
        # Identical cohort embeddings (or a zero side) leave a spread of rounding
        # errors at most, which would blow the normalised scores up.
        rounding = ROUNDING_SPREAD * np.finfo(std.dtype).eps * np.maximum(1.0, np.abs(mean))
        flat = np.flatnonzero(~(std > rounding))
        if flat.size:
            members = list(sides)
            fail("cohort", f"{flat.size} trial sides score the same against every cohort member "
                 "they are normalised by, so their normalised scores are not finite",
                 rows=[" ".join(members[i]) for i in normalised[flat]],
                 fix="check the model: it gives these utterances, or the cohort's, "
                     "identical or zero embeddings")
        rows = {side: np.searchsorted(normalised, trial_sides[side]) for side in norm_sides}
        stats = {side: (mean[at], std[at]) for side, at in rows.items()}
        scores = normalize_scores(scores, stats.get("enrol"), stats.get("test"))
    return scores.astype(np.float64)
