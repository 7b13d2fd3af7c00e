"""Pseudo-speakers from clustering: speakers recovered without a count, confidence, the
oracle, warnings, the growing speaker head and checkpointing."""

import logging
import os
import types

import igraph
import numpy as np
import pytest
import speechbrain as sb
import torch
from sklearn.metrics import adjusted_rand_score
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.train_logger import FileTrainLogger

import local.model.pseudo_labels as pseudo_labels
from local.errors import ManifestError
from local.model.dann_brain import DANNBrain
from local.model.distributed import process_share

faiss_ivf = pseudo_labels.faiss.IndexIVFFlat
from local.model.pseudo_labels import (
    PseudoLabels,
    agreement_with,
    cluster_pseudo_speakers,
    clustering_space,
    clustering_summary,
    infomap_clusters,
    nearest_neighbours,
    simplified_silhouettes,
)
from local.model.speaker_heads import GrowingClassifier, MarginSoftmaxHead, margin_softmax_loss
from tests.conftest import in_two_processes


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
    labels, centroids, summary = cluster_pseudo_speakers(embeddings, neighbours=5)
    assert summary["clusters"] == 8 and summary["kept"] == 1.0
    assert partition(labels) == partition(truth)
    assert centroids.shape == (8, 16)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(8))
    # Each centroid is the mean direction of its members.
    members = [u for u in labels if labels[u] == 0]
    mean = torch.nn.functional.normalize(torch.stack(
        [torch.nn.functional.normalize(embeddings[u], dim=0) for u in members]).mean(0), dim=0)
    assert torch.allclose(centroids[0], mean, atol=1e-6)


@pytest.mark.parametrize("n_speakers", [3, 12, 40])
def test_the_number_of_speakers_comes_from_the_data(n_speakers):
    embeddings, truth = speakers(n_speakers, 8, dim=64, spread=0.05, seed=n_speakers)
    labels, centroids, summary = cluster_pseudo_speakers(embeddings, neighbours=5)
    assert summary["clusters"] == n_speakers == len(centroids)
    assert partition(labels) == partition(truth)


def direct_simplified_silhouettes(vectors, clusters):
    """(b - a) / max(a, b) with a, b the cosine distances to own and nearest other mean direction."""
    names = sorted(set(clusters))
    means = {c: vectors[clusters == c].mean(axis=0) for c in names}
    means = {c: m / np.linalg.norm(m) for c, m in means.items()}
    result = []
    for vector, own in zip(vectors, clusters):
        a = 1 - vector @ means[own]
        b = min(1 - vector @ means[c] for c in names if c != own)
        result.append((b - a) / max(a, b))
    return np.array(result)


def test_the_silhouette_against_centroids_is_its_definition_in_any_block_size(monkeypatch):
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(50, 6))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    clusters = rng.integers(0, 5, size=50)
    direct = direct_simplified_silhouettes(vectors, clusters)
    np.testing.assert_allclose(simplified_silhouettes(vectors, clusters), direct, atol=1e-5)
    monkeypatch.setattr(pseudo_labels, "SILHOUETTE_BLOCK", 7)
    np.testing.assert_allclose(simplified_silhouettes(vectors, clusters), direct, atol=1e-5)
    assert not simplified_silhouettes(vectors, np.zeros(50, dtype=int)).any()


def test_only_utterances_of_high_silhouette_keep_a_label():
    embeddings, truth = speakers(6, 8, spread=0.1, seed=1)
    for i in range(0, 6, 2):  # utterances between two speakers
        pair = [embeddings[f"spk{s}_u0"] for s in (i, i + 1)]
        embeddings[f"mixed{i}"] = sum(v / v.norm() for v in pair)
    everyone, _, _ = cluster_pseudo_speakers(embeddings, neighbours=4, min_silhouette=-1.0)
    assert len(everyone) == len(embeddings)
    ids = list(embeddings)
    space = clustering_space(torch.nn.functional.normalize(torch.stack(
        [embeddings[u] for u in ids]).double(), dim=-1))
    silhouettes = dict(zip(ids, direct_simplified_silhouettes(
        space, np.array([everyone[u] for u in ids]))))
    confident, _, summary = cluster_pseudo_speakers(embeddings, neighbours=4, min_silhouette=0.5)
    assert set(confident) == {u for u, s in silhouettes.items() if s > 0.5}
    assert {"mixed0", "mixed2", "mixed4"} & set(everyone) - set(confident)
    assert summary["kept"] == len(confident) / len(embeddings)
    # The speakers' own utterances that keep a label are grouped as their speakers are.
    kept = {u: label for u, label in confident.items() if u in truth}
    assert partition(kept) == partition({u: truth[u] for u in kept})


def test_infomap_links_only_near_neighbours():
    # Two tight groups, each of 6, on opposite sides: no link crosses (negative cosine).
    rng = np.random.default_rng(0)
    vectors = np.concatenate([np.array([[1.0, 0, 0]]) + 0.05 * rng.normal(size=(6, 3)),
                              np.array([[-1.0, 0, 0]]) + 0.05 * rng.normal(size=(6, 3))])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    clusters = infomap_clusters(vectors, neighbours=8)
    assert len(set(clusters[:6])) == len(set(clusters[6:])) == 1 and clusters[0] != clusters[6]


def test_each_vector_is_linked_to_neighbours_others_not_counting_itself():
    # Three pairs along the axes: with one neighbour, each vector's link is its partner.
    rng = np.random.default_rng(0)
    vectors = np.repeat(np.eye(3), 2, axis=0) + 0.05 * rng.normal(size=(6, 3))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    clusters = infomap_clusters(vectors, neighbours=1)
    assert adjusted_rand_score([0, 0, 1, 1, 2, 2], clusters) == 1.0


def test_the_ivf_search_finds_nearly_all_exact_neighbours(monkeypatch):
    # 25,000 vectors: enough to train 4 sqrt(n) inverted lists of 39 points each.
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(500, 16))
    vectors = centres[rng.integers(0, 500, 25_000)] + 0.3 * rng.normal(size=(25_000, 16))
    vectors = np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                                   dtype=np.float32)
    built = []
    monkeypatch.setattr(pseudo_labels.faiss, "IndexIVFFlat",
                        lambda *args: built.append(args) or faiss_ivf(*args))
    _, exact = nearest_neighbours(vectors, 11, "exact")
    assert not built
    similarity, approximate = nearest_neighbours(vectors, 11, "ivf")
    assert len(built) == 1 and built[0][2] == int(4 * np.sqrt(25_000))
    found = np.mean([len(set(a) & set(b)) for a, b in zip(exact, approximate)]) / 11
    assert found > 0.95
    assert (np.diff(similarity, axis=1) <= 1e-6).all()  # most similar first
    # Its k-means is seeded: the same embeddings get the same neighbours, run after run.
    np.testing.assert_array_equal(nearest_neighbours(vectors, 11, "ivf")[1], approximate)


def test_too_few_vectors_for_an_inverted_file_are_searched_exactly():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for exact, ivf in zip(nearest_neighbours(vectors, 6, "exact"),
                          nearest_neighbours(vectors, 6, "ivf")):
        np.testing.assert_array_equal(exact, ivf)


def test_an_unknown_neighbour_search_is_refused():
    with pytest.raises(ValueError, match="pseudo_neighbour_search must be one of exact, ivf; "
                                         "got 'hnsw'"):
        PseudoLabels(offset=0, search="hnsw")


@pytest.mark.parametrize("trials", [0, True, 1.5])
def test_a_bad_infomap_trial_count_is_refused(trials):
    with pytest.raises(ValueError, match=f"pseudo_infomap_trials must be an integer >= 1; got {trials!r}"):
        PseudoLabels(offset=0, trials=trials)


@pytest.mark.parametrize("threshold", [1, 1.5, "0.3", None])
def test_a_confidence_threshold_that_keeps_no_utterance_is_refused(threshold):
    with pytest.raises(ValueError, match=f"pseudo_min_silhouette must be a number below 1; "
                                         f"got {threshold!r}"):
        PseudoLabels(offset=0, min_silhouette=threshold)


def test_the_highest_threshold_below_one_keeps_the_utterances_above_it():
    vectors = {f"u{i}": torch.tensor(v) for i, v in enumerate(
        np.repeat(np.eye(4), 3, axis=0).astype(np.float32))}
    labels, _, _ = PseudoLabels(offset=0, min_silhouette=0.99, neighbours=2).cluster(vectors)
    assert sum(label >= 0 for label in labels.values()) == 12


def test_infomap_runs_the_trials_asked_and_keeps_the_shortest_description(monkeypatch):
    rng = np.random.default_rng(2)
    vectors = np.repeat(np.eye(16)[:8], 30, axis=0) + 0.15 * rng.normal(size=(240, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    infomap, found = igraph.Graph.community_infomap, {}

    def recording(graph, **kwargs):
        found[kwargs["trials"]] = infomap(graph, **kwargs)
        return found[kwargs["trials"]]

    monkeypatch.setattr(igraph.Graph, "community_infomap", recording)
    for trials in (1, 10):
        clusters = infomap_clusters(vectors, neighbours=10, seed=3, trials=trials)
        assert len(np.unique(clusters)) == 8
        assert all(len(np.unique(clusters[s * 30:(s + 1) * 30])) == 1 for s in range(8))
    # The same seed starts both, so the best of ten is at most the single run's codelength.
    assert set(found) == {1, 10} and found[10].codelength <= found[1].codelength


@pytest.mark.parametrize("neighbours, count, message", [
    (0, 5, r"pseudo_neighbours must be an integer >= 1; got 0"),
    (True, 5, r"pseudo_neighbours must be an integer >= 1; got True"),
    (5, 5, "with 5 neighbours per utterance needs more target utterances than that; got 5\n"
           "Fix: lower pseudo_neighbours"),
])
def test_bad_clustering_requests(neighbours, count, message):
    embeddings = {f"u{i}": torch.rand(3) for i in range(count)}
    with pytest.raises(ValueError, match=message):
        cluster_pseudo_speakers(embeddings, neighbours=neighbours)


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


def test_too_few_embeddings_to_whiten_by_without_a_ridge_name_the_target_not_the_cohort():
    with pytest.raises(ManifestError, match=r"^target pseudo-label embeddings: 4 embeddings, "
                                            r"fewer than the 9 that a covariance spanning their "
                                            r"8 dimensions needs\nFix: set whiten_ridge above 0, "
                                            r"or raise the target training manifest") as err:
        clustering_space(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), 0.0)
    assert "cohort" not in str(err.value)


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
        labels, _, _ = cluster_pseudo_speakers(embeddings, neighbours=10, min_silhouette=-1.0,
                                               whiten_ridge=whiten_ridge)
        return adjusted_rand_score([truth[u] for u in labels], [labels[u] for u in labels])

    assert agreement(None) < 0.5
    assert agreement(0.1) > 0.8


def test_pseudo_labels_are_saved_and_recovered_with_a_checkpoint(tmp_path):
    saved = PseudoLabels(offset=24)
    saved.update({"t1": 0, "t2": 3}, n_speakers=4, epoch=5)
    Checkpointer(tmp_path, {"pseudo": saved}).save_checkpoint()
    recovered = PseudoLabels(offset=24)
    Checkpointer(tmp_path, {"pseudo": recovered}).recover_if_possible()
    assert (recovered.labels, recovered.n_speakers, recovered.epoch) == ({"t1": 0, "t2": 3}, 4, 5)
    assert recovered.lookup(["t2", "t9", "t1"]).tolist() == [27, -1, 24]


def test_relabel_clusters_every_utterance_and_numbers_the_speaker_head_rows():
    embeddings, truth = speakers(4, 8, spread=0.05)
    pseudo = PseudoLabels(offset=10, epochs=[2], neighbours=5)
    centroids, summary = pseudo.relabel(embeddings, epoch=2)
    assert summary["clusters"] == 4 and len(centroids) == 4 and pseudo.epoch == 2
    assert pseudo.n_speakers == 4  # the speaker head's classes past the source speakers
    assert set(pseudo.lookup(list(embeddings)).tolist()) == {10, 11, 12, 13}
    assert summary["size_p10"] == summary["size_p50"] == summary["size_p90"] == 8
    assert "nmi" not in summary  # no reference speakers given


def relabel_share_in_process(rank, folder):
    """One DDP process of two, passing the embeddings of its share of the target: speakers
    close enough that the clustering of these embeddings depends on their order."""
    embeddings, _ = speakers(4, 8, spread=0.3)
    share = {utt: embeddings[utt] for utt in process_share(list(embeddings))}
    pseudo = PseudoLabels(offset=10, neighbours=5)
    centroids, summary = pseudo.relabel(share, epoch=2)
    whole, _, _ = pseudo.cluster(embeddings, seed=2)  # relabel's seed at epoch 2 of seed 0
    torch.save({"share": list(share), "labels": pseudo.labels, "whole": whole,
                "n_speakers": pseudo.n_speakers, "epoch": pseudo.epoch,
                "centroids": centroids, "summary": summary},
               os.path.join(folder, f"rank{rank}.pt"))


def test_under_ddp_the_main_process_clusters_the_shares_of_every_process(tmp_path):
    in_two_processes(relabel_share_in_process, str(tmp_path))
    main, other = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert len(main["share"]) == len(other["share"]) == 16
    assert not set(main["share"]) & set(other["share"])
    # Every process takes the labels of the target clustered whole, in its order, as by one
    # process.
    assert main["labels"] == other["labels"] == main["whole"]
    assert other["n_speakers"] == main["n_speakers"] == 4 and other["epoch"] == 2
    torch.testing.assert_close(other["centroids"], main["centroids"])
    assert other["summary"] == main["summary"]


def relabel_failing_on_main_in_process(rank, folder):
    """One DDP process of two, relabelling with the oracle where the main process's speakers
    are missing: every process records what it raised."""
    embeddings, truth = speakers(4, 8)
    share = {utt: embeddings[utt] for utt in process_share(list(embeddings))}
    try:
        PseudoLabels(offset=0, oracle=True).relabel(share, epoch=1, speakers={} if rank == 0
                                                    else truth)
        raised = None
    except Exception as error:  # recorded whatever it is, for the test to compare
        raised = (type(error).__name__, str(error))
    torch.save(raised, os.path.join(folder, f"rank{rank}.pt"))


def test_under_ddp_a_labelling_the_main_process_refuses_stops_every_process(tmp_path):
    in_two_processes(relabel_failing_on_main_in_process, str(tmp_path))
    main, other = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert main == other
    assert main[0] == "ManifestError" and "pseudo_oracle takes the target manifest's spk_id" in main[1]


def test_reference_speakers_are_reported_and_never_change_the_labels():
    embeddings, truth = speakers(4, 8, spread=0.2, seed=5)
    rng = np.random.default_rng(0)
    scrambled = dict(zip(truth, rng.permutation(list(truth.values()))))
    # A manifest with some speakers unknown: no NMI, which would be of a part of the target.
    partial = dict(list(truth.items())[1:])
    runs = []
    for reference in (None, truth, scrambled, partial):
        pseudo = PseudoLabels(offset=3, neighbours=5)
        _, summary = pseudo.relabel(embeddings, epoch=1, speakers=reference, seed=7)
        runs.append((pseudo.labels, summary.get("nmi")))
    assert runs[0][0] == runs[1][0] == runs[2][0] == runs[3][0]
    assert runs[0][1] is None and runs[1][1] > 0.9 > runs[2][1] and runs[3][1] is None


def test_a_clustering_that_keeps_no_utterance_logs_no_nmi(tmp_path):
    """The summary is the train_log line: no ``nmi: None`` where nothing is kept to measure."""
    embeddings, truth = speakers(4, 8, spread=0.05)
    pseudo = PseudoLabels(offset=0, neighbours=5, min_silhouette=0.99)
    _, summary = pseudo.relabel(embeddings, epoch=3, speakers=truth)
    assert summary["kept"] == 0.0 and "nmi" not in summary
    FileTrainLogger(tmp_path / "train_log.txt").log_stats({"epoch": 3}, train_stats=summary)
    assert "None" not in (tmp_path / "train_log.txt").read_text()


def test_the_oracle_takes_the_manifest_speakers():
    embeddings, truth = speakers(5, 6, spread=1.0, seed=2)  # too noisy to cluster
    names = {utt: f"speaker{s}" for utt, s in truth.items()}
    pseudo = PseudoLabels(offset=0, oracle=True)
    centroids, summary = pseudo.relabel(embeddings, epoch=1, speakers=names)
    assert partition(pseudo.labels) == partition(truth) and len(centroids) == 5
    assert summary["nmi"] == 1.0 and summary["kept"] == 1.0
    with pytest.raises(ManifestError, match=r"pseudo_oracle takes the target manifest's "
                                            r"spk_id, and 1 target utterances have none \(e.g. "
                                            r"spk0_u0\)\nFix: set pseudo_oracle: False, or give "
                                            r"every target training utterance its spk_id$"):
        pseudo.relabel(embeddings, epoch=1, speakers={**names, "spk0_u0": ""})


@pytest.mark.parametrize("case", ["nothing kept", "one cluster"])
def test_a_clustering_that_cannot_train_warns_naming_the_settings(case, caplog):
    if case == "nothing kept":
        embeddings, _ = speakers(4, 8, spread=0.05)
        pseudo = PseudoLabels(offset=0, neighbours=5, min_silhouette=0.99)
    else:
        rng = np.random.default_rng(0)
        embeddings = {f"u{i}": torch.from_numpy(rng.normal(size=8)).float() for i in range(30)}
        pseudo = PseudoLabels(offset=0, neighbours=29)
    with caplog.at_level(logging.WARNING):
        pseudo.relabel(embeddings, epoch=3)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("pseudo-labels at epoch 3")
    assert "pseudo_min_silhouette" in warned[0] and "pseudo_neighbours" in warned[0]


def test_well_clustered_target_does_not_warn(caplog):
    embeddings, _ = speakers(4, 8, spread=0.05)
    with caplog.at_level(logging.WARNING):
        PseudoLabels(offset=0, neighbours=5).relabel(embeddings, epoch=3)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("whiten", [True, False])
def test_pseudo_speakers_of_one_embedding_are_named_in_a_warning(caplog, monkeypatch, whiten):
    """Digital silence (one embedding to float32 rounding) and a recording under four IDs."""
    monkeypatch.setattr(pseudo_labels, "SILHOUETTE_BLOCK", 7)  # pseudo-speakers across blocks
    embeddings, truth = speakers(4, 8, spread=0.05)
    rng = np.random.default_rng(1)
    silence, recording = 3 * rng.normal(size=(2, 16))
    for u in range(10):  # float32 rounding of different lengths' padding
        rounded = silence * (1 + 1e-7 * rng.normal(size=16))
        embeddings[f"silence{u}"] = torch.from_numpy(rounded).float()
    for u in range(4):
        embeddings[f"copy{u}"] = torch.from_numpy(recording).float()
    with caplog.at_level(logging.WARNING):
        labels, _, summary = cluster_pseudo_speakers(embeddings, neighbours=5,
                                                     whiten_ridge=0.1 if whiten else None)
    assert partition({u: labels[u] for u in truth}) == partition(truth)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and summary["clusters"] == 6
    assert warned[0].startswith("2 of 6 target pseudo-speakers are each utterances of one and "
                                "the same embedding")
    assert "10 utterances (silence0, silence1, silence2, ...); 4 utterances (copy0, copy1, " \
           "copy2, ...)." in warned[0]
    assert "Remove such utterances from the target training manifest" in warned[0]


def test_the_speaker_head_grows_with_the_pseudo_speakers_and_a_checkpoint_restores_it(tmp_path):
    torch.manual_seed(0)
    pseudo = PseudoLabels(offset=3, epochs=[1])
    head = MarginSoftmaxHead(GrowingClassifier(input_size=4, out_neurons=3),
                             margin_softmax_loss(), pseudo)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    weight = head.classifier.weight
    source_rows = weight.detach().clone()

    def step(target_ids):
        loss, _ = head(torch.randn(2, 1, 4), torch.tensor([[0], [2]]), torch.randn(2, 1, 4),
                       target_ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(["t0", "t1"])  # no pseudo-speakers yet: Adam has moments of 3 rows
    source_rows = weight.detach().clone()
    centroids = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    pseudo.update({f"t{i}": i for i in range(5)}, n_speakers=5, epoch=1)
    head.start_pseudo_speakers(centroids, optimizer)
    assert head.classifier.weight is weight and weight.shape == (8, 4)
    assert torch.equal(weight[:3], source_rows) and torch.equal(weight[3:], centroids)
    assert all(m.shape == (8, 4) for m in optimizer.state[weight].values() if m.dim())
    step(["t0", "t4"])  # the grown rows train
    assert not torch.equal(weight[3], centroids[0]) and not torch.equal(weight[7], centroids[4])
    head.start_pseudo_speakers(centroids[:2], optimizer)  # fewer: the rows stay
    assert weight.shape == (8, 4)

    Checkpointer(tmp_path, {"classifier": head.classifier, "optimizer": optimizer}).save_checkpoint()
    fresh = GrowingClassifier(input_size=4, out_neurons=3)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.1)
    Checkpointer(tmp_path, {"classifier": fresh, "optimizer": fresh_optimizer}).recover_if_possible()
    assert torch.equal(fresh.weight, weight)
    assert torch.equal(fresh_optimizer.state[fresh.weight]["exp_avg"],
                       optimizer.state[weight]["exp_avg"])


def test_the_margin_softmax_takes_the_labelled_target_crops_over_the_current_classes_only():
    torch.manual_seed(1)
    pseudo = PseudoLabels(offset=3)
    head = MarginSoftmaxHead(GrowingClassifier(input_size=4, out_neurons=3),
                             margin_softmax_loss("am", margin=0.2, scale=10.0), pseudo)
    head.classifier.grow(8)  # rows of an earlier, larger clustering
    with torch.no_grad():
        head.classifier.weight.copy_(torch.randn(8, 4))
    pseudo.update({"t1": 1, "t3": 0}, n_speakers=2, epoch=2)
    source, target = torch.randn(2, 1, 4), torch.randn(4, 1, 4)
    loss, log = head(source, torch.tensor([[0], [2]]), target, ["t0", "t1", "t2", "t3"])
    # By hand: source crops, then t1 and t3 with rows 3 + label; 3 + 2 classes.
    rows = np.concatenate([source.squeeze(1).numpy(), target.squeeze(1).numpy()[[1, 3]]])
    labels = [0, 2, 4, 3]
    weight = head.classifier.weight.detach().numpy()[:5]
    cosines = (rows / np.linalg.norm(rows, axis=1, keepdims=True)) @ (
        weight / np.linalg.norm(weight, axis=1, keepdims=True)).T
    direct = []
    for row, label in zip(cosines.astype(np.float64), labels):
        logits = 10.0 * row
        logits[label] = 10.0 * (row[label] - 0.2)
        direct.append(np.log(np.exp(logits).sum()) - logits[label])
    assert loss.item() == pytest.approx(np.mean(direct), rel=1e-5)
    assert float(log["pseudo_labelled"]) == 0.5


def test_new_pseudo_speakers_start_with_fresh_optimiser_moments():
    torch.manual_seed(0)
    pseudo = PseudoLabels(offset=3)
    head = MarginSoftmaxHead(GrowingClassifier(input_size=4, out_neurons=3),
                             margin_softmax_loss(), pseudo)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    weight = head.classifier.weight
    centroids = torch.nn.functional.normalize(torch.randn(4, 4), dim=-1)
    pseudo.update({f"t{i}": i for i in range(4)}, n_speakers=4, epoch=1)
    head.start_pseudo_speakers(centroids, optimizer)
    loss, _ = head(torch.randn(2, 1, 4), torch.tensor([[0], [2]]), torch.randn(4, 1, 4),
                   ["t0", "t1", "t2", "t3"])
    loss.backward()
    optimizer.step()
    moments = {key: m.clone() for key, m in optimizer.state[weight].items() if m.dim()}
    assert all(m[3:7].abs().sum() > 0 for m in moments.values())
    optimizer.state[weight]["count"] = 1  # a plain number, as an optimiser may keep
    pseudo.update({"t0": 0, "t1": 1, "t2": 1}, n_speakers=2, epoch=2)
    head.start_pseudo_speakers(centroids[:2], optimizer)
    assert optimizer.state[weight].pop("count") == 1
    for key, before in moments.items():
        after = optimizer.state[weight][key]
        assert not after[3:5].any()  # the new clustering's rows
        assert torch.equal(after[:3], before[:3]) and torch.equal(after[5:], before[5:])


def test_only_clusters_of_two_or_more_confident_members_become_contiguous_speakers(monkeypatch):
    rng = np.random.default_rng(0)
    embeddings = {f"u{i}": torch.from_numpy(rng.normal(size=5)) for i in range(10)}
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    # Cluster 0: all confident; 1: one confident (dropped); 2: none (dropped);
    # 3: two confident, the third exactly at the threshold (not above it).
    silhouettes = np.array([0.9, 0.8, 0.7, 0.9, 0.1, 0.2, 0.0, 0.6, 0.5, 0.3])
    monkeypatch.setattr(pseudo_labels, "infomap_clusters", lambda *args: clusters)
    monkeypatch.setattr(pseudo_labels, "simplified_silhouettes", lambda *args: silhouettes)
    labels, centroids, summary = cluster_pseudo_speakers(embeddings, neighbours=3,
                                                         min_silhouette=0.3)
    assert labels == {"u0": 0, "u1": 0, "u2": 0, "u7": 1, "u8": 1}
    assert summary["kept"] == 0.5 and summary["clusters"] == 4
    assert centroids.shape == (2, 5)  # a row per pseudo-speaker, none for dropped clusters
    for speaker, members in enumerate([["u0", "u1", "u2"], ["u7", "u8"]]):
        mean = np.mean([unit.numpy() for unit in (embeddings[u] / embeddings[u].norm()
                                                  for u in members)], axis=0)
        np.testing.assert_allclose(centroids[speaker].numpy(), mean / np.linalg.norm(mean),
                                   atol=1e-6)


@pytest.mark.parametrize("oracle", [False, True])
def test_a_nan_target_embedding_is_refused_naming_its_utterance(oracle):
    """One NaN embedding made the centring, and so every silhouette, NaN: no utterance kept a
    label, with a warning that blamed the clustering settings, and training went on."""
    embeddings, truth = speakers(4, 8, spread=0.05)
    broken = sorted(embeddings)[3]
    embeddings[broken] = torch.full_like(embeddings[broken], float("nan"))
    pseudo = PseudoLabels(offset=10, epochs=[2], neighbours=5, oracle=oracle)
    with pytest.raises(ManifestError, match=rf"target pseudo-label embeddings: embeddings with "
                                            rf"NaN or infinite values\n  {broken}\nFix: check "
                                            r"the model and the audio"):
        pseudo.relabel(embeddings, epoch=2, speakers={u: str(s) for u, s in truth.items()})
    assert pseudo.epoch is None and not pseudo.labels


def test_the_summary_is_of_the_cluster_sizes_and_the_mean_silhouette():
    # Clusters of 1, 2, ..., 10 utterances; silhouettes whose mean and median differ.
    clusters = np.repeat(np.arange(10), np.arange(1, 11))
    silhouettes = np.where(np.arange(55) < 5, 0.9, 0.0)
    summary = clustering_summary(clusters, silhouettes, kept=11)
    assert summary == pytest.approx({"clusters": 10, "silhouette": 4.5 / 55, "kept": 0.2,
                                     "size_p10": 1.9, "size_p50": 5.5, "size_p90": 9.1})


def test_the_nmi_needs_two_utterances_with_both_labels():
    assert agreement_with({"a": 0, "b": 1}, {"a": "x", "c": "y"}) is None
    assert agreement_with({"a": 0, "b": 1}, {"a": "x", "b": "y"}) == 1.0


def test_clustering_epochs_after_the_last_are_warned_of(caplog):
    with caplog.at_level(logging.WARNING):
        PseudoLabels(offset=0, epochs=[2, 3], number_of_epochs=3)
        PseudoLabels(offset=0, epochs=[2, 4, 5], number_of_epochs=3)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["pseudo_label_epochs [4, 5] come after the last epoch (3): no clustering "
                      "at them in this run"]


def test_an_oracle_of_one_target_speaker_warns_that_it_barely_trains(caplog):
    embeddings, truth = speakers(1, 6)
    pseudo = PseudoLabels(offset=0, oracle=True)
    with caplog.at_level(logging.WARNING):
        _, summary = pseudo.relabel(embeddings, epoch=2, speakers={u: "s" for u in truth})
    assert summary["clusters"] == 1 and summary["kept"] == 1.0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("pseudo-labels at epoch 2: 1 clusters, "
                                                     "100.0% of 6 target utterances kept")


def test_a_clustering_epoch_of_true_is_refused():
    """A YAML ``[yes]`` reads as ``[True]``, which would cluster at epoch 1."""
    with pytest.raises(ManifestError, match=r"pseudo_label_epochs \[True\] must be epochs of "
                                            r"the run"):
        PseudoLabels(offset=0, epochs=[True])


def test_each_epoch_clusters_with_infomap_seeded_by_the_run_seed_and_the_epoch():
    embeddings, _ = speakers(6, 8, spread=0.5)  # close enough that Infomap's seed matters
    pseudo = PseudoLabels(offset=0, neighbours=5, trials=1, min_silhouette=-1.0)
    by_seed = {s: pseudo.cluster(embeddings, seed=s)[0] for s in (7000, 7003)}
    assert by_seed[7000] != by_seed[7003]
    pseudo.relabel(embeddings, epoch=3, seed=7)
    assert pseudo.labels == by_seed[7003]


def stage_start_brain(pseudo, relabelled):
    """What DANNBrain.on_stage_start reads of a Brain, relabelling into ``relabelled``."""
    return types.SimpleNamespace(hparams=types.SimpleNamespace(pseudo_labels=pseudo),
                                 update_pseudo_labels=relabelled.append, domain_items=[],
                                 train_pairs=types.SimpleNamespace(set_epoch=lambda epoch: None))


def test_a_run_resumed_within_a_clustering_epoch_keeps_its_clustering(tmp_path):
    saved = PseudoLabels(offset=3, epochs=[2, 3])
    saved.update({"t1": 0, "t2": 1}, n_speakers=2, epoch=2)
    Checkpointer(tmp_path, {"pseudo_labels": saved}).save_checkpoint()  # within epoch 2
    resumed, relabelled = PseudoLabels(offset=3, epochs=[2, 3]), []
    Checkpointer(tmp_path, {"pseudo_labels": resumed}).recover_if_possible()
    brain = stage_start_brain(resumed, relabelled)
    for epoch in (2, 3, 4):
        DANNBrain.on_stage_start(brain, sb.Stage.TRAIN, epoch)
    assert relabelled == [3]
    DANNBrain.on_stage_start(stage_start_brain(PseudoLabels(offset=3, epochs=[2, 3]), relabelled),
                             sb.Stage.TRAIN, 2)  # a fresh run clusters at its epoch 2
    assert relabelled == [3, 2]


@pytest.mark.parametrize("seconds, warned", [((2, 3, 4), False), ((2, 0.2, 4), True)])
def test_the_clustering_warns_only_of_target_utterances_it_leaves_out(seconds, warned, caplog):
    target = DynamicItemDataset({f"t{i}": {"wav": f"t{i}.wav", "start": 0, "sample_rate": 16000,
                                           "stop": int(16000 * s)} for i, s in enumerate(seconds)})
    brain = types.SimpleNamespace(target_utterances=target, embed_limits=lambda: (0.5, 600))
    with caplog.at_level(logging.WARNING):
        ids = DANNBrain.clustered_ids(brain)
    assert ids == (["t0", "t1", "t2"] if not warned else ["t0", "t2"])
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert messages == (["pseudo-labels: 1 of 3 target training utterances are outside "
                         "min_embed_seconds-max_embed_seconds (0.5-600 s) and get no "
                         "pseudo-label"] if warned else [])
