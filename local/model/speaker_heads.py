"""The speaker heads: the speaker loss on source crops (and pseudo-labelled target crops).

One object per head, built in the hparams file, and called the same way by
the Brain: ``head(source, labels, target, target_ids)`` returns the loss and
what it logs.

- :class:`MarginSoftmaxHead`: a cosine classifier of the source speakers (and
  of the target pseudo-speakers, :mod:`local.model.pseudo_labels`) under
  SpeechBrain's AAM-softmax (``aam``, ArcFace, ``cos(θ + m)``) or
  AM-softmax (``am``, CosFace, ``cos(θ) - m``), picked by a word so that
  ``--margin_type=am`` switches it from the command line.
- :class:`GE2EHead`: the generalized end-to-end loss of Wan et al. (2018,
  :class:`GE2ELoss`) on speaker-major source batches, with no classifier.
"""

import numpy as np
import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, AngularMargin, LogSoftmaxWrapper

from local.errors import fail

MARGINS = {"aam": AdditiveAngularMargin, "am": AngularMargin}


def margin_softmax_loss(kind="aam", margin=0.2, scale=30.0):
    """SpeechBrain's AAM-softmax or AM-softmax loss on a cosine classifier's outputs.

    AAM-softmax's target logit is ``s * cos(θ + m)`` while ``θ + m <= π`` and,
    beyond, ``s * (cos θ - m sin m)``, as in ArcFace's own code (the paper
    writes ``cos(θ + m)`` alone, which would rise again past ``π``, rewarding
    a larger angle). AM-softmax's is ``s * (cos θ - m)``.

    Arguments
    ---------
    kind : str
        ``aam`` (additive angular margin) or ``am`` (additive margin).
    margin : float
        The margin m.
    scale : float
        The scale s, above 0.

    Returns
    -------
    speechbrain.nnet.losses.LogSoftmaxWrapper
        Called as ``loss(cosines [batch, 1, classes], labels [batch, 1])``.

    Example
    -------
    >>> loss = margin_softmax_loss("am", margin=0.2, scale=30)
    >>> type(loss.loss_fn).__name__
    'AngularMargin'
    >>> float(loss(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[0]]))) < 1e-3
    True
    """
    if kind not in MARGINS:
        fail(f"--margin_type={kind}", f"margin_type {kind!r} is not one of {', '.join(MARGINS)}",
             fix="pass one of them, such as --margin_type=aam")
    # The logits are the scale times the (margined) cosines.
    if not scale > 0:
        fail(f"--scale={scale}", f"scale must be > 0; got {scale!r}: the speaker loss would "
                                 "train nothing (0) or the wrong speakers (below 0)",
             fix="pass a scale such as --scale=30")
    return LogSoftmaxWrapper(MARGINS[kind](margin=margin, scale=scale))


class GrowingClassifier(Classifier):
    """SpeechBrain's cosine classifier (ECAPA-TDNN's) whose rows can grow in place.

    It starts with a row per source speaker; the target pseudo-speakers add
    rows as a clustering finds them (:meth:`grow`), so that their number
    need not be known, or bounded, before training. Loading a state dict
    first takes its number of rows, so that a checkpoint or an exported
    model restores a grown classifier into a fresh one.

    Arguments
    ---------
    *args, **kwargs
        Those of :class:`speechbrain.lobes.models.ECAPA_TDNN.Classifier`.

    Example
    -------
    >>> small, grown = GrowingClassifier(input_size=4, out_neurons=3), GrowingClassifier(input_size=4, out_neurons=3)
    >>> grown.grow(5)
    >>> _ = small.load_state_dict(grown.state_dict())
    >>> small.weight.shape
    torch.Size([5, 4])
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_load_state_dict_pre_hook(self._take_saved_rows)

    def grow(self, rows, optimizer=None):
        """Add zero rows up to ``rows`` in all (never fewer), and to the optimiser's moments.

        The Parameter stays the same object, so the optimiser keeps updating it.

        Arguments
        ---------
        rows : int
            Rows wanted.
        optimizer : torch.optim.Optimizer, optional
            The optimiser of the classifier: its per-element statistics of
            the weight grow with it, the new rows at 0.
        """
        extra = rows - self.weight.shape[0]
        if extra <= 0:
            return
        old = self.weight.shape
        with torch.no_grad():
            self.weight.data = torch.cat([self.weight.data, self.weight.new_zeros(extra, old[1])])
        state = optimizer.state.get(self.weight, {}) if optimizer is not None else {}
        for key, moment in state.items():
            if torch.is_tensor(moment) and moment.shape == old:
                state[key] = torch.cat([moment, moment.new_zeros(extra, old[1])])

    def _take_saved_rows(self, module, state_dict, prefix, *args):
        saved = state_dict.get(prefix + "weight")
        if saved is not None and saved.shape[0] != self.weight.shape[0]:
            with torch.no_grad():
                self.weight.data = self.weight.new_zeros(saved.shape)


class SpeakerHead(torch.nn.Module):
    """What every speaker head does: the speaker loss of a step's embeddings.

    ``batch_layout`` is None, or ``(speakers, utterances)`` when the head
    needs speaker-major source batches of that shape.
    """

    batch_layout = None

    def forward(self, source, labels, target, target_ids, source_ids=None):
        """The loss of the source crops (and of the target crops with a pseudo-speaker).

        Arguments
        ---------
        source : torch.Tensor
            ``[n_source, 1, dim]`` embeddings.
        labels : torch.Tensor
            ``[n_source, 1]`` source speaker classes.
        target : torch.Tensor
            ``[n_target, 1, dim]`` embeddings.
        target_ids : list of str
            Their utterance IDs.
        source_ids : list of str, optional
            The source crops' utterance IDs; None when every crop is of an
            utterance of its own.

        Returns
        -------
        tuple
            ``(loss, log)``: the scalar loss and ``{name: value}`` for the
            epoch's log.
        """
        raise NotImplementedError


class MarginSoftmaxHead(SpeakerHead):
    """A margin softmax over the source speakers and the current target pseudo-speakers.

    The classifier has a row per source speaker, then a row per
    pseudo-speaker of the largest clustering so far (it grows as a clustering
    finds more); only the rows of the current pseudo-speakers are classes, so
    that rows beyond them are not competitors in the softmax.

    Arguments
    ---------
    classifier : GrowingClassifier
        Cosine classifier, embeddings ``[batch, 1, dim]`` to ``[batch, 1, classes]``.
    loss : callable
        As from :func:`margin_softmax_loss`.
    pseudo_labels : local.model.pseudo_labels.PseudoLabels
        The current pseudo-speaker of each target utterance.
    """

    def __init__(self, classifier, loss, pseudo_labels):
        super().__init__()
        self.classifier, self.loss, self.pseudo_labels = classifier, loss, pseudo_labels

    def forward(self, source, labels, target, target_ids, source_ids=None):
        """The margin softmax of the source crops and of the pseudo-labelled target crops.

        ``log`` has the fraction of target crops that took part
        (``pseudo_labelled``) once there are pseudo-speakers.
        """
        pseudo, log = self.pseudo_labels, {}
        if pseudo.n_speakers:
            target_labels = pseudo.lookup(target_ids).to(labels.device)
            labelled = target_labels >= 0
            source = torch.cat([source, target[labelled]])
            labels = torch.cat([labels, target_labels[labelled].unsqueeze(1)])
            log["pseudo_labelled"] = labelled.float().mean()
        logits = self.classifier(source)[..., :pseudo.offset + pseudo.n_speakers]
        return self.loss(logits, labels), log

    def start_pseudo_speakers(self, centroids, optimizer):
        """Set the pseudo-speakers' rows to their centroids, with their optimiser moments at 0.

        A new clustering numbers its speakers anew, so neither the rows nor
        their moments of an earlier clustering apply. The classifier grows
        when there are more pseudo-speakers than rows. Adam's step count is
        the whole weight's, not the rows': their moments restart at 0 without
        the bias correction of a fresh start, so under a steady gradient
        their first updates are larger than a fresh Adam's, (1 - b1^t) /
        sqrt(1 - b2^t) times the learning rate at their t-th step with
        Adam's defaults (3.2 at the first, 6.6 at the 12th, 3.2 at the 100th,
        1.3 at the 1,000th).

        Arguments
        ---------
        centroids : torch.Tensor
            ``[n pseudo-speakers, dim]``.
        optimizer : torch.optim.Optimizer
            The optimiser of the classifier.
        """
        rows = slice(self.pseudo_labels.offset, self.pseudo_labels.offset + len(centroids))
        self.classifier.grow(rows.stop, optimizer)
        weight = self.classifier.weight
        with torch.no_grad():
            weight[rows] = centroids.to(weight.device, weight.dtype)
        for moment in optimizer.state.get(weight, {}).values():
            if torch.is_tensor(moment) and moment.dim() and moment.shape == weight.shape:
                moment[rows] = 0


class GE2EHead(SpeakerHead):
    """The GE2E loss of source batches laid out as ``speakers`` x ``utterances`` crops.

    Such batches come from :class:`local.data.dataio.SpeakerBatchSampler`
    (``batch_layout``). There is no classifier, so no pseudo-labels either.

    Arguments
    ---------
    loss : GE2ELoss
        The loss, with its learned scale and bias.
    speakers : int
        Speakers per batch (N, at least 2).
    utterances : int
        Crops of each (M, at least 2).
    source_speakers : int
        Speakers of the source training set (at least ``speakers``).
    batch_size : int
        Source crops per batch: ``speakers * utterances``.
    pseudo_label_epochs : list of int
        Must be empty.

    Example
    -------
    >>> GE2EHead(GE2ELoss(), 8, 4, source_speakers=24, batch_size=16)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --batch_size=16: With the GE2E head, batch_size must be ge2e_speakers * ge2e_utterances (8 * 4 = 32); got 16
    Fix: set ge2e_speakers and ge2e_utterances instead
    """

    def __init__(self, loss, speakers, utterances, source_speakers, batch_size,
                 pseudo_label_epochs=()):
        super().__init__()
        if not all(isinstance(n, int) and n >= 2 for n in (speakers, utterances)):
            fail(f"--ge2e_speakers={speakers} --ge2e_utterances={utterances}",
                 "ge2e_speakers and ge2e_utterances must be integers >= 2 (each utterance is "
                 "compared with its speaker's other utterances and with other speakers); got "
                 f"{speakers!r} and {utterances!r}", fix="pass integers of at least 2")
        if speakers > source_speakers:
            fail(f"--ge2e_speakers={speakers}", f"ge2e_speakers {speakers} exceeds the "
                 f"{source_speakers} speakers of the source training set", fix="lower it")
        if batch_size != speakers * utterances:
            fail(f"--batch_size={batch_size}",
                 "With the GE2E head, batch_size must be ge2e_speakers * ge2e_utterances "
                 f"({speakers} * {utterances} = {speakers * utterances}); got {batch_size}",
                 fix="set ge2e_speakers and ge2e_utterances instead")
        if pseudo_label_epochs:
            fail(f"--pseudo_label_epochs={list(pseudo_label_epochs)}",
                 f"pseudo_label_epochs {list(pseudo_label_epochs)} train target "
                 "pseudo-speakers in the speaker classifier, and the GE2E head has none",
                 fix="set pseudo_label_epochs: [] or use a margin-softmax hparams file "
                     "(hparams/dann_fbank.yaml)")
        self.loss = loss
        self.batch_layout = (speakers, utterances)

    def forward(self, source, labels, target, target_ids, source_ids=None):
        """The GE2E loss of the source crops, whose first ``utterances`` rows are one speaker's.

        The labels are the batch's layout already; target crops take no part.
        With ``--augment=True`` the rows are the layout's batch then its
        augmented copy, laid out alike: a speaker's crops and their copies
        are its ``2 * utterances``. The crops of one utterance (``source_ids``:
        a speaker with fewer utterances than ``utterances`` repeats some, and
        an augmented copy is of its crop's utterance) are left out of each
        other's own-speaker centroid.
        """
        del labels, target, target_ids
        speakers, utterances = self.batch_layout
        copies = source.reshape(-1, speakers, utterances, source.shape[-1])
        by_speaker = copies.transpose(0, 1).reshape(speakers, -1, source.shape[-1])
        if source_ids is None:
            return self.loss(by_speaker), {}
        codes = torch.as_tensor(np.unique(np.asarray(source_ids), return_inverse=True)[1])
        codes = codes.reshape(-1, speakers, utterances).transpose(0, 1).reshape(speakers, -1)
        return self.loss(by_speaker, codes.to(source.device)), {}


VARIANTS = ("softmax", "contrast")


class GE2ELoss(torch.nn.Module):
    """GE2E loss of embeddings ``[N speakers, M utterances, dim]``.

    The embeddings are first scaled to unit length (the paper's ``e[j, i]``).
    The similarity of utterance ``i`` of speaker ``j`` with speaker ``k`` is
    ``S[j, i, k] = w * cos(e[j, i], c[k]) + b``, where ``c[k]`` is the mean
    of speaker ``k``'s unit embeddings and, for ``k == j``, the mean of the
    other ``M - 1`` unit embeddings of speaker ``j``, so that the loss depends
    on the embeddings' directions alone. Where several rows are crops of one
    utterance (``utterances``), the own centroid leaves all of them out: a
    crop of an utterance shorter than the crop is the whole utterance, so a
    repeated one is the same audio, and the paper's centroid leaves the
    utterance itself out. The scale ``w`` and the bias ``b``
    are learned; the paper keeps ``w > 0``, so that a larger similarity
    always means closer; here the scale is ``|w|``, so that ``w`` keeps its
    gradient wherever an optimiser step takes it. A clamp at a small
    positive value would stop that gradient for good once a step took ``w``
    below it, and with the scale that small, the embeddings' gradients too.
    The paper also multiplies the gradients of ``w`` and ``b`` by 0.01, to
    slow them under its SGD; ``hparams/ge2e_fbank.yaml`` trains them with
    Adam, which divides each parameter's step by the running size of its own
    gradient, so such a constant factor cancels (their steps are at most
    about the learning rate already) and is left out.

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
            fail(f"--ge2e_variant={variant}",
                 f"GE2E variant must be one of {VARIANTS}; got {variant!r}",
                 fix="pass one of them, such as --ge2e_variant=softmax")
        self.variant = variant
        self.w = torch.nn.Parameter(torch.tensor(float(init_w)))
        self.b = torch.nn.Parameter(torch.tensor(float(init_b)))

    def similarities(self, embeddings, utterances=None):
        """The scaled cosine similarities ``S[j, i, k]`` of each utterance with each speaker.

        Arguments
        ---------
        embeddings : torch.Tensor
            ``[N speakers, M utterances, dim]``, N >= 2 and M >= 2.
        utterances : torch.Tensor, optional
            ``[N, M]`` integer codes, equal for the crops of one utterance,
            each speaker with at least 2 utterances; None when every row is
            an utterance of its own.

        Returns
        -------
        torch.Tensor
            ``[N, M, N]``; ``[j, i, j]`` against the centroid without utterance ``i``
            (without any of its crops).

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
        centroids = F.normalize(units.mean(dim=1), dim=-1)
        cosines = torch.einsum("jid,kd->jik", units, centroids)
        # The own speaker's centroid of its other utterances (the direction of their
        # sum): [j, i, m] is whether row m is another utterance than row i.
        if utterances is None:
            other = ~torch.eye(n_utterances, dtype=torch.bool, device=embeddings.device)
            other = other.expand(n_speakers, -1, -1)
        else:
            other = utterances[:, :, None] != utterances[:, None, :]
            if not other.any(dim=-1).all():
                raise ValueError("GE2E needs at least 2 utterances of each speaker (an "
                                 "utterance is compared with the centroid of its speaker's "
                                 "other utterances); a speaker's crops are all of one")
        others = torch.einsum("jim,jmd->jid", other.to(units.dtype), units)
        own = (units * F.normalize(others, dim=-1)).sum(dim=-1)
        cosines = torch.where(_own_speaker(n_speakers, embeddings.device), own.unsqueeze(-1),
                              cosines)
        return self.w.abs() * cosines + self.b

    def forward(self, embeddings, utterances=None):
        """The mean GE2E loss over the N * M utterances.

        Arguments
        ---------
        embeddings : torch.Tensor
            ``[N speakers, M utterances, dim]``, N >= 2 and M >= 2.
        utterances : torch.Tensor, optional
            ``[N, M]`` codes of the rows' utterances (:meth:`similarities`).

        Returns
        -------
        torch.Tensor
            The scalar loss.
        """
        scores = self.similarities(embeddings, utterances)
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
