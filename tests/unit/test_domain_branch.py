"""Gradient reversal, the schedule of the domain losses, the discriminator and its layer tap."""

import math
import re

import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from local.errors import ManifestError
from local.model.adversaries import reverse_gradient
from local.model.domain_branch import (
    AdversarialSchedule,
    DomainDiscriminator,
    LayerOutputTap,
    ganin_lambda,
)


@pytest.mark.parametrize("coefficient", [0.0, 0.3, 1.0, 2.5])
def test_reversal_is_identity_forward_and_negated_scaled_backward(coefficient):
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, coefficient)
    assert torch.equal(y, x)
    upstream = torch.tensor([0.5, 1.0, -4.0])
    y.backward(upstream)
    assert torch.equal(x.grad, -coefficient * upstream)


def test_reversal_flips_the_direction_of_descent():
    weight = torch.tensor([2.0], requires_grad=True)
    loss = (reverse_gradient(weight, 1.0) - 5.0) ** 2
    loss.backward()
    # d/dw (w - 5)^2 = -6 at w = 2: descent moves w towards 5; reversed, away from it.
    assert weight.grad.item() == 6.0


@pytest.mark.parametrize("progress", [0.0, 0.1, 0.5, 1.0])
def test_ganin_lambda_matches_formula(progress):
    assert ganin_lambda(progress, 10.0) == pytest.approx(2 / (1 + math.exp(-10 * progress)) - 1)


def test_schedule_warmup_then_ramp_scaled_by_weight():
    schedule = AdversarialSchedule(weight=0.5, gamma=10.0, warmup=0.4)
    assert schedule(0.0) == schedule(0.39) == 0.0
    assert schedule(0.4) == 0.0
    assert schedule(0.7) == pytest.approx(0.5 * ganin_lambda(0.5, 10.0))
    assert schedule(1.0) == pytest.approx(0.5 * ganin_lambda(1.0, 10.0))
    assert AdversarialSchedule(weight=0.0)(0.9) == 0.0
    with pytest.raises(ValueError, match="adv_warmup must be in"):
        AdversarialSchedule(warmup=1.0)


@pytest.mark.parametrize("gamma", [2.0, 10.0])
def test_the_schedule_ramps_with_its_own_steepness(gamma):
    schedule = AdversarialSchedule(weight=0.5, gamma=gamma, warmup=0.2)
    # Half of the ramp's span after the warm-up.
    assert schedule(0.6) == pytest.approx(0.5 * (2 / (1 + math.exp(-gamma * 0.5)) - 1))
    assert schedule.ramp(0.6) == pytest.approx(2 / (1 + math.exp(-gamma * 0.5)) - 1)


def test_discriminator_shapes():
    disc = DomainDiscriminator(12, [16, 8], n_domains=3)
    assert disc(torch.rand(5, 12)).shape == (5, 3)
    assert disc(torch.rand(5, 1, 12)).shape == (5, 1, 3)
    assert disc(torch.rand(5, 20, 12)).shape == (5, 20, 3)


def _adversarial_gradients(coefficient):
    torch.manual_seed(0)
    encoder = ECAPA_TDNN(20, channels=[16, 16, 16, 16, 48], lin_neurons=8)
    disc = DomainDiscriminator(8, [16])
    feats = torch.randn(6, 50, 20)
    domains = torch.tensor([0, 0, 0, 1, 1, 1])
    logits = disc(reverse_gradient(encoder(feats), coefficient)).squeeze(1)
    torch.nn.functional.cross_entropy(logits, domains).backward()
    return encoder, disc


def test_weight_zero_gives_exactly_zero_adversarial_gradient_to_the_encoder():
    encoder, disc = _adversarial_gradients(AdversarialSchedule(weight=0.0)(0.8))
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in encoder.parameters())
    assert any(torch.count_nonzero(p.grad) > 0 for p in disc.parameters())


def test_encoder_gradient_is_the_reversed_discriminator_gradient():
    plain, _ = _adversarial_gradients(-1.0)  # coefficient -1: no reversal at all
    reversed_, _ = _adversarial_gradients(0.5)
    for p, q in zip(plain.parameters(), reversed_.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0  # every layer is reached
        assert torch.allclose(q.grad, -0.5 * p.grad, atol=1e-7)


def test_frame_level_discriminator_reaches_only_the_layers_below_its_tap():
    torch.manual_seed(0)
    encoder = ECAPA_TDNN(20, channels=[16, 16, 16, 16, 48], lin_neurons=8)
    tap = LayerOutputTap(encoder, "mfa")
    disc = DomainDiscriminator(48, [16])
    encoder(torch.randn(4, 30, 20))
    frames = tap.frames(48)
    assert frames.shape == (4, 30, 48)  # ECAPA's mfa is channels-first: transposed
    logits = disc(reverse_gradient(frames, 1.0))
    domains = torch.tensor([0, 0, 1, 1]).repeat_interleave(30)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 2), domains).backward()
    below = [p for name, p in encoder.named_parameters() if name.startswith(("blocks", "mfa"))]
    above = [p for name, p in encoder.named_parameters() if name.startswith(("asp", "fc"))]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in below)
    assert all(p.grad is None for p in above)


def test_tap_names_the_layers_when_one_is_unknown():
    encoder = ECAPA_TDNN(20, channels=[16, 16, 16, 16, 48], lin_neurons=8)
    with pytest.raises(ManifestError, match=r"^--adv_layer=pool: adv_layer 'pool' is not a "
                                            r"layer of ECAPA_TDNN; its layers are: blocks, .*mfa"
                                            r".*\nFix: pass one of them, or --adv_layer=null for "
                                            r"the pooled embedding$"):
        LayerOutputTap(encoder, "pool")
    tap = LayerOutputTap(encoder, "mfa")
    encoder(torch.randn(2, 30, 20))
    with pytest.raises(ValueError, match=r"outputs \(2, 48, 30\)\nFix: set adv_input_size"):
        tap.frames(8)


@pytest.mark.parametrize("layer, inputs, problem", [
    # A 2-D convolution (as in a ResNet) outputs [batch, channels, frequency, time].
    (torch.nn.Conv2d(1, 4, 1), torch.rand(2, 1, 5, 6), "gave no [batch, time, features] output"),
    # Six frames of six features: which axis holds the features cannot be told.
    (torch.nn.Conv1d(4, 6, 1), torch.rand(2, 4, 6), "outputs (2, 6, 6)"),
])
def test_a_tapped_output_that_is_not_frames_of_known_features_is_refused(layer, inputs, problem):
    model = torch.nn.Sequential(layer)
    tap = LayerOutputTap(model, "0")
    model(inputs)
    with pytest.raises(ManifestError, match=re.escape(problem)):
        tap.frames(6)


def test_the_discriminators_dropout_drops_hidden_units_in_training_only():
    torch.manual_seed(0)
    disc = DomainDiscriminator(8, [64], dropout=0.5)
    inputs = torch.rand(4, 8)
    assert not torch.equal(disc(inputs), disc(inputs))
    disc.eval()
    assert torch.equal(disc(inputs), disc(inputs))
