import pytest
import torch

from capsviewer.maths import em_routing
from capsviewer.maths.losses import spread_loss
from capsviewer.models import (
    MODELS,
    EMCapsNet,
    EMCapsNetConfig,
    MatrixCapsNet,
    MatrixCapsNetConfig,
    build_model,
)
from capsviewer.models.matrix_capsnet import matrix_votes
from capsviewer.training import (
    EpochResult,
    TrainConfig,
    Trainer,
    TrainingFinished,
    evaluate,
    load_checkpoint,
    save_checkpoint,
)

SMALL = {"conv_channels": 8, "primary_types": 4, "conv_caps1_types": 4, "conv_caps2_types": 4}


def test_registered_and_shapes():
    assert MODELS["matrix-capsnet"] == (MatrixCapsNet, MatrixCapsNetConfig)
    model = build_model("matrix-capsnet").eval()
    c = model.config
    assert c.grids == (12, 12, 5, 3) and c.class_input_grid == (3, 3, 8)
    out = model(torch.rand(3, 1, 28, 28))
    assert out.scores.shape == (3, 10) and out.poses.shape == (3, 10, 16)
    assert ((out.scores > 0) & (out.scores < 1)).all()
    assert out.routing is None and out.class_inputs is None
    out = model(torch.rand(3, 1, 28, 28), trace=True, iterations=5)
    assert len(out.routing.trace) == 5
    assert out.routing.responsibilities.shape == (3, 3 * 3 * 8, 10)
    assert out.class_inputs.shape == (3, 3, 3, 8)
    assert out.primary_activations.shape == (3, 12, 12, 8)
    assert c.as_class_input_grid(out.routing.responsibilities).shape == (3, 3, 3, 8, 10)
    torch.testing.assert_close(out.routing.activations, out.scores)
    lambdas = [step.inverse_temperature for step in out.routing.trace]
    assert lambdas == pytest.approx([10 * (1 - 0.95 ** (t + 1)) for t in range(5)])


def test_parameter_count():
    model = build_model("matrix-capsnet")
    count = sum(p.numel() for p in model.parameters())
    # Conv1 832; primary poses 4,224 and activations 264; ConvCaps1 W 3·3·8·8 4×4 matrices
    # 9,216 + β 16; ConvCaps2 9,216 + 16; class capsules 8·10 matrices 1,280 + 20
    assert count == 832 + 4_224 + 264 + 9_232 + 9_232 + 1_300 == 25_084


def test_votes_are_pose_times_transform_with_coordinates_added():
    g = torch.Generator().manual_seed(0)
    poses, transforms = torch.randn(2, 5, 16, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    expected = torch.einsum("niak,ijkc->nijac", poses.view(2, 5, 4, 4), transforms)
    torch.testing.assert_close(matrix_votes(poses, transforms), expected.reshape(2, 5, 3, 16))

    model = build_model("matrix-capsnet", SMALL)
    grid = torch.randn(2, 3, 3, 4, 16, generator=g)
    votes = model.class_caps.votes(grid)
    shared = model.class_caps.transforms.repeat(9, 1, 1, 1)
    plain = matrix_votes(grid.reshape(2, 36, 16), shared)
    added = (votes - plain).detach()
    centres = model.config.class_input_centres() / 28  # 8.5, 12.5, 16.5 px
    torch.testing.assert_close(centres, torch.tensor([8.5, 12.5, 16.5]) / 28)
    rows = added[..., 3].reshape(2, 3, 3, 4, 10)
    cols = added[..., 7].reshape(2, 3, 3, 4, 10)
    torch.testing.assert_close(rows[0, :, 1, 2, 5], centres)  # row coordinate in entry (0, 3)
    torch.testing.assert_close(cols[1, 2, :, 0, 9], centres)  # column in entry (1, 3)
    others = [h for h in range(16) if h not in (3, 7)]
    assert added[..., others].abs().max() < 1e-6


def test_class_layer_routes_the_conv_caps2_capsules():
    torch.manual_seed(0)
    model = build_model("matrix-capsnet", SMALL).eval()
    x = torch.rand(2, 1, 28, 28)
    out = model(x, intermediates=True)
    # recompute the class layer from the model's own stages
    poses, a = model.primary_capsules(x)
    poses, a = model.conv_caps1(poses, a, _route(model))
    poses, a = model.conv_caps2(poses, a, _route(model))
    torch.testing.assert_close(a, out.class_inputs)
    votes = model.class_caps.votes(poses)
    expected = em_routing(votes, a.flatten(1), 2, beta_u=model.class_caps.beta_u,
                          beta_a=model.class_caps.beta_a, inverse_temperature=10.0,
                          variance_epsilon=1e-4, normalize_cost=True)
    torch.testing.assert_close(out.scores, expected.activations)
    torch.testing.assert_close(out.poses, expected.poses)


def _route(model):
    def route(votes, activations, beta_u, beta_a):
        return em_routing(votes, activations, 2, beta_u=beta_u, beta_a=beta_a,
                          inverse_temperature=10.0, variance_epsilon=1e-4, normalize_cost=True)
    return route


def test_backward_gives_every_parameter_a_finite_gradient():
    torch.manual_seed(0)
    model = build_model("matrix-capsnet")
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    model.loss(model(x, y), x, y).total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_spread_loss_by_hand():
    a = torch.tensor([[0.9, 0.5, 0.8], [0.9, 0.5, 0.8]])
    labels = torch.tensor([0, 1])
    # image 0, t = 0: (0.2 − 0.4)⁺² + (0.2 − 0.1)⁺² = 0.01
    # image 1, t = 1: (0.2 + 0.4)² + (0.2 + 0.3)² = 0.36 + 0.25 = 0.61
    assert spread_loss(a, labels, 0.2).item() == pytest.approx((0.01 + 0.61) / 2)
    assert spread_loss(a, labels, 0.9).item() == pytest.approx(
        ((0.9 - 0.4) ** 2 + (0.9 - 0.1) ** 2 + 1.3**2 + 1.2**2) / 2
    )
    assert spread_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 0.9).item() == 0


def test_margin_rises_with_training_steps_only():
    model = build_model("matrix-capsnet", {**SMALL, "margin_ramp_steps": 10})
    assert model.margin == pytest.approx(0.2)
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([3, 4])
    for _ in range(5):
        model(x, y)
    assert int(model.training_steps) == 5 and model.margin == pytest.approx(0.55)
    model.eval()
    model(x, y)
    with torch.no_grad():
        model.train()(x, y)
    assert int(model.training_steps) == 5  # evaluation and no-grad passes do not count
    model.training_steps.fill_(1000)
    assert model.margin == pytest.approx(0.9)
    out = model(x, y)
    expected = spread_loss(out.scores, y, 0.9)
    torch.testing.assert_close(model.loss(out, x, y).total, expected)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("matrix-capsnet", SMALL)
    model.training_steps.fill_(1234)
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"epoch": 1})
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, MatrixCapsNet) and loaded.model.config == model.config
    assert int(loaded.model.training_steps) == 1234
    assert loaded.metadata["architecture"] == "matrix-capsnet"
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(loaded.model(x).scores, model(x).scores)


def test_trainer_runs_an_epoch_and_writes_a_checkpoint(mnist_train, mnist_test, tmp_path):
    config = TrainConfig(
        model="matrix-capsnet", model_config={**SMALL, "routing_iterations": 2},
        epochs=1, batch_size=50, subset=300, test_subset=100, device="cpu",
        output=str(tmp_path / "m.safetensors"),
    )
    events = list(Trainer(config, mnist_train, mnist_test).events())
    epoch = [e for e in events if isinstance(e, EpochResult)]
    assert len(epoch) == 1 and 0 <= epoch[0].test_accuracy <= 1
    assert epoch[0].train_loss > 0 and epoch[0].images_per_second > 0
    finished = events[-1]
    assert isinstance(finished, TrainingFinished) and finished.completed
    loaded = load_checkpoint(finished.checkpoint)
    assert loaded.model.config.routing_iterations == 2
    assert int(loaded.model.training_steps) == 6  # 300 images / 50 per batch
    result = evaluate(loaded.model, mnist_test.subset(100, 0))
    assert result.count == 100 and result.accuracy == pytest.approx(epoch[0].test_accuracy)


# -- the shipped shape: matrix capsules on a CNN backbone (em-capsnet) ---------------------------

def test_em_capsnet_shape_and_parameter_count():
    assert MODELS["em-capsnet"] == (EMCapsNet, EMCapsNetConfig)
    torch.manual_seed(0)
    model = build_model("em-capsnet").eval()
    c = model.config
    assert model.architecture == "em-capsnet" and isinstance(model, MatrixCapsNet)
    assert c.grids == (12, 5, 5) and c.primary_side == 5 and c.class_input_grid == (5, 5, 16)
    assert not hasattr(model, "conv_caps1")  # primary capsules vote for the class capsules
    # Conv1 64@5×5 1,664 + BN 128; Conv2 128@3×3 73,856 + BN 256; primary poses 1×1 to
    # 16·16 33,024 and activations 2,064; class capsules 16·10 4×4 matrices 2,560 + β 20
    count = sum(p.numel() for p in model.parameters())
    assert count == 1_664 + 128 + 73_856 + 256 + 33_024 + 2_064 + 2_560 + 20 == 113_572
    # receptive fields: Conv1 5 px every 2, Conv2 3 cells every 2 → 9 px every 4
    assert c.receptive_field(0, 0) == (0, 0, 9, 9) and c.receptive_field(4, 2) == (16, 8, 25, 17)
    torch.testing.assert_close(c.class_input_centres(), 4.5 + 4.0 * torch.arange(5.0))
    out = model(torch.rand(3, 1, 28, 28), trace=True, iterations=4)
    assert out.scores.shape == (3, 10) and len(out.routing.trace) == 4
    assert out.routing.responsibilities.shape == (3, 5 * 5 * 16, 10)
    assert out.class_inputs.shape == (3, 5, 5, 16)
    torch.testing.assert_close(torch.sigmoid(out.logits), out.scores)


def test_em_capsnet_class_layer_routes_the_primary_capsules():
    torch.manual_seed(0)
    model = build_model("em-capsnet", {"conv_channels": 8, "conv2_channels": 8}).eval()
    x = torch.rand(2, 1, 28, 28)
    out = model(x, intermediates=True)
    poses, a = model.primary_capsules(x)
    torch.testing.assert_close(a, out.class_inputs)
    expected = em_routing(model.class_caps.votes(poses), a.flatten(1), 2,
                          beta_u=model.class_caps.beta_u, beta_a=model.class_caps.beta_a,
                          inverse_temperature=10.0, variance_epsilon=1e-4, normalize_cost=True)
    torch.testing.assert_close(out.scores, expected.activations)
    torch.testing.assert_close(out.poses, expected.poses)


def test_the_shape_options_are_checked():
    with pytest.raises(ValueError, match="conv_caps_layers must be 2 .* or 0"):
        build_model("matrix-capsnet", {"conv_caps_layers": 1})
    with pytest.raises(ValueError, match="loss must be one of spread, cross-entropy"):
        build_model("em-capsnet", {"loss": "hinge"})
    with pytest.raises(ValueError, match="do not fit a 28×28 image"):
        build_model("em-capsnet", {"conv2_kernel": 13, "conv2_stride": 1})


def test_cross_entropy_on_the_activation_logits():
    torch.manual_seed(0)
    model = build_model("em-capsnet", {"conv_channels": 8, "conv2_channels": 8,
                                       "loss": "cross-entropy"})
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    out = model(x)
    loss = model.loss(out, x, y).total
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(out.logits, y))
