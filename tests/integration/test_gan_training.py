"""The adversaries in a Brain: who each update changes, and every variant trains."""

import copy
import math
import os

import numpy as np
import pytest
import speechbrain as sb
import torch

from local.data.dataio import STEP_STREAM, collate_pairs, random_seed
from local.experiment import prepare_experiment
from local.embedding import compute_embeddings
from local.model.adversaries import ADVERSARIES, DomainItems
from local.model.alignment import coral_loss, mmd_loss
from local.model.dann_brain import DANNBrain
from tests.integration.test_train_dann import (ADVERSARY_ONLY, GE2E_TINY, TINY, killed_at_batch,
                                               logged, newest_weights, train)

GANS = [a for a in ADVERSARIES if a != "grl"]


def brain_and_batch(demo_corpus, tmp_path, adversary, disc_steps=2, warmup=0,
                    losses=ADVERSARY_ONLY):
    """A Brain of ``adversary`` and ``losses``, ready to train, and a batch of 8 + 8 crops."""
    argv = ["hparams/dann_fbank.yaml", f"--data_folder={os.path.dirname(demo_corpus['eval'])}",
            f"--output_folder={tmp_path}", *TINY, *losses, f"--adversary={adversary}",
            "--adv_weight=0.3", f"--adv_warmup={warmup}", "--disc_lr=0.01",
            f"--disc_steps={disc_steps}"]
    brain, _, _, data = prepare_experiment(argv)
    brain.on_fit_start()
    # Mid-training, so that the adversary's coefficient is not 0.
    brain.hparams.epoch_counter.current, brain.step = 1, 5
    # What Brain.fit does before its first batch.
    brain.train_pairs = data["train_pairs"]
    brain.steps_per_epoch = data["train_pairs"].steps_per_epoch(brain.hparams.batch_size)
    brain.modules.train()
    return brain, collate_pairs([data["train_pairs"][i] for i in range(8)])


def parameters(brain):
    return {name: p.detach().clone() for name, p in brain.modules.named_parameters()}


def changed(brain, before):
    return {name.split(".")[0] for name, p in brain.modules.named_parameters()
            if not torch.equal(p, before[name])}


@pytest.mark.parametrize("adversary", GANS)
def test_gan_updates_touch_only_their_own_parameters(demo_corpus, tmp_path, adversary):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, adversary)
    before = parameters(brain)
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.domain_items = [DomainItems.of(outputs[1].detach(), batch[0].spk_id_encoded.data)]
    brain.train_discriminator(brain.adversary.updates_before)
    # The discriminator's updates come first and change nothing else.
    assert changed(brain, before) == {"domain_discriminator"}
    loss = brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    loss.backward()
    discriminator = brain.modules.domain_discriminator
    assert all(p.grad is None for p in discriminator.parameters())
    # The encoder's loss includes the GAN term, and its optimiser does not
    # hold the discriminator, which Brain therefore never steps.
    speaker_loss, gan_loss = (brain.stats.means()[k] for k in ("speaker_loss", "embedding_adv_loss"))
    coefficient = brain.hparams.adv_schedule(brain.progress())
    assert coefficient > 0
    assert loss.item() == pytest.approx(speaker_loss + coefficient * gan_loss, rel=1e-5)
    assert set(brain.optimizers_dict) == {"opt_class"}
    encoder = brain.modules.embedding_model
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)
    before = parameters(brain)
    brain.optimizers_step()
    assert changed(brain, before) == {"embedding_model", "speaker_head"}


@pytest.mark.parametrize("hparams, options", [("dann_fbank", TINY), ("ge2e_fbank", GE2E_TINY)])
def test_remove_vector_weight_decay_exempts_the_vectors_of_every_optimiser(demo_corpus, tmp_path,
                                                                           hparams, options):
    argv = [f"hparams/{hparams}.yaml", f"--data_folder={os.path.dirname(demo_corpus['eval'])}",
            f"--output_folder={tmp_path}", *options, *ADVERSARY_ONLY,
            "--remove_vector_weight_decay"]
    brain, _, _, _ = prepare_experiment(argv)
    brain.on_fit_start()
    decay = brain.hparams.weight_decay
    assert decay > 0
    for optimizer in (brain.optimizer, brain.disc_optimizer):
        taken = [(p, group["weight_decay"]) for group in optimizer.param_groups
                 for p in group["params"]]
        # Biases, norms and scalars (GE2E's scale and bias) without weight
        # decay, weight matrices with it.
        assert {(p.dim() <= 1, decay_of_p) for p, decay_of_p in taken} == {(True, 0.0),
                                                                             (False, decay)}
    trained = {id(p) for optimizer in (brain.optimizer, brain.disc_optimizer)
               for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in trained for p in brain.modules.parameters() if p.requires_grad)


def recorded_step_norms(brain, monkeypatch):
    """The list that each step of the brain's optimiser appends its gradients' global norm to."""
    norms, step = [], brain.optimizer.step
    monkeypatch.setattr(brain.optimizer, "step", lambda *args, **kwargs: norms.append(
        torch.linalg.vector_norm(torch.stack([
            p.grad.norm() for group in brain.optimizer.param_groups for p in group["params"]
            if p.grad is not None])).item()) or step(*args, **kwargs))
    return norms


def test_gradients_are_clipped_over_every_parameter_group(demo_corpus, tmp_path, monkeypatch):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    brain.remove_vector_weight_decay, brain.max_grad_norm = True, 1e-3
    brain.init_optimizers()
    assert len(brain.optimizer.param_groups) == 2
    norms = recorded_step_norms(brain, monkeypatch)
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.compute_objectives(outputs, batch, sb.Stage.TRAIN).backward()
    brain.optimizers_step()
    # The weight matrices' group is clipped with the vectors' group, to one norm.
    assert norms == [pytest.approx(1e-3, rel=1e-3)]


def test_gradients_scaled_for_half_precision_are_clipped_to_the_norm_of_the_unscaled(
        demo_corpus, tmp_path, monkeypatch):
    # --precision=fp16's loss scaler (on CUDA; the CPU's here), which scales the loss by 1024.
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    brain.max_grad_norm, brain.scaler = 1e-3, torch.amp.GradScaler("cpu", init_scale=1024.0)
    norms = recorded_step_norms(brain, monkeypatch)
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.scaler.scale(brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)).backward()
    brain.optimizers_step()
    assert norms == [pytest.approx(1e-3, rel=1e-3)]


@pytest.mark.parametrize("max_grad_norm", [-1.0, 0.0])
def test_a_max_grad_norm_of_zero_or_below_leaves_the_gradients_as_they_are(
        demo_corpus, tmp_path, monkeypatch, max_grad_norm):
    # SpeechBrain's --help: "enter a negative value to disable".
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    brain.max_grad_norm = max_grad_norm
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.compute_objectives(outputs, batch, sb.Stage.TRAIN).backward()
    trained = [p for p in brain.modules.parameters() if p.grad is not None]
    before, taken = [p.grad.clone() for p in trained], []
    step = brain.optimizer.step
    monkeypatch.setattr(brain.optimizer, "step", lambda *args, **kwargs: taken.append(
        [p.grad.clone() for p in trained]) or step(*args, **kwargs))
    brain.optimizers_step()
    assert len(taken) == 1 and all(torch.equal(a, b) for a, b in zip(taken[0], before))


class SyncRecorder(torch.nn.Module):
    """A discriminator that records whether DDP would synchronise its gradients at each call."""

    def __init__(self, discriminator):
        super().__init__()
        self.discriminator, self.require_backward_grad_sync, self.synced = discriminator, True, []

    def forward(self, inputs):
        self.synced.append(self.require_backward_grad_sync)
        return self.discriminator(inputs)


def test_discriminator_updates_come_at_the_synchronised_micro_batch(demo_corpus, tmp_path):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "vanilla")
    recorder = SyncRecorder(brain.modules.domain_discriminator)
    brain.modules.domain_discriminator = recorder
    brain.grad_accumulation_factor, brain.step = 2, 5  # a micro-batch that does not step
    brain.fit_batch(batch)
    # The encoder's loss alone, under no_sync.
    assert recorder.synced == [False], recorder.synced
    brain.step = 6
    brain.fit_batch(batch)
    # Its own two updates, on both micro-batches, then the encoder's loss, synchronised.
    assert recorder.synced == [False, True, True, True], recorder.synced
    assert recorder.require_backward_grad_sync


def accumulated_step(brain, batch, monkeypatch):
    """Two micro-batches of ``--grad_accumulation_factor=2`` (one optimisers' step), on
    ``batch`` and the next 8 pairs; the discriminator's input of each."""
    brain.grad_accumulation_factor = 2
    second = collate_pairs([brain.train_pairs[i] for i in range(8, 16)])
    forward, features = brain.compute_forward, []

    def kept(*args):
        outputs = forward(*args)
        features.append(outputs[1].detach().clone())
        return outputs

    monkeypatch.setattr(brain, "compute_forward", kept)
    for step, micro_batch in ((5, batch), (6, second)):
        brain.step = step
        brain.fit_batch(micro_batch)
    labels = [part[0].spk_id_encoded.data for part in (batch, second)]
    return [DomainItems.of(f, spk) for f, spk in zip(features, labels)]


@pytest.mark.parametrize("adversary", GANS)
def test_with_gradient_accumulation_a_gans_discriminator_steps_once_per_step_on_its_batches(
        demo_corpus, tmp_path, adversary, monkeypatch):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, adversary)
    discriminator = brain.modules.domain_discriminator
    expected = copy.deepcopy(discriminator)
    # SGD, whose updates are as close as the gradients (Adam's of a gradient near 0 are not).
    brain.disc_optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.1)
    optimizer = torch.optim.SGD(expected.parameters(), lr=0.1)
    items = accumulated_step(brain, batch, monkeypatch)
    # Its two updates (disc_steps) of the step, each on the mean loss of both batches,
    # as on one batch of their pairs, not two at each of them.
    for _ in range(2):
        loss = sum(brain.adversary.discriminator_loss(expected(i.features), i) for i in items)
        (loss / 2).backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, p in expected.named_parameters():
        assert torch.allclose(p, discriminator.get_parameter(name), atol=1e-6), name


def test_with_gradient_accumulation_reversals_own_update_reads_both_batches(
        demo_corpus, tmp_path, monkeypatch):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    read, loss_of = [], brain.adversary.discriminator_loss
    monkeypatch.setattr(brain.adversary, "discriminator_loss", lambda logits, items: read.append(
        items.features) or loss_of(logits, items))
    items = accumulated_step(brain, batch, monkeypatch)
    # The joint loss of each micro-batch (and its logged domain_loss), then the one
    # update of its own (disc_steps=2), on both.
    assert len(read) == 6
    assert all(torch.equal(own, i.features) for own, i in zip(read[4:], items))


@pytest.mark.parametrize("adversary", ["grl", "vanilla"])
def test_each_steps_discriminator_updates_read_that_steps_batch_alone(demo_corpus, tmp_path,
                                                                      adversary, monkeypatch):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, adversary)
    second = collate_pairs([brain.train_pairs[i] for i in range(8, 16)])
    read, train = [], brain.train_discriminator
    monkeypatch.setattr(brain, "train_discriminator", lambda steps: steps and read.append(
        [items.features.clone() for items in brain.domain_items]) or train(steps))
    forward, features = brain.compute_forward, []
    monkeypatch.setattr(brain, "compute_forward", lambda *args: features.append(
        forward(*args)) or features[-1])
    for step, pair in ((5, batch), (6, second)):
        brain.step = step
        brain.fit_batch(pair)
    # Without gradient accumulation each step's own updates read its one batch, not
    # the earlier steps' batches again.
    assert [len(r) for r in read] == [1, 1]
    own = DomainItems.of(features[1][1].detach(), second[0].spk_id_encoded.data)
    assert torch.equal(read[1][0], own.features)


@pytest.mark.parametrize("adversary", ADVERSARIES)
def test_the_discriminator_is_updated_disc_steps_times_per_step(demo_corpus, tmp_path,
                                                                 adversary, monkeypatch):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, adversary, disc_steps=3)
    steps, step = [], brain.disc_optimizer.step
    monkeypatch.setattr(brain.disc_optimizer, "step",
                        lambda *args, **kwargs: steps.append(1) or step(*args, **kwargs))
    brain.fit_batch(batch)
    # A GAN's three own updates; gradient reversal's joint one, then two of its own.
    assert len(steps) == 3


@pytest.mark.parametrize("adversary", ["grl", "vanilla"])
def test_a_non_finite_discriminator_loss_stops_before_it_reaches_the_weights(
        demo_corpus, tmp_path, adversary):
    # An exploding discriminator: its second update's loss is not finite (gradient
    # reversal's after the optimisers' step, which no other check would see).
    brain, batch = brain_and_batch(demo_corpus, tmp_path, adversary)
    for group in brain.disc_optimizer.param_groups:
        group["lr"] = 1e30
    with pytest.raises(RuntimeError, match=r"Non-finite discriminator loss at epoch 1, step 5: "
                                           r".*Lower disc_lr"):
        brain.fit_batch(batch)
    assert all(torch.isfinite(p).all() for p in brain.modules.domain_discriminator.parameters())


@pytest.mark.parametrize("adversary", ADVERSARIES)
def test_the_discriminator_learns_during_the_warm_up(demo_corpus, tmp_path, adversary):
    # Step 5 of 1 epoch, within the first half of training.
    brain, batch = brain_and_batch(demo_corpus, tmp_path, adversary, warmup=0.5)
    assert brain.hparams.adv_schedule(brain.progress()) == 0.0
    before = parameters(brain)
    brain.fit_batch(batch)
    assert brain.stats.means()["adv_coefficient"] == 0.0
    assert "domain_discriminator" in changed(brain, before)


@pytest.mark.parametrize("warmup", [0.0, 0.5])
def test_alignment_losses_join_the_loss_weighted_on_the_adversarys_ramp(demo_corpus, tmp_path,
                                                                       warmup):
    # Step 5 of 8 epochs of 15: past a warm-up of 0, within one of half the training.
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl", warmup=warmup, losses=[
        "--coral_weight=0.5", "--mmd_weight=0.3", "--pseudo_label_epochs=[]"])
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    source, target = outputs[0][:8].detach(), outputs[0][8:].detach()
    alignment = 0.5 * coral_loss(source, target) + 0.3 * mmd_loss(source, target)
    assert alignment.item() > 0
    progress = 5 / (8 * 15)
    ramp = 0.0 if progress < warmup else 2 / (1 + math.exp(-10 * progress)) - 1
    logged = brain.stats.means()
    assert logged["adv_coefficient"] == pytest.approx(0.3 * ramp, rel=1e-6)  # --adv_weight=0.3
    # Gradient reversal's loss is the domain loss itself, at weight 1.
    assert loss.item() == pytest.approx(
        logged["speaker_loss"] + logged["domain_loss"] + ramp * alignment.item(), rel=1e-5)


def test_an_alignment_loss_at_weight_zero_is_not_logged(demo_corpus, tmp_path):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl", losses=[
        "--coral_weight=0.5", "--mmd_weight=0", "--pseudo_label_epochs=[]"])
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    # The epoch's line reports the losses that train, not MMD's of a run without it.
    logged = brain.stats.means()
    assert "coral_loss" in logged and "mmd_loss" not in logged


def test_reversal_updates_both_players_from_one_loss(demo_corpus, tmp_path):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    before = parameters(brain)
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert brain.adversary.updates_before == 0
    loss = brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    assert changed(brain, before) == set()
    loss.backward()
    brain.optimizers_step()
    assert changed(brain, before) == {"embedding_model", "speaker_head", "domain_discriminator"}


def test_the_speaker_head_gets_the_source_crops_and_the_discriminator_each_crops_domain(
        demo_corpus, tmp_path):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    brain.modules.eval()  # no dropout, running statistics: each crop's embedding is its own
    source, target = batch
    embeddings, features = brain.compute_forward(batch, sb.Stage.TRAIN)
    with torch.no_grad():
        alone = [brain.embed(part.sig.data, part.sig.lengths) for part in batch]
        torch.testing.assert_close(embeddings, torch.cat(alone))
        brain.compute_objectives((embeddings, features), batch, sb.Stage.TRAIN)
        labels = source.spk_id_encoded.data
        speaker_loss, _ = brain.modules.speaker_head(alone[0], labels, alone[1], target.id)
        items = DomainItems.of(torch.cat(alone), labels)  # the source crops first
        domain_loss = brain.adversary.discriminator_loss(
            brain.modules.domain_discriminator(items.features), items)
    logged = brain.stats.means()
    assert logged["speaker_loss"] == pytest.approx(speaker_loss.item(), rel=1e-5)
    assert logged["domain_loss"] == pytest.approx(domain_loss.item(), rel=1e-5)


def test_auxiliary_classifier_discriminator_has_a_speaker_output(demo_corpus, tmp_path):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "auxiliary_classifier")
    output = brain.modules.domain_discriminator(torch.zeros(1, 32))
    assert output.shape == (1, 2 + 24)  # two domains, 24 source speakers


RESNET_TINY = [t for t in TINY if not t.startswith("--channels")] + ["--channels=[8, 8, 16, 16]"]


@pytest.mark.parametrize("hparams, extra", [
    ("dann_fbank", ["--margin_type=am"]),
    ("dann_resnet", []),
    *[("gan_resnet", [f"--adversary={adversary}"]) for adversary in GANS],
], ids=["am_softmax", "resnet", *GANS])
def test_variant_trains_a_few_steps_and_verifies(demo_corpus, tmp_path, hparams, extra):
    tiny = RESNET_TINY if "resnet" in hparams else TINY
    results = train(demo_corpus, tmp_path, "--number_of_epochs=2", "--adv_warmup=0",
                    "--lr=0.01", "--debug", "--debug_batches=4", "--debug_epochs=2", *extra,
                    hparams=f"hparams/{hparams}.yaml", tiny=tiny)
    speaker_loss = logged(tmp_path, "speaker_loss")
    # Trained, the second epoch's loss is 0.81-0.95 x the first's; with --lr=0
    # (no step) the same batches give 0.98-1.06 x.
    assert speaker_loss[1] < 0.97 * speaker_loss[0], speaker_loss
    if hparams == "gan_resnet":
        assert all(np.isfinite(logged(tmp_path, "embedding_adv_loss")))
        assert logged(tmp_path, "adv_coefficient")[1] > 0
    assert set(results) >= {"source", "target"}
    assert all(np.isfinite(metrics["eer"]) for metrics in results.values())


@pytest.mark.parametrize("adversary", ["grl", "vanilla"])
def test_run_killed_between_discriminator_updates_resumes_to_the_same_weights(
        demo_corpus, tmp_path, monkeypatch, adversary):
    # Two discriminator updates a step (gradient reversal's second after the
    # optimisers' step); a checkpoint after step 5 of 15, killed in step 8.
    args = ("--number_of_epochs=1", "--ckpt_interval_steps=5", f"--adversary={adversary}",
            "--disc_steps=2", "--adv_weight=0.3", "--adv_warmup=0", *ADVERSARY_ONLY)
    train(demo_corpus, tmp_path / "whole", *args)
    killed_at_batch(8, monkeypatch, demo_corpus, tmp_path / "killed", *args)
    original, resumed_steps = DANNBrain.fit_batch, []
    monkeypatch.setattr(DANNBrain, "fit_batch", lambda self, batch: resumed_steps.append(
        self.step) or original(self, batch))
    train(demo_corpus, tmp_path / "killed", *args)
    assert resumed_steps == list(range(6, 16))  # from the checkpoint after step 5
    for name in ("embedding_model", "domain_discriminator", "disc_optimizer"):
        assert same(newest_weights(tmp_path / "whole", name),
                    newest_weights(tmp_path / "killed", name)), name


def same(a, b):
    """Whether two checkpointed values (tensors in dicts and lists) are equal."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def test_each_optimisers_step_takes_the_mean_gradient_of_its_micro_batches_alone(
        demo_corpus, tmp_path, monkeypatch):
    # Two steps of --grad_accumulation_factor=2, unclipped: each step's gradient is the
    # mean of its two micro-batches' gradients, taken at the start of the step, and none
    # of the step before it.
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    brain.grad_accumulation_factor, brain.max_grad_norm = 2, 0.0
    batches = [batch] + [collate_pairs([brain.train_pairs[i] for i in range(start, start + 8)])
                         for start in (8, 16, 24)]
    trained = [p for p in brain.modules.parameters() if p.requires_grad]
    taken, step = [], brain.optimizer.step
    monkeypatch.setattr(brain.optimizer, "step", lambda *args, **kwargs: taken.append(
        [None if p.grad is None else p.grad.clone() for p in trained]) or step(*args, **kwargs))

    def gradient(micro_batch, number):
        # At the step's progress (the reversal's coefficient) and with its seed (the
        # discriminator's dropout), as fit_batch takes them.
        brain.step = number
        torch.manual_seed(random_seed(brain.hparams.seed, STEP_STREAM, 1, number))
        outputs = brain.compute_forward(micro_batch, sb.Stage.TRAIN)
        loss = brain.compute_objectives(outputs, micro_batch, sb.Stage.TRAIN)
        return torch.autograd.grad(loss, trained, allow_unused=True)

    expected = []
    for first in (5, 7):
        state = copy.deepcopy(brain.modules.state_dict())  # the forwards move running statistics
        pair = [gradient(batches[first - 5 + i], first + i) for i in range(2)]
        expected.append([None if a is None else (a + b) / 2 for a, b in zip(*pair)])
        brain.modules.load_state_dict(state)
        for number in (first, first + 1):
            brain.step = number
            brain.fit_batch(batches[number - 5])
    assert len(taken) == 2
    for got, want in zip(taken, expected):
        assert sum(g is not None for g in got) > 10
        for g, w in zip(got, want):
            assert (g is None) == (w is None)
            if g is not None:
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_each_epoch_logs_the_means_of_its_own_steps(demo_corpus, tmp_path):
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl")
    losses = []
    for epoch, micro_batch in enumerate((batch, collate_pairs(
            [brain.train_pairs[i] for i in range(8, 16)])), start=1):
        embeddings, features = brain.compute_forward(micro_batch, sb.Stage.TRAIN)
        brain.compute_objectives((embeddings, features), micro_batch, sb.Stage.TRAIN)
        source, target = micro_batch
        with torch.no_grad():
            loss, _ = brain.modules.speaker_head(embeddings[:8], source.spk_id_encoded.data,
                                                 embeddings[8:], target.id)
        losses.append(loss.item())
        brain.on_stage_end(sb.Stage.TRAIN, 1.0, epoch)
        # The epoch's one step, not the mean over the epochs so far.
        assert brain.train_stats["speaker_loss"] == pytest.approx(losses[-1], rel=1e-6)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_each_epoch_trains_on_the_pairing_drawn_for_it(demo_corpus, tmp_path):
    brain, _ = brain_and_batch(demo_corpus, tmp_path, "grl")
    pairs = brain.train_pairs

    def pairing(epoch):
        brain.on_stage_start(sb.Stage.TRAIN, epoch)
        return [(pairs[i][0]["id"], pairs[i][1]["id"]) for i in range(32)]

    first, second = pairing(1), pairing(2)
    assert sum(a != b for a, b in zip(first, second)) > 16
    assert pairing(1) == first  # from (seed, epoch) alone


def test_the_pseudo_labels_cluster_the_embeddings_of_the_model_in_evaluation_mode(
        demo_corpus, tmp_path, monkeypatch):
    # Called from training, where the modules are in training mode: batch
    # statistics, and running statistics that the target's embedding would move.
    brain, _ = brain_and_batch(demo_corpus, tmp_path, "grl",
                               losses=["--mmd_weight=0", "--pseudo_label_epochs=[1]"])
    pseudo, clustered = brain.hparams.pseudo_labels, []
    relabel = pseudo.relabel
    monkeypatch.setattr(pseudo, "relabel", lambda embeddings, *args: clustered.append(
        embeddings) or relabel(embeddings, *args))
    brain.update_pseudo_labels(1)
    brain.modules.eval()
    expected = compute_embeddings(brain.embed, brain.target_utterances,
                                  brain.hparams.eval_batch_size, ids=brain.clustered_ids(),
                                  limits=brain.embed_limits())
    assert len(clustered) == 1 and clustered[0].keys() == expected.keys()
    assert all(torch.equal(clustered[0][utt], expected[utt]) for utt in expected)



def test_a_target_manifest_of_empty_speakers_gets_no_nmi_in_the_log(demo_corpus, tmp_path,
                                                                    monkeypatch):
    """An empty spk_id is no speaker: the NMI against it would be of a made-up speaker."""
    brain, _ = brain_and_batch(demo_corpus, tmp_path, "grl",
                               losses=["--mmd_weight=0", "--pseudo_label_epochs=[1]"])
    for row in brain.target_utterances.data.values():
        row["spk_id"] = ""
    pseudo, summaries = brain.hparams.pseudo_labels, []
    relabel = pseudo.relabel

    def recorded(*args):
        centroids, summary = relabel(*args)
        summaries.append(summary)
        return centroids, summary

    monkeypatch.setattr(pseudo, "relabel", recorded)
    brain.update_pseudo_labels(1)
    assert len(summaries) == 1 and summaries[0]["clusters"] >= 1 and "nmi" not in summaries[0]

def test_reversals_discriminator_is_stepped_by_its_own_optimiser_alone(demo_corpus, tmp_path):
    # Its learning rate is disc_lr: at 0, the joint step leaves it as it was.
    brain, batch = brain_and_batch(demo_corpus, tmp_path, "grl", disc_steps=1)
    for group in brain.disc_optimizer.param_groups:
        group["lr"] = 0.0
    before = parameters(brain)
    brain.fit_batch(batch)
    assert changed(brain, before) == {"embedding_model", "speaker_head"}
