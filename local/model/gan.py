"""Losses of the domain adversaries: gradient reversal and the GAN-style games.

Bhattacharya et al. (ICASSP 2019, "Generative adversarial speaker embedding
networks for domain robust end-to-end speaker verification") train the
embedding network against a domain discriminator either through gradient
reversal (DANN/DANSE) or as a GAN with alternating updates: the discriminator
learns to tell source ("real") from target ("fake") embeddings, then the
embedding network is updated so that target embeddings look like source ones.
The GAN variants differ in the discriminator's objective:

- ``vanilla``: binary cross-entropy (Goodfellow et al., 2014), with the
  non-saturating loss for the embedding network;
- ``least_squares``: the discriminator's mean squared error to the labels 1
  (source) and 0 (target), the embedding network's mean squared error of the
  target outputs to 1 (Mao et al., 2017, with a = 0, b = c = 1);
- ``relativistic``: the discriminator scores each source embedding relative
  to the target embedding it is paired with, ``-log sigmoid(C(s) - C(t))``,
  and the embedding network the reverse (Jolicoeur-Martineau, 2019, RSGAN);
- ``auxiliary_classifier``: vanilla, plus a speaker classifier on the
  discriminator's last hidden layer that both players train on the source
  speakers (Odena et al., 2017, as modified in the paper: the discriminator
  maximises L_s + L_c, the embedding network L_c - L_s).

No library has these for a pair of embedding batches, so they are written
here. The discriminator's output is two domain logits (source, target), as
for gradient reversal; its score ``C(x)`` is their difference, the log-odds
of source, so that the ``grl``/``vanilla`` discriminator loss is exactly the
two-class cross-entropy. Every loss is a mean over the items of the batch;
source items come first and are as many as target items.
"""

import torch
import torch.nn.functional as F

ADVERSARIES = ("grl", "vanilla", "least_squares", "relativistic", "auxiliary_classifier")


def check_adversary(adversary):
    """Fail early on an unknown ``adversary`` setting.

    Arguments
    ---------
    adversary : str
        One of :data:`ADVERSARIES`.

    Example
    -------
    >>> check_adversary("wgan")
    Traceback (most recent call last):
      ...
    ValueError: adversary 'wgan' is not one of grl, vanilla, least_squares, relativistic, auxiliary_classifier
    """
    if adversary not in ADVERSARIES:
        raise ValueError(f"adversary {adversary!r} is not one of {', '.join(ADVERSARIES)}")


def auxiliary_classes(adversary, n_speakers):
    """Number of speaker outputs the discriminator needs besides its two domain logits.

    Arguments
    ---------
    adversary : str
        One of :data:`ADVERSARIES`.
    n_speakers : int
        Source speakers.

    Returns
    -------
    int
        ``n_speakers`` for the auxiliary-classifier GAN, otherwise 0.

    Example
    -------
    >>> auxiliary_classes("auxiliary_classifier", 40), auxiliary_classes("vanilla", 40)
    (40, 0)
    """
    check_adversary(adversary)
    return n_speakers if adversary == "auxiliary_classifier" else 0


def source_score(logits):
    """The discriminator's score ``C(x)``: log-odds that ``x`` is a source item.

    Arguments
    ---------
    logits : torch.Tensor
        ``[items, 2 (+ speakers)]``: source and target logits first.

    Returns
    -------
    torch.Tensor
        ``[items]``.

    Example
    -------
    >>> source_score(torch.tensor([[2.0, 0.5], [0.0, 1.0]]))
    tensor([ 1.5000, -1.0000])
    """
    return logits[:, 0] - logits[:, 1]


def discriminator_loss(adversary, logits, n_source, speakers=None, smoothing=0.0):
    """What the discriminator minimises on a batch of (detached) features.

    Arguments
    ---------
    adversary : str
        One of :data:`ADVERSARIES`.
    logits : torch.Tensor
        ``[items, 2 (+ speakers)]``, the first ``n_source`` rows source items.
    n_source : int
        Number of source items (the rest, as many, are target items).
    speakers : torch.Tensor, optional
        ``[n_source]`` speaker indices (``auxiliary_classifier`` only).
    smoothing : float
        Label smoothing: the discriminator's labels are ``1 - smoothing / 2``
        for source and ``smoothing / 2`` for target (for ``relativistic``, for
        the source-minus-target score), as two-class cross-entropy with
        ``label_smoothing`` has them.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> logits = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    >>> float(discriminator_loss("least_squares", logits, 1))
    0.0
    """
    score = source_score(logits)
    high, low = 1.0 - smoothing / 2, smoothing / 2
    if adversary == "relativistic":
        relative = score[:n_source] - score[n_source:]
        return F.binary_cross_entropy_with_logits(relative, torch.full_like(relative, high))
    labels = torch.full_like(score, low)
    labels[:n_source] = high
    if adversary == "least_squares":
        return F.mse_loss(score, labels)
    loss = F.binary_cross_entropy_with_logits(score, labels)
    if adversary == "auxiliary_classifier":
        loss = loss + F.cross_entropy(logits[:n_source, 2:], speakers)
    return loss


def embedding_loss(adversary, logits, n_source, speakers=None):
    """What the embedding network minimises against a fixed discriminator.

    Arguments
    ---------
    adversary : str
        One of :data:`ADVERSARIES` except ``grl`` (which reverses the
        discriminator's own gradient instead).
    logits : torch.Tensor
        ``[items, 2 (+ speakers)]``, the first ``n_source`` rows source items.
    n_source : int
        Number of source items.
    speakers : torch.Tensor, optional
        ``[n_source]`` speaker indices (``auxiliary_classifier`` only).

    Returns
    -------
    torch.Tensor
        Scalar loss: low when the discriminator takes target items for source.

    Example
    -------
    >>> logits = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> float(embedding_loss("least_squares", logits, 1))
    0.0
    """
    score = source_score(logits)
    if adversary == "relativistic":
        relative = score[n_source:] - score[:n_source]
        return F.binary_cross_entropy_with_logits(relative, torch.ones_like(relative))
    target = score[n_source:]
    if adversary == "least_squares":
        return F.mse_loss(target, torch.ones_like(target))
    if adversary not in ("vanilla", "auxiliary_classifier"):
        raise ValueError(f"adversary {adversary!r} has no embedding-network loss of its own")
    loss = F.binary_cross_entropy_with_logits(target, torch.ones_like(target))
    if adversary == "auxiliary_classifier":
        loss = loss + F.cross_entropy(logits[:n_source, 2:], speakers)
    return loss
