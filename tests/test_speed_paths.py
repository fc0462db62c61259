"""The fast paths compute what the plain ones do: hand-written routing backward, the reference
formulation used in benchmarks, bf16 autocast, and the trainer's sparse progress reports."""

import pytest
import torch

from capsviewer.maths import dynamic_routing, predict_votes, squash
from capsviewer.maths.routing import _squash_backward
from capsviewer.models import CapsNet, CapsNetConfig
from capsviewer.models.capsnet import ROUTING_CHUNK
from reference.capsnet import reference_forward
from capsviewer.training import BatchProgress, EpochResult, TrainConfig, Trainer
from capsviewer.training.devices import resolve_precision

TINY = {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]}


def plain_routing(votes, iterations, logits, detach_votes, bias=None):
    """Procedure 1 as written in the paper (plus the authors' code's bias on s_j, when given),
    differentiated by autograd."""
    routed = votes.detach() if detach_votes else votes
    for r in range(iterations):
        last = r == iterations - 1
        couplings = torch.softmax(logits, dim=2)
        s = torch.einsum("bij,bijd->bjd", couplings, votes if last else routed)
        v = squash(s if bias is None else s + bias)
        if not last:
            logits = logits + (routed * v[:, None]).sum(-1)
    return v, couplings


@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
@pytest.mark.parametrize("detach_votes", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_routing_backward_matches_autograd(iterations, detach_votes, with_bias):
    g = torch.Generator().manual_seed(iterations)
    u = squash(torch.randn(3, 20, 4, generator=g, dtype=torch.float64))
    w = torch.randn(20, 5, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    prior = torch.randn(3, 20, 5, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weights_v = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    weights_c = torch.randn(3, 20, 5, generator=g, dtype=torch.float64)
    bias = bias if with_bias else None
    inputs = (w, prior, bias) if with_bias else (w, prior)

    def loss(v, c):
        return (v * weights_v).sum() + (c * weights_c).sum()

    fast = dynamic_routing(predict_votes(u, w), iterations, logit_prior=prior,
                           detach_votes=detach_votes, bias=bias)
    grads = torch.autograd.grad(loss(fast.outputs, fast.couplings), inputs)
    plain = plain_routing(predict_votes(u, w), iterations, prior, detach_votes, bias)
    expected = torch.autograd.grad(loss(*plain), inputs)
    torch.testing.assert_close(fast.outputs, plain[0])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("detach_votes", [False, True])
def test_bias_alone_gets_its_gradient_through_every_iteration(detach_votes):
    """Votes and prior fixed, only the bias learning: its gradient still flows back through
    the couplings of every iteration (also with detached votes, which are constants there)."""
    g = torch.Generator().manual_seed(7)
    votes = torch.randn(2, 12, 4, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    (got,) = torch.autograd.grad(
        dynamic_routing(votes, 3, bias=bias, detach_votes=detach_votes).outputs.pow(3).sum(), bias)
    (want,) = torch.autograd.grad(
        plain_routing(votes, 3, votes.new_zeros(2, 12, 4), detach_votes, bias)[0].pow(3).sum(),
        bias)
    # through the last iteration alone (its couplings held constant) the gradient differs
    couplings = dynamic_routing(votes, 3, bias=bias.detach()).couplings
    s = torch.einsum("bij,bijd->bjd", couplings, votes) + bias
    (last_only,) = torch.autograd.grad(squash(s).pow(3).sum(), bias)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
    assert (got - last_only).abs().max() > 1e-6


def test_routing_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    votes = torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: dynamic_routing(x, 3).outputs, (votes,))


def test_squash_backward_matches_autograd():
    s = torch.randn(50, 16, dtype=torch.float64) * torch.logspace(-3, 2, 50, dtype=torch.float64)[:, None]
    s[0] = 0
    grad_v = torch.randn_like(s)
    s_ = s.clone().requires_grad_()
    (expected,) = torch.autograd.grad(squash(s_), s_, grad_v)
    torch.testing.assert_close(_squash_backward(s, grad_v), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("routing_bias", [None, 0.1])
def test_reference_formulation_equals_the_model(routing_bias):
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(**{**TINY, "decoder_hidden": (32, 64)},
                                  routing_bias=routing_bias)).double()
    x, y = torch.rand(3, 1, 28, 28, dtype=torch.float64), torch.tensor([1, 5, 7])
    fast, reference = model(x, y), reference_forward(model, x, y)
    for name in ("scores", "digit_capsules", "reconstruction"):
        torch.testing.assert_close(getattr(fast, name), getattr(reference, name))
    params = list(model.parameters())
    fast_grads = torch.autograd.grad(model.loss(fast, x, y).total, params)
    reference_grads = torch.autograd.grad(model.loss(reference, x, y).total, params)
    for got, want in zip(fast_grads, reference_grads):
        torch.testing.assert_close(got, want)


def test_cpu_inference_routes_in_chunks_with_the_same_result():
    """Without gradients on the CPU, votes and routing run ROUTING_CHUNK images at a time
    (û stays in cache); the outputs equal the whole-batch routing, which a trace still uses."""
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(**TINY)).double().eval()
    x = torch.rand(ROUTING_CHUNK * 2 + 3, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        chunked = model(x, iterations=4)
        whole = model(x, iterations=4, intermediates=True)
    assert chunked.routing is None and whole.routing is not None
    torch.testing.assert_close(chunked.digit_capsules, whole.digit_capsules, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(chunked.reconstruction, whole.reconstruction)
    votes = model.votes(model.primary_capsules(x))
    torch.testing.assert_close(chunked.digit_capsules, dynamic_routing(votes, 4).outputs)


def test_one_image_takes_primarycaps_as_a_matrix_product_with_the_same_result():
    """One fp32 image without gradients (the app's analysis): PrimaryCaps as unfolded patches
    times the transposed weights equals the convolution; weights changed by a training step
    are the ones used next."""
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(**TINY)).eval()
    x = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        h = torch.relu(model.conv(x))
        torch.testing.assert_close(model._primary_conv(h), model.primary(h), rtol=1e-5, atol=1e-5)
        one = model(x, trace=True)
        batch = model(torch.cat([x, x]), trace=True)  # the convolution itself
        torch.testing.assert_close(one.scores[0], batch.scores[0], rtol=1e-5, atol=1e-6)
    loss = model.train()(x).scores.sum()
    loss.backward()
    with torch.no_grad():
        model.primary.weight -= 0.5 * model.primary.weight.grad  # in place, as optimizers do
        model.eval()
        torch.testing.assert_close(model._primary_conv(h), model.primary(h), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(resolve_precision("auto", torch.device("cpu")) != "bf16",
                    reason="this CPU has no native bf16")
def test_bf16_autocast_forward_stays_close_to_fp32():
    torch.manual_seed(0)
    model = CapsNet().eval()
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        plain = model(x)
        with torch.autocast("cpu", torch.bfloat16):
            mixed = model(x)
    assert mixed.digit_capsules.dtype == torch.float32  # routing and decoder stay fp32
    relative = (mixed.digit_capsules - plain.digit_capsules).norm() / plain.digit_capsules.norm()
    assert relative < 0.02


def test_sparse_progress_reports_average_the_batches(mnist_train, mnist_test):
    """With a long progress interval (as on a GPU) an epoch reports once, at its last batch,
    with the loss and accuracy of the whole epoch."""
    config = TrainConfig(model_config=TINY, epochs=2, batch_size=32, subset=96, test_subset=32,
                         device="cpu", seed=1, progress_interval=1e9)
    events = list(Trainer(config, mnist_train, mnist_test).events())
    reports = [e for e in events if isinstance(e, BatchProgress)]
    epochs = [e for e in events if isinstance(e, EpochResult)]
    assert [(r.epoch, r.batch) for r in reports] == [(1, 3), (2, 3)]
    for report, epoch in zip(reports, epochs):
        assert report.loss == pytest.approx(epoch.train_loss, rel=1e-12)
        assert report.accuracy == pytest.approx(epoch.train_accuracy, rel=1e-12)


def test_precision_is_resolved_and_recorded(mnist_train, mnist_test, tmp_path):
    from capsviewer.training import load_checkpoint

    out = tmp_path / "m.safetensors"
    config = TrainConfig(model_config=TINY, epochs=1, batch_size=32, subset=32, test_subset=32,
                         device="cpu", precision="fp32", output=str(out))
    trainer = Trainer(config, mnist_train, mnist_test)
    trainer.run()
    assert trainer.precision == "fp32"
    assert load_checkpoint(out).metadata["precision"] == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))
