"""Statistics alignment of source and target embeddings, without an adversary.

Two losses that pull the distribution of a batch's target embeddings towards
that of its source embeddings: CORAL matches their covariances (Sun and
Saenko, "Deep CORAL", ECCV workshops 2016), MMD matches all their moments
through Gaussian kernels (Gretton et al., JMLR 2012; as a multi-kernel
training loss, Long et al., "Learning transferable features with deep
adaptation networks", ICML 2015). SpeechBrain has neither.

Both work on length-normalised embeddings, the space that cosine scoring
compares them in, so that the loss cannot be lowered by shrinking norms.
"""

import torch
import torch.nn.functional as F

from local.errors import fail


def coral_loss(source, target):
    """CORAL: squared Frobenius distance between the two covariances.

    Deep CORAL divides this distance by ``4 d^2`` to tame the scale of raw
    features; the covariance of unit-length embeddings has a trace of at most
    1 whatever ``d``, so here the distance is used as it is, on the scale of
    the speaker loss.

    Arguments
    ---------
    source : torch.Tensor
        ``[n_source, dim]`` (or ``[n_source, 1, dim]``) embeddings.
    target : torch.Tensor
        ``[n_target, dim]`` (or ``[n_target, 1, dim]``) embeddings.

    Returns
    -------
    torch.Tensor
        Scalar loss, 0 when the covariances (of the unit embeddings) are equal.

    Example
    -------
    >>> source = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> float(coral_loss(source, source.flip(0)))
    0.0
    >>> float(coral_loss(source, torch.tensor([[1.0, 0.1], [1.0, -0.1], [1.0, 0.0]]))) > 0
    True
    """
    source, target = _units(source), _units(target)
    return (torch.cov(source.T) - torch.cov(target.T)).pow(2).sum()


def mmd_loss(source, target, bandwidth_factors=(0.25, 0.5, 1.0, 2.0, 4.0)):
    """Squared maximum mean discrepancy with a sum of Gaussian kernels (biased estimate).

    The kernels' bandwidths are ``bandwidth_factors`` times the median
    squared distance between all the batch's embeddings (a constant for the
    gradient), so that the loss needs no tuning to the embedding's scale.
    The kernels are summed, where Long et al. weight them by a convex
    combination: the loss is ``len(bandwidth_factors)`` times that of equal
    weights, a factor that ``mmd_weight`` takes. The estimate is the biased
    one (Gretton et al.'s ``MMD_b``, each kernel mean over all pairs, an
    item with itself included): the squared distance between the two
    batches' mean kernel features, never negative and 0 when they coincide.
    The unbiased one, without an item's pair with itself, goes below 0 for
    close batches, so its minimum is not where they match.

    Arguments
    ---------
    source : torch.Tensor
        ``[n_source, dim]`` (or ``[n_source, 1, dim]``) embeddings.
    target : torch.Tensor
        ``[n_target, dim]`` (or ``[n_target, 1, dim]``) embeddings.
    bandwidth_factors : sequence of float
        One Gaussian kernel ``exp(-d^2 / (factor * median d^2))`` per factor.

    Returns
    -------
    torch.Tensor
        Scalar ``mean k(s, s') + mean k(t, t') - 2 mean k(s, t)``, diagonal
        terms included.

    Example
    -------
    >>> source = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> float(mmd_loss(source, source))
    0.0
    >>> float(mmd_loss(source, -source)) > 0
    True
    """
    source, target = _units(source), _units(target)
    joint = torch.cat([source, target])
    squared = torch.cdist(joint, joint).pow(2)
    off_diagonal = ~torch.eye(len(joint), dtype=torch.bool, device=joint.device)
    # A collapsed batch (all distances 0) must give 0, not 0 / 0.
    scale = squared.detach()[off_diagonal].quantile(0.5).clamp_min(1e-12)
    kernel = sum(torch.exp(-squared / (factor * scale)) for factor in bandwidth_factors)
    n = len(source)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def _units(embeddings):
    return F.normalize(embeddings.reshape(len(embeddings), -1), dim=-1)


class _WeightedLoss:
    """A loss of this module and its weight in the total loss (0: off)."""

    setting = None

    def __init__(self, weight=0.0):
        if not weight >= 0:
            fail(f"--{self.setting}={weight}", f"{self.setting} must be >= 0; got {weight!r}",
                 fix=f"pass a weight of 0 (off) or more, such as --{self.setting}=0.3")
        self.weight = weight


class CORAL(_WeightedLoss):
    """:func:`coral_loss`, weighted by ``coral_weight``.

    Example
    -------
    >>> CORAL(weight=0.5).weight
    0.5
    """

    setting = "coral_weight"

    def __call__(self, source, target):
        """The loss of ``source`` and ``target`` embeddings (unweighted)."""
        return coral_loss(source, target)


class MMD(_WeightedLoss):
    """:func:`mmd_loss`, weighted by ``mmd_weight``.

    Example
    -------
    >>> MMD(weight=-1)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --mmd_weight=-1: mmd_weight must be >= 0; got -1
    Fix: pass a weight of 0 (off) or more, such as --mmd_weight=0.3
    """

    setting = "mmd_weight"

    def __call__(self, source, target):
        """The loss of ``source`` and ``target`` embeddings (unweighted)."""
        return mmd_loss(source, target)
