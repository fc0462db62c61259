import pytest
import torch

from capsviewer.models import MODELS, BaselineCNN, CapsNet, build_model, make_config


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_capsnet_parameter_counts_match_the_paper():
    model = CapsNet()
    assert count(model) == 8_215_568
    assert count(model) - count(model.decoder) == 6_804_224
    assert model.config.primary_grid == (32, 6, 6) and model.config.num_primary == 1152


def test_routing_bias_is_an_option_off_by_default(tmp_path):
    """The authors' code's bias b_j on s_j: off by default (the shipped state dicts are
    unchanged), else one learned (10, 16) parameter initialised to the configured value that
    enters s_j, reaches the gradient and survives a checkpoint."""
    from capsviewer.training import load_checkpoint, save_checkpoint

    assert CapsNet().digit_bias is None and "digit_bias" not in CapsNet().state_dict()
    torch.manual_seed(0)
    plain = CapsNet(make_config("capsnet", {"conv_channels": 16, "primary_maps": 4}))
    torch.manual_seed(0)
    biased = build_model("capsnet",
                         {"conv_channels": 16, "primary_maps": 4, "routing_bias": 0.1})
    assert count(biased) == count(plain) + 160
    torch.testing.assert_close(biased.digit_bias.detach(), torch.full((10, 16), 0.1))
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 4, 9])
    out = biased(x, trace=True)
    last = out.routing.trace[-1]
    expected = torch.einsum("bij,bijd->bjd", last.couplings, out.votes) + 0.1
    torch.testing.assert_close(last.preactivations, expected)
    assert (out.digit_capsules - plain(x).digit_capsules).abs().max() > 1e-4
    biased.loss(biased(x, y), x, y).total.backward()
    assert biased.digit_bias.grad.abs().max() > 0
    loaded = load_checkpoint(save_checkpoint(tmp_path / "b.safetensors", biased, {})).model
    torch.testing.assert_close(loaded.eval()(x).scores, biased.eval()(x).scores)


def test_cnn_is_small_enough_to_ship():
    assert count(BaselineCNN()) < 1_000_000


def test_primary_capsules_follow_the_documented_grid():
    torch.manual_seed(0)
    model = CapsNet().eval()
    x = torch.rand(2, 1, 28, 28)
    raw = model.primary(torch.relu(model.conv(x)))  # (B, 256, 6, 6)
    u = model.primary_capsules(x)
    grid = model.config.as_primary_grid(u)  # (B, 32, 6, 6, 8)
    for capsule in (0, 37, 500, 1151):
        m, row, col = model.config.primary_position(capsule)
        assert capsule == m * 36 + row * 6 + col
        expected = raw[:, m * 8 : (m + 1) * 8, row, col]
        norm2 = expected.pow(2).sum(-1, keepdim=True)
        torch.testing.assert_close(u[:, capsule], expected * norm2.sqrt() / (1 + norm2))
        assert torch.equal(grid[:, m, row, col], u[:, capsule])
    assert model.config.primary_position(1151) == (31, 5, 5)


def test_receptive_field_of_primary_cells():
    model = CapsNet()
    assert model.receptive_field(0, 0) == (0, 0, 17, 17)
    assert model.receptive_field(5, 5) == (10, 10, 27, 27)
    # the field is exact: changing a pixel outside it leaves that capsule alone
    x = torch.rand(1, 1, 28, 28)
    y = x.clone()
    y[0, 0, 20, 20] += 1  # outside (0, 0)'s field, inside (5, 5)'s
    a, b = model.primary_capsules(x), model.primary_capsules(y)
    assert torch.equal(a[0, 0], b[0, 0]) and not torch.equal(a[0, 35], b[0, 35])


def test_capsnet_forward_shapes_and_masking():
    torch.manual_seed(0)
    model = CapsNet().eval()
    x = torch.rand(3, 1, 28, 28)
    out = model(x, trace=True)
    assert out.scores.shape == (3, 10) and out.digit_capsules.shape == (3, 10, 16)
    assert out.reconstruction.shape == (3, 1, 28, 28)
    assert out.votes.shape == (3, 1152, 10, 16) and len(out.routing.trace) == 3
    torch.testing.assert_close(out.scores, out.digit_capsules.norm(dim=-1))
    # inference masks by the longest capsule; decode_pose of that capsule's pose is the same
    winner = out.scores.argmax(1)
    pose = out.digit_capsules[torch.arange(3), winner]
    torch.testing.assert_close(model.decode_pose(pose, winner), out.reconstruction)
    # training masks by the label
    other = (winner + 1) % 10
    torch.testing.assert_close(model(x, other).reconstruction, model.decode(out.digit_capsules, other))
    assert not torch.allclose(model(x, other).reconstruction, out.reconstruction)


def test_iterations_can_be_overridden():
    model = CapsNet().eval()
    out = model(torch.rand(1, 1, 28, 28), iterations=7, trace=True)
    assert len(out.routing.trace) == 7


@pytest.mark.parametrize("name", sorted(MODELS))
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    model.loss(model(x, y), x, y).total.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_cnn_exposes_probabilities_and_features():
    model = BaselineCNN().eval()
    x = torch.rand(2, 1, 28, 28)
    out = model(x)
    torch.testing.assert_close(out.scores.sum(1), torch.ones(2))
    assert out.features.shape == (2, 256)
    torch.testing.assert_close(out.features, model.forward_features(x))
    torch.testing.assert_close(out.scores, model.classifier(out.features).softmax(-1))


def test_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown fields"):
        make_config("capsnet", {"routing_iterations": 3, "evil": 1})
    assert make_config("capsnet", {"decoder_hidden": [10, 20]}).decoder_hidden == (10, 20)
