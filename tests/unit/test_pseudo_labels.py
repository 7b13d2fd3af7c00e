"""Pseudo-speakers from clustering: synthetic speakers recovered, confidence, checkpointing."""

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from speechbrain.utils.checkpoints import Checkpointer

from local.model.pseudo_labels import (
    PseudoLabels,
    cluster_pseudo_speakers,
    clustering_space,
    eigengap_count,
)


def speakers(n_speakers, per_speaker, dim=16, spread=0.15, seed=0):
    """Embeddings around one random direction per speaker, plus a shared offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_speakers, dim))
    offset = 3 * rng.normal(size=dim)  # a direction shared by every embedding
    embeddings, truth = {}, {}
    for s in range(n_speakers):
        for u in range(per_speaker):
            utt = f"spk{s}_u{u}"
            vector = centres[s] + spread * rng.normal(size=dim) * np.linalg.norm(centres[s])
            embeddings[utt] = torch.from_numpy(vector + offset).float() * rng.uniform(0.5, 2)
            truth[utt] = s
    return embeddings, truth


def partition(labels):
    groups = {}
    for utt, label in labels.items():
        groups.setdefault(label, set()).add(utt)
    return sorted(map(sorted, groups.values()))


def test_well_separated_speakers_are_recovered_exactly():
    embeddings, truth = speakers(8, 10, spread=0.05)
    labels, centroids, summary = cluster_pseudo_speakers(embeddings, max_speakers=30)
    assert summary["clusters"] == 8 and summary["kept"] == 1.0
    assert partition(labels) == partition(truth)
    assert centroids.shape == (8, 16)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(8))
    # Each centroid is the mean direction of its members.
    members = [u for u in labels if labels[u] == 0]
    mean = torch.nn.functional.normalize(torch.stack(
        [torch.nn.functional.normalize(embeddings[u], dim=0) for u in members]).mean(0), dim=0)
    assert torch.allclose(centroids[0], mean, atol=1e-6)


def test_the_number_of_clusters_is_capped():
    embeddings, _ = speakers(8, 10)
    _, centroids, summary = cluster_pseudo_speakers(embeddings, max_speakers=4)
    assert summary["clusters"] <= 4 and len(centroids) <= 4


def direct_silhouettes(embeddings, labels):
    """Silhouette of each utterance, by its definition, on centred cosine distances."""
    ids = list(labels)
    units = np.stack([(v / v.norm()).double().numpy() for v in embeddings.values()])
    centred = units - units.mean(axis=0)
    vectors = dict(zip(embeddings, centred / np.linalg.norm(centred, axis=1, keepdims=True)))
    result = {}
    for utt in ids:
        mean_distance = {}
        for label in set(labels.values()):
            others = [o for o in ids if labels[o] == label and o != utt]
            mean_distance[label] = np.mean([1 - vectors[utt] @ vectors[o] for o in others])
        a = mean_distance[labels[utt]]
        b = min(d for label, d in mean_distance.items() if label != labels[utt])
        result[utt] = (b - a) / max(a, b)
    return result


def test_only_utterances_of_high_silhouette_keep_a_label():
    embeddings, truth = speakers(6, 8, spread=0.1, seed=1)
    for i in range(0, 6, 2):  # utterances between two speakers
        pair = [embeddings[f"spk{s}_u0"] for s in (i, i + 1)]
        embeddings[f"mixed{i}"] = sum(v / v.norm() for v in pair)
    everyone, _, _ = cluster_pseudo_speakers(embeddings, 20, min_silhouette=-1.0)
    assert len(everyone) == len(embeddings)
    silhouettes = direct_silhouettes(embeddings, everyone)
    confident, _, summary = cluster_pseudo_speakers(embeddings, 20, min_silhouette=0.5)
    assert set(confident) == {u for u, s in silhouettes.items() if s > 0.5}
    assert {"mixed0", "mixed2"} & set(everyone) - set(confident)
    assert summary["kept"] == len(confident) / len(embeddings)
    # The speakers' own utterances that keep a label are grouped as their speakers are.
    kept = {u: label for u, label in confident.items() if u in truth}
    assert partition(kept) == partition({u: truth[u] for u in kept})


def test_the_number_of_clusters_has_a_floor():
    embeddings, _ = speakers(8, 10, spread=0.05)
    _, _, summary = cluster_pseudo_speakers(embeddings, max_speakers=30, min_speakers=12)
    assert 12 <= summary["clusters"] <= 30


@pytest.mark.parametrize("count, bounds, message", [
    (5, (1, 3), r"2 <= pseudo_min_speakers <= pseudo_max_speakers; got 1 and 3"),
    (5, (4, 3), r"2 <= pseudo_min_speakers <= pseudo_max_speakers; got 4 and 3"),
    (3, (3, 5), "at least 3 pseudo-speakers needs more target utterances than that; got 3"),
])
def test_bad_clustering_requests(count, bounds, message):
    embeddings = {f"u{i}": torch.rand(3) for i in range(count)}
    with pytest.raises(ValueError, match=message):
        cluster_pseudo_speakers(embeddings, max_speakers=bounds[1], min_speakers=bounds[0])


def direct_whitened(units, ridge):
    """Unit vectors centred and multiplied by the inverse square root of their covariance."""
    units = units / np.linalg.norm(units, axis=1, keepdims=True)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(units, rowvar=False))
    eigenvalues = eigenvalues + ridge * eigenvalues.mean()
    inverse_root = eigenvectors @ np.diag(eigenvalues ** -0.5) @ eigenvectors.T
    white = (units - units.mean(axis=0)) @ inverse_root
    return white / np.linalg.norm(white, axis=1, keepdims=True)


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_the_clustering_space_is_the_embeddings_whitened_by_their_own_covariance(ridge):
    embeddings, _ = speakers(6, 10, seed=3)
    raw = torch.stack(list(embeddings.values())).double()
    space = clustering_space(raw, whiten_ridge=ridge)
    direct = direct_whitened(raw.numpy(), ridge)
    # Whitenings of one covariance differ by a rotation: the cosines between vectors are the same.
    np.testing.assert_allclose(space @ space.T, direct @ direct.T, atol=1e-9)
    units = torch.nn.functional.normalize(raw, dim=-1)
    assert not np.allclose(space @ space.T, clustering_space(units) @ clustering_space(units).T)
    # Without whitening: the unit vectors centred on their mean, length-normalised again.
    centred = units.numpy() - units.numpy().mean(axis=0)
    np.testing.assert_allclose(clustering_space(units),
                               centred / np.linalg.norm(centred, axis=1, keepdims=True))


def speakers_behind_a_channel(n_speakers, per_speaker, seed):
    """Speakers in 12 dimensions; a per-utterance nuisance of larger variance in 4 others."""
    rng = np.random.default_rng(seed)
    centres = np.pad(rng.normal(size=(n_speakers, 12)), ((0, 0), (0, 4)))
    embeddings, truth = {}, {}
    for s in range(n_speakers):
        for u in range(per_speaker):
            vector = centres[s] + 0.05 * np.pad(rng.normal(size=12), (0, 4))
            vector[12:] = 5 + 3 * rng.normal(size=4)
            embeddings[f"spk{s}_u{u}"] = torch.from_numpy(vector).float()
            truth[f"spk{s}_u{u}"] = s
    return embeddings, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whitening_recovers_speakers_that_a_high_variance_nuisance_hides(seed):
    embeddings, truth = speakers_behind_a_channel(6, 20, seed)

    def agreement(whiten_ridge):
        labels, _, _ = cluster_pseudo_speakers(embeddings, 6, min_silhouette=-1.0, min_speakers=6,
                                               whiten_ridge=whiten_ridge)
        return adjusted_rand_score([truth[u] for u in labels], [labels[u] for u in labels])

    assert agreement(None) < 0.5
    assert agreement(0.1) > 0.8


def test_the_eigengap_count_is_the_number_of_separated_speakers():
    embeddings, truth = speakers(8, 10, spread=0.05)
    labels, centroids, summary = cluster_pseudo_speakers(embeddings, max_speakers=30,
                                                         min_speakers=2, count="eigengap")
    assert summary["clusters"] == 8 and len(centroids) == 8
    assert partition(labels) == partition(truth)
    # The silhouette agrees here; with a floor above the truth, the eigengap keeps to the bounds.
    assert eigengap_count(clustering_space(torch.stack(list(embeddings.values()))), 10, 30) >= 10


def test_the_eigengap_count_of_disconnected_groups_is_their_number():
    # Groups far apart (orthogonal directions) share no neighbour: the graph has one
    # component per group, and its Laplacian one zero eigenvalue per component.
    rng = np.random.default_rng(0)
    for groups in (3, 5, 7):
        noise = 0.05 * rng.normal(size=(12 * groups, 8))
        vectors = np.repeat(np.eye(8)[:groups], 12, axis=0) + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        assert eigengap_count(vectors, 2, 10, neighbours=5) == groups


def test_an_unknown_count_method_is_refused():
    embeddings, _ = speakers(3, 4)
    with pytest.raises(ValueError, match="pseudo_count must be one of"):
        cluster_pseudo_speakers(embeddings, 6, count="gap")


def test_pseudo_labels_are_saved_and_recovered_with_a_checkpoint(tmp_path):
    saved = PseudoLabels(offset=24)
    saved.update({"t1": 0, "t2": 3}, n_speakers=4, epoch=5)
    Checkpointer(tmp_path, {"pseudo": saved}).save_checkpoint()
    recovered = PseudoLabels(offset=24)
    Checkpointer(tmp_path, {"pseudo": recovered}).recover_if_possible()
    assert (recovered.labels, recovered.n_speakers, recovered.epoch) == ({"t1": 0, "t2": 3}, 4, 5)
    assert recovered.lookup(["t2", "t9", "t1"]).tolist() == [27, -1, 24]


def test_at_most_max_utterances_are_clustered_the_same_for_a_seed_and_epoch():
    pseudo = PseudoLabels(offset=3, max_utterances=4)
    ids = [f"t{i}" for i in range(10)]
    drawn = pseudo.utterances_to_cluster(ids, seed=1, epoch=2)
    assert len(drawn) == 4 and drawn == sorted(drawn) and set(drawn) <= set(ids)
    assert drawn == pseudo.utterances_to_cluster(ids, seed=1, epoch=2)
    assert drawn != pseudo.utterances_to_cluster(ids, seed=1, epoch=3)
    assert pseudo.utterances_to_cluster(ids[:4], seed=1, epoch=2) == ids[:4]


def test_relabel_clusters_with_the_settings_and_numbers_the_speaker_head_rows():
    embeddings, truth = speakers(4, 8, spread=0.05)
    pseudo = PseudoLabels(offset=10, epochs=[2], min_speakers=2, max_speakers=6,
                          count="eigengap")
    centroids, summary = pseudo.relabel(embeddings, epoch=2)
    assert summary["clusters"] == 4 and len(centroids) == 4 and pseudo.epoch == 2
    classes = pseudo.lookup(list(embeddings)).tolist()
    assert set(classes) == {10, 11, 12, 13}
    with pytest.raises(ValueError, match="pseudo_count must be one of"):
        PseudoLabels(offset=10, epochs=[2], min_speakers=2, max_speakers=6, count="kmeans")
