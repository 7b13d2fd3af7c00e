"""Pseudo-speakers for the unlabelled target data, found by clustering its embeddings.

The current model embeds every target training utterance. The clustering is
built for target sets of 10^5-10^6 utterances: its memory grows with the
number of utterances times ``neighbours``, never with its square.

1. The unit embeddings are centred on their mean (the direction they all
   share says nothing of the speaker) and, with ``whiten_ridge``, whitened by
   their own covariance, as the ``whiten`` back-end does
   (:class:`local.domain_statistics.DomainAdaptation`), so that directions
   in which the whole target domain varies (channel, codec, language) weigh
   no more than the others; then length-normalised again.
2. Each utterance is linked to its ``neighbours`` most similar utterances
   (inner-product search in faiss: exact, or with ``search="ivf"`` through
   an inverted file, for 10^6 utterances), weighted by their cosine.
3. Infomap (Rosvall and Bergstrom 2008, igraph's), the map equation's
   partition of that graph (the shortest description of ``trials`` runs),
   gives the clusters. Their number comes from the data: no bound on it is set.
4. An utterance keeps its label when its simplified silhouette (Hruschka et
   al. 2004: its cosine distance to the nearest other centroid against that
   to its own, both in the clustering space) exceeds ``min_silhouette``, in a
   cluster that keeps at least two.

Centroids are the mean directions of the kept members' own (unwhitened)
embeddings, the space of the speaker head. Nothing here reads a speaker label
of the target data, except :meth:`PseudoLabels.relabel` with ``oracle`` set,
a ceiling for development conditions that never runs by default.
"""

import json
import random

import faiss
import igraph
import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.logger import get_logger

from local.domain_statistics import DomainAdaptation, check_finite
from local.errors import checked_on_main, fail
from local.model.distributed import gathered_on_main

logger = get_logger(__name__)

# Rows of the utterance x centroid similarity computed at once by the silhouette, and
# of the embeddings that one_embedding_speakers reads at once.
SILHOUETTE_BLOCK = 4096
# Below this fraction of the target kept, the log warns that pseudo-labels barely train.
FEW_KEPT = 0.1
# The neighbour searches: "exact" compares every pair (time n^2); "ivf" (faiss
# IndexIVFFlat) compares each utterance with the members of the IVF_PROBES
# inverted lists nearest to it, of IVF_LISTS_PER_ROOT * sqrt(n) lists (faiss's
# guideline: 4 to 16 sqrt(n)), so time about n^1.5. On the 10^5 simulated
# utterances of benchmarks/bench_pseudo_labels.py (--searches ivf) it finds
# 98 % of the exact neighbours, and the clustering takes 0.71-0.74 x the time.
NEIGHBOUR_SEARCHES = ("exact", "ivf")
IVF_LISTS_PER_ROOT, IVF_PROBES = 4, 16
# faiss's k-means wants this many training points per list; below, the search is exact.
IVF_POINTS_PER_LIST = 39
# What the embeddings are, in a refusal of NaN ones.
PSEUDO_LABEL_EMBEDDINGS = "target pseudo-label embeddings"
# Unit embeddings no coordinate of which differs by more than this are one and
# the same: a dann_fbank model trained 3 epochs on the demo corpus embedded 25
# utterances of digital silence of 1-2.5 s to within 1.1e-7 of each other,
# where the closest two of its 240 target speech utterances differ by 0.10.
SAME_EMBEDDING = 1e-6
# Utterances a warning names of each pseudo-speaker.
NAMED_UTTERANCES = 3


def cluster_pseudo_speakers(embeddings, neighbours=10, min_silhouette=0.3, whiten_ridge=None,
                            seed=0, search="exact", trials=10):
    """Cluster embeddings into pseudo-speakers; keep the confident members.

    Arguments
    ---------
    embeddings : dict
        ``{utterance ID: tensor [dim]}``.
    neighbours : int
        Edges of each utterance in the nearest-neighbour graph; fewer than
        the utterances of most speakers.
    min_silhouette : float
        An utterance keeps its label when its simplified silhouette exceeds this.
    whiten_ridge : float, optional
        Cluster the embeddings whitened by their own covariance, with this
        ridge; None clusters them centred only.
    seed : int
        Infomap's seed.
    search : str
        The neighbour search, one of :data:`NEIGHBOUR_SEARCHES`.
    trials : int
        Infomap's runs, of which the partition with the shortest description is kept.

    Returns
    -------
    tuple
        ``(labels, centroids, summary)``: ``{utterance ID: pseudo-speaker}``
        for the confident utterances, pseudo-speakers numbered from 0;
        ``[n pseudo-speakers, dim]`` unit-length mean direction of each
        pseudo-speaker's confident members; and :func:`clustering_summary`'s dict.

    Raises
    ------
    ManifestError
        Naming the utterances whose embeddings have NaN or infinite values.

    Example
    -------
    >>> directions = torch.eye(3)
    >>> embeddings = {f"{s}{i}": directions[s] + 0.05 * torch.randn(3, generator=torch.Generator().manual_seed(10 * s + i))
    ...               for s in range(3) for i in range(6)}
    >>> labels, centroids, summary = cluster_pseudo_speakers(embeddings, neighbours=3)
    >>> summary["clusters"], centroids.shape
    (3, torch.Size([3, 3]))
    >>> [len({labels[f"{s}{i}"] for i in range(6)}) for s in range(3)]
    [1, 1, 1]
    """
    ids = list(embeddings)
    check_neighbours(neighbours, len(ids))
    units = torch.nn.functional.normalize(
        torch.stack([torch.as_tensor(embeddings[i]) for i in ids]).double(), dim=-1)
    # One NaN would make the centring, and so every utterance's silhouette, NaN.
    check_finite(units, PSEUDO_LABEL_EMBEDDINGS, ids)
    space = clustering_space(units, whiten_ridge).astype(np.float32)
    clusters = infomap_clusters(space, neighbours, seed, search, trials)
    silhouettes = simplified_silhouettes(space, clusters)
    confident = silhouettes > min_silhouette
    kept_per_cluster = np.bincount(clusters[confident], minlength=clusters.max() + 1)
    kept = np.flatnonzero(kept_per_cluster >= 2)
    number = np.full(clusters.max() + 1, -1)
    number[kept] = np.arange(len(kept))
    new = np.where(confident, number[clusters], -1)
    labels = {utt: int(label) for utt, label in zip(ids, new) if label >= 0}
    members = torch.from_numpy(new >= 0)
    centroids = mean_directions(units[members], torch.from_numpy(new[new >= 0]), len(kept))
    warn_of_one_embedding_speakers(ids, units, new, len(kept))
    return labels, centroids, clustering_summary(clusters, silhouettes, len(labels))


def one_embedding_speakers(units, speakers, count):
    """The pseudo-speakers whose utterances all have one and the same embedding.

    Computed in blocks of :data:`SILHOUETTE_BLOCK` rows: memory ``count x dim``.

    Arguments
    ---------
    units : torch.Tensor
        ``[n, dim]`` unit embeddings.
    speakers : numpy.ndarray
        ``[n]`` pseudo-speaker of each, in ``[0, count)``; -1: none.
    count : int
        Pseudo-speakers.

    Returns
    -------
    numpy.ndarray
        Those whose utterances differ by no more than :data:`SAME_EMBEDDING`
        in every coordinate.

    Example
    -------
    >>> units = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    >>> one_embedding_speakers(units, np.array([0, 0, 1, 1, -1]), 2)
    array([0])
    """
    high = torch.full((count, units.shape[1]), -float("inf"), dtype=units.dtype)
    low = torch.full_like(high, float("inf"))
    speakers = torch.as_tensor(speakers, dtype=torch.long)
    for start in range(0, len(units), SILHOUETTE_BLOCK):
        own = speakers[start:start + SILHOUETTE_BLOCK]
        block = units[start:start + SILHOUETTE_BLOCK][own >= 0]
        index = own[own >= 0, None].expand_as(block)
        high.scatter_reduce_(0, index, block, "amax")
        low.scatter_reduce_(0, index, block, "amin")
    return np.flatnonzero(((high - low).amax(dim=1) <= SAME_EMBEDDING).numpy())


def warn_of_one_embedding_speakers(ids, units, speakers, count):
    """Warn of pseudo-speakers whose utterances are one embedding, naming them.

    Such a pseudo-speaker is digital silence, a constant signal or one
    recording under several IDs (as VoxCeleb and CN-Celeb have), not a speaker.

    Arguments
    ---------
    ids : list of str
        The utterances.
    units : torch.Tensor
        ``[n, dim]`` their unit embeddings.
    speakers : numpy.ndarray
        ``[n]`` pseudo-speaker of each, in ``[0, count)``; -1: none.
    count : int
        Pseudo-speakers.
    """
    alike = one_embedding_speakers(units, speakers, count)
    if not len(alike):
        return
    named = []
    for speaker in alike[:NAMED_UTTERANCES]:
        members = [ids[i] for i in np.flatnonzero(speakers == speaker)]
        named.append(f"{len(members)} utterances ({', '.join(members[:NAMED_UTTERANCES])}"
                     f"{', ...' * (len(members) > NAMED_UTTERANCES)})")
    if len(alike) > NAMED_UTTERANCES:
        named.append(f"{len(alike) - NAMED_UTTERANCES} more")
    logger.warning(
        "%d of %d target pseudo-speakers are each utterances of one and the same embedding, "
        "as digital silence, a constant signal or one recording under several IDs have, and "
        "train as speakers: %s. Remove such utterances from the target training manifest, "
        "keeping one of each recording.", len(alike), count, "; ".join(named))


def mean_directions(units, clusters, count):
    """Unit-length mean of each cluster's unit vectors.

    Arguments
    ---------
    units : torch.Tensor
        ``[n, dim]`` unit vectors.
    clusters : torch.Tensor
        ``[n]`` long, each vector's cluster in ``[0, count)``.
    count : int
        Clusters.

    Returns
    -------
    torch.Tensor
        ``[count, dim]`` float32.

    Example
    -------
    >>> mean_directions(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 0, 1]), 2)
    tensor([[0.7071, 0.7071],
            [1.0000, 0.0000]])
    """
    sums = torch.zeros(count, units.shape[1], dtype=units.dtype).index_add_(0, clusters, units)
    return torch.nn.functional.normalize(sums, dim=-1).float()


def check_neighbours(neighbours, utterances=None):
    """Refuse a nearest-neighbour count the graph cannot be built with.

    Arguments
    ---------
    neighbours : int
        ``pseudo_neighbours``.
    utterances : int, optional
        How many target utterances are to be clustered.
    """
    if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
        fail(f"--pseudo_neighbours={neighbours}",
             f"pseudo_neighbours must be an integer >= 1; got {neighbours!r}",
             fix="pass a value such as --pseudo_neighbours=10")
    if utterances is not None and utterances <= neighbours:
        fail(f"--pseudo_neighbours={neighbours}",
             f"clustering with {neighbours} neighbours per utterance needs more target "
             f"utterances than that; got {utterances}",
             fix="lower pseudo_neighbours, or set pseudo_label_epochs: []")


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
        adaptation = DomainAdaptation(
            units, whiten=True, ridge=whiten_ridge, name="target pseudo-label embeddings",
            drawn="the target training manifest (and backend_max_utterances, when evaluating)")
        centred = adaptation(units)
    return torch.nn.functional.normalize(centred, dim=-1).numpy()


def infomap_clusters(vectors, neighbours, seed=0, search="exact", trials=10):
    """Infomap's partition of the cosine k-nearest-neighbour graph of ``vectors``.

    Each vector is linked to its ``neighbours`` most similar others
    (:func:`nearest_neighbours`: memory ``n x neighbours``), the link
    weighted by their cosine; links of cosine <= 0 are left out, and a
    vector left without links is a cluster of its own. The graph is
    undirected: a pair that are each other's neighbours is linked twice.
    igraph's Infomap (C, no SWIG runtime to clash with faiss's) partitions it.

    Arguments
    ---------
    vectors : numpy.ndarray
        ``[n, dim]`` float32 unit vectors.
    neighbours : int
        Links per vector.
    seed : int
        Infomap's seed.
    search : str
        The neighbour search, one of :data:`NEIGHBOUR_SEARCHES`.
    trials : int
        Infomap's runs (igraph's ``trials``), of which the partition with the
        shortest description is kept; time grows with them.

    Returns
    -------
    numpy.ndarray
        ``[n]`` cluster of each vector, numbered from 0.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> vectors = np.repeat(np.eye(8)[:4], 10, axis=0) + 0.1 * rng.normal(size=(40, 8))
    >>> vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    >>> clusters = infomap_clusters(vectors, neighbours=5)
    >>> len(np.unique(clusters)), [len(np.unique(clusters[s * 10:(s + 1) * 10])) for s in range(4)]
    (4, [1, 1, 1, 1])
    """
    check_trials(trials)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    similarity, nearest = nearest_neighbours(vectors, neighbours + 1, search)
    source = np.repeat(np.arange(n), neighbours + 1)
    target, weight = nearest.ravel(), similarity.ravel()
    linked = (source != target) & (target >= 0) & (weight > 0)
    graph = igraph.Graph(n=n, edges=np.stack([source[linked], target[linked]], axis=1),
                         edge_attrs={"weight": weight[linked]})
    # igraph draws from the generator set here; a fresh one per call keeps runs repeatable.
    igraph.set_random_number_generator(random.Random(seed))
    return np.array(graph.community_infomap(edge_weights="weight", trials=trials).membership)


def nearest_neighbours(vectors, count, search="exact"):
    """The ``count`` most similar vectors to each (itself among them), by inner product.

    Arguments
    ---------
    vectors : numpy.ndarray
        ``[n, dim]`` float32, C-contiguous.
    count : int
        Neighbours per vector.
    search : str
        ``"exact"``, or ``"ivf"``: an inverted file of
        ``IVF_LISTS_PER_ROOT * sqrt(n)`` lists, :data:`IVF_PROBES` searched per
        vector; exact where ``n`` is too small to train it.

    Returns
    -------
    tuple of numpy.ndarray
        ``(similarity, nearest)``, both ``[n, count]``, most similar first;
        -1 in ``nearest`` where fewer were found.

    Example
    -------
    >>> vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    >>> nearest_neighbours(vectors, 2, "ivf")[1].tolist()  # 3 vectors: too few for an IVF, exact
    [[0, 1], [1, 0], [2, 1]]
    """
    check_search(search)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    lists = int(IVF_LISTS_PER_ROOT * np.sqrt(len(vectors)))
    if search == "exact" or len(vectors) < IVF_POINTS_PER_LIST * lists:
        flat.add(vectors)
        return flat.search(vectors, count)
    index = faiss.IndexIVFFlat(flat, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    index.nprobe = IVF_PROBES
    return index.search(vectors, count)


def check_search(search):
    """Refuse a neighbour search that is not one of :data:`NEIGHBOUR_SEARCHES`.

    Arguments
    ---------
    search : str
        ``pseudo_neighbour_search``.
    """
    if search not in NEIGHBOUR_SEARCHES:
        fail(f"--pseudo_neighbour_search={search}", "pseudo_neighbour_search must be one of "
             f"{', '.join(NEIGHBOUR_SEARCHES)}; got {search!r}", fix="pass one of them")


def check_trials(trials):
    """Refuse an Infomap trial count that is not a positive integer.

    Arguments
    ---------
    trials : int
        ``pseudo_infomap_trials``.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        fail(f"--pseudo_infomap_trials={trials}",
             f"pseudo_infomap_trials must be an integer >= 1; got {trials!r}",
             fix="pass a value such as --pseudo_infomap_trials=10")


def check_min_silhouette(min_silhouette):
    """Refuse a confidence threshold that keeps no utterance: a silhouette is at most 1.

    Arguments
    ---------
    min_silhouette : float
        ``pseudo_min_silhouette``.
    """
    if isinstance(min_silhouette, bool) or not isinstance(min_silhouette, (int, float)) \
            or not min_silhouette < 1:
        fail(f"--pseudo_min_silhouette={min_silhouette}",
             f"pseudo_min_silhouette must be a number below 1; got {min_silhouette!r}: a "
             "silhouette is at most 1, and an utterance keeps its label above the threshold, "
             "so no target utterance would get one",
             fix="pass a value such as --pseudo_min_silhouette=0.3")


def simplified_silhouettes(vectors, clusters):
    """Each vector's silhouette against the clusters' centroids (Hruschka et al. 2004).

    With ``a`` the cosine distance to its own cluster's mean direction and
    ``b`` that to the nearest other cluster's, ``(b - a) / max(a, b)``: the
    silhouette (Rousseeuw 1987) with centroids in place of all members, so
    that it costs ``n x clusters`` rather than ``n x n``; computed in blocks of
    :data:`SILHOUETTE_BLOCK` rows. A single cluster gives 0 everywhere.

    Arguments
    ---------
    vectors : numpy.ndarray
        ``[n, dim]`` unit vectors.
    clusters : numpy.ndarray
        ``[n]`` clusters, numbered from 0.

    Returns
    -------
    numpy.ndarray
        ``[n]`` in [-1, 1].

    Example
    -------
    >>> vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> simplified_silhouettes(vectors, np.array([0, 0, 1, 1])).round(2)
    array([0.96, 0.92, 0.92, 0.96])
    """
    count = clusters.max() + 1
    if count < 2:
        return np.zeros(len(vectors))
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    own = torch.as_tensor(clusters, dtype=torch.long)
    centroids = mean_directions(vectors, own, count)
    result = np.empty(len(vectors))
    for start in range(0, len(vectors), SILHOUETTE_BLOCK):
        block = slice(start, start + SILHOUETTE_BLOCK)
        distance = 1 - vectors[block] @ centroids.T
        rows = torch.arange(distance.shape[0])
        a = distance[rows, own[block]].clone()
        distance[rows, own[block]] = float("inf")
        b = distance.min(dim=1).values
        result[block] = ((b - a) / torch.maximum(a, b).clamp_min(1e-12)).numpy()
    return result


def check_oracle_speakers(utterances, speakers, where="--pseudo_oracle=True"):
    """Refuse the oracle's labelling of ``utterances`` when any lacks a speaker in ``speakers``.

    Arguments
    ---------
    utterances : iterable
        Target utterance IDs.
    speakers : dict or None
        ``{utterance ID: speaker}``; a missing or empty speaker is none.
    where : str
        What the message names: the target manifest, where it is known.
    """
    missing = [utt for utt in utterances if not (speakers or {}).get(utt)]
    if missing:
        fail(where, "pseudo_oracle takes the target manifest's spk_id, "
                    f"and {len(missing)} target utterances have none (e.g. {missing[0]})",
             fix="set pseudo_oracle: False, or give every target training utterance its spk_id")


def clustering_summary(clusters, silhouettes, kept):
    """What a clustering found, for the training log.

    Arguments
    ---------
    clusters : numpy.ndarray
        ``[n]`` cluster of each utterance.
    silhouettes : numpy.ndarray
        ``[n]`` their silhouettes.
    kept : int
        Utterances that keep a label.

    Returns
    -------
    dict
        ``clusters`` found, their mean ``silhouette``, the ``kept`` fraction
        of utterances, and the 10th, 50th and 90th percentiles of the cluster
        sizes (``size_p10``, ``size_p50``, ``size_p90``).

    Example
    -------
    >>> summary = clustering_summary(np.array([0, 0, 0, 1, 1, 2]), np.full(6, 0.5), kept=5)
    >>> summary["clusters"], summary["kept"], summary["size_p50"]
    (3, 0.8333333333333334, 2.0)
    """
    sizes = np.bincount(clusters)
    p10, p50, p90 = np.percentile(sizes, [10, 50, 90])
    return {"clusters": len(sizes), "silhouette": float(silhouettes.mean()),
            "kept": kept / len(clusters), "size_p10": float(p10), "size_p50": float(p50),
            "size_p90": float(p90)}


def agreement_with(labels, truth):
    """NMI of a clustering with reference speakers, over the utterances that have both.

    For the log of development conditions whose target manifest carries
    speaker labels; it reports, and never feeds training.

    Arguments
    ---------
    labels : dict
        ``{utterance ID: pseudo-speaker}``.
    truth : dict
        ``{utterance ID: speaker}``.

    Returns
    -------
    float or None
        None when fewer than two utterances have both.

    Example
    -------
    >>> agreement_with({"a": 0, "b": 0, "c": 1}, {"a": "x", "b": "x", "c": "y", "d": "y"})
    1.0
    """
    common = [utt for utt in labels if utt in truth]
    if len(common) < 2:
        return None
    return float(normalized_mutual_info_score([truth[u] for u in common],
                                              [labels[u] for u in common]))


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
    neighbours : int
        Edges of each utterance in the nearest-neighbour graph.
    search : str
        Their search, one of :data:`NEIGHBOUR_SEARCHES`.
    trials : int
        Infomap's runs per clustering, the best kept.
    min_silhouette : float
        An utterance keeps its label when its simplified silhouette exceeds this.
    whiten : bool
        Cluster the embeddings whitened by their own covariance.
    whiten_ridge : float
        The whitening's ridge.
    oracle : bool
        Take the target manifest's own speakers instead of clustering: a
        ceiling for development conditions, never a default.
    number_of_epochs : int, optional
        Epochs of the run, to warn of clustering epochs after the last.

    Example
    -------
    >>> PseudoLabels(offset=10, epochs=[0])
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: --pseudo_label_epochs=[0]: pseudo_label_epochs [0] must be epochs of the run, whole numbers from 1
    Fix: list epochs from 1, or [] for none
    >>> pseudo = PseudoLabels(offset=10)
    >>> pseudo.update({"t1": 0, "t3": 1}, n_speakers=2, epoch=4)
    >>> pseudo.lookup(["t1", "t2", "t3"]).tolist()
    [10, -1, 11]
    """

    def __init__(self, offset, epochs=(), neighbours=10, min_silhouette=0.3, whiten=False,
                 whiten_ridge=0.1, oracle=False, number_of_epochs=None, search="exact", trials=10):
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in epochs):
            fail(f"--pseudo_label_epochs={list(epochs)}",
                 f"pseudo_label_epochs {list(epochs)} must be epochs of the run, whole "
                 "numbers from 1", fix="list epochs from 1, or [] for none")
        check_neighbours(neighbours)
        check_search(search)
        check_trials(trials)
        check_min_silhouette(min_silhouette)
        late = [e for e in epochs if number_of_epochs is not None and e > number_of_epochs]
        if late:
            logger.warning("pseudo_label_epochs %s come after the last epoch (%d): no "
                           "clustering at them in this run", late, number_of_epochs)
        self.offset, self.epochs, self.oracle = offset, list(epochs), oracle
        self.settings = dict(neighbours=neighbours, search=search, trials=trials,
                             min_silhouette=min_silhouette,
                             whiten_ridge=whiten_ridge if whiten else None)
        self.labels, self.n_speakers, self.epoch = {}, 0, None

    def cluster(self, embeddings, seed=0):
        """:func:`cluster_pseudo_speakers` with this run's settings.

        Arguments
        ---------
        embeddings : dict
            ``{utterance ID: tensor [dim]}``.
        seed : int
            Infomap's seed.

        Returns
        -------
        tuple
            As from :func:`cluster_pseudo_speakers`.
        """
        return cluster_pseudo_speakers(embeddings, seed=seed, **self.settings)

    def relabel(self, embeddings, epoch, speakers=None, seed=0):
        """Cluster ``embeddings`` and take the clusters as labels; warn when they cannot train.

        Under DDP each process passes the embeddings of its share of the
        target (:func:`local.model.distributed.process_share`); the main
        process gathers them, clusters, and every process takes its labels.
        One clustering, not one per process: Infomap's partition can turn on
        the last bits of the neighbour similarities (benchmarks/README.md,
        10^3 utterances), which processes on other devices or thread counts
        need not share, and each clustering would cost the same time.

        Arguments
        ---------
        embeddings : dict
            ``{utterance ID: tensor [dim]}`` of the current model: all the
            target's, or under DDP this process's share.
        epoch : int
            The epoch about to start.
        speakers : dict, optional
            ``{utterance ID: speaker}`` of a target manifest that has them:
            the log reports the clustering's NMI against them, and with
            ``oracle`` they are the labels.
        seed : int
            The run's seed; Infomap's is drawn from it and ``epoch``.

        Returns
        -------
        tuple
            ``(centroids, summary)``: the pseudo-speakers' centroids and
            :func:`clustering_summary`'s dict, with ``nmi`` where ``speakers``
            cover the target and the clustering keeps 2 utterances or more.
        """
        labels, centroids, summary = checked_on_main(
            self._labelled, gathered_on_main(embeddings), epoch, speakers, seed)
        self.update(labels, len(centroids), epoch)
        return centroids, summary

    def _labelled(self, embeddings, epoch, speakers, seed):
        if self.oracle:
            labels, centroids, summary = self.true_speakers(embeddings, speakers)
        else:
            labels, centroids, summary = self.cluster(embeddings, seed=seed * 1000 + epoch)
        if speakers and set(embeddings) <= set(speakers):
            nmi = agreement_with(labels, speakers)
            if nmi is not None:  # None: fewer than 2 kept utterances to measure it on
                summary["nmi"] = nmi
        self.warn_if_barely_kept(summary, len(embeddings), f"pseudo-labels at epoch {epoch}",
                                 "the speaker head")
        return labels, centroids, summary

    def warn_if_barely_kept(self, summary, utterances, clustering, trained):
        """Warn, naming the settings to change, when a labelling barely trains ``trained``.

        That is, when it found fewer than 2 clusters or kept fewer than
        :data:`FEW_KEPT` of the utterances.

        Arguments
        ---------
        summary : dict
            :func:`clustering_summary`'s dict of the labelling.
        utterances : int
            The target utterances labelled.
        clustering : str
            Which labelling it is, opening the warning.
        trained : str
            What its pseudo-speakers train.
        """
        if summary["clusters"] < 2 or summary["kept"] < FEW_KEPT:
            logger.warning(
                "%s: %d clusters, %.1f%% of %d target utterances kept: the target barely "
                "trains %s. Lower pseudo_min_silhouette (now %s) to keep more, change "
                "pseudo_neighbours (now %s: more merges clusters, fewer splits them) or "
                "pseudo_whiten, or check the target audio.",
                clustering, summary["clusters"], 100 * summary["kept"], utterances, trained,
                self.settings["min_silhouette"], self.settings["neighbours"])

    @staticmethod
    def true_speakers(embeddings, speakers):
        """The oracle's labels: every utterance with its manifest speaker.

        Arguments
        ---------
        embeddings : dict
            ``{utterance ID: tensor [dim]}``.
        speakers : dict
            ``{utterance ID: speaker}``, one for each.

        Returns
        -------
        tuple
            As from :func:`cluster_pseudo_speakers`, every utterance kept.
        """
        check_oracle_speakers(embeddings, speakers)
        names = sorted({speakers[utt] for utt in embeddings})
        number = {name: n for n, name in enumerate(names)}
        labels = {utt: number[speakers[utt]] for utt in embeddings}
        units = torch.nn.functional.normalize(torch.stack(
            [torch.as_tensor(embeddings[u]).double() for u in embeddings]), dim=-1)
        check_finite(units, PSEUDO_LABEL_EMBEDDINGS, list(embeddings))
        clusters = np.array(list(labels.values()))
        centroids = mean_directions(units, torch.from_numpy(clusters), len(names))
        return labels, centroids, clustering_summary(clusters, np.ones(len(clusters)), len(labels))

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
