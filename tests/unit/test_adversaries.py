"""The adversaries' and the margin softmax's losses against their formulas."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from local.model.adversaries import ADVERSARIES, DomainItems, make_adversary, source_score
from local.model.domain_branch import DomainDiscriminator
from local.model.speaker_heads import margin_softmax_loss

GANS = [a for a in ADVERSARIES if a != "grl"]

# Three source items then three target items: two domain logits and four speaker logits.
LOGITS = torch.tensor([[2.0, -1.0, 0.5, 0.1, -0.3, 1.2],
                       [0.3, 0.4, -1.0, 2.0, 0.0, 0.3],
                       [1.0, 1.5, 0.2, 0.2, 0.9, -0.4],
                       [-0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
                       [0.7, -0.2, 1.0, 1.0, 1.0, 1.0],
                       [-1.0, 1.0, 0.3, -0.3, 0.3, -0.3]])
SPEAKERS = torch.tensor([2, 0, 3])
# The logits' items: three source then three target (the losses read no features).
ITEMS = DomainItems(torch.zeros(6, 1), 3, SPEAKERS)


def discriminator_loss(adversary, logits, smoothing=0.0):
    return make_adversary(adversary, smoothing).discriminator_loss(logits, ITEMS)


def embedding_loss(adversary, logits):
    return make_adversary(adversary).game_loss(logits, ITEMS)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def speaker_ce(logits, speakers):
    aux = logits[:3, 2:]
    return np.mean([np.log(np.exp(row).sum()) - row[s] for row, s in zip(aux, speakers)])


def expected(adversary, player, smoothing=0.0):
    """The losses written out from the papers' formulas, in numpy."""
    logits, speakers = LOGITS.double().numpy(), SPEAKERS.numpy()
    score = logits[:, 0] - logits[:, 1]
    source, target = score[:3], score[3:]
    high, low = 1 - smoothing / 2, smoothing / 2
    if adversary == "least_squares":
        if player == "discriminator":
            return 0.5 * np.mean((source - high) ** 2) + 0.5 * np.mean((target - low) ** 2)
        return np.mean((target - 1) ** 2)
    if adversary == "relativistic":
        if player == "discriminator":
            relative = source - target
            return np.mean(-high * np.log(sigmoid(relative))
                           - low * np.log(1 - sigmoid(relative)))
        return np.mean(-np.log(sigmoid(target - source)))
    if player == "discriminator":
        loss = 0.5 * np.mean(-high * np.log(sigmoid(source)) - low * np.log(sigmoid(-source)))
        loss += 0.5 * np.mean(-low * np.log(sigmoid(target)) - high * np.log(sigmoid(-target)))
    else:
        loss = np.mean(-np.log(sigmoid(target)))
    if adversary == "auxiliary_classifier":
        loss += speaker_ce(logits, speakers)
    return loss


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("adversary", ADVERSARIES)
def test_discriminator_loss_is_the_formula(adversary, smoothing):
    logits = LOGITS if adversary == "auxiliary_classifier" else LOGITS[:, :2]
    loss = discriminator_loss(adversary, logits, smoothing)
    assert float(loss) == pytest.approx(expected(adversary, "discriminator", smoothing), rel=1e-6)


@pytest.mark.parametrize("adversary", GANS)
def test_embedding_loss_is_the_formula(adversary):
    logits = LOGITS if adversary == "auxiliary_classifier" else LOGITS[:, :2]
    loss = embedding_loss(adversary, logits)
    assert float(loss) == pytest.approx(expected(adversary, "embedding"), rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_reversal_discriminator_loss_is_two_class_cross_entropy(smoothing):
    domains = torch.tensor([0, 0, 0, 1, 1, 1])
    reference = F.cross_entropy(LOGITS[:, :2], domains, label_smoothing=smoothing)
    assert torch.allclose(discriminator_loss("grl", LOGITS[:, :2], smoothing),
                          reference)


@pytest.mark.parametrize("adversary", GANS)
def test_players_pull_the_source_score_of_target_items_in_opposite_directions(adversary):
    logits = LOGITS.clone().requires_grad_()
    disc_grad, = torch.autograd.grad(discriminator_loss(adversary, logits), logits)
    emb_grad, = torch.autograd.grad(embedding_loss(adversary, logits), logits)
    # Direction of a gradient step on the target items' score C = l0 - l1:
    # the embedding network raises it (towards 1 for least squares, all of
    # these scores being below 1), the discriminator lowers it (towards 0).
    step = lambda grad: torch.sign(-(grad[3:, 0] - grad[3:, 1]))  # noqa: E731
    score = (LOGITS[3:, 0] - LOGITS[3:, 1])
    assert (step(emb_grad) == 1).all()
    down = torch.sign(-score) if adversary == "least_squares" else -torch.ones(3)
    assert torch.equal(step(disc_grad), down)


def test_reversal_has_no_embedding_loss_of_its_own():
    with pytest.raises(NotImplementedError):
        embedding_loss("grl", LOGITS[:, :2])


@pytest.mark.parametrize("kind, margin_of", [
    ("aam", lambda cos, m: np.cos(np.arccos(cos) + m)),
    ("am", lambda cos, m: cos - m),
])
def test_margin_softmax_losses_are_the_formulas(kind, margin_of):
    cosines = torch.tensor([[[0.6, 0.2, -0.1]], [[0.1, 0.7, 0.3]]])
    labels = torch.tensor([[0], [2]])
    loss = margin_softmax_loss(kind, margin=0.3, scale=10.0)(cosines, labels)
    direct = []
    for row, label in zip(cosines.squeeze(1).double().numpy(), labels.squeeze(1).numpy()):
        logits = 10.0 * row
        logits[label] = 10.0 * margin_of(row[label], 0.3)
        direct.append(np.log(np.exp(logits).sum()) - logits[label])
    assert float(loss) == pytest.approx(np.mean(direct), rel=1e-5)


def test_aam_softmax_beyond_pi_takes_arcfaces_linear_penalty_and_keeps_rising_with_the_angle():
    # Margin 0.3: cos θ below cos(π - 0.3) = -0.955 has θ + m beyond π, where the target
    # logit is s (cos θ - m sin m), not cos(θ + m) (which would fall again with θ).
    margin, scale = 0.3, 10.0
    loss_fn = margin_softmax_loss("aam", margin=margin, scale=scale)
    losses = []
    for cosine in (-0.99, -0.97):
        row = np.array([cosine, 0.2, 0.1])
        logits = scale * row
        logits[0] = scale * (cosine - margin * np.sin(margin))
        direct = np.log(np.exp(logits).sum()) - logits[0]
        loss = float(loss_fn(torch.tensor([[row.tolist()]]), torch.tensor([[0]])))
        assert loss == pytest.approx(direct, rel=1e-5)
        losses.append(loss)
    assert losses[0] > losses[1]  # the larger angle costs more




def test_items_are_every_frame_of_every_crop_each_with_its_crop_speaker():
    # Two source crops then two target crops, three frames each.
    features = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(4, 3, 2)
    items = DomainItems.of(features, torch.tensor([7, 5]))
    assert items.n_source == 6
    assert items.speakers.tolist() == [7, 7, 7, 5, 5, 5]
    for row in range(12):
        assert torch.equal(items.features[row], features[row // 3, row % 3])


def identity_discriminator(size):
    """A linear discriminator that outputs its input: the items are their own logits."""
    discriminator = torch.nn.Linear(size, size, bias=False)
    with torch.no_grad():
        discriminator.weight.copy_(torch.eye(size))
    return discriminator


@pytest.mark.parametrize("adversary", [a for a in ADVERSARIES if a != "relativistic"])
def test_logged_domain_accuracy_counts_the_items_the_discriminator_places_right(adversary):
    logits = LOGITS.clone()
    logits[4, :2] = torch.tensor([-0.2, 0.7])  # four of the six items placed right
    logits = logits if adversary == "auxiliary_classifier" else logits[:, :2]
    items = DomainItems(logits.clone(), 3, SPEAKERS)
    _, log = make_adversary(adversary).encoder_loss(identity_discriminator(logits.shape[1]),
                                                    items, 0.5)
    domains = np.array([0, 0, 0, 1, 1, 1])
    predicted = logits[:, :2].numpy().argmax(axis=1)
    assert np.mean(predicted == domains) == pytest.approx(4 / 6)
    assert float(log["domain_accuracy"]) == pytest.approx(np.mean(predicted == domains))
    # The loss at telling the domains apart: the auxiliary classifier's is vanilla's.
    domain_part = "vanilla" if adversary == "auxiliary_classifier" else adversary
    assert float(log["domain_loss"]) == pytest.approx(
        float(make_adversary(domain_part).discriminator_loss(logits[:, :2], ITEMS)))


@pytest.mark.parametrize("shift", [-5.0, -0.8, 0.0, 3.0])
def test_relativistic_accuracy_counts_the_pairs_ranked_right_wherever_the_scores_sit(shift):
    # The relativistic losses see only score differences: a discriminator whose
    # scores are all shifted by a constant is the same discriminator.
    logits = LOGITS[:, :2].clone()
    logits[:, 0] += shift
    items = DomainItems(logits.clone(), 3, SPEAKERS)
    _, log = make_adversary("relativistic").encoder_loss(identity_discriminator(2), items, 0.5)
    score = (logits[:, 0] - logits[:, 1]).numpy()
    pairs_right = np.mean(score[:3] > score[3:])
    assert pairs_right == pytest.approx(2 / 3)  # the second source item is ranked below its pair
    assert float(log["domain_accuracy"]) == pytest.approx(pairs_right)
    assert float(log["domain_loss"]) == pytest.approx(expected("relativistic", "discriminator"))


def test_auxiliary_classifier_logs_its_domain_and_speaker_losses_apart():
    items = DomainItems(LOGITS.clone(), 3, SPEAKERS)
    _, log = make_adversary("auxiliary_classifier").encoder_loss(
        identity_discriminator(LOGITS.shape[1]), items, 0.5)
    assert float(log["domain_loss"]) == pytest.approx(expected("vanilla", "discriminator"))
    assert float(log["auxiliary_speaker_loss"]) == pytest.approx(
        speaker_ce(LOGITS.double().numpy(), SPEAKERS.numpy()), rel=1e-6)
    assert float(log["embedding_adv_loss"]) == pytest.approx(
        expected("auxiliary_classifier", "embedding"), rel=1e-6)


@pytest.mark.parametrize("adversary", GANS)
@pytest.mark.parametrize("coefficient", [0.0, 0.3])
def test_a_gans_encoder_loss_is_its_game_loss_times_the_schedules_coefficient(adversary,
                                                                             coefficient):
    # During the warm-up (coefficient 0) the encoder learns nothing from the game.
    logits = LOGITS if adversary == "auxiliary_classifier" else LOGITS[:, :2]
    features = logits.clone().requires_grad_()
    loss, log = make_adversary(adversary).encoder_loss(
        identity_discriminator(logits.shape[1]), DomainItems(features, 3, SPEAKERS), coefficient)
    game = expected(adversary, "embedding")
    assert float(loss) == pytest.approx(coefficient * game, rel=1e-6)
    assert float(log["embedding_adv_loss"]) == pytest.approx(game, rel=1e-6)
    grad, = torch.autograd.grad(loss, features)
    assert (grad.abs().sum() > 0) == (coefficient > 0)


@pytest.mark.parametrize("adversary", ADVERSARIES)
@pytest.mark.parametrize("disc_steps", [1, 3])
def test_the_updates_before_and_after_the_encoders_step_add_up_to_disc_steps(adversary,
                                                                              disc_steps):
    played = make_adversary(adversary, disc_steps=disc_steps)
    # Gradient reversal's first update is the joint loss's, the others follow it;
    # a GAN's all come before the encoder's loss.
    joint = 1 if adversary == "grl" else 0
    assert played.updates_before + joint + played.updates_after == disc_steps
    assert played.updates_before == (0 if adversary == "grl" else disc_steps)


@pytest.mark.parametrize("score, pushed", [(1.0, "down"), (3.0, "up")])
def test_reversal_with_smoothing_pushes_items_beyond_the_smoothed_label_further_out(score, pushed):
    # Smoothing 0.2: labels 0.9 and 0.1, scores +-log 9 = +-2.2. The encoder's step on a
    # source item (its features are its logits) moves its score towards the target side
    # below log 9 and away from it above.
    features = torch.tensor([[score, 0.0], [-1.0, 0.0]], requires_grad=True)
    items = DomainItems(features, 1, torch.tensor([0]))
    loss, _ = make_adversary("grl", 0.2).encoder_loss(identity_discriminator(2), items, 1.0)
    grad, = torch.autograd.grad(loss, features)
    step = -(grad[0, 0] - grad[0, 1])  # a descent step's change of the source item's score
    assert (step > 0) == (pushed == "up")


# Two items, source then target, with the source's speaker 1: domain logits that give
# C(s) = ln 3 and C(t) = -ln 3 (sigmoids 3/4 and 1/4), speaker logits (0, ln 3).
LN3 = float(np.log(3.0))
TWO = torch.tensor([[LN3, 0.0, 0.0, LN3], [0.0, LN3, 0.0, LN3]])


@pytest.mark.parametrize("adversary, discriminator, encoder", [
    # -(ln 3/4 + ln 3/4) / 2; the non-saturating -ln sigmoid(C(t)) = -ln 1/4.
    ("vanilla", np.log(4 / 3), np.log(4)),
    # ((C(s) - 1)^2 + (C(t) - 0)^2) / 2; (C(t) - 1)^2.
    ("least_squares", ((LN3 - 1) ** 2 + LN3 ** 2) / 2, (LN3 + 1) ** 2),
    # -ln sigmoid(C(s) - C(t)) = -ln sigmoid(ln 9) = -ln 9/10; -ln sigmoid(-ln 9) = ln 10.
    ("relativistic", np.log(10 / 9), np.log(10)),
    # vanilla's plus the source speaker's cross-entropy, -ln 3/4, for both players.
    ("auxiliary_classifier", 2 * np.log(4 / 3), np.log(4) + np.log(4 / 3)),
])
def test_losses_of_two_items_are_the_hand_computed_values(adversary, discriminator, encoder):
    logits = TWO if adversary == "auxiliary_classifier" else TWO[:, :2]
    items = DomainItems(torch.zeros(2, 1), 1, torch.tensor([1]))
    played = make_adversary(adversary)
    assert float(played.discriminator_loss(logits, items)) == pytest.approx(discriminator)
    assert float(played.game_loss(logits, items)) == pytest.approx(encoder)


@pytest.mark.parametrize("adversary", ADVERSARIES)
def test_the_encoders_step_moves_each_item_towards_the_other_domain(adversary):
    """Through ``encoder_loss``, with a discriminator of a hidden layer that tells the items apart.

    A descent step on the items' features raises each target item's source
    score C(t); where the encoder's loss reads the source items' domain scores
    (gradient reversal, relativistic) it lowers each C(s). The auxiliary
    classifier's source items also move for the speaker loss, in no set direction.
    """
    torch.manual_seed(0)
    aux = 3 if adversary == "auxiliary_classifier" else 0
    discriminator = DomainDiscriminator(5, [16], auxiliary_classes=aux)
    features = torch.randn(6, 5)
    items = DomainItems(features, 3, torch.tensor([0, 2, 1]))
    played = make_adversary(adversary)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=0.05)
    for _ in range(100):  # the discriminator learns to tell the items apart
        optimizer.zero_grad()
        played.discriminator_loss(discriminator(features), items).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    score = source_score(discriminator(features)).detach()
    assert score[:3].min() > score[3:].max(), score

    features = features.clone().requires_grad_()
    loss, _ = played.encoder_loss(discriminator, items._replace(features=features), 0.5)
    loss.backward()
    descent = -features.grad
    if adversary != "grl":  # the discriminator learns nothing from the encoder's loss
        assert all(p.grad is None for p in discriminator.parameters())
    # Each item's score depends on its features alone: its change under the step.
    score_gradient = torch.autograd.grad(source_score(discriminator(features)).sum(), features)[0]
    change = (score_gradient * descent).sum(dim=1)
    assert (change[3:] > 0).all(), change
    if adversary in ("grl", "relativistic"):
        assert (change[:3] < 0).all(), change
    elif adversary != "auxiliary_classifier":
        assert (change[:3] == 0).all(), change
