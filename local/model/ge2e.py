"""The generalized end-to-end (GE2E) speaker loss of Wan et al. (2018).

Wan, Wang, Papir and Lopez Moreno, "Generalized end-to-end loss for speaker
verification", ICASSP 2018. A batch holds N speakers with M utterances each;
every utterance embedding is compared, by a scaled and shifted cosine, with
the centroid of each speaker's utterances, and the loss pulls it towards its
own speaker's centroid and away from the others. For its own speaker the
centroid leaves the utterance out, which keeps the task from being trivially
easy and the training stable. No speaker classifier is learned: the loss
needs only the labels' grouping, given by the batch's layout
(:class:`local.data.dataio.SpeakerBatchSampler`).
"""

import torch
import torch.nn.functional as F

VARIANTS = ("softmax", "contrast")


class GE2ELoss(torch.nn.Module):
    """GE2E loss of embeddings ``[N speakers, M utterances, dim]``.

    The similarity of utterance ``i`` of speaker ``j`` with speaker ``k`` is
    ``S[j, i, k] = w * cos(e[j, i], c[k]) + b``, where ``c[k]`` is the mean
    of speaker ``k``'s embeddings and, for ``k == j``, the mean of the other
    ``M - 1`` embeddings of speaker ``j``. The scale ``w`` (kept at least
    1e-6, as in the paper, so that a larger similarity always means closer)
    and the bias ``b`` are learned.

    Per utterance, the ``softmax`` variant is the cross-entropy of the
    similarities against the own speaker, ``-S[j, i, j] + log sum_k
    exp(S[j, i, k])``; the ``contrast`` variant is ``1 - sigmoid(S[j, i, j]) +
    max_{k != j} sigmoid(S[j, i, k])``, the own speaker against the most
    similar other one. The paper sums these over the N * M utterances; here
    they are averaged, so that the loss (and the learning rate it needs) does
    not scale with the batch size.

    Arguments
    ---------
    variant : str
        ``softmax`` or ``contrast``.
    init_w : float
        Initial scale (10 in the paper).
    init_b : float
        Initial bias (-5 in the paper).

    Example
    -------
    >>> loss_fn = GE2ELoss()
    >>> embeddings = torch.randn(4, 3, 16, requires_grad=True)
    >>> loss = loss_fn(embeddings)
    >>> loss.backward()
    >>> loss.shape, embeddings.grad.shape, float(loss_fn.w.grad) != 0.0
    (torch.Size([]), torch.Size([4, 3, 16]), True)
    """

    def __init__(self, variant="softmax", init_w=10.0, init_b=-5.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"GE2E variant must be one of {VARIANTS}; got {variant!r}")
        self.variant = variant
        self.w = torch.nn.Parameter(torch.tensor(float(init_w)))
        self.b = torch.nn.Parameter(torch.tensor(float(init_b)))

    def similarities(self, embeddings):
        """The scaled cosine similarities ``S[j, i, k]`` of each utterance with each speaker.

        Arguments
        ---------
        embeddings : torch.Tensor
            ``[N speakers, M utterances, dim]``, N >= 2 and M >= 2.

        Returns
        -------
        torch.Tensor
            ``[N, M, N]``; ``[j, i, j]`` against the centroid without utterance ``i``.

        Example
        -------
        >>> embeddings = torch.eye(4).reshape(2, 2, 4)  # four orthogonal utterances
        >>> GE2ELoss(init_w=1.0, init_b=0.0).similarities(embeddings)[0, 0]
        tensor([0., 0.], grad_fn=<SelectBackward0>)
        """
        if embeddings.dim() != 3:
            raise ValueError("GE2E takes embeddings [N speakers, M utterances, dim]; got "
                             f"shape {tuple(embeddings.shape)}")
        n_speakers, n_utterances, _ = embeddings.shape
        if n_speakers < 2 or n_utterances < 2:
            raise ValueError(
                "GE2E needs at least 2 speakers and 2 utterances of each (an utterance is "
                "compared with the centroid of its speaker's other utterances); got "
                f"{n_speakers} speakers x {n_utterances} utterances")
        units = F.normalize(embeddings, dim=-1)
        centroids = F.normalize(embeddings.mean(dim=1), dim=-1)
        cosines = torch.einsum("jid,kd->jik", units, centroids)
        # The own speaker's centroid of the other M - 1 utterances.
        others = (embeddings.sum(dim=1, keepdim=True) - embeddings) / (n_utterances - 1)
        own = (units * F.normalize(others, dim=-1)).sum(dim=-1)
        cosines = torch.where(_own_speaker(n_speakers, embeddings.device), own.unsqueeze(-1),
                              cosines)
        return self.w.clamp(min=1e-6) * cosines + self.b

    def forward(self, embeddings):
        """The mean GE2E loss over the N * M utterances.

        Arguments
        ---------
        embeddings : torch.Tensor
            ``[N speakers, M utterances, dim]``, N >= 2 and M >= 2.

        Returns
        -------
        torch.Tensor
            The scalar loss.
        """
        scores = self.similarities(embeddings)
        n_speakers, n_utterances, _ = scores.shape
        if self.variant == "softmax":
            own = torch.arange(n_speakers, device=scores.device).repeat_interleave(n_utterances)
            return F.cross_entropy(scores.reshape(-1, n_speakers), own)
        sigmoids = torch.sigmoid(scores)
        is_own = _own_speaker(n_speakers, scores.device)
        own = sigmoids.masked_select(is_own).reshape(n_speakers, n_utterances)
        closest_other = sigmoids.masked_fill(is_own, float("-inf")).amax(dim=-1)
        return (1 - own + closest_other).mean()


def _own_speaker(n_speakers, device):
    """``[N, 1, N]`` mask of the own speaker's column, for scores ``[N, M, N]``."""
    return torch.eye(n_speakers, dtype=torch.bool, device=device)[:, None, :]
