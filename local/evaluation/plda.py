"""Two-covariance PLDA after LDA, and its unsupervised adaptation to a domain.

SpeechBrain's ``speechbrain.processing.PLDA_LDA`` is not used: its PLDA is
the simplified factor model (no adaptation), it trains and scores through
``StatObject_SB``/``Ndx`` containers rather than arrays, and its scoring
returns the full enrolment x test matrix rather than a trial list's pairs. The
model here is Kaldi's (``ivector-compute-plda``): a speaker's embeddings are
``mean + y + e`` with speaker offsets ``y ~ N(0, between)`` and residuals
``e ~ N(0, within)``, held as one transform that makes the within-class
covariance the identity and the between-class one ``diag(psi)``. The
covariances are the moment estimates, weighted by utterances so that
``within + between`` is the training data's total covariance (Kaldi starts
its EM iterations from such estimates).

:meth:`PLDA.adapted` is Kaldi's ``ivector-adapt-plda``: the total covariance
of unlabelled in-domain data (about its own mean, plus the outer product of
that mean's shift) is compared with the model's, in the space where the
model's total covariance is the identity; along each direction where the
in-domain variance is larger, ``within_scale`` of the excess goes to the
within-class and ``between_scale`` to the between-class covariance, and the
model's mean becomes the in-domain mean.

A trial's log-likelihood ratio, same speaker against different speakers, is
that of one embedding per side: an enrolment model of several utterances is
the normalised mean of their unit embeddings, as in the cosine scoring of
:mod:`local.evaluation.scoring`, rather than Kaldi's count-dependent posterior.
"""

import copy

import numpy as np
import scipy.linalg
import torch

from local.domain_statistics import check_finite, unit_float64


class Unscorable(Exception):
    """A back-end that the run's training data cannot train; the message says why.

    Not a :class:`~local.errors.ManifestError`: no file is wrong, the data
    is too small for this back-end, and the verification scores the others
    (:func:`local.evaluation.verification.build_backends`).
    """


# The fewest speakers a back-end trains on: the LDA keeps at most the speakers
# minus one dimensions, and a single dimension scaled to unit length holds only
# its sign, so that every trial would score one of three values.
MIN_SPEAKERS = 3


def class_covariances(vectors, labels):
    """Mean, within-class and between-class covariances of labelled vectors.

    Arguments
    ---------
    vectors : numpy.ndarray
        ``[n, dim]``.
    labels : sequence
        The class of each vector.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mean, within, between)``, both covariances normalised by ``n``, so
        that they add up to the total covariance.

    Example
    -------
    >>> mean, within, between = class_covariances(
    ...     np.array([[0.0], [2.0], [4.0], [6.0]]), ["a", "a", "b", "b"])
    >>> mean, within, between
    (array([3.]), array([[1.]]), array([[4.]]))
    """
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    counts = np.bincount(codes, minlength=len(classes)).astype(np.float64)
    sums = np.zeros((len(classes), vectors.shape[1]))
    np.add.at(sums, codes, vectors)
    class_means = sums / counts[:, None]
    mean = vectors.mean(axis=0)
    residuals = vectors - class_means[codes]
    offsets = class_means - mean
    within = residuals.T @ residuals / len(vectors)
    between = (offsets * counts[:, None]).T @ offsets / len(vectors)
    return mean, within, between


def simultaneous_diagonalisation(within, between, spare=None):
    """The transform that makes ``within`` the identity and ``between`` diagonal.

    Arguments
    ---------
    within : numpy.ndarray
        ``[dim, dim]``, positive definite.
    between : numpy.ndarray
        ``[dim, dim]``, positive semi-definite.
    spare : int, optional
        The within-speaker degrees of freedom of the training embeddings
        (utterances minus speakers), which say why ``within`` is singular.

    Returns
    -------
    tuple of numpy.ndarray
        ``(transform [dim, dim], psi [dim])``, rows in decreasing ``psi``.

    Raises
    ------
    Unscorable
        When ``within`` is singular: too few utterances per dimension or,
        with ``spare`` enough to span it, a direction in which no speaker's
        embeddings vary.
    """
    # A covariance short of full rank can pass the Cholesky factorisation of
    # scipy's eigh by rounding, and give a psi of 1e25 along its null direction.
    eigenvalues = np.linalg.eigvalsh(within)
    floor = eigenvalues.max() * len(within) * np.finfo(within.dtype).eps
    try:
        if not eigenvalues.min() > floor:
            raise np.linalg.LinAlgError
        psi, vectors = scipy.linalg.eigh(between, within)
    except np.linalg.LinAlgError:
        raise Unscorable(singular_within(len(within), spare)) from None
    order = np.argsort(psi)[::-1]
    return vectors[:, order].T, np.maximum(psi[order], 0.0)


def singular_within(dim, spare=None):
    """Why a within-class covariance of ``dim`` dimensions is singular, and the fix.

    Arguments
    ---------
    dim : int
        Its dimensions.
    spare : int, optional
        The within-speaker degrees of freedom (utterances minus speakers) of
        the embeddings it is of, ``dim`` or more of which span it; None: unknown.

    Returns
    -------
    str
        Too few utterances, or, where ``spare`` would span ``dim``, embeddings
        that do not vary in some direction within any speaker.

    Example
    -------
    >>> print(singular_within(8, spare=54))  # doctest: +ELLIPSIS
    the within-class covariance of the 8-dimensional training embeddings is singular, though their 54 within-speaker degrees of freedom (utterances minus speakers) would span it: ...
    """
    problem = (f"the within-class covariance of the {dim}-dimensional training embeddings is "
               "singular")
    if spare is not None and spare >= dim:
        return (f"{problem}, though their {spare} within-speaker degrees of freedom (utterances "
                "minus speakers) would span it: in some direction no speaker's embeddings vary "
                "(a dimension that is 0 in every embedding, or speakers whose utterances are "
                "copies of a few recordings under several IDs); check the model, or remove the "
                "copies from the training manifest")
    return (f"{problem}; it needs more utterances than the embeddings have dimensions and "
            "speakers together: a larger backend_max_utterances or training manifest (the LDA "
            "is found in all the dimensions, so lda_dim does not help)")


class PLDA:
    """Two-covariance PLDA: mean, diagonalising transform and between-class variances.

    Arguments
    ---------
    mean : numpy.ndarray
        ``[dim]``.
    within : numpy.ndarray
        ``[dim, dim]`` within-class covariance.
    between : numpy.ndarray
        ``[dim, dim]`` between-class covariance.
    """

    def __init__(self, mean, within, between):
        self.mean = mean
        self.transform, self.psi = simultaneous_diagonalisation(within, between)

    @classmethod
    def fit(cls, vectors, labels):
        """The PLDA of labelled vectors.

        Arguments
        ---------
        vectors : numpy.ndarray
            ``[n, dim]``.
        labels : sequence
            The class of each vector.

        Returns
        -------
        PLDA
        """
        return cls(*class_covariances(vectors, labels))

    def adapted(self, in_domain, within_scale=0.3, between_scale=0.7):
        """This model adapted to unlabelled in-domain vectors, as Kaldi's ``ivector-adapt-plda``.

        The in-domain total covariance includes the outer product of the
        mean's shift, at Kaldi's default weight (``--mean-diff-scale=1``).

        Arguments
        ---------
        in_domain : numpy.ndarray
            ``[n, dim]`` vectors of the new domain, in this model's input space.
        within_scale, between_scale : float
            Shares of each direction's excess in-domain variance added to the
            within- and between-class covariances (Kaldi's defaults).

        Returns
        -------
        PLDA
            The adapted model; this one is unchanged.
        """
        mean = in_domain.mean(axis=0)
        shift = mean - self.mean
        variance = np.cov(in_domain, rowvar=False, bias=True) + np.outer(shift, shift)
        # Rows that make the model's total covariance (I + diag(psi)) the identity.
        to_unit_total = self.transform / np.sqrt(1.0 + self.psi)[:, None]
        excess, directions = np.linalg.eigh(to_unit_total @ variance @ to_unit_total.T)
        within = np.diag(1.0 / (1.0 + self.psi))
        between = np.diag(self.psi / (1.0 + self.psi))
        within = directions.T @ within @ directions
        between = directions.T @ between @ directions
        excess = np.maximum(excess - 1.0, 0.0)
        within += np.diag(within_scale * excess)
        between += np.diag(between_scale * excess)
        back = np.linalg.inv(directions.T @ to_unit_total)
        return PLDA(mean, back @ within @ back.T, back @ between @ back.T)

    def score_form(self, vectors):
        """The log-likelihood ratio of vectors' pairs as a bilinear form.

        For ``u`` a vector in the diagonalised space, the ratio of a pair is
        ``left_e . right_t + offset_e + offset_t`` (the form of
        :func:`local.evaluation.scoring.score_trials`).

        Arguments
        ---------
        vectors : numpy.ndarray
            ``[n, dim]`` in the model's input space.

        Returns
        -------
        tuple of numpy.ndarray
            ``(left [n, dim], right [n, dim], offset [n])``.
        """
        u = (vectors - self.mean) @ self.transform.T
        psi = self.psi
        # Per dimension: joint Gaussian [[1+psi, psi], [psi, 1+psi]] of the
        # two sides against the product of their marginals N(0, 1+psi).
        cross = psi / (1.0 + 2.0 * psi)
        square = 0.5 * (1.0 / (1.0 + psi) - (1.0 + psi) / (1.0 + 2.0 * psi))
        constant = np.sum(np.log1p(psi) - 0.5 * np.log1p(2.0 * psi))
        return u * cross, u, (u * u) @ square + constant / 2


class PLDABackend:
    """Embeddings to PLDA scores: unit length, centring, LDA, unit length, PLDA.

    Arguments
    ---------
    vectors : numpy.ndarray or torch.Tensor
        ``[n, dim]`` training embeddings.
    labels : sequence
        Their speakers.
    lda_dim : int
        The most LDA dimensions kept; no more than the speakers minus one
        (the rank of the between-class covariance) are.

    Raises
    ------
    ManifestError
        When the embeddings have NaN/inf values.
    Unscorable
        When they have fewer than :data:`MIN_SPEAKERS` speakers, or too few
        utterances for their dimensions.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> speakers = rng.normal(size=(5, 4))
    >>> labels = np.repeat(np.arange(5), 20)
    >>> backend = PLDABackend(speakers[labels] + 0.3 * rng.normal(size=(100, 4)), labels, 3)
    >>> backend.lda.shape
    (3, 4)
    """

    def __init__(self, vectors, labels, lda_dim):
        check_finite(vectors, "plda")
        speakers = len(np.unique(np.asarray(labels)))
        if speakers < MIN_SPEAKERS:
            raise Unscorable(f"its training embeddings have {speakers} speakers, fewer than the "
                             f"{MIN_SPEAKERS} whose LDA keeps more than the sign of one "
                             f"dimension; it needs a training manifest of {MIN_SPEAKERS} "
                             "speakers or more")
        units = unit_float64(vectors)
        self.centre, within, between = class_covariances(units, labels)
        lda, _ = simultaneous_diagonalisation(within, between, spare=len(units) - speakers)
        self.lda = lda[:min(lda_dim, speakers - 1)]
        self.plda = PLDA.fit(self.project(units), labels)

    def project(self, vectors):
        """Embeddings in the PLDA's input space.

        Arguments
        ---------
        vectors : numpy.ndarray or torch.Tensor
            ``[n, dim]`` embeddings.

        Returns
        -------
        numpy.ndarray
            ``[n, lda dim]``, unit length.
        """
        return unit_float64((unit_float64(vectors) - self.centre) @ self.lda.T)

    def adapted(self, in_domain, within_scale, between_scale):
        """A copy whose PLDA is adapted to unlabelled in-domain embeddings.

        Arguments
        ---------
        in_domain : numpy.ndarray or torch.Tensor
            ``[n, dim]`` embeddings of the new domain.
        within_scale, between_scale : float
            As for :meth:`PLDA.adapted`.

        Returns
        -------
        PLDABackend
        """
        check_finite(in_domain, "plda")
        adapted = copy.copy(self)
        adapted.plda = self.plda.adapted(self.project(in_domain), within_scale, between_scale)
        return adapted

    def score_form(self, vectors):
        """The PLDA score form of embeddings (:meth:`PLDA.score_form`).

        Arguments
        ---------
        vectors : torch.Tensor
            ``[n, dim]`` embeddings.

        Returns
        -------
        tuple of torch.Tensor
            ``(left, right, offset)``, float64.
        """
        return tuple(torch.from_numpy(part) for part in self.plda.score_form(self.project(vectors)))
