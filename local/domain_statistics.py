"""The statistics of one domain's embeddings: their mean, whitening and colouring (CORAL).

Below both the model and the evaluation: the back-end adaptation
(the ``mean``, ``whiten`` and ``coral_plda`` back-ends of
:mod:`local.evaluation.backends`) centres and whitens by a cohort's
statistics, the pseudo-labels (:mod:`local.model.pseudo_labels`) by the target
training set's.

Every embedding is length-normalised, centred on the domain's mean and, with
whitening, multiplied by the covariance's inverse square root. The
statistics are those of the length-normalised embeddings, the space the
cosine score works in, so that an embedding's norm does not weigh on them.

A ridge, a fraction of the covariance's mean eigenvalue, is added to its
eigenvalues, so that directions which the domain's few embeddings barely span
are not blown up. Every whitening of the same covariance (PCA, ZCA, Cholesky)
is another one rotated, so all give the same cosine scores; this one is the
PCA whitening of :meth:`scipy.stats.Covariance.whiten`. :func:`coral`
re-colours the source domain by the target's covariance through the symmetric
square roots of both (ZCA), which a rotation does not leave alone.
"""

import numpy as np
import torch
from scipy.stats import Covariance

from local.errors import fail


def check_finite(vectors, name, ids=None):
    """Fail on embeddings with NaN or infinite values, naming their rows.

    Arguments
    ---------
    vectors : torch.Tensor or numpy.ndarray
        ``[n, dim]`` embeddings.
    name : str
        What they are (``cohort``, ``plda``), named in the message.
    ids : list of str, optional
        The utterance of each row, named instead of its number.

    Raises
    ------
    ManifestError
        Naming the first bad rows.

    Example
    -------
    >>> check_finite(torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]), "cohort")
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: cohort: embeddings with NaN or infinite values
      row 1
    Fix: check the model and the audio of the training manifest they were drawn from
    """
    bad = (~torch.isfinite(torch.as_tensor(vectors)).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        fail(name, "embeddings with NaN or infinite values",
             rows=[ids[i] if ids else f"row {i}" for i in bad],
             fix="check the model and the audio of the training manifest they were drawn from")


def unit_float64(vectors):
    """Embeddings scaled to unit length, in float64: the space of every domain statistic.

    Arguments
    ---------
    vectors : torch.Tensor or numpy.ndarray
        ``[n, dim]`` embeddings.

    Returns
    -------
    numpy.ndarray
        ``[n, dim]`` float64, each row of length 1 (a zero row stays zero).

    Example
    -------
    >>> unit_float64(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    vectors = torch.as_tensor(vectors, dtype=torch.float64)
    return torch.nn.functional.normalize(vectors, dim=-1).numpy()


# What the back-end adaptation's cohort is drawn with, for the fixes of its messages.
COHORT_DRAW = "cohort_size and the cohort's training manifest"


def check_domain_size(size, whiten, name="cohort", drawn=COHORT_DRAW, dim=None):
    """Fail when ``size`` embeddings are too few to centre on (1), or to whiten by (2).

    :class:`DomainAdaptation` checks the embeddings it is given; the
    evaluation checks the number a cohort will be drawn from, read from its
    manifest, before anything is embedded
    (:func:`local.evaluation.verification.check_cohort`).

    Arguments
    ---------
    size : int
        The domain's embeddings, or the utterances they will be drawn from.
    whiten : bool
        Whiten as well as centre: a covariance needs 2.
    name : str
        What they are, or are drawn from, named in the message.
    drawn : str
        The setting and the manifest that their number is drawn with, named in the fix.
    dim : int, optional
        With ``whiten`` and no ridge: the embeddings' dimensions, which a
        covariance whitened without a ridge needs more embeddings than
        (``dim`` + 1) to span.

    Example
    -------
    >>> check_domain_size(1, whiten=True)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: cohort: 1 embeddings, fewer than the 2 that a covariance to whiten by needs
    Fix: raise cohort_size and the cohort's training manifest to 2 utterances or more within min_embed_seconds and max_embed_seconds
    """
    needed, statistic = (2, "a covariance to whiten by") if whiten else (1, "a mean to centre on")
    ridge = ""
    if whiten and dim is not None:
        needed, statistic = dim + 1, f"a covariance spanning their {dim} dimensions"
        ridge = "set whiten_ridge above 0, or "
    if size < needed:
        fail(name, f"{size} embeddings, fewer than the {needed} that {statistic} needs",
             fix=f"{ridge}raise {drawn} to {needed} utterances or more within min_embed_seconds "
                 "and max_embed_seconds")


class DomainAdaptation:
    """Centring on, and optionally whitening by, one domain's embeddings.

    Arguments
    ---------
    domain : torch.Tensor or numpy.ndarray
        ``[n, dim]`` embeddings of the domain.
    whiten : bool
        Whiten as well as centre.
    ridge : float
        With ``whiten``: added to the covariance's eigenvalues, as a fraction
        of their mean.
    name : str
        What the embeddings are, in the messages.
    drawn : str
        The setting and the manifest that their number is drawn with, in the fixes.

    Attributes
    ----------
    eigenvectors : numpy.ndarray or None
        With ``whiten``: ``[dim, dim]``, the covariance's eigenvectors, the
        basis the whitened vectors are in.

    Raises
    ------
    ManifestError
        When the domain's embeddings have NaN/inf values, are none, or (with
        ``whiten``) are fewer than 2, all the same, or (without a ridge) do
        not span their dimensions (:func:`check_domain_size`).

    Example
    -------
    >>> domain = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> DomainAdaptation(domain)(torch.tensor([[0.0, 3.0]]))
    tensor([[-0.3333,  1.0000]])
    """

    def __init__(self, domain, whiten=False, ridge=0.0, name="cohort", drawn=COHORT_DRAW):
        check_domain_size(len(domain), whiten, name, drawn)
        check_finite(domain, name)
        units = unit_float64(domain)
        self.mean = units.mean(axis=0)
        self.whitening = self.eigenvectors = None
        if whiten:
            eigenvalues, eigenvectors = np.linalg.eigh(np.cov(units, rowvar=False))
            # Unit vectors' total variance is 1 - |mean|^2: rounding alone for identical ones,
            # which a ridge (a fraction of it) would whiten into noise. Rounding in their own
            # precision: a float32 model embeds digital silence of any length alike to 1e-7.
            precision = torch.finfo(torch.as_tensor(domain).dtype).eps
            if not eigenvalues.sum() > len(eigenvalues) * precision:
                fail(name, f"its {len(units)} embeddings are all the same: they have no "
                           "covariance to whiten by",
                     fix="check the model and the audio they were drawn from")
            eigenvalues = eigenvalues + ridge * eigenvalues.mean()
            floor = eigenvalues.max() * len(eigenvalues) * np.finfo(eigenvalues.dtype).eps
            if not eigenvalues.min() > floor:
                count, dim = units.shape
                check_domain_size(count, whiten, name, drawn, dim)  # fewer than dim + 1
                fail(name, f"its {count} embeddings do not span their {dim} dimensions, so "
                           "their covariance cannot be whitened",
                     fix="set whiten_ridge above 0, or check the model and the audio they were "
                         "drawn from")
            self.whitening = Covariance.from_eigendecomposition((eigenvalues, eigenvectors))
            self.eigenvectors = eigenvectors

    def __call__(self, vectors):
        """The adapted vectors.

        Arguments
        ---------
        vectors : torch.Tensor or numpy.ndarray
            ``[n, dim]`` embeddings.

        Returns
        -------
        torch.Tensor
            ``[n, dim]``, centred (and whitened), in the dtype of ``vectors``.
        """
        vectors = torch.as_tensor(vectors)
        adapted = unit_float64(vectors) - self.mean
        if self.whitening is not None:
            adapted = self.whitening.whiten(adapted)
        return torch.from_numpy(adapted).to(vectors.dtype)

    def colour(self, white):
        """Vectors of zero mean and identity covariance given this domain's mean and covariance.

        The inverse of the whitening of :meth:`__call__`.

        Arguments
        ---------
        white : torch.Tensor or numpy.ndarray
            ``[n, dim]`` in the basis of :attr:`eigenvectors`, as :meth:`__call__`
            gives them; needs ``whiten``.

        Returns
        -------
        torch.Tensor
            ``[n, dim]`` float64.
        """
        white = torch.as_tensor(white, dtype=torch.float64).numpy()
        return torch.from_numpy(self.whitening.colorize(white) + self.mean)

    def adapt_embeddings(self, embeddings):
        """The adapted embeddings of a ``{utterance ID: tensor [dim]}`` dict.

        Arguments
        ---------
        embeddings : dict
            As from :func:`local.embedding.compute_embeddings`.

        Returns
        -------
        dict
            The same keys, each with its adapted embedding.
        """
        ids = list(embeddings)
        adapted = self(torch.stack([torch.as_tensor(embeddings[utt]) for utt in ids]))
        return dict(zip(ids, adapted))


def coral(source, target, ridge=0.0):
    """Source embeddings re-coloured to the target domain's statistics (CORAL).

    Correlation alignment (Sun, Feng and Saenko, AAAI 2016): the unit source
    embeddings are centred, multiplied by ``C_source^(-1/2) C_target^(1/2)``
    (symmetric square roots) and moved to the target's mean, so that a
    back-end trained on them (with the source speaker labels) sees the
    target's covariance. Any rotation between the whitening and the
    colouring would match the covariances too, but would turn the speakers'
    directions: the symmetric roots leave a source that already has the
    target's covariance as it is. Both covariances get the ``ridge`` of
    :class:`DomainAdaptation`.

    Arguments
    ---------
    source : torch.Tensor or numpy.ndarray
        ``[n, dim]`` source embeddings.
    target : torch.Tensor or numpy.ndarray
        ``[m, dim]`` unlabelled target embeddings.
    ridge : float
        Added to each covariance's eigenvalues, as a fraction of their mean.

    Returns
    -------
    torch.Tensor
        ``[n, dim]`` float64: with ``ridge`` 0, their mean and covariance are
        those of the unit target embeddings.
    """
    # Both drawn as the coral_plda back-end draws them.
    target_domain, source_domain = (
        DomainAdaptation(vectors, whiten=True, ridge=ridge, name=domain,
                         drawn=f"backend_max_utterances and the {domain} training manifest")
        for domain, vectors in (("target", target), ("source", source)))
    # Whitened in the source's eigenbasis, then turned into the target's: the
    # PCA whitening and colouring alone would pair the two eigenbases by the
    # rank of their eigenvalues and the arbitrary signs of their eigenvectors.
    white = source_domain(torch.as_tensor(source, dtype=torch.float64)).numpy()
    return target_domain.colour(white @ source_domain.eigenvectors.T @ target_domain.eigenvectors)
