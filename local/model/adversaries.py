"""The domain adversaries: what the discriminator and the encoder minimise.

One object per adversary, built in the hparams file from its one-word name
(``adversary: grl``, ``--adversary=vanilla``) by :func:`make_adversary`; the
Brain calls each through the same members (:class:`Adversary`): its two
losses and its counts of discriminator updates.

Bhattacharya et al. (ICASSP 2019, "Generative adversarial speaker embedding
networks for domain robust end-to-end speaker verification") train the
embedding network against a domain discriminator either through gradient
reversal (DANN/DANSE, ``grl``; Ganin et al., 2016) or as a GAN with
alternating updates: the discriminator learns to tell source ("real") from
target ("fake") embeddings, then the embedding network is updated so that
target embeddings look like source ones. The GAN variants differ in the
discriminator's objective:

- ``vanilla``: binary cross-entropy (Goodfellow et al., 2014), with the
  non-saturating loss for the embedding network;
- ``least_squares``: the discriminator's mean squared error to the labels 1
  (source) and 0 (target), the embedding network's mean squared error of the
  target outputs to 1 (Mao et al., 2017, with a = 0, b = c = 1);
- ``relativistic``: the discriminator scores each source embedding relative
  to the target embedding it is paired with, ``-log sigmoid(C(s) - C(t))``,
  and the embedding network the reverse (Jolicoeur-Martineau, 2019, RSGAN);
- ``auxiliary_classifier``: vanilla, plus a speaker classifier on the
  discriminator's last hidden layer that both players train (Odena et al.,
  2017: the discriminator maximises L_s + L_c, the generator L_c - L_s; here
  L_c is over the source speakers, the target's being unknown, and the
  embedding network's L_s term is the non-saturating one of ``vanilla``).

Neither SpeechBrain nor torch has a gradient-reversal layer or these losses
for a pair of embedding batches, so they are written here. The
discriminator's output is two domain logits (source, target); its score
``C(x)`` is their difference, the log-odds of source, so that the
``grl``/``vanilla`` discriminator loss is exactly the two-class cross-entropy.
Every loss is a mean over the items of the batch; source items come first and
are as many as target items.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F

from local.errors import fail


class DomainItems(NamedTuple):
    """What the discriminator classifies in one step: every frame (or embedding) is an item.

    ``features`` is ``[items, dim]``, the first ``n_source`` rows from source
    crops; ``speakers`` is the speaker of each of those ``n_source`` rows,
    for the auxiliary classifier.
    """

    features: torch.Tensor
    n_source: int
    speakers: torch.Tensor

    @classmethod
    def of(cls, features, speakers):
        """The items of a step: every frame of every crop, the source crops first.

        Arguments
        ---------
        features : torch.Tensor
            ``[crops, frames, dim]``: the embeddings (one frame) or the frames of a layer.
        speakers : torch.Tensor
            The speaker of each source crop (the first ``len(speakers)`` crops).

        Returns
        -------
        DomainItems
            ``[crops * frames, dim]`` items.
        """
        frames = features.shape[1]
        return cls(features.reshape(-1, features.shape[-1]), len(speakers) * frames,
                   speakers.reshape(-1).repeat_interleave(frames))


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


class Adversary:
    """What every adversary does; a subclass defines its two losses.

    Arguments
    ---------
    smoothing : float
        Label smoothing of the discriminator's labels, in [0, 1): they are
        ``1 - smoothing / 2`` for source and ``smoothing / 2`` for target
        (for ``relativistic``, for the source-minus-target score), as
        two-class cross-entropy with ``label_smoothing`` has them.
    disc_steps : int
        Discriminator updates per encoder step, on the step's detached items.

    Attributes
    ----------
    updates_before : int
        Discriminator-only updates before the encoder's loss is computed.
    updates_after : int
        Discriminator-only updates after the optimisers' step.
    joint : bool
        Whether the discriminator also learns from the encoder's loss (then
        Brain steps its optimiser with the others).

    The Brain owns the optimisers and steps them; an adversary only says
    what each player minimises and how often the discriminator is updated.
    """

    joint = False

    def __init__(self, smoothing=0.0, disc_steps=1):
        if not 0 <= smoothing < 1:
            fail(f"--domain_label_smoothing={smoothing}",
                 f"domain_label_smoothing must be in [0, 1); got {smoothing!r}",
                 fix="pass a value such as --domain_label_smoothing=0.2")
        if not isinstance(disc_steps, int) or disc_steps < 1:
            fail(f"--disc_steps={disc_steps}",
                 f"disc_steps must be an integer >= 1; got {disc_steps!r}",
                 fix="pass a value such as --disc_steps=1")
        self.smoothing = smoothing
        # A joint discriminator's first update comes from the encoder's loss.
        self.updates_before, self.updates_after = (
            (0, disc_steps - 1) if self.joint else (disc_steps, 0))

    @staticmethod
    def auxiliary_classes(n_speakers):
        """Speaker outputs the discriminator needs besides its two domain logits.

        Arguments
        ---------
        n_speakers : int
            Source speakers.

        Returns
        -------
        int
            0, but for the auxiliary-classifier GAN.
        """
        del n_speakers
        return 0

    def discriminator_loss(self, logits, items):
        """What the discriminator minimises: two-class cross-entropy, source vs target.

        Arguments
        ---------
        logits : torch.Tensor
            ``[items, 2 (+ speakers)]``.
        items : DomainItems
            The items the logits are of.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        score = source_score(logits)
        return F.binary_cross_entropy_with_logits(score, self.domain_labels(score, items))

    def domain_labels(self, score, items):
        """The discriminator's smoothed labels of ``items``: high for source, low for target.

        Arguments
        ---------
        score : torch.Tensor
            ``[items]`` scores, for the labels' type and device.
        items : DomainItems
            The items scored.

        Returns
        -------
        torch.Tensor
            ``[items]``.
        """
        labels = torch.full_like(score, self.smoothing / 2)
        labels[:items.n_source] = 1.0 - self.smoothing / 2
        return labels

    def encoder_loss(self, discriminator, items, coefficient):
        """What the encoder minimises against the discriminator, weighted by ``coefficient``.

        Arguments
        ---------
        discriminator : torch.nn.Module
            The domain discriminator.
        items : DomainItems
            This step's items, in the encoder's graph.
        coefficient : float
            The schedule's weight of the adversary at this step.

        Returns
        -------
        tuple
            ``(loss, log)``: the weighted loss, and ``{name: value}`` for the
            epoch's log (the discriminator's :meth:`domain_loss` and accuracy
            on these items, and the unweighted game loss, ``embedding_adv_loss``).
        """
        # The discriminator's function, with no gradient reaching its parameters.
        parameters = {name: p.detach() for name, p in discriminator.named_parameters()}
        logits = torch.func.functional_call(discriminator, parameters, (items.features,))
        game_loss = self.game_loss(logits, items)
        log = self._log(logits.detach(), items)
        return coefficient * game_loss, {**log, "embedding_adv_loss": game_loss}

    def game_loss(self, logits, items):
        """The encoder's loss against a fixed discriminator (the GAN adversaries).

        Arguments
        ---------
        logits : torch.Tensor
            The discriminator's ``[items, 2 (+ speakers)]``.
        items : DomainItems
            The items the logits are of.

        Returns
        -------
        torch.Tensor
            Scalar loss: low when the discriminator takes target items for source.
        """
        raise NotImplementedError

    def _log(self, logits, items):
        return {"domain_loss": self.domain_loss(logits, items),
                "domain_accuracy": self.domain_accuracy(logits, items)}

    def domain_accuracy(self, logits, items):
        """The fraction of items the discriminator places in their domain, logged as
        ``domain_accuracy``: source items with ``C(x) > 0``, target items with ``C(x) < 0``.

        Arguments
        ---------
        logits : torch.Tensor
            ``[items, 2 (+ speakers)]``.
        items : DomainItems
            The items the logits are of.

        Returns
        -------
        torch.Tensor
            Scalar in [0, 1]; 0.5 is chance.
        """
        is_source = torch.arange(len(logits), device=logits.device) < items.n_source
        return ((source_score(logits) > 0) == is_source).float().mean()

    def domain_loss(self, logits, items):
        """The discriminator's loss at telling source from target, logged as ``domain_loss``.

        Arguments
        ---------
        logits : torch.Tensor
            ``[items, 2 (+ speakers)]``.
        items : DomainItems
            The items the logits are of.

        Returns
        -------
        torch.Tensor
            Scalar loss: :meth:`discriminator_loss`, but for the
            auxiliary-classifier GAN, whose discriminator also classifies speakers.
        """
        return self.discriminator_loss(logits, items)


class GradientReversal(Adversary):
    """DANN: one loss for both players, its gradient reversed on the way to the encoder.

    The discriminator learns from the encoder's loss (its first update of the
    step) and takes ``disc_steps - 1`` more after the optimisers' step.

    With label smoothing ``s`` the encoder ascends the smoothed loss, which
    is lowest at the smoothed labels, ``C(x) = ±log((2 - s) / s)`` (±2.2 at
    0.2), not at the hard ones: the encoder's gradient on an item that the
    discriminator places beyond them pushes it further out, the domains
    apart. The GAN adversaries' encoder losses take the hard labels.

    Example
    -------
    >>> disc = torch.nn.Linear(3, 2)
    >>> items = DomainItems(torch.randn(4, 3, requires_grad=True), 2, torch.tensor([0, 1]))
    >>> loss, _ = GradientReversal().encoder_loss(disc, items, 0.5)
    >>> reversed_grad, = torch.autograd.grad(loss, items.features)
    >>> plain = GradientReversal().discriminator_loss(disc(items.features), items)
    >>> torch.allclose(reversed_grad, -0.5 * torch.autograd.grad(plain, items.features)[0])
    True
    """

    joint = True

    def encoder_loss(self, discriminator, items, coefficient):
        """The discriminator's loss, unweighted: the discriminator learns from it at weight 1,
        and the encoder gets its gradient reversed and weighted by ``coefficient``.

        So the epoch's logged ``loss`` holds the whole domain loss, where a GAN
        adversary's holds ``coefficient`` times its game loss.
        """
        logits = discriminator(reverse_gradient(items.features, coefficient))
        log = self._log(logits.detach(), items)
        return self.discriminator_loss(logits, items), log


def reverse_gradient(inputs, coefficient):
    """Identity forward; the gradient multiplied by ``-coefficient`` backward.

    Arguments
    ---------
    inputs : torch.Tensor
        Any tensor.
    coefficient : float
        Factor of the reversed gradient (0 stops it).

    Returns
    -------
    torch.Tensor
        ``inputs``, unchanged.

    Example
    -------
    >>> x = torch.ones(3, requires_grad=True)
    >>> reverse_gradient(x, 0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000, -0.5000])
    """
    return _ReverseGradient.apply(inputs, float(coefficient))


class _ReverseGradient(torch.autograd.Function):

    @staticmethod
    def forward(ctx, inputs, coefficient):
        ctx.coefficient = coefficient
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.coefficient * grad_output, None


class VanillaGAN(Adversary):
    """Binary cross-entropy; the encoder's non-saturating loss ``-log sigmoid(C(t))``."""

    def game_loss(self, logits, items):
        target = source_score(logits)[items.n_source:]
        return F.binary_cross_entropy_with_logits(target, torch.ones_like(target))


class LeastSquaresGAN(Adversary):
    """Squared error of ``C(x)`` to 1 (source) and 0 (target); the encoder's of ``C(t)`` to 1.

    The discriminator's loss, a mean over source and target items alike, is
    Mao et al.'s ``1/2 E[(C(s) - b)^2] + 1/2 E[(C(t) - a)^2]``. The encoder's
    is the mean ``E[(C(t) - c)^2]``, as every loss here is a mean over its
    items, where Mao et al. halve it: at the same ``adv_weight`` the encoder's
    gradient is twice theirs.
    """

    def discriminator_loss(self, logits, items):
        score = source_score(logits)
        return F.mse_loss(score, self.domain_labels(score, items))

    def game_loss(self, logits, items):
        target = source_score(logits)[items.n_source:]
        return F.mse_loss(target, torch.ones_like(target))


class RelativisticGAN(Adversary):
    """Each source item scored relative to the target item it is paired with (RSGAN).

    The losses see only differences of scores, so nothing sets where ``C(x) = 0``
    falls: the logged ``domain_accuracy`` is the fraction of pairs that the
    discriminator ranks right, ``C(s) > C(t)``, rather than of items on the
    right side of 0.
    """

    def domain_accuracy(self, logits, items):
        score = source_score(logits)
        return (score[:items.n_source] > score[items.n_source:]).float().mean()

    def discriminator_loss(self, logits, items):
        score = source_score(logits)
        relative = score[:items.n_source] - score[items.n_source:]
        return F.binary_cross_entropy_with_logits(
            relative, torch.full_like(relative, 1.0 - self.smoothing / 2))

    def game_loss(self, logits, items):
        score = source_score(logits)
        relative = score[items.n_source:] - score[:items.n_source]
        return F.binary_cross_entropy_with_logits(relative, torch.ones_like(relative))


class AuxiliaryClassifierGAN(VanillaGAN):
    """Vanilla, plus a source-speaker classifier on the discriminator that both players train.

    The epoch's log keeps the two parts of the discriminator's loss apart:
    ``domain_loss`` is vanilla's, ``auxiliary_speaker_loss`` the speaker
    classifier's cross-entropy; ``embedding_adv_loss``, the encoder's game
    loss, holds both of its terms.
    """

    @staticmethod
    def auxiliary_classes(n_speakers):
        return n_speakers

    def _speaker_loss(self, logits, items):
        return F.cross_entropy(logits[:items.n_source, 2:], items.speakers)

    def _log(self, logits, items):
        return {**super()._log(logits, items),
                "auxiliary_speaker_loss": self._speaker_loss(logits, items)}

    def domain_loss(self, logits, items):
        return super().discriminator_loss(logits, items)

    def discriminator_loss(self, logits, items):
        return self.domain_loss(logits, items) + self._speaker_loss(logits, items)

    def game_loss(self, logits, items):
        return super().game_loss(logits, items) + self._speaker_loss(logits, items)


ADVERSARIES = {"grl": GradientReversal, "vanilla": VanillaGAN,
               "least_squares": LeastSquaresGAN, "relativistic": RelativisticGAN,
               "auxiliary_classifier": AuxiliaryClassifierGAN}


def adversary_class(name):
    """The class of the adversary called ``name`` (a key of :data:`ADVERSARIES`).

    Arguments
    ---------
    name : str
        The ``adversary`` setting.

    Returns
    -------
    type
        A subclass of :class:`Adversary`.

    Example
    -------
    >>> adversary_class("wgan")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --adversary=wgan: adversary 'wgan' is not one of grl, vanilla, least_squares, relativistic, auxiliary_classifier
    Fix: pass one of them, such as --adversary=grl
    """
    if name not in ADVERSARIES:
        fail(f"--adversary={name}", f"adversary {name!r} is not one of {', '.join(ADVERSARIES)}",
             fix="pass one of them, such as --adversary=grl")
    return ADVERSARIES[name]


def make_adversary(name, smoothing=0.0, disc_steps=1):
    """The adversary called ``name``, for the hparams file's one-word switch.

    Arguments
    ---------
    name : str
        The ``adversary`` setting.
    smoothing : float
        ``domain_label_smoothing``.
    disc_steps : int
        Discriminator updates per step.

    Returns
    -------
    Adversary
        Built with the two settings.

    Example
    -------
    >>> type(make_adversary("least_squares")).__name__
    'LeastSquaresGAN'
    """
    return adversary_class(name)(smoothing, disc_steps)


def auxiliary_classes(name, n_speakers):
    """Speaker outputs the discriminator of adversary ``name`` needs besides its domain logits.

    Arguments
    ---------
    name : str
        The ``adversary`` setting.
    n_speakers : int
        Source speakers.

    Returns
    -------
    int
        The count.

    Example
    -------
    >>> auxiliary_classes("auxiliary_classifier", 40), auxiliary_classes("vanilla", 40)
    (40, 0)
    """
    return adversary_class(name).auxiliary_classes(n_speakers)
