import torch

from capsviewer.maths import coupling_jacobian, dynamic_routing, predict_votes, squash
from reference.dynamic_routing import dynamic_routing_recomputed


def random_problem(batch=4, children=50, parents=10, d_in=8, d_out=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = squash(torch.randn(batch, children, d_in, generator=g, dtype=dtype))
    weights = 0.5 * torch.randn(children, parents, d_out, d_in, generator=g, dtype=dtype)
    return u, weights


def test_couplings_sum_to_one_at_every_iteration_and_first_is_uniform():
    u, w = random_problem()
    result = dynamic_routing(predict_votes(u, w), iterations=5, trace=True)
    assert len(result.trace) == 5
    for step in result.trace:
        torch.testing.assert_close(step.couplings.sum(dim=2), torch.ones(4, 50))
    torch.testing.assert_close(result.trace[0].couplings, torch.full((4, 50, 10), 0.1))
    # routing moved the couplings away from uniform
    assert (result.trace[-1].couplings - 0.1).abs().max() > 0.05


def test_one_iteration_is_uniform_average():
    u, w = random_problem()
    votes = predict_votes(u, w)
    result = dynamic_routing(votes, iterations=1)
    torch.testing.assert_close(result.couplings, torch.full((4, 50, 10), 0.1))
    torch.testing.assert_close(result.outputs, squash(votes.mean(dim=1) * 50 / 10))


def test_trace_is_consistent_with_the_procedure():
    u, w = random_problem(dtype=torch.float64)
    votes = predict_votes(u, w)
    trace = dynamic_routing(votes, iterations=4, trace=True).trace
    for r, step in enumerate(trace):
        torch.testing.assert_close(step.couplings, torch.softmax(step.logits, dim=2))
        torch.testing.assert_close(step.preactivations, torch.einsum("bij,bijd->bjd", step.couplings, votes))
        torch.testing.assert_close(step.outputs, squash(step.preactivations))
        torch.testing.assert_close(step.agreement, (votes * step.outputs[:, None]).sum(-1))
        if r:
            torch.testing.assert_close(step.logits, trace[r - 1].logits + trace[r - 1].agreement)


def test_cached_votes_match_recomputing_inside_every_iteration():
    u, w = random_problem()
    for iterations in (1, 3, 5):
        cached = dynamic_routing(predict_votes(u, w), iterations).outputs
        recomputed = dynamic_routing_recomputed(u, w, iterations)
        assert (cached - recomputed).abs().max() < 1e-6


def test_detached_votes_change_gradients_not_outputs():
    u, w = random_problem(dtype=torch.float64)
    w.requires_grad_(True)
    full = dynamic_routing(predict_votes(u, w), 3)
    detached = dynamic_routing(predict_votes(u, w), 3, detach_votes=True)
    torch.testing.assert_close(full.outputs, detached.outputs)
    (g_full,) = torch.autograd.grad(full.outputs.sum(), w)
    (g_detached,) = torch.autograd.grad(detached.outputs.sum(), w)
    assert (g_full - g_detached).abs().max() > 1e-6
    # with one iteration nothing is detached
    one = [torch.autograd.grad(dynamic_routing(predict_votes(u, w), 1, detach_votes=d).outputs.sum(), w)[0]
           for d in (False, True)]
    torch.testing.assert_close(one[0], one[1])


def test_softmax_jacobian_matches_autograd():
    torch.manual_seed(1)
    logits = torch.randn(6, 10, dtype=torch.float64)
    couplings = torch.softmax(logits, dim=-1)
    analytic = coupling_jacobian(couplings)
    for k in range(6):
        numeric = torch.autograd.functional.jacobian(lambda b: torch.softmax(b, -1), logits[k])
        torch.testing.assert_close(analytic[k], numeric, rtol=1e-12, atol=1e-14)
    # rows sum to zero: couplings keep summing to one whatever the logits do
    torch.testing.assert_close(analytic.sum(-2), torch.zeros(6, 10, dtype=torch.float64))


def test_logit_prior_and_noise_are_applied():
    u, w = random_problem()
    votes = predict_votes(u, w)
    prior = torch.zeros(10)
    prior[3] = 2.0
    first = dynamic_routing(votes, 2, logit_prior=prior, trace=True).trace[0].couplings
    torch.testing.assert_close(first[..., 3], torch.full((4, 50), torch.softmax(prior, 0)[3].item()))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = dynamic_routing(votes, 3, vote_perturbation=0.1, generator=g1).outputs
    b = dynamic_routing(votes, 3, vote_perturbation=0.1, generator=g2).outputs
    c = dynamic_routing(votes, 3).outputs
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4
