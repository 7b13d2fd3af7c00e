"""CORAL and MMD losses against their formulas, computed directly with numpy."""

import numpy as np
import pytest
import torch

from local.model.alignment import coral_loss, mmd_loss


def unit(matrix):
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture
def batches():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(12, 5)) * [1, 2, 3, 1, 1]
    target = rng.normal(size=(9, 5)) + [3, 0, 0, 1, 0]
    return source, target


def test_coral_is_the_squared_distance_of_the_covariances(batches):
    source, target = batches
    expected = ((np.cov(unit(source), rowvar=False) - np.cov(unit(target), rowvar=False)) ** 2).sum()
    loss = coral_loss(torch.from_numpy(source), torch.from_numpy(target)[:, None, :])
    assert float(loss) == pytest.approx(expected, rel=1e-10)


# The factors scale the median (wider kernels above 1); (0.5, 2.0) alone is its own
# inverse, so it could not tell factor * median from median / factor.
@pytest.mark.parametrize("factors", [(0.5, 2.0), (0.5, 3.0)])
def test_mmd_is_the_biased_estimate_with_a_sum_of_gaussian_kernels(batches, factors):
    source, target = unit(batches[0]), unit(batches[1])
    joint = np.concatenate([source, target])
    squared = ((joint[:, None] - joint[None]) ** 2).sum(-1)
    median = np.median(squared[~np.eye(len(joint), dtype=bool)])

    def kernel(x, y):
        d2 = ((x - y) ** 2).sum()
        return sum(np.exp(-d2 / (f * median)) for f in factors)

    def mean_kernel(xs, ys):
        return np.mean([kernel(x, y) for x in xs for y in ys])

    expected = (mean_kernel(source, source) + mean_kernel(target, target)
                - 2 * mean_kernel(source, target))
    loss = mmd_loss(torch.from_numpy(batches[0]), torch.from_numpy(batches[1]),
                    bandwidth_factors=factors)
    assert float(loss) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("loss_fn", [coral_loss, mmd_loss])
def test_a_gradient_step_on_the_target_brings_the_domains_closer(batches, loss_fn):
    source = torch.from_numpy(batches[0])
    target = torch.from_numpy(batches[1]).requires_grad_()
    before = loss_fn(source, target)
    before.backward()
    with torch.no_grad():
        after = loss_fn(source, target - 0.05 * target.grad / target.grad.norm())
    assert 0 < after < before


@pytest.mark.parametrize("loss_fn", [coral_loss, mmd_loss])
def test_norms_do_not_count_only_directions(batches, loss_fn):
    source, target = (torch.from_numpy(b) for b in batches)
    scales = torch.linspace(0.1, 10, len(target))[:, None].double()
    assert float(loss_fn(source, target * scales)) == pytest.approx(float(loss_fn(source, target)))


def test_mmd_of_a_collapsed_batch_is_zero():
    same = torch.ones(4, 3)
    assert float(mmd_loss(same, same)) == 0.0


def test_mmd_gradient_holds_the_kernel_bandwidth_constant(batches):
    """The median distance that sets the bandwidths is a constant for the gradient."""
    source, target = batches
    moved = torch.from_numpy(target).requires_grad_()
    mmd_loss(torch.from_numpy(source), moved).backward()

    units = unit(np.concatenate([source, target]))
    squared = ((units[:, None] - units[None]) ** 2).sum(-1)
    median = np.median(squared[~np.eye(len(units), dtype=bool)])

    def fixed_bandwidth_mmd(target_rows):
        joint = np.concatenate([unit(source), unit(target_rows)])
        d2 = ((joint[:, None] - joint[None]) ** 2).sum(-1)
        kernel = sum(np.exp(-d2 / (f * median)) for f in (0.25, 0.5, 1.0, 2.0, 4.0))
        n = len(source)
        return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()

    # Central differences at every coordinate: the median's pair of items is among them.
    step, numeric = 1e-6, np.zeros_like(target)
    for index in np.ndindex(*target.shape):
        up, down = target.copy(), target.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (fixed_bandwidth_mmd(up) - fixed_bandwidth_mmd(down)) / (2 * step)
    np.testing.assert_allclose(moved.grad.numpy(), numeric, rtol=1e-5, atol=1e-9)
