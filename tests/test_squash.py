import torch

from capsviewer.maths import squash, squash_jacobian


def test_length_is_squashed_and_direction_kept():
    s = torch.randn(1000, 16, dtype=torch.float64) * torch.logspace(-3, 2, 1000, dtype=torch.float64)[:, None]
    v = squash(s)
    norm = s.norm(dim=-1)
    torch.testing.assert_close(v.norm(dim=-1), norm**2 / (1 + norm**2), rtol=1e-12, atol=0)
    cosine = (v * s).sum(-1) / (v.norm(dim=-1) * norm)
    torch.testing.assert_close(cosine, torch.ones_like(cosine), rtol=1e-12, atol=1e-12)
    assert (v.norm(dim=-1) < 1).all()


def test_zero_input_gives_zero_and_finite_gradient():
    for dtype in (torch.float32, torch.float64):
        s = torch.zeros(3, 8, dtype=dtype, requires_grad=True)
        v = squash(s)
        assert torch.equal(v, torch.zeros_like(v))
        v.sum().backward()
        assert torch.isfinite(s.grad).all()
        assert s.grad.abs().max() < 1e-6


def test_known_values():
    v = squash(torch.tensor([[3.0, 4.0]]))  # ‖s‖ = 5 → length 25/26
    torch.testing.assert_close(v, torch.tensor([[3.0, 4.0]]) / 5 * 25 / 26)


def test_analytic_jacobian_matches_autograd_and_eigenvalues_below_one():
    torch.manual_seed(0)
    s = torch.randn(200, 8, dtype=torch.float64) * torch.logspace(-2, 1.5, 200, dtype=torch.float64)[:, None]
    analytic = squash_jacobian(s)
    for k in range(0, 200, 37):
        numeric = torch.autograd.functional.jacobian(squash, s[k])
        torch.testing.assert_close(analytic[k], numeric, rtol=1e-10, atol=1e-12)
    eigenvalues = torch.linalg.eigvalsh(analytic)  # symmetric
    assert (eigenvalues > 0).all()
    assert eigenvalues.max() < 1
    # the bound is attained near ‖s‖ = 1/√3: 3√3/8
    assert abs(eigenvalues.max().item() - 3 * 3**0.5 / 8) < 0.01
