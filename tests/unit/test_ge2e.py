"""The GE2E loss against a direct implementation, and the speaker-major batches it needs."""

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from speechbrain.dataio.dataset import DynamicItemDataset

from local.data.dataio import PairedDataset, SpeakerBatchSampler, collate_pairs
from local.model.speaker_heads import GE2EHead, GE2ELoss


def direct_ge2e(embeddings, w, b, variant, utterances=None):
    """The loss of Wan et al. (2018) written out utterance by utterance, averaged.

    ``utterances[j][m]`` names the utterance of row ``m`` of speaker ``j``
    (each row its own when None): the own centroid leaves out all its rows.
    """
    embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)  # the paper's e_ji
    n_speakers, n_utterances, _ = embeddings.shape
    if utterances is None:
        utterances = [list(range(n_utterances))] * n_speakers
    total = 0.0
    for j in range(n_speakers):
        for i in range(n_utterances):
            e = embeddings[j, i]
            scores = []
            for k in range(n_speakers):
                if k == j:
                    members = [embeddings[k, m] for m in range(n_utterances)
                               if utterances[k][m] != utterances[k][i]]
                else:
                    members = [embeddings[k, m] for m in range(n_utterances)]
                centroid = sum(members) / len(members)
                scores.append(w.abs() * F.cosine_similarity(e, centroid, dim=0)
                              + b)
            if variant == "softmax":
                loss = -scores[j] + torch.log(sum(torch.exp(s) for s in scores))
            else:
                closest = max(torch.sigmoid(scores[k]) for k in range(n_speakers) if k != j)
                loss = 1 - torch.sigmoid(scores[j]) + closest
            total = total + loss
    return total / (n_speakers * n_utterances)


@pytest.mark.parametrize("variant", ["softmax", "contrast"])
def test_loss_and_gradients_match_the_direct_implementation(variant):
    torch.manual_seed(0)
    embeddings = torch.randn(4, 3, 8, dtype=torch.float64)
    loss_fn = GE2ELoss(variant, init_w=3.0, init_b=-1.0).double()
    inputs = embeddings.clone().requires_grad_()
    loss = loss_fn(inputs)
    loss.backward()

    reference_inputs = embeddings.clone().requires_grad_()
    w = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    reference = direct_ge2e(reference_inputs, w, b, variant)
    reference.backward()

    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(inputs.grad, reference_inputs.grad)
    torch.testing.assert_close(loss_fn.w.grad, w.grad)
    torch.testing.assert_close(loss_fn.b.grad, b.grad)
    assert float(inputs.grad.abs().min()) > 0  # every utterance takes part
    assert float(w.grad) != 0 and float(b.grad) != 0


@pytest.mark.parametrize("variant", ["softmax", "contrast"])
def test_loss_depends_on_the_directions_alone(variant):
    # The paper's centroids average unit-length embeddings: an utterance with
    # a longer embedding does not weigh more in its speaker's centroid.
    torch.manual_seed(0)
    embeddings = torch.randn(4, 3, 8, dtype=torch.float64)
    lengths = torch.rand(4, 3, 1, dtype=torch.float64) * 10 + 0.1
    loss_fn = GE2ELoss(variant).double()
    torch.testing.assert_close(loss_fn(embeddings * lengths), loss_fn(embeddings))


def orthogonal_speakers(n_speakers=3, n_utterances=2, dim=6):
    """Each speaker's utterances along its own axis, slightly apart."""
    embeddings = torch.zeros(n_speakers, n_utterances, dim)
    for j in range(n_speakers):
        embeddings[j, :, j] = 1.0
        embeddings[j, :, n_speakers] = 0.1 * torch.arange(n_utterances)
    return embeddings


@pytest.mark.parametrize("variant", ["softmax", "contrast"])
def test_separated_speakers_cost_less_than_mixed_ones(variant):
    separated = orthogonal_speakers()
    # The same utterances, dealt to the speakers so that no speaker is one axis.
    mixed = separated.reshape(6, -1)[[0, 2, 4, 1, 3, 5]].reshape(3, 2, -1)
    loss_fn = GE2ELoss(variant)
    assert loss_fn(separated) < loss_fn(mixed)


@pytest.mark.parametrize("variant, expected", [
    ("softmax", -5 + math.log(math.exp(5) + 2 * math.exp(-5))),
    ("contrast", 1 - 1 / (1 + math.exp(-5)) + 1 / (1 + math.exp(5))),
])
def test_loss_of_speakers_on_their_own_axes_by_hand(variant, expected):
    # Every utterance of speaker j is the unit vector of axis j: cos = 1 with the own
    # centroid and 0 with the others', so S = w + b = 5 for the own speaker and
    # b = -5 for the 2 others.
    embeddings = torch.eye(3, dtype=torch.float64).repeat_interleave(2, dim=0).reshape(3, 2, 3)
    loss = GE2ELoss(variant).double()(embeddings)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("variant", ["softmax", "contrast"])
def test_the_repeats_of_an_utterance_are_left_out_of_its_own_centroid(variant):
    # Speaker-major rows as SpeakerBatchSampler gives them to a speaker of 3
    # utterances at M = 4: its first utterance twice, the same audio when it is
    # shorter than the crop. A repeat in its own centroid would raise its own
    # similarity with its own copy.
    speakers, utterances, dim = 3, 4, 8
    torch.manual_seed(0)
    ids = [f"s{j}_u{m % 3}" for j in range(speakers) for m in range(utterances)]
    distinct = torch.randn(speakers, 3, dim, dtype=torch.float64)
    rows = distinct[:, [0, 1, 2, 0]]
    head = GE2EHead(GE2ELoss(variant, init_w=3.0, init_b=-1.0).double(), speakers, utterances,
                    source_speakers=speakers, batch_size=speakers * utterances)
    inputs = rows.reshape(-1, 1, dim).clone().requires_grad_()
    loss, _ = head(inputs, None, None, None, ids)
    loss.backward()

    reference_inputs = rows.clone().requires_grad_()
    w = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    reference = direct_ge2e(reference_inputs, w, b, variant, [[0, 1, 2, 0]] * speakers)
    reference.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(inputs.grad.reshape(rows.shape), reference_inputs.grad)
    torch.testing.assert_close(head.loss.w.grad, w.grad)
    # The first utterance's rows are scored against the centroid of the other two.
    scores = head.loss.similarities(rows, torch.tensor([[0, 1, 2, 0]] * speakers))
    units = F.normalize(distinct, dim=-1)
    own = F.cosine_similarity(units[0, 0], units[0, 1:].mean(dim=0), dim=0)
    assert scores[0, 0, 0].item() == scores[0, 3, 0].item() == pytest.approx(
        3.0 * own.item() - 1.0)
    assert head(inputs, None, None, None)[0].item() != pytest.approx(loss.item())


def test_the_augmented_copies_are_left_out_of_their_own_utterances_centroid():
    speakers, utterances, dim = 2, 2, 4
    head = GE2EHead(GE2ELoss(), speakers, utterances, source_speakers=2,
                    batch_size=speakers * utterances)
    clean, copies = torch.randn(2, speakers * utterances, 1, dim, dtype=torch.float64)
    ids = ["a1", "a2", "b1", "b2"]
    loss, _ = head(torch.cat([clean, copies]).double(), None, None, None, ids + ids)
    by_speaker = torch.cat([clean.reshape(speakers, utterances, dim),
                            copies.reshape(speakers, utterances, dim)], dim=1)
    w, b = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)
    expected = direct_ge2e(by_speaker, w, b, "softmax", [[1, 2, 1, 2]] * speakers)
    torch.testing.assert_close(loss, expected)


def test_a_speaker_of_one_utterance_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 utterances of each speaker"):
        GE2ELoss()(torch.randn(2, 3, 4), torch.tensor([[0, 1, 1], [2, 2, 2]]))


def test_scale_stays_positive():
    # A step that takes w below 0 leaves the scale positive: a larger cosine
    # is still a larger similarity.
    below, above = GE2ELoss(init_w=-2.0, init_b=0.0), GE2ELoss(init_w=2.0, init_b=0.0)
    torch.testing.assert_close(below.similarities(orthogonal_speakers()),
                               above.similarities(orthogonal_speakers()))


@pytest.mark.parametrize("variant", ["softmax", "contrast"])
@pytest.mark.parametrize("w", [1e-7, -1e-7, -2.0])
def test_scale_keeps_training_wherever_a_step_takes_it(variant, w):
    # Separated speakers: a larger scale lowers the loss, and however small or
    # negative a step has left w, its gradient says so.
    loss_fn = GE2ELoss(variant, init_w=w, init_b=0.0)
    loss_fn(orthogonal_speakers()).backward()
    scale_grad = float(loss_fn.w.grad) * np.sign(w)  # the gradient in the scale |w|
    assert scale_grad < -0.01


@pytest.mark.parametrize("shape, message", [
    ((3, 1, 4), "at least 2 speakers and 2 utterances .* got 3 speakers x 1 utterances"),
    ((1, 3, 4), "got 1 speakers x 3 utterances"),
    ((6, 4), r"embeddings \[N speakers, M utterances, dim\]; got shape \(6, 4\)"),
])
def test_bad_shapes_are_clear_errors(shape, message):
    with pytest.raises(ValueError, match=message):
        GE2ELoss()(torch.randn(*shape))


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match=r"one of \('softmax', 'contrast'\); got 'triplet'"):
        GE2ELoss("triplet")


def speaker_labels(counts):
    """Speaker labels of a dataset with ``counts[s]`` items of speaker ``s``, shuffled."""
    labels = [f"spk{s}" for s, count in enumerate(counts) for _ in range(count)]
    return list(np.random.default_rng(5).permutation(labels))


def test_every_batch_is_n_speakers_by_m_utterances_speaker_major():
    labels = speaker_labels([6, 5, 8, 3, 7, 4])  # speaker 3 has fewer than M
    sampler = SpeakerBatchSampler(labels, n_speakers=3, n_utterances=4, n_batches=20, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 20
    short_speaker_seen = False
    for batch in batches:
        groups = np.array([labels[i] for i in batch]).reshape(3, 4)
        assert (groups == groups[:, :1]).all()  # one speaker per block of M
        assert len(set(groups[:, 0])) == 3  # N distinct speakers
        for block in np.array(batch).reshape(3, 4):
            if labels[block[0]] == "spk3":  # 3 utterances: all of them, one twice
                short_speaker_seen = True
                assert sorted(np.unique(block, return_counts=True)[1]) == [1, 1, 2]
            else:
                assert len(set(block)) == 4  # distinct utterances when there are M
    assert short_speaker_seen
    used = {i for batch in batches for i in batch}
    assert len(used) > 0.9 * len(labels)


def test_speakers_of_one_utterance_are_never_drawn(caplog):
    # GE2E leaves every crop of an utterance out of its own speaker's centroid:
    # a speaker of one utterance would have none.
    labels = speaker_labels([1, 5, 2, 1, 4])
    with caplog.at_level(logging.INFO, logger="local.data.dataio"):
        sampler = SpeakerBatchSampler(labels, n_speakers=3, n_utterances=2, n_batches=30, seed=1)
    assert "leave out the 2 of the 5 source speakers with one utterance" in caplog.text
    drawn = {labels[i] for batch in sampler for i in batch}
    assert drawn == {"spk1", "spk2", "spk4"}
    with pytest.raises(ValueError, match="need that many speakers of at least 2 utterances; "
                       r"the source training set has 3 \(of 5 speakers\)"):
        SpeakerBatchSampler(labels, n_speakers=4, n_utterances=2, n_batches=30, seed=1)


def test_batches_depend_on_seed_and_epoch_only():
    labels = speaker_labels([5] * 6)
    sampler = SpeakerBatchSampler(labels, 3, 2, n_batches=5, seed=1)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    again = SpeakerBatchSampler(labels, 3, 2, n_batches=5, seed=1)
    again.set_epoch(1)
    assert list(again) == second
    assert list(SpeakerBatchSampler(labels, 3, 2, n_batches=5, seed=2)) != first


@pytest.mark.parametrize("n_speakers, n_utterances, n_batches, message", [
    (7, 2, 5, "Batches of 7 speakers need that many speakers of at least 2 utterances; the "
              "source training set has 6 \\(of 6 speakers\\)\nFix: lower ge2e_speakers"),
    (3, 2, 0, r"No batch of 3 speakers x 2 utterances in an epoch \(n_batches 0\)"),
    (0, 2, 5, "need n_speakers and n_utterances >= 1; got 0 and 2"),
])
def test_impossible_batches_are_clear_errors(n_speakers, n_utterances, n_batches, message):
    with pytest.raises(ValueError, match=message):
        SpeakerBatchSampler(speaker_labels([5] * 6), n_speakers, n_utterances, n_batches, seed=0)


def test_pairs_follow_the_speaker_batches_and_keep_the_target_coverage():
    labels = speaker_labels([4, 4, 4, 4, 4])
    source = DynamicItemDataset({f"s{i}": {"spk_id": spk} for i, spk in enumerate(labels)})
    target = DynamicItemDataset({f"t{i}": {"spk_id": "never"} for i in range(30)})
    source.set_output_keys(["id", "spk_id"])
    target.set_output_keys(["id"])
    batches = SpeakerBatchSampler(labels, 2, 3, n_batches=30 // 6, seed=4)
    pairs = PairedDataset(source, target, seed=4, source_batches=batches)
    assert len(pairs) == 30
    for epoch in (1, 2):
        pairs.set_epoch(epoch)
        expected = list(batches)  # the sampler is at the pairs' epoch
        loader = torch.utils.data.DataLoader(
            pairs, collate_fn=collate_pairs,
            batch_sampler=torch.utils.data.BatchSampler(
                torch.utils.data.SequentialSampler(pairs), 6, drop_last=True))
        seen = [(list(s.id), list(t.id)) for s, t in loader]
        assert [ids for ids, _ in seen] == [[f"s{i}" for i in batch] for batch in expected]
        assert sorted(i for _, ids in seen for i in ids) == sorted(f"t{i}" for i in range(30))
