"""Claims about routing checked on set-ups small enough to work out by hand."""

import math

import torch

from capsviewer.analysis.routing_theory import fixed_point_slope
from capsviewer.analysis.toy_routing import equivariance_experiment, symmetric_votes
from capsviewer.maths import dynamic_routing


def parent0_coupling(iterations, **options):
    trace = dynamic_routing(symmetric_votes(), iterations, trace=True, **options).trace
    return torch.stack([step.couplings[0, :, 0] for step in trace])  # (iterations, parts)


def test_equivariant_votes_make_routing_output_rotate_exactly():
    thetas = torch.linspace(-math.pi + 0.01, math.pi - 0.01, 37, dtype=torch.float64)
    result = equivariance_experiment(thetas)
    assert result.routing_error.max() < 1e-5
    # the invariant aggregator [Σ‖u_i‖, 0] does not turn at all: its error is |θ|
    torch.testing.assert_close(result.invariant_error, thetas.abs(), rtol=0, atol=1e-12)


def test_symmetric_ambiguity_stays_at_one_half():
    c = parent0_coupling(10)
    assert torch.equal(c, torch.full_like(c, 0.5))


def test_symmetric_fixed_point_is_unstable_with_slope_three_halves():
    # Δ' = Δ + f(2σ(Δ)) − f(2 − 2σ(Δ)), f(x) = x²/(1+x²): g'(0) = 1 + 2·f'(1)·σ'(0)·2 = 3/2
    assert abs(fixed_point_slope(symmetric_votes()[0].numpy()).slope - 1.5) < 1e-8


def test_small_logit_prior_breaks_the_tie_slowly():
    prior = torch.tensor([0.01, 0.0], dtype=torch.float64)
    c = parent0_coupling(40, logit_prior=prior)[:, 0]
    deviation = c - 0.5
    assert (deviation > 0).all() and (deviation.diff() > 0).all()
    # near the fixed point the asymmetry grows by g'(0) = 1.5 per iteration
    torch.testing.assert_close(deviation[1] / deviation[0], torch.tensor(1.5, dtype=torch.float64), rtol=1e-3, atol=0)
    # Seed claim "a small prior breaks the tie" holds only eventually: with the paper's three
    # iterations a 1 % logit prior leaves the couplings within 1 % of the ambiguous 0.5.
    assert deviation[2] < 0.01
    assert c[-1] > 0.99


def test_vote_perturbation_breaks_the_tie_towards_the_stronger_vote():
    bump = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    bump[0, 0, 0, 0] = 0.02  # part 0 votes (1.02, 0) for whole 0
    c = parent0_coupling(6, vote_perturbation=bump)
    assert torch.equal(c[0], torch.full((2,), 0.5, dtype=torch.float64))  # first pass uniform
    assert (c[1:] > 0.5).all() and (c[1:, 0].diff() > 0).all()
    noisy = parent0_coupling(3, vote_perturbation=0.05, generator=torch.Generator().manual_seed(0))
    assert (noisy[1:] - 0.5).abs().min() > 1e-4
