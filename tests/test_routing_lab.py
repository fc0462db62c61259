"""The routing lab's numbers: every claim its plots make, checked on its presets and beyond."""

import math

import numpy as np
import pytest
import torch

from capsviewer.analysis import toy_routing
from capsviewer.analysis.routing_lab import (
    MAX_CHILDREN,
    PRESETS,
    SCALES,
    TEMPERATURES,
    THETAS,
    LabState,
    compute,
    dynamic_trace,
    em_trace,
    jacobian_curves,
    vote_noise,
)
from capsviewer.analysis.routing_theory import (
    SQUASH_MAX_EIGENVALUE,
    agreement_objective,
    assignment_gap,
    attention_couplings,
    entropy,
    equivariance_errors,
    fixed_point_slope,
    logit_difference_map,
    rotate_votes,
    route,
    routing_keys,
    routing_potential,
    scale_gap,
    sigmoid_norm,
    sigmoid_norm_eigenvalues,
    sigmoid_norm_unit_gain,
    softmax_jacobian,
    squash_eigenvalues,
    stack,
)
from capsviewer.maths import dynamic_routing, squash


@pytest.fixture(scope="module")
def results():
    return {key: compute(preset.state()) for key, preset in PRESETS.items()}


def random_votes(count, seed=0):
    g = np.random.default_rng(seed)
    for _ in range(count):
        children, parents = g.integers(1, 7), g.integers(2, 5)
        yield g.normal(0, 10 ** g.uniform(-1, 0.7), (children, parents, 2))


# -- the lab's routings are the core's ---------------------------------------------------------


def test_dynamic_trace_is_dynamic_routing_and_em_trace_is_em_routing():
    from capsviewer.maths import em_routing

    state = PRESETS["free"].state()
    state.logit_bias, state.perturbation, state.theta = 0.3, 0.1, 40.0
    votes = torch.as_tensor(state.effective_votes())[None]
    reference = dynamic_routing(votes, 3, logit_prior=torch.as_tensor(state.logit_prior()),
                                trace=True).trace
    trace = dynamic_trace(state)
    for r, step in enumerate(reference):
        np.testing.assert_allclose(trace.couplings[r], step.couplings[0].numpy(), atol=1e-15)
        np.testing.assert_allclose(trace.outputs[r], step.outputs[0].numpy(), atol=1e-15)
    em = em_trace(state)
    result = em_routing(votes, torch.ones(1, 3, dtype=torch.float64), 3, trace=True)
    np.testing.assert_allclose(em.final_responsibilities, result.responsibilities[0].numpy())
    np.testing.assert_allclose(em.means[-1], result.poses[0].numpy())


def test_linear_route_is_procedure_one_with_v_equal_s():
    votes = next(random_votes(1, seed=3))
    trace = route(votes, 4, linear=True)
    c = np.full(votes.shape[:2], 1 / votes.shape[1])
    b = np.zeros(votes.shape[:2])
    for step in trace:
        np.testing.assert_allclose(step.couplings[0].numpy(), c, atol=1e-14)
        s = np.einsum("ij,ijd->jd", c, votes)
        np.testing.assert_allclose(step.outputs[0].numpy(), s, atol=1e-13)
        b = b + np.einsum("ijd,jd->ij", votes, s)
        c = np.exp(b - b.max(1, keepdims=True))
        c /= c.sum(1, keepdims=True)


# -- symmetric ambiguity and its priors ---------------------------------------------------------


def test_symmetric_ambiguity_stays_at_one_half_in_both_routings(results):
    result = results["symmetric"]
    assert np.array_equal(result.dynamic.couplings, np.full((5, 2, 2), 0.5))
    assert np.array_equal(result.em.responsibilities, np.full((5, 2, 2), 0.5))
    assert np.array_equal(result.em.final_responsibilities, np.full((2, 2), 0.5))
    np.testing.assert_allclose(result.em.activations[:, 0], result.em.activations[:, 1])


def test_logit_bias_breaks_the_tie_growing_by_three_halves():
    state = PRESETS["symmetric"].state()
    state.logit_bias = 0.05
    result = compute(state)
    c = result.dynamic.couplings[:, 0, 0]
    assert (c > 0.5).all() and (np.diff(c) > 0).all()
    np.testing.assert_allclose(c, [0.5125, 0.5187, 0.5281, 0.5421, 0.5629], atol=5e-5)
    # the logit difference grows by g'(0) = 1.5 per iteration near the fixed point
    np.testing.assert_allclose(result.run_deltas[1] / result.run_deltas[0], 1.5, atol=2e-4)
    # the bias is a prior of dynamic routing only: EM stays at ½
    assert np.array_equal(result.em.final_responsibilities, np.full((2, 2), 0.5))


def test_vote_perturbation_breaks_the_tie_in_both_routings():
    state = PRESETS["symmetric"].state()
    state.perturbation = 0.05
    result = compute(state)
    assert np.array_equal(result.dynamic.couplings[0], np.full((2, 2), 0.5))  # r = 1 uniform
    assert (np.abs(result.dynamic.couplings[1:] - 0.5) > 1e-3).all()
    np.testing.assert_allclose(result.dynamic.couplings[-1, :, 0], [0.2221, 0.2149], atol=5e-5)
    np.testing.assert_allclose(result.em.final_responsibilities[:, 0], 0.3912, atol=5e-5)
    # stronger perturbation, faster break
    state.perturbation = 0.2
    assert compute(state).dynamic.couplings[-1, 0, 0] < result.dynamic.couplings[-1, 0, 0]


# -- the unstable fixed point -------------------------------------------------------------------


def test_fixed_point_slope_on_the_preset(results):
    result = results["fixed_point"]
    assert result.squash_fixed.is_fixed_point and result.linear_fixed.is_fixed_point
    assert abs(result.squash_fixed.slope - 1.5) < 1e-8 and result.squash_fixed.unstable
    assert abs(result.linear_fixed.slope - 2.0) < 1e-8
    # Δ' = Δ + f(2σ(Δ)) − f(2 − 2σ(Δ)), f(x) = x²/(1+x²): the agreement of either child with
    # v_0 = squash(2σ(Δ)·e₀) minus that with v_1 = squash((2 − 2σ(Δ))·e₁)
    deltas = np.array([-3.0, -0.5, 0.25, 2.0])
    sigma = 1 / (1 + np.exp(-deltas))
    f = lambda x: x * x / (1 + x * x)  # noqa: E731
    np.testing.assert_allclose(logit_difference_map(PRESETS["fixed_point"].votes, deltas),
                               deltas + f(2 * sigma) - f(2 - 2 * sigma), atol=1e-14)


@pytest.mark.parametrize("children, length", [(2, 0.5), (2, 1.0), (3, 1.0), (2, 3.0), (5, 2.0)])
def test_fixed_point_slope_matches_the_formula_for_any_symmetric_votes(children, length):
    """n children voting L·e₀ and L·e₁: g'(0) = 1 + (nL²/2)·f'(nL/2), f(x) = x²/(1+x²), so
    always > 1 (unstable) but close to 1 for long votes."""
    votes = np.zeros((children, 2, 2))
    votes[:, 0, 0] = votes[:, 1, 1] = length
    x = children * length / 2
    expected = 1 + children * length ** 2 / 2 * 2 * x / (1 + x * x) ** 2
    fixed = fixed_point_slope(votes)
    assert fixed.is_fixed_point and abs(fixed.slope - expected) < 1e-7 and fixed.slope > 1


# -- the agreement objective ---------------------------------------------------------------------


def test_linear_update_objective_never_decreases():
    for votes in random_votes(300, seed=1):
        trace = route(votes, 8, linear=True)
        objective = agreement_objective(trace)
        assert np.diff(objective).min() >= -1e-9 * np.abs(objective).max()
        # v = s: the objective is twice the potential ½Σ‖s‖² routing ascends
        np.testing.assert_allclose(objective, 2 * routing_potential(trace, linear=True),
                                   rtol=1e-12)


def test_squash_routing_ascends_its_potential_but_not_the_agreement():
    for votes in random_votes(300, seed=2):
        potential = routing_potential(route(votes, 8))
        assert np.diff(potential).min() >= -1e-9 * np.abs(potential).max()


def test_squash_objective_falls_on_the_objective_preset(results):
    result = results["objective"]
    np.testing.assert_allclose(
        result.squash_objective,
        [2.0215, 3.1874, 3.5801, 3.6095, 3.5761, 3.5120, 3.5615, 3.7676, 3.7957, 3.7973],
        atol=5e-5)
    assert np.flatnonzero(np.diff(result.squash_objective) < 0).tolist() == [3, 4]  # r 4→5→6
    assert (np.diff(result.linear_objective) >= -1e-12).all()
    assert (np.diff(result.squash_potential) > 0).all()
    np.testing.assert_allclose(result.linear_objective[-1], 16.25, atol=1e-9)


# -- hard vs soft assignment ---------------------------------------------------------------------


def test_soft_couplings_approach_the_lp_solution(results):
    gap = results["lp"].gap
    trace = route(PRESETS["lp"].votes, 8)
    couplings = stack(trace, "couplings")
    np.testing.assert_allclose(gap.soft_value, agreement_objective(trace))
    assert (gap.lp_value >= gap.soft_value - 1e-12).all()
    assert gap.distance[0] == 0.5 and (np.diff(gap.distance) < 0).all()
    assert gap.distance[-1] < 0.1
    assert gap.hard[-1].tolist() == [0, 0, 1, 1, 1]
    # with the agreement as logits, softmax is the entropy-regularised LP: gap ≤ H(c)
    agreement = stack(trace, "agreement")
    soft = np.exp(agreement) / np.exp(agreement).sum(-1, keepdims=True)
    per_child = agreement.max(-1) - (soft * agreement).sum(-1)
    assert (per_child >= 0).all() and (per_child <= entropy(soft) + 1e-12).all()
    assert couplings.shape == (8, 5, 2)


def test_logit_scale_drives_couplings_to_the_hard_assignment(results):
    result = results["lp"]
    distance, value_gap = result.scale_distance, result.scale_value_gap
    assert (np.diff(distance) <= 1e-15).all() and distance[-1] < 1e-6
    assert (value_gap <= np.log(2) / SCALES + 1e-12).all()
    d, g = scale_gap([[0.0, 0.0]], [1.0, 100.0])  # an exact tie stays at ½
    np.testing.assert_allclose(d, [0.5, 0.5])


# -- attention -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["attention", "free", "clusters"])
def test_attention_at_temperature_one_is_routing(results, key):
    result = results[key]
    for r in range(1, len(result.dynamic.couplings) + 1):
        np.testing.assert_allclose(result.attention(r, 1.0), result.dynamic.couplings[r - 1],
                                   atol=1e-12)


def test_attention_with_a_logit_prior_and_temperature():
    state = PRESETS["attention"].state()
    state.logit_bias = 0.4
    result = compute(state)
    np.testing.assert_allclose(result.attention(3, 1.0), result.dynamic.couplings[2], atol=1e-12)
    sharpness = result.sharpness(3)
    assert (np.diff(sharpness) <= 1e-12).all()  # higher T, flatter
    assert sharpness[0] > 0.9 and sharpness[-1] < 0.65
    keys = routing_keys(route(state.effective_votes(), 3, prior=state.logit_prior()))
    manual = attention_couplings(state.effective_votes(), keys[2], 0.5, state.logit_prior())
    np.testing.assert_allclose(result.attention(3, 0.5), manual)
    assert len(TEMPERATURES) == len(sharpness)


# -- Jacobians -----------------------------------------------------------------------------------


def test_squash_jacobian_eigenvalues_stay_below_one():
    norms, squash_eigs, sigmoid_eigs = jacobian_curves()
    assert squash_eigs.max() < 1
    np.testing.assert_allclose(squash_eigs.max(axis=0), [SQUASH_MAX_EIGENVALUE, 0.5], atol=2e-5)
    exact = squash_eigenvalues([1 / math.sqrt(3), 1.0])
    np.testing.assert_allclose(exact, [[3 * math.sqrt(3) / 8, math.sqrt(3) / 4], [0.5, 0.5]])
    # the (radial, tangential) pair are the eigenvalues in any direction, also by autograd
    g = torch.Generator().manual_seed(0)
    s = torch.randn(50, 2, generator=g, dtype=torch.float64) * 2
    jac = torch.func.vmap(torch.func.jacrev(squash))(s)
    eig = torch.linalg.eigvalsh(jac).numpy()
    np.testing.assert_allclose(eig, np.sort(squash_eigenvalues(s.norm(dim=1).numpy()), axis=1),
                               atol=1e-12)


def test_sigmoid_of_norm_exceeds_one_for_short_inputs():
    norms, _, sigmoid_eigs = jacobian_curves()
    r0 = sigmoid_norm_unit_gain()
    assert abs(r0 - 0.659046) < 1e-6 and abs(1 / (1 + math.exp(-r0)) - r0) < 1e-12
    radial, tangential = sigmoid_eigs.T
    assert radial.max() <= 0.25 + 1e-12
    assert (tangential[norms < r0] > 1).all() and (tangential[norms > r0] < 1).all()
    assert tangential[0] > 50  # σ(0.01)/0.01 = 50.25: unbounded as ‖s‖ → 0
    sigma = 1 / (1 + np.exp(-norms))
    np.testing.assert_allclose(tangential, sigma / norms, rtol=1e-12)
    np.testing.assert_allclose(radial, sigma * (1 - sigma), rtol=1e-10)
    s = torch.tensor([[0.3, -0.4]], dtype=torch.float64)
    np.testing.assert_allclose(sigmoid_norm(s).norm().item(), 1 / (1 + math.exp(-0.5)))
    eig = torch.linalg.eigvals(torch.func.jacrev(sigmoid_norm)(s[0])).real.sort().values
    np.testing.assert_allclose(eig.numpy(), np.sort(sigmoid_norm_eigenvalues([0.5])[0]))


def test_softmax_jacobian_is_c_delta_minus_c_with_eigenvalues_in_zero_half(results):
    couplings = results["jacobians"].dynamic.couplings.reshape(-1, 3)
    g = np.random.default_rng(0)
    couplings = np.concatenate([couplings, g.dirichlet(np.full(3, 0.3), 200)])
    for c in couplings:
        jac = softmax_jacobian(c)
        np.testing.assert_allclose(jac, np.diag(c) - np.outer(c, c), atol=1e-15)
        eig = np.linalg.eigvalsh(jac)
        assert eig.min() > -1e-12 and eig.max() <= 0.5 + 1e-12
    np.testing.assert_allclose(np.linalg.eigvalsh(softmax_jacobian([0.5, 0.5])), [0, 0.5],
                               atol=1e-15)


# -- equivariance --------------------------------------------------------------------------------


def test_equivariance_errors(results):
    errors = results["equivariance"].equivariance
    assert errors.routing.max() < 1e-12
    np.testing.assert_allclose(errors.invariant, np.abs(THETAS) % (2 * np.pi), atol=1e-12)
    # the same numbers as the existing experiment on its own votes
    thetas = torch.linspace(-3.1, 3.1, 13, dtype=torch.float64)
    reference = toy_routing.equivariance_experiment(thetas)
    mine = equivariance_errors(toy_routing.part_votes(0.0)[0].numpy(), thetas.numpy())
    np.testing.assert_allclose(mine.routing, reference.routing_error.numpy(), atol=1e-12)
    np.testing.assert_allclose(mine.invariant, reference.invariant_error.numpy(), atol=1e-12)
    # EM's per-axis σ² is not rotation invariant: a small error, zero at multiples of 90°
    degrees = np.rad2deg(errors.em)
    assert 0.1 < degrees.max() < 0.15
    quarter = np.isclose(np.mod(np.rad2deg(THETAS), 90), 0)
    assert degrees[quarter].max() < 1e-9


def test_equivariance_holds_for_any_votes_and_priors():
    for votes in random_votes(20, seed=4):
        prior = np.zeros(votes.shape[:2])
        prior[:, 0] = 0.3
        errors = equivariance_errors(votes, np.linspace(-3, 3, 7), 3, prior=prior)
        assert errors.routing.max() < 1e-9


# -- EM responsibilities -------------------------------------------------------------------------


def test_em_sends_clusters_home_where_dot_products_do_not(results):
    result = results["clusters"]
    home = np.array([0, 0, 0, 1, 1, 1])
    final = result.em.final_responsibilities
    assert (final[np.arange(6), home] > 0.9999).all()
    np.testing.assert_allclose(result.em.activations[-1], [0.7623, 0.7736], atol=5e-5)
    c = result.dynamic.couplings[-1]
    assert c[5, 0] > 0.75  # child 5's long vote for parent 0 wins the dot product
    np.testing.assert_allclose(c[5, 0], 0.7756, atol=5e-5)
    assert np.array_equal(result.em.responsibilities[0], np.full((6, 2), 0.5))


def test_child_activation_weights_em():
    state = PRESETS["clusters"].state()
    state.set_activation(5, 0.0)
    em = em_trace(state)
    home = state.votes[:3, 0]
    mu = em.means[-1, 0]
    weights = em.responsibilities[-1, :5, 0]
    np.testing.assert_allclose(mu, (weights[:, None] * state.votes[:5, 0]).sum(0) / weights.sum())
    assert np.linalg.norm(mu - home.mean(0)) < 0.05
    state.set_activation(2, 7.0)
    assert state.activations[2] == 1.0  # clipped to [0, 1]


# -- editing the lab -----------------------------------------------------------------------------


def test_move_vote_places_what_the_canvas_shows():
    state = PRESETS["free"].state()
    state.theta, state.perturbation = 30.0, 0.1
    state.move_vote(1, 2, (0.7, -0.2))
    np.testing.assert_allclose(state.effective_votes()[1, 2], [0.7, -0.2], atol=1e-14)
    child = state.add_child((1.0, 1.0))
    np.testing.assert_allclose(state.effective_votes()[child, 0], [1.0, 1.0], atol=1e-14)
    assert state.votes.shape == (4, 3, 2) and state.activations.tolist() == [1.0] * 4


def test_adding_and_removing_keeps_the_noise_of_every_vote():
    state = PRESETS["free"].state()
    state.perturbation = 0.2
    before = state.effective_votes()
    state.add_child()
    np.testing.assert_allclose(state.effective_votes()[:3], before)
    state.add_parent()
    np.testing.assert_allclose(state.effective_votes()[:3, :3], before)
    assert state.votes.shape == (4, 4, 2)
    with pytest.raises(ValueError):
        state.add_parent()
    state.remove_parent(1)
    state.remove_child(0)
    assert state.votes.shape == (3, 3, 2)
    np.testing.assert_array_equal(vote_noise(MAX_CHILDREN, 4)[:3, :2], vote_noise(3, 2))
    with pytest.raises(ValueError):
        LabState(np.zeros((2, 2, 2)), np.ones(3))


def test_rotate_votes_turns_counter_clockwise():
    np.testing.assert_allclose(rotate_votes([[1.0, 0.0]], math.pi / 2), [[0.0, 1.0]], atol=1e-15)


def test_every_preset_computes(results):
    for key, result in results.items():
        preset = PRESETS[key]
        children, parents = np.asarray(preset.votes).shape[:2]
        assert result.dynamic.couplings.shape == (preset.iterations, children, parents)
        assert result.em.responsibilities.shape == (preset.iterations, children, parents)
        np.testing.assert_allclose(result.dynamic.couplings.sum(-1), 1)
        np.testing.assert_allclose(result.em.final_responsibilities.sum(-1), 1)
        assert result.gap.distance.shape == (preset.iterations,)
        assert np.isfinite(result.squash_map).all() and np.isfinite(result.equivariance.em).all()
    gap = assignment_gap(route(PRESETS["symmetric"].votes, 3))
    np.testing.assert_allclose(gap.distance, 0.5)  # a tie never becomes hard


# -- the attention routings on the lab's votes ---------------------------------------------------

def test_attention_routings_are_the_cores_on_the_effective_votes():
    from capsviewer.maths import inverted_attention_routing, self_attention_routing

    state = PRESETS["clusters"].state()
    state.theta, state.perturbation = 30.0, 0.1
    result = compute(state)
    votes = torch.as_tensor(state.effective_votes())[None]
    inverted = inverted_attention_routing(votes, state.iterations, trace=True).trace
    one_pass = self_attention_routing(votes, trace=True).trace
    assert result.inverted_attention.couplings.shape == (state.iterations, 6, 2)
    assert result.self_attention.couplings.shape == (1, 6, 2)
    np.testing.assert_array_equal(result.inverted_attention.couplings, stack(inverted, "couplings"))
    np.testing.assert_array_equal(result.inverted_attention.outputs, stack(inverted, "outputs"))
    np.testing.assert_array_equal(result.self_attention.couplings, stack(one_pass, "couplings"))
    np.testing.assert_allclose(result.inverted_attention.couplings.sum(-1), 1.0)
    np.testing.assert_allclose(result.self_attention.couplings.sum(-1), 1.0)


def test_in_two_dimensions_layer_norm_leaves_two_poses(results):
    """LayerNorm of a 2-vector centres and scales it: ±(1, −1)/√(1 + ε/d²), d = (x − y)/2."""
    for result in results.values():
        poses = result.inverted_attention.outputs
        np.testing.assert_allclose(np.abs(poses), 1.0, atol=1e-3)
        np.testing.assert_allclose(poses[..., 0], -poses[..., 1])


def test_self_attention_sends_the_clusters_like_dynamic_routing(results):
    """On the clusters preset the one-pass self-attention agrees with dynamic routing's final
    assignment (both score votes by dot products), child 5's long vote included."""
    result = results["clusters"]
    np.testing.assert_array_equal(result.self_attention.couplings[0].argmax(axis=1),
                                  result.dynamic.couplings[-1].argmax(axis=1))
    assert result.self_attention.couplings[0, 5, 0] > 0.9
