"""The parts of the domain branch: the discriminator, what it reads, and the schedule.

The adversaries' losses are in :mod:`local.model.adversaries`, the
statistics-alignment losses in :mod:`local.model.alignment`; both follow the
schedule here (Ganin et al., 2016, "Domain-adversarial training of neural
networks").
"""

import math

import torch

from local.errors import fail


def ganin_lambda(progress, gamma=10.0):
    """Ganin et al.'s ramp ``2 / (1 + exp(-gamma * p)) - 1`` for progress p in [0, 1].

    Arguments
    ---------
    progress : float
        Fraction of training done.
    gamma : float
        Steepness.

    Returns
    -------
    float
        From 0 at p = 0 towards 1.

    Example
    -------
    >>> round(ganin_lambda(0.0), 6), round(ganin_lambda(1.0), 6)
    (0.0, 0.999909)
    """
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class AdversarialSchedule:
    """Reversal coefficient over training: zero during warm-up, then a Ganin ramp.

    Arguments
    ---------
    weight : float
        Scale of the ramp (``adv_weight``); 0 turns the adversary off.
    gamma : float
        Ramp steepness.
    warmup : float
        Fraction of training with coefficient 0, where the encoder learns
        from the speaker loss alone (the discriminator still learns, on
        :mod:`local.model.adversaries`' losses); the ramp runs over the
        remaining fraction.

    Example
    -------
    >>> schedule = AdversarialSchedule(weight=0.5, gamma=10.0, warmup=0.2)
    >>> schedule(0.1), round(schedule(0.6), 4)
    (0.0, 0.4933)
    """

    def __init__(self, weight=1.0, gamma=10.0, warmup=0.0):
        # A negative weight or steepness would turn the encoder into the
        # discriminator's ally; a steepness of 0 would keep the adversary off.
        if not weight >= 0:
            fail(f"--adv_weight={weight}", f"adv_weight must be >= 0; got {weight!r}",
                 fix="pass a weight of 0 (off) or more, such as --adv_weight=0.3")
        if not gamma > 0:
            fail(f"--adv_gamma={gamma}", f"adv_gamma must be > 0; got {gamma!r}",
                 fix="pass a steepness such as --adv_gamma=10")
        if not 0.0 <= warmup < 1.0:
            fail(f"--adv_warmup={warmup}", f"adv_warmup must be in [0, 1), got {warmup}",
                 fix="pass a fraction of training, such as --adv_warmup=0.25")
        self.weight, self.gamma, self.warmup = float(weight), float(gamma), float(warmup)

    def __call__(self, progress):
        """Coefficient at ``progress`` (fraction of training done).

        Arguments
        ---------
        progress : float
            Fraction of training done.

        Returns
        -------
        float
            ``weight`` times :meth:`ramp`.
        """
        return self.weight * self.ramp(progress)

    def ramp(self, progress):
        """The schedule's shape, without its weight: 0 in warm-up, then rising to 1.

        The statistics-alignment losses follow it, each with its own weight.

        Arguments
        ---------
        progress : float
            Fraction of training done.

        Returns
        -------
        float
            In [0, 1].
        """
        if progress < self.warmup:
            return 0.0
        return ganin_lambda((progress - self.warmup) / (1.0 - self.warmup), self.gamma)


class DomainDiscriminator(torch.nn.Module):
    """MLP from an embedding (or a frame) to domain logits.

    Arguments
    ---------
    input_size : int
        Embedding or frame feature size.
    hidden_sizes : list of int
        Hidden layer sizes.
    n_domains : int
        Number of domains.
    dropout : float
        Dropout after each hidden layer.
    auxiliary_classes : int
        Speaker logits output after the domain logits, from the same last
        hidden layer (the auxiliary-classifier GAN's second classifier,
        :mod:`local.model.adversaries`); 0 for none.

    Example
    -------
    >>> disc = DomainDiscriminator(8, [16])
    >>> disc(torch.rand(4, 1, 8)).shape, disc(torch.rand(4, 10, 8)).shape
    (torch.Size([4, 1, 2]), torch.Size([4, 10, 2]))
    >>> DomainDiscriminator(8, [16], auxiliary_classes=5)(torch.rand(4, 1, 8)).shape
    torch.Size([4, 1, 7])
    """

    def __init__(self, input_size, hidden_sizes=(256, 256), n_domains=2, dropout=0.0,
                 auxiliary_classes=0):
        super().__init__()
        layers, size = [], input_size
        for hidden in hidden_sizes:
            layers += [torch.nn.Linear(size, hidden), torch.nn.LeakyReLU(0.2),
                       torch.nn.Dropout(dropout)]
            size = hidden
        layers.append(torch.nn.Linear(size, n_domains + auxiliary_classes))
        self.mlp = torch.nn.Sequential(*layers)

    def forward(self, inputs):
        """Logits with the input's leading dimensions: domains (then speakers) last.

        Arguments
        ---------
        inputs : torch.Tensor
            ``[..., input_size]``: embeddings ``[batch, 1, input_size]`` or
            frames ``[batch, frames, input_size]``.

        Returns
        -------
        torch.Tensor
            ``[..., n_domains + auxiliary_classes]`` logits.
        """
        return self.mlp(inputs)


class LayerOutputTap:
    """Keeps the latest output of one named layer of a model, as frames.

    The domain discriminator can read frame-level encoder features instead
    of the pooled embedding; SpeechBrain's encoders return only the
    embedding, so a forward hook keeps the frames of the layer the hparams
    name (ECAPA-TDNN: ``mfa``; x-vector: ``blocks.14``, its last TDNN block).

    Arguments
    ---------
    model : torch.nn.Module
        The embedding model.
    layer : str
        Dotted name of the layer, as in ``model.named_modules()``.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Conv1d(4, 6, 1), torch.nn.AdaptiveAvgPool1d(1))
    >>> tap = LayerOutputTap(model, "0")
    >>> _ = model(torch.rand(2, 4, 9))
    >>> tap.frames(6).shape
    torch.Size([2, 9, 6])
    """

    def __init__(self, model, layer):
        names = [name for name, _ in model.named_modules() if name]
        if layer not in names:
            fail(f"--adv_layer={layer}", f"adv_layer '{layer}' is not a layer of "
                 f"{type(model).__name__}; its layers are: {', '.join(names)}",
                 fix="pass one of them, or --adv_layer=null for the pooled embedding")
        self.layer, self.output = layer, None
        model.get_submodule(layer).register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.output = output

    def frames(self, size):
        """The kept output as ``[batch, frames, size]``, whichever axis holds the features.

        Arguments
        ---------
        size : int
            Feature size the discriminator expects (``adv_input_size``).

        Returns
        -------
        torch.Tensor
            ``[batch, frames, size]``.
        """
        out = self.output
        if out is None or out.dim() != 3:
            fail(f"--adv_layer={self.layer}",
                 f"adv_layer '{self.layer}' gave no [batch, time, features] output",
                 fix="pass a layer with frame outputs, or --adv_layer=null")
        if out.shape[-1] == size and out.shape[1] != size:
            return out
        if out.shape[1] == size and out.shape[-1] != size:
            return out.transpose(1, 2)
        fail(f"--adv_input_size={size}", f"adv_layer '{self.layer}' outputs {tuple(out.shape)}",
             fix="set adv_input_size to its feature size (and no frame count equal to it)")
