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

# Cuts of the tree tried: every count while there are at most this many, else a geometric grid,
# so that the search stays cheap when thousands of speakers are allowed.
MAX_CUTS = 64


def cluster_pseudo_speakers(embeddings, max_speakers, min_silhouette=0.0, min_speakers=2):
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
    normalize = torch.nn.functional.normalize
    units = normalize(torch.stack([torch.as_tensor(embeddings[i]) for i in ids]).double(), dim=-1)
    centred = normalize(units - units.mean(dim=0), dim=-1).numpy()
    units = units.numpy()
    tree = linkage(centred, method="ward")
    distances = squareform(pdist(centred, "cosine"))
    best = None
    for count in _cuts(min_speakers, min(max_speakers, len(ids) - 1)):
        clusters = fcluster(tree, count, criterion="maxclust")
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

    def __init__(self, offset, epochs=(), min_speakers=2, max_speakers=2, number_of_epochs=None):
        if epochs:
            if not 2 <= min_speakers <= max_speakers:
                raise ValueError(
                    f"pseudo_label_epochs {epochs} needs 2 <= pseudo_min_speakers <= "
                    "pseudo_max_speakers (the speaker-head rows reserved for pseudo-speakers); "
                    f"got {min_speakers} and {max_speakers}")
            if any(e < 1 for e in epochs):
                raise ValueError(f"pseudo_label_epochs {epochs} must be epochs of the run, from 1")
            late = [e for e in epochs if number_of_epochs is not None and e > number_of_epochs]
            if late:
                logger.warning("pseudo_label_epochs %s come after the last epoch (%d): no "
                               "clustering at them in this run", late, number_of_epochs)
        self.offset, self.epochs = offset, list(epochs)
        self.labels, self.n_speakers, self.epoch = {}, 0, None

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
