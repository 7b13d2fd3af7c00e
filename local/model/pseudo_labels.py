"""Pseudo-speakers for the unlabelled target data, found by clustering its embeddings.

The current model embeds the target training utterances. Their unit
vectors are centred on their mean (the direction they all share says
nothing of the speaker) and length-normalised again; Ward's agglomerative
clustering builds one tree of them, and the number of pseudo-speakers is the
cut of that tree, between a lower and an upper bound, with the highest mean
silhouette on cosine distance (Rousseeuw 1987): the cut where utterances are,
on average, closest to their own cluster compared with the nearest other
one. The lower bound matters: left free, the silhouette tends to prefer the
coarsest split of speakers (by gender, typically) over speakers. Only
confident utterances keep a label: those whose own silhouette exceeds a
threshold, in clusters that keep at least two of them. The speaker head then
trains on source speakers and these pseudo-speakers together, and the
clustering is repeated with the improved model.

Two options change what is clustered and how many clusters are cut, both off
by default. With ``whiten_ridge`` set, the clustering space is that of the
``whiten`` back-end (:class:`local.evaluation.backend.DomainAdaptation`): the
target embeddings centred on and whitened by their own covariance, so that
the directions in which the whole target domain varies most (channel, codec,
language) weigh no more than the others. With ``count="eigengap"`` the
number of pseudo-speakers is the largest gap between consecutive eigenvalues
of the normalised Laplacian of a k-nearest-neighbour cosine affinity graph
(von Luxburg 2007, section 8.3), within the bounds, instead of the best mean
silhouette; the tree is cut at that count. Centroids are always the mean
directions of the members' own (unwhitened) embeddings, the space of the
speaker head.

Nothing here reads a speaker label of the target data: the input is a set of
embeddings keyed by utterance ID.
"""

import json

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import silhouette_samples
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

from local.evaluation.backend import DomainAdaptation

# Cuts of the tree tried: every count while there are at most this many, else a geometric grid,
# so that the search stays cheap when thousands of speakers are allowed.
MAX_CUTS = 64
# Ways of choosing the number of pseudo-speakers.
CLUSTER_COUNTS = ("silhouette", "eigengap")


def cluster_pseudo_speakers(embeddings, max_speakers, min_silhouette=0.0, min_speakers=2,
                            whiten_ridge=None, count="silhouette"):
    """Cluster embeddings into pseudo-speakers; keep the confident members.

    Arguments
    ---------
    embeddings : dict
        ``{utterance ID: tensor [dim]}``.
    max_speakers : int
        Largest number of clusters tried.
    min_silhouette : float
        An utterance keeps its label when its silhouette exceeds this.
    min_speakers : int
        Smallest number of clusters tried (at least 2).
    whiten_ridge : float, optional
        Cluster the embeddings whitened by their own covariance, with this
        ridge (:class:`~local.evaluation.backend.DomainAdaptation`); None
        clusters them centred only.
    count : str
        How the number of clusters is chosen: ``silhouette`` (best mean
        silhouette) or ``eigengap`` (:func:`eigengap_count`).

    Returns
    -------
    tuple
        ``(labels, centroids, summary)``: ``{utterance ID: pseudo-speaker}``
        for the confident utterances, pseudo-speakers numbered from 0;
        ``[n pseudo-speakers, dim]`` unit-length mean direction of each
        pseudo-speaker's confident members; and a dict with the chosen
        ``clusters``, their mean ``silhouette`` and the ``kept`` fraction of
        utterances.

    Example
    -------
    >>> directions = torch.eye(3)
    >>> embeddings = {f"{s}{i}": directions[s] + 0.05 * torch.randn(3, generator=torch.Generator().manual_seed(10 * s + i))
    ...               for s in range(3) for i in range(4)}
    >>> labels, centroids, summary = cluster_pseudo_speakers(embeddings, max_speakers=6)
    >>> summary["clusters"], centroids.shape
    (3, torch.Size([3, 3]))
    >>> [len({labels[f"{s}{i}"] for i in range(4)}) for s in range(3)]
    [1, 1, 1]
    """
    if not 2 <= min_speakers <= max_speakers:
        raise ValueError("pseudo-speaker bounds must satisfy 2 <= pseudo_min_speakers <= "
                         f"pseudo_max_speakers; got {min_speakers} and {max_speakers}")
    ids = list(embeddings)
    if len(ids) <= min_speakers:
        raise ValueError(f"clustering into at least {min_speakers} pseudo-speakers needs more "
                         f"target utterances than that; got {len(ids)}")
    if count not in CLUSTER_COUNTS:
        raise ValueError(f"pseudo_count must be one of {CLUSTER_COUNTS}; got {count!r}")
    normalize = torch.nn.functional.normalize
    units = normalize(torch.stack([torch.as_tensor(embeddings[i]) for i in ids]).double(), dim=-1)
    centred = clustering_space(units, whiten_ridge)
    units = units.numpy()
    tree = linkage(centred, method="ward")
    distances = squareform(pdist(centred, "cosine"))
    largest = min(max_speakers, len(ids) - 1)
    if count == "eigengap":
        cuts = [eigengap_count(centred, min_speakers, largest)]
    else:
        cuts = _cuts(min_speakers, largest)
    best = None
    for cut in cuts:
        clusters = fcluster(tree, cut, criterion="maxclust")
        if len(np.unique(clusters)) < 2:
            continue
        silhouettes = silhouette_samples(distances, clusters, metric="precomputed")
        if best is None or silhouettes.mean() > best[1].mean():
            best = (clusters, silhouettes)
    clusters, silhouettes = best
    confident = silhouettes > min_silhouette
    kept = [c for c in np.unique(clusters) if (confident & (clusters == c)).sum() >= 2]
    number = {c: n for n, c in enumerate(kept)}
    labels = {utt: number[c] for utt, c, sure in zip(ids, clusters, confident)
              if sure and c in number}
    centroids = torch.nn.functional.normalize(torch.stack([
        torch.from_numpy(units[confident & (clusters == c)].mean(axis=0)) for c in kept
    ]).float(), dim=-1) if kept else torch.zeros(0, units.shape[1])
    summary = {"clusters": len(np.unique(clusters)), "silhouette": float(silhouettes.mean()),
               "kept": len(labels) / len(ids)}
    return labels, centroids, summary


def clustering_space(units, whiten_ridge=None):
    """Unit vectors to cluster: the embeddings centred (and whitened) on their own statistics.

    Arguments
    ---------
    units : torch.Tensor
        ``[n, dim]`` unit-length embeddings.
    whiten_ridge : float, optional
        Whiten by their own covariance with this ridge, as the ``whiten``
        back-end does with the target cohort; None only centres them.

    Returns
    -------
    numpy.ndarray
        ``[n, dim]`` float64, unit length.

    Example
    -------
    >>> units = torch.tensor([[3.0, 1.0], [3.0, -1.0], [-3.0, 1.0], [-3.0, -1.0]])
    >>> space = clustering_space(units, whiten_ridge=0.0)  # the long axis no longer dominates
    >>> (space @ space.T).round(4) + 0.0
    array([[ 1.,  0.,  0., -1.],
           [ 0.,  1., -1.,  0.],
           [ 0., -1.,  1.,  0.],
           [-1.,  0.,  0.,  1.]])
    """
    units = torch.as_tensor(units, dtype=torch.float64)
    if whiten_ridge is None:
        centred = units - units.mean(dim=0)
    else:
        centred = DomainAdaptation(units, whiten=True, ridge=whiten_ridge)(units)
    return torch.nn.functional.normalize(centred, dim=-1).numpy()


def eigengap_count(vectors, smallest, largest, neighbours=None):
    """Number of clusters at the largest eigengap of a cosine k-nearest-neighbour graph.

    The affinity of two vectors is their cosine similarity (negative ones 0)
    where one is among the other's ``neighbours`` nearest, else 0, made
    symmetric; with ``L = I - D^-1/2 A D^-1/2`` and its eigenvalues
    ``l_1 <= l_2 <= ...``, the count is the ``k`` in ``[smallest, largest]``
    with the largest ``l_(k+1) - l_k``: a graph of ``k`` loosely joined groups
    has ``k`` eigenvalues near 0.

    Arguments
    ---------
    vectors : numpy.ndarray
        ``[n, dim]`` unit vectors.
    smallest, largest : int
        Bounds of the count.
    neighbours : int, optional
        Neighbours kept per vector; default ``n // largest`` (at least 2),
        fewer than the utterances of a speaker when there are ``largest``.

    Returns
    -------
    int

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> vectors = np.repeat(np.eye(6)[:4], 10, axis=0) + 0.1 * rng.normal(size=(40, 6))
    >>> eigengap_count(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), 2, 8)
    4
    """
    n = len(vectors)
    neighbours = neighbours or max(2, n // largest)
    similarity = np.clip(vectors @ vectors.T, 0, None)
    np.fill_diagonal(similarity, 0)
    nearest = np.argsort(-similarity, axis=1)[:, :neighbours]
    affinity = np.zeros_like(similarity)
    rows = np.arange(n)[:, None]
    affinity[rows, nearest] = similarity[rows, nearest]
    affinity = np.maximum(affinity, affinity.T)
    degree = affinity.sum(axis=1)
    scale = np.where(degree > 0, 1 / np.sqrt(np.where(degree > 0, degree, 1)), 0)
    laplacian = np.eye(n) - scale[:, None] * affinity * scale[None, :]
    eigenvalues = np.linalg.eigvalsh(laplacian)
    largest = min(largest, n - 1)
    gaps = eigenvalues[smallest:largest + 1] - eigenvalues[smallest - 1:largest]
    return smallest + int(np.argmax(gaps))


def _cuts(smallest, largest):
    """Cluster counts to try: smallest..largest, thinned geometrically beyond MAX_CUTS values."""
    if largest - smallest < MAX_CUTS:
        return list(range(smallest, largest + 1))
    return sorted({int(c) for c in np.geomspace(smallest, largest, MAX_CUTS).round()})


@register_checkpoint_hooks
class PseudoLabels:
    """The current pseudo-speaker of each target utterance, saved with each checkpoint.

    Arguments
    ---------
    offset : int
        Class index of pseudo-speaker 0 in the speaker head (the number of
        source speakers).
    epochs : list of int
        Epochs at whose start the target is clustered anew (``pseudo_label_epochs``).
    min_speakers, max_speakers : int
        Bounds of the number of pseudo-speakers; ``max_speakers`` rows of
        the speaker head are reserved for them.
    min_silhouette : float
        An utterance keeps its label when its silhouette exceeds this.
    max_utterances : int
        Most utterances clustered at once (:meth:`utterances_to_cluster`).
    whiten : bool
        Cluster the embeddings whitened by their own covariance.
    whiten_ridge : float
        The whitening's ridge.
    count : str
        How the number of clusters is chosen (:data:`CLUSTER_COUNTS`).
    number_of_epochs : int, optional
        Epochs of the run, to warn of clustering epochs after the last.

    Example
    -------
    >>> PseudoLabels(offset=10, epochs=[3], min_speakers=2, max_speakers=0)
    Traceback (most recent call last):
      ...
    ValueError: pseudo_label_epochs [3] needs 2 <= pseudo_min_speakers <= pseudo_max_speakers (the speaker-head rows reserved for pseudo-speakers); got 2 and 0
    >>> pseudo = PseudoLabels(offset=10)
    >>> pseudo.update({"t1": 0, "t3": 1}, n_speakers=2, epoch=4)
    >>> pseudo.lookup(["t1", "t2", "t3"]).tolist()
    [10, -1, 11]
    """

    def __init__(self, offset, epochs=(), min_speakers=2, max_speakers=2, min_silhouette=0.0,
                 max_utterances=10000, whiten=False, whiten_ridge=0.1, count="silhouette",
                 number_of_epochs=None):
        if epochs:
            if not 2 <= min_speakers <= max_speakers:
                raise ValueError(
                    f"pseudo_label_epochs {epochs} needs 2 <= pseudo_min_speakers <= "
                    "pseudo_max_speakers (the speaker-head rows reserved for pseudo-speakers); "
                    f"got {min_speakers} and {max_speakers}")
            if any(e < 1 for e in epochs):
                raise ValueError(f"pseudo_label_epochs {epochs} must be epochs of the run, from 1")
            if count not in CLUSTER_COUNTS:
                raise ValueError(f"pseudo_count must be one of {CLUSTER_COUNTS}; got {count!r}")
            late = [e for e in epochs if number_of_epochs is not None and e > number_of_epochs]
            if late:
                logger.warning("pseudo_label_epochs %s come after the last epoch (%d): no "
                               "clustering at them in this run", late, number_of_epochs)
        self.offset, self.epochs = offset, list(epochs)
        self.settings = dict(max_speakers=max_speakers, min_silhouette=min_silhouette,
                             min_speakers=min_speakers, count=count,
                             whiten_ridge=whiten_ridge if whiten else None)
        self.max_utterances = max_utterances
        self.labels, self.n_speakers, self.epoch = {}, 0, None

    def utterances_to_cluster(self, ids, seed, epoch):
        """At most ``max_utterances`` of ``ids``, drawn with ``(seed, epoch)``, in their order.

        Clustering holds a distance matrix of the utterances it clusters.

        Arguments
        ---------
        ids : list of str
            The target training utterances.
        seed : int
            The run's seed.
        epoch : int
            The epoch about to start.

        Returns
        -------
        list of str
            The IDs to embed and cluster.
        """
        ids = list(ids)
        if len(ids) <= self.max_utterances:
            return ids
        rng = np.random.default_rng([seed, epoch])
        return sorted(rng.choice(ids, size=self.max_utterances, replace=False).tolist())

    def relabel(self, embeddings, epoch):
        """Cluster ``embeddings`` (:func:`cluster_pseudo_speakers`) and take the clusters as labels.

        Arguments
        ---------
        embeddings : dict
            ``{utterance ID: tensor [dim]}`` of the current model.
        epoch : int
            The epoch about to start.

        Returns
        -------
        tuple
            ``(centroids, summary)``, as from :func:`cluster_pseudo_speakers`.
        """
        labels, centroids, summary = cluster_pseudo_speakers(embeddings, **self.settings)
        self.update(labels, len(centroids), epoch)
        return centroids, summary

    def update(self, labels, n_speakers, epoch):
        """Replace the labels with those of a new clustering.

        Arguments
        ---------
        labels : dict
            ``{utterance ID: pseudo-speaker}``, pseudo-speakers from 0.
        n_speakers : int
            Number of pseudo-speakers.
        epoch : int
            Epoch the clustering was done for (it is not redone on resuming it).
        """
        self.labels, self.n_speakers, self.epoch = dict(labels), int(n_speakers), epoch

    def lookup(self, ids):
        """Speaker-head class of each utterance, -1 for those without a pseudo-speaker.

        Arguments
        ---------
        ids : list of str
            Target utterance IDs.

        Returns
        -------
        torch.Tensor
            ``[len(ids)]`` long.
        """
        return torch.tensor([self.labels[i] + self.offset if i in self.labels else -1
                             for i in ids], dtype=torch.long)

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as fout:
            json.dump({"labels": self.labels, "n_speakers": self.n_speakers,
                       "epoch": self.epoch}, fout)

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        with open(path, encoding="utf-8") as fin:
            state = json.load(fin)
        self.update(state["labels"], state["n_speakers"], state["epoch"])
