"""The margin-softmax speaker losses, by name, for a one-word hparams switch."""

from speechbrain.nnet.losses import AdditiveAngularMargin, AngularMargin, LogSoftmaxWrapper

# SpeechBrain's two margins: additive angular, cos(θ + m) (AAM-softmax,
# ArcFace), and additive, cos(θ) - m (AM-softmax, CosFace).
MARGINS = {"aam": AdditiveAngularMargin, "am": AngularMargin}


def margin_softmax_loss(kind="aam", margin=0.2, scale=30.0):
    """SpeechBrain's AAM-softmax or AM-softmax loss on a cosine classifier's outputs.

    A tagged object cannot be swapped from the command line, a word can:
    ``--margin_type=am`` turns a recipe's AAM-softmax into AM-softmax.

    Arguments
    ---------
    kind : str
        ``aam`` (additive angular margin) or ``am`` (additive margin).
    margin : float
        The margin m.
    scale : float
        The scale s.

    Returns
    -------
    speechbrain.nnet.losses.LogSoftmaxWrapper
        Called as ``loss(cosines [batch, 1, classes], labels [batch, 1])``.

    Example
    -------
    >>> import torch
    >>> loss = margin_softmax_loss("am", margin=0.2, scale=30)
    >>> type(loss.loss_fn).__name__
    'AngularMargin'
    >>> float(loss(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[0]]))) < 1e-3
    True
    """
    if kind not in MARGINS:
        raise ValueError(f"margin_type {kind!r} is not one of {', '.join(MARGINS)}")
    return LogSoftmaxWrapper(MARGINS[kind](margin=margin, scale=scale))
