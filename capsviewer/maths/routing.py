"""Dynamic routing between capsules (Sabour et al. 2017, Procedure 1), with an inspectable trace.

Shapes: B batch, I child capsules (inputs), J parent capsules (outputs), D pose dimensions.
    votes      û_{j|i} = W_ij u_i             (B, I, J, D)
    logits     b_ij                           (B, I, J)
    couplings  c_ij = softmax_j(b_ij)         (B, I, J)   sum over parents j is 1
    s_j        Σ_i c_ij û_{j|i} (+ b_j)       (B, J, D)   b_j: optional bias, as the authors' code
    v_j        squash(s_j)                    (B, J, D)
    agreement  a_ij = û_{j|i}·v_j             (B, I, J)   added to b_ij for the next iteration

Implementation: û is computed once and read in place (no copies, no tiling); both products of
an iteration are batched GEMMs over the images (see :func:`weighted_votes`), and training runs
a hand-written backward pass (:class:`_Routing`) that writes ∂L/∂û once instead of once per
use. tests/reference/dynamic_routing.py keeps the straightforward formulation to check against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from capsviewer.maths.squash import squash


def predict_votes(u: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """û_{j|i} = W_ij u_i for u (B, I, D_in) and weights (I, J, D_out, D_in) → (B, I, J, D_out).

    Computed once, before the routing loop: the votes do not change between iterations.
    """
    return torch.einsum("ijdk,bik->bijd", weights, u)


@dataclass(frozen=True)
class RoutingIteration:
    """One pass of the routing loop, detached from autograd, for views and analyses."""

    logits: torch.Tensor  # b_ij the couplings were computed from (B, I, J)
    couplings: torch.Tensor  # c_ij (B, I, J)
    preactivations: torch.Tensor  # s_j (B, J, D)
    outputs: torch.Tensor  # v_j (B, J, D)
    agreement: torch.Tensor  # û_{j|i}·v_j (B, I, J)

    # The trace interface every routing algorithm shares (see capsviewer.maths.routings).
    assignments = property(lambda self: self.couplings, doc="c_ij (B, I, J)")
    parent_poses = property(lambda self: self.outputs, doc="v_j (B, J, D)")
    parent_activations = property(lambda self: self.outputs.norm(dim=-1),
                                  doc="‖v_j‖, the probability that parent j exists (B, J)")


@dataclass(frozen=True)
class RoutingResult:
    outputs: torch.Tensor  # v_j after the last iteration (B, J, D)
    couplings: torch.Tensor  # c_ij of the last iteration (B, I, J)
    trace: tuple[RoutingIteration, ...] | None = None


def uniform_routing(votes: torch.Tensor, *, bias: torch.Tensor | None = None,
                    trace: bool = False) -> RoutingResult:
    """No routing: c_ij = 1/J, s_j = Σ_i û_{j|i} / J (+ b_j), v_j = squash(s_j); one pass,
    the same as :func:`dynamic_routing` with one iteration."""
    return dynamic_routing(votes, 1, bias=bias, trace=trace)


def dynamic_routing(
    votes: torch.Tensor,
    iterations: int = 3,
    *,
    logit_prior: torch.Tensor | float | None = None,
    vote_perturbation: torch.Tensor | float = 0.0,
    generator: torch.Generator | None = None,
    detach_votes: bool = False,
    bias: torch.Tensor | None = None,
    trace: bool = False,
) -> RoutingResult:
    """Route ``votes`` (B, I, J, D) to J parent capsules by agreement.

    iterations: r ≥ 1; r = 1 gives uniform couplings c_ij = 1/J (no routing by agreement).
    logit_prior: initial logits b_ij (a log prior), broadcast to (B, I, J); zeros by default.
    vote_perturbation: a tensor added to the votes, or the standard deviation of Gaussian noise
        drawn from ``generator``; either breaks exact symmetries between parents.
    detach_votes: route on ``votes.detach()`` in every iteration but the last, so gradients reach
        W only through the final Σ c_ij û_{j|i}, with the couplings held as constants. The paper
        does not say; the authors' TensorFlow code backpropagates through every iteration, which
        is our default. Detaching (as several re-implementations do) saves backward time and
        memory in proportion to r and keeps the unstable fixed point of the routing map out of
        the gradient; accuracy is comparable in published replications.
    bias: a bias b_j (J, D) added to s_j in every iteration, as the authors' TensorFlow code
        does (not in the paper's text); None: no bias.
    trace: also return every iteration's logits, couplings, s, v and agreement (detached).
    """
    if iterations < 1:
        raise ValueError(f"routing needs at least 1 iteration, got {iterations}")
    if isinstance(vote_perturbation, torch.Tensor):
        votes = votes + vote_perturbation
    elif vote_perturbation:
        noise = torch.randn(votes.shape, generator=generator, dtype=votes.dtype)
        votes = votes + vote_perturbation * noise.to(votes.device)
    batch, children, parents, _ = votes.shape
    flat = votes.reshape(batch, children, -1)  # û as rows (B, I, J·D); a view for einsum's û

    # Logits and couplings are held parents-first, (B, J, I): the softmax over j then runs
    # over a strided axis with I-long contiguous rows (far faster than a softmax over a last
    # axis of 10), and the couplings are the left operand of the s_j product as they are.
    logits = flat.new_zeros(batch, parents, children)
    if logit_prior is not None:
        prior = torch.as_tensor(logit_prior, dtype=flat.dtype, device=flat.device)
        logits = logits + prior.expand(batch, children, parents).transpose(1, 2)
    steps: list[RoutingIteration] | None = [] if trace else None
    if bias is not None and bias.shape != (parents, votes.shape[-1]):
        raise ValueError(f"bias must be (J, D) = {(parents, votes.shape[-1])}, "
                         f"got {tuple(bias.shape)}")
    learning = (flat.requires_grad or logits.requires_grad
                or (bias is not None and bias.requires_grad))
    if torch.is_grad_enabled() and learning:
        v, couplings = _Routing.apply(flat, logits, bias, iterations, detach_votes, steps)
    else:
        v, couplings, _ = _route(flat, logits, bias, iterations, steps)
    return RoutingResult(v, couplings.transpose(1, 2), tuple(steps) if trace else None)


def _route(flat: torch.Tensor, logits: torch.Tensor, bias: torch.Tensor | None, iterations: int,
           steps: list | None):
    """Procedure 1 on votes as rows (B, I, J·D) from logits (B, J, I): returns v (B, J, D), the
    last couplings (B, J, I) and every iteration's (c, s, v) for the backward pass."""
    saved = []
    for r in range(iterations):
        last = r == iterations - 1
        couplings = torch.softmax(logits, dim=1)
        s = weighted_votes(couplings, flat)
        if bias is not None:
            s = s + bias
        v = squash(s)
        if steps is not None or not last:
            agreement = vote_agreement(flat, v)
        if steps is not None:
            steps.append(
                RoutingIteration(
                    *(t.detach().transpose(1, 2).contiguous() for t in (logits, couplings)),
                    s.detach().contiguous(),
                    v.detach().contiguous(),
                    agreement.detach().transpose(1, 2).contiguous(),
                )
            )
        saved.append((couplings, s, v))
        if not last:
            logits = logits + agreement
    return v, couplings, saved


class _Routing(torch.autograd.Function):
    """Routing with a hand-written backward pass.

    Autograd through the loop writes a gradient the size of û for every use of û (2r − 1
    of them) and adds them up. Here every term of ∂L/∂û_{j|i} is an outer product
    p_ij q_j (couplings times ∂L/∂s_j, or ∂L/∂a_ij times v_j), so all of them are summed in
    one batched product that writes ∂L/∂û once; the remaining work is one pass over û per
    product, as in the forward pass.
    """

    @staticmethod
    def forward(ctx, flat, logits, bias, iterations, detach_votes, steps):
        v, couplings, saved = _route(flat, logits, bias, iterations, steps)
        ctx.iterations, ctx.detach_votes = iterations, detach_votes
        ctx.save_for_backward(flat, *(t for step in saved for t in step))
        return v, couplings

    @staticmethod
    def backward(ctx, grad_v, grad_couplings):
        flat, *saved = ctx.saved_tensors
        steps = [saved[k:k + 3] for k in range(0, len(saved), 3)]
        need_flat, need_logits, need_bias = ctx.needs_input_grad[:3]
        grad_v = grad_v if grad_v is not None else torch.zeros_like(steps[-1][2])
        left, right = [], []  # ∂L/∂û_{j|i} = Σ_k left_k[b, j, i] · right_k[b, j, :]
        grad_logits = None  # ∂L/∂b after the iteration in hand
        grad_bias = None  # Σ over iterations and images of ∂L/∂s_j
        for r in reversed(range(ctx.iterations)):
            last = r == ctx.iterations - 1
            couplings, s, v = steps[r]
            # Detached votes: û is a constant before the last iteration, but the couplings
            # still carry the gradient of a logit prior or bias back through every iteration.
            through_votes = last or not ctx.detach_votes
            if not last:
                if not (through_votes or need_logits or need_bias):
                    break
                grad_agreement = grad_logits  # b_{r+1} = b_r + a_r
                grad_v = weighted_votes(grad_agreement, flat)  # a_ij = û_{j|i}·v_j
                if through_votes:
                    left.append(grad_agreement)
                    right.append(v)
            grad_s = _squash_backward(s, grad_v)
            if need_bias:
                grad_bias = grad_s.sum(0) if grad_bias is None else grad_bias + grad_s.sum(0)
            if through_votes:
                left.append(couplings)
                right.append(grad_s)
            if need_logits or (r > 0 and (need_bias or not ctx.detach_votes)):
                grad_c = vote_agreement(flat, grad_s)  # s_j = Σ_i c_ij û_{j|i}
                if last and grad_couplings is not None:
                    grad_c = grad_c + grad_couplings
                grad_b = couplings * (grad_c - (couplings * grad_c).sum(dim=1, keepdim=True))
                grad_logits = grad_b if last else grad_b + grad_logits
        grad_flat = _outer_sum(left, right) if need_flat else None
        return (grad_flat, grad_logits if need_logits else None, grad_bias, None, None, None)


def _squash_backward(s: torch.Tensor, grad_v: torch.Tensor) -> torch.Tensor:
    """∂L/∂s from ∂L/∂v for v = squash(s) = g(q)·s, q = ‖s‖², g = √q/(1+q):
    ∂L/∂s = g ∂L/∂v + 2g'(q) (s·∂L/∂v) s with 2g'(q) = (1 − q)/(√q (1+q)²)."""
    q = s.pow(2).sum(-1, keepdim=True)
    norm = q.clamp_min(torch.finfo(s.dtype).tiny).sqrt()  # as in squash: finite at s = 0
    radial = (1 - q) / (norm * (1 + q) ** 2)
    return norm / (1 + q) * grad_v + radial * (s * grad_v).sum(-1, keepdim=True) * s


def _outer_sum(left: list[torch.Tensor], right: list[torch.Tensor]) -> torch.Tensor:
    """Σ_k left_k[b, j, i] right_k[b, j, d] as rows (B, I, J·D), in one batched product."""
    batch, parents, children = left[0].shape
    dim, terms = right[0].shape[-1], len(left)
    p = torch.stack(left, dim=-1).permute(0, 2, 1, 3).reshape(batch, children, parents * terms)
    eye = torch.eye(parents, dtype=p.dtype, device=p.device)
    q = torch.stack(right, dim=2)  # (B, J, K, D)
    blocks = (eye[None, :, None, :, None] * q[:, :, :, None, :]).reshape(
        batch, parents * terms, parents * dim
    )
    return torch.bmm(p, blocks)


# The two products of a routing iteration are batched matrix products over the images, each
# reading û once. For J = 10 parents that is 10× the arithmetic of the bare sums (the
# off-diagonal blocks are thrown away), but a dense GEMM instead of J·B strided matrix–vector
# products or a broadcast temporary the size of û: on the CPU the products are 2–3× faster.


def weighted_votes(couplings: torch.Tensor, flat_votes: torch.Tensor) -> torch.Tensor:
    """s_j = Σ_i c_ij û_{j|i} for couplings (B, J, I) and votes as rows (B, I, J·D) → (B, J, D)."""
    batch, parents, _ = couplings.shape
    products = torch.bmm(couplings, flat_votes)  # [b, j, j'·D + d] = Σ_i c_ij û_{j'|i,d}
    return products.view(batch, parents, parents, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)


def vote_agreement(flat_votes: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """a_ij = û_{j|i}·v_j for votes as rows (B, I, J·D) and outputs v (B, J, D) → (B, J, I)."""
    batch, parents, dim = v.shape
    eye = torch.eye(parents, dtype=v.dtype, device=v.device)
    blocks = (eye[None, :, :, None] * v[:, None]).reshape(batch, parents, parents * dim)
    return torch.bmm(blocks, flat_votes.transpose(1, 2))  # [b, j, i]


def coupling_jacobian(couplings: torch.Tensor) -> torch.Tensor:
    """∂c_j/∂b_k = c_j(δ_jk − c_k) of the softmax over the last axis: (..., J) → (..., J, J)."""
    return torch.diag_embed(couplings) - couplings[..., :, None] * couplings[..., None, :]
