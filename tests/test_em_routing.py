import math

import pytest
import torch

from capsviewer.maths import em_routing, inverse_temperature_schedule
from reference.em_routing import em_routing_loops


def random_problem(batch=2, children=6, parents=3, dim=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    votes = torch.randn(batch, children, parents, dim, generator=g, dtype=dtype)
    activations = torch.rand(batch, children, generator=g, dtype=dtype)
    return votes, activations


def test_responsibilities_sum_to_one_over_parents_at_every_iteration():
    votes, a = random_problem(batch=3, children=20, parents=5, dim=16, dtype=torch.float32)
    result = em_routing(votes, a, 6, inverse_temperature=1.0, trace=True)
    assert len(result.trace) == 6
    torch.testing.assert_close(result.trace[0].responsibilities, torch.full((3, 20, 5), 0.2))
    for step in result.trace:
        torch.testing.assert_close(step.responsibilities.sum(-1), torch.ones(3, 20))
        assert step.mean.shape == step.variance.shape == step.cost.shape == (3, 5, 16)
        assert step.activations.shape == (3, 5)
    torch.testing.assert_close(result.responsibilities.sum(-1), torch.ones(3, 20))
    assert (result.responsibilities - 0.2).abs().max() > 0.1  # routing moved R off uniform
    torch.testing.assert_close(result.poses, result.trace[-1].mean)
    torch.testing.assert_close(result.activations, result.trace[-1].activations)


@pytest.mark.parametrize("schedule", [0.5, (0.1, 0.3, 1.0, 0.05, 0.5)])
def test_vectorised_matches_the_literal_loops(schedule):
    votes, a = random_problem()
    g = torch.Generator().manual_seed(1)
    beta_u = torch.randn(3, generator=g, dtype=torch.float64)
    beta_a = torch.randn(3, generator=g, dtype=torch.float64)
    options = dict(beta_u=beta_u, beta_a=beta_a, inverse_temperature=schedule)
    fast = em_routing(votes, a, 5, trace=True, **options)
    slow = em_routing_loops(votes, a, 5, **options)
    for mine, literal in zip(fast.trace, slow.trace):
        for name in ("responsibilities", "mean", "variance", "activations", "cost"):
            difference = (getattr(mine, name) - getattr(literal, name)).abs().max().item()
            assert difference < 1e-10, name
        assert mine.inverse_temperature == literal.inverse_temperature
    assert (fast.responsibilities - slow.responsibilities).abs().max() < 1e-10
    assert (fast.poses - slow.poses).abs().max() < 1e-10
    assert (fast.activations - slow.activations).abs().max() < 1e-10
    # the activations are neither saturated nor uniform: the comparison says something
    assert 0.05 < slow.activations.min() and slow.activations.max() < 0.99
    assert slow.activations.std() > 0.04


def test_separated_clusters_each_vote_goes_to_its_parent_and_agreement_activates():
    """Children 0–7 vote tightly (σ = 0.01) for parent 0, children 8–15 loosely (σ = 1) for
    parent 1; every other vote is scattered (σ = 10)."""
    g = torch.Generator().manual_seed(0)
    children, dim = 16, 16
    votes = 10.0 * torch.randn(1, children, 2, dim, generator=g, dtype=torch.float64)
    votes[0, :8, 0] = 0.01 * torch.randn(8, dim, generator=g, dtype=torch.float64) + 3.0
    votes[0, 8:, 1] = torch.randn(8, dim, generator=g, dtype=torch.float64) - 2.0
    result = em_routing(votes, torch.ones(1, children, dtype=torch.float64), 3,
                        beta_u=1.0, inverse_temperature=1.0)
    r = result.responsibilities[0]
    assert r[:8, 0].min() > 0.999 and r[8:, 1].min() > 0.999
    a = result.activations[0]
    assert a[0] > 0.999 and a[1] < 1e-3  # the agreeing parent on, the scattered one off
    assert (result.poses[0, 0] - 3.0).abs().max() < 0.02
    assert (result.poses[0, 1] + 2.0).abs().max() < 1.0


def test_three_clusters_and_a_parent_nobody_agrees_with():
    g = torch.Generator().manual_seed(3)
    votes = 5.0 * torch.randn(2, 30, 3, 4, generator=g, dtype=torch.float64)  # scattered
    for k in (0, 1):
        centre = torch.randn(2, 1, 4, generator=g, dtype=torch.float64)
        tight = 0.05 * torch.randn(2, 15, 4, generator=g, dtype=torch.float64)
        votes[:, 15 * k : 15 * (k + 1), k] = centre + tight
    result = em_routing(votes, torch.full((2, 30), 0.9, dtype=torch.float64), 4,
                        inverse_temperature=1.0)
    r = result.responsibilities
    assert r[:, :15, 0].min() > 0.99 and r[:, 15:, 1].min() > 0.99
    a = result.activations
    assert a[:, :2].min() > 0.99 and a[:, 2].max() < 0.5


def test_inverse_temperature_schedule_is_recorded_in_the_trace():
    votes, a = random_problem()
    trace = em_routing(votes, a, 4, inverse_temperature=0.01, trace=True).trace
    expected = [0.01 * (1 - 0.95 ** (t + 1)) for t in range(4)]
    assert [s.inverse_temperature for s in trace] == pytest.approx(expected, rel=1e-12)
    assert expected[0] == pytest.approx(0.0005)
    trace = em_routing(votes, a, 3, inverse_temperature=[1.0, 2.0, 5.0, 9.0], trace=True).trace
    assert [s.inverse_temperature for s in trace] == [1.0, 2.0, 5.0]
    with pytest.raises(ValueError, match="2 inverse temperatures for 3 iterations"):
        em_routing(votes, a, 3, inverse_temperature=[1.0, 2.0])
    assert inverse_temperature_schedule(1.0, 2) == pytest.approx((0.05, 0.0975))
    # the schedule does not depend on the number of iterations: r iterations are a prefix
    short = em_routing(votes, a, 3, trace=True).trace
    long = em_routing(votes, a, 6, trace=True).trace
    for s, t in zip(short, long):
        torch.testing.assert_close(s.mean, t.mean)
        torch.testing.assert_close(s.activations, t.activations)


def test_per_parent_betas_move_the_activations():
    votes, a = random_problem()
    beta_a = torch.tensor([0.0, 5.0, -5.0])
    base = em_routing(votes, a, 1).activations
    shifted = em_routing(votes, a, 1, beta_a=beta_a).activations
    assert shifted[:, 1].gt(base[:, 1]).all() and shifted[:, 2].lt(base[:, 2]).all()
    torch.testing.assert_close(shifted[:, 0], base[:, 0])  # one M-step: parents independent
    base = em_routing(votes, a, 4).activations
    shifted = em_routing(votes, a, 4, beta_a=beta_a).activations
    assert shifted[:, 1].gt(base[:, 1]).all() and shifted[:, 2].lt(base[:, 2]).all()


def _extreme_inputs():
    g = torch.Generator().manual_seed(0)
    shape = (3, 12, 4, 16)
    votes = torch.randn(shape, generator=g)
    ones = torch.ones(3, 12)
    half = torch.rand(3, 12, generator=g)
    return {
        "huge votes": (1e15 * votes, half),
        "tiny votes": (1e-20 * votes, half),
        "zero activations": (votes, torch.zeros(3, 12)),
        "tiny activations": (votes, torch.full((3, 12), 1e-30)),
        "identical votes": (torch.ones(shape), ones),
        "identical votes per parent": (votes[:, :1].expand(shape).clone(), ones),
        "one child far away": (torch.cat([votes[:, :11], 1e12 * votes[:, 11:]], 1), ones),
    }


@pytest.mark.parametrize("case", list(_extreme_inputs()))
@pytest.mark.parametrize("iterations", [50, 100])
def test_no_nan_or_inf_with_many_iterations_and_extreme_inputs(case, iterations):
    votes, a = _extreme_inputs()[case]
    for lam in (0.01, 1.0, 100.0):
        result = em_routing(votes, a, iterations, beta_u=0.5, beta_a=-0.5,
                            inverse_temperature=lam, trace=True)
        for t in (result.poses, result.activations, result.responsibilities):
            assert torch.isfinite(t).all(), case
        assert torch.allclose(result.responsibilities.sum(-1), torch.ones(3, 12), atol=1e-5)
        for step in result.trace:
            for t in (step.mean, step.variance, step.activations, step.cost):
                assert torch.isfinite(t).all(), case
            assert step.variance.min() >= 1e-6 * (1 - 1e-6)
        if case == "zero activations":  # nobody votes: μ = 0, σ² = ε, a_j = logistic(λ β_a)
            assert result.poses.abs().max() == 0
            expected = torch.sigmoid(torch.tensor(-0.5 * result.trace[-1].inverse_temperature))
            torch.testing.assert_close(result.activations, expected.expand(3, 4))


@pytest.mark.parametrize("case", ["identical votes", "zero activations", "tiny votes"])
def test_gradients_stay_finite_on_degenerate_inputs(case):
    votes, a = _extreme_inputs()[case]
    votes = votes.clone().requires_grad_(True)
    a = a.clone().requires_grad_(True)
    result = em_routing(votes, a, 20, inverse_temperature=1.0)
    (result.activations.sum() + result.poses.sum()).backward()
    assert torch.isfinite(votes.grad).all() and torch.isfinite(a.grad).all()


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="at least 1 iteration"):
        em_routing(torch.zeros(1, 2, 3, 4), torch.ones(1, 2), 0)
    with pytest.raises(ValueError, match=r"\(B, I, J, H\)"):
        em_routing(torch.zeros(1, 2, 3, 4), torch.ones(1, 3))


def test_detached_responsibilities_keep_the_values_and_differentiate_the_last_m_step_only():
    votes, a = random_problem(batch=2, children=8, parents=3, dim=4)
    votes.requires_grad_(True)
    a.requires_grad_(True)
    options = dict(beta_u=0.3, beta_a=0.2, inverse_temperature=2.0)
    full = em_routing(votes, a, 4, **options)
    detached = em_routing(votes, a, 4, detach_responsibilities=True, trace=True, **options)
    for name in ("poses", "activations", "responsibilities"):
        torch.testing.assert_close(getattr(detached, name), getattr(full, name))
    assert not detached.responsibilities.requires_grad

    def objective(result):
        return result.activations.sum() + (result.poses**2).sum()

    g_full = torch.autograd.grad(objective(full), (votes, a))
    g_detached = torch.autograd.grad(objective(detached), (votes, a))
    # detached, the gradient is that of the last M-step with its R held constant
    r_last = detached.trace[-1].responsibilities
    weighted = r_last * a[..., None]
    mass = weighted.sum(1)
    mean = torch.einsum("bij,bijh->bjh", weighted / mass[:, None], votes)
    var = torch.einsum("bij,bijh->bjh", weighted / mass[:, None], (votes - mean[:, None]) ** 2)
    cost = (0.3 + 0.5 * (var + 1e-6).log()) * mass[..., None]
    lam = detached.trace[-1].inverse_temperature
    activations = torch.sigmoid(lam * (0.2 - cost.sum(-1)))
    by_hand = torch.autograd.grad(activations.sum() + (mean**2).sum(), (votes, a))
    for mine, expected in zip(g_detached, by_hand):
        torch.testing.assert_close(mine, expected)
    assert (g_full[0] - g_detached[0]).abs().max() > 1e-3  # R carries gradient by default


@pytest.mark.parametrize("scale_cost", [True, False])
def test_normalised_costs_are_centred_and_optionally_scaled_over_the_parents(scale_cost):
    """a_j = logistic(λ_t (β_a − ĉ_j)) with ĉ_j the paper's total cost Σ_h cost_j^h of that
    M-step, centred over the parents (and divided by its standard deviation with scale_cost)."""
    votes, a = random_problem()
    beta_a = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    result = em_routing(votes, a, 3, beta_u=0.5, beta_a=beta_a, inverse_temperature=2.0,
                        normalize_cost=True, scale_cost=scale_cost, trace=True)
    for step in result.trace:
        total = step.cost.sum(-1)
        centred = total - total.mean(-1, keepdim=True)
        if scale_cost:
            centred = centred / centred.square().mean(-1, keepdim=True).sqrt()
        logits = step.inverse_temperature * (beta_a - centred)
        assert (step.activations - torch.sigmoid(logits)).abs().max() < 1e-10
    assert torch.equal(result.activations, result.trace[-1].activations)
    assert (result.logits - logits).abs().max() < 1e-10  # the last M-step's, a_j = logistic(·)
