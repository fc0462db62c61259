"""Routing on real images: diagnostics, ablation, decoded votes and the vote cloud agree with
direct computations on the model."""

import math

import numpy as np
import pytest
import torch

from capsviewer.analysis.inspection import inspect_capsnet
from capsviewer.data.transforms import as_batch
from capsviewer.analysis.routing_diagnostics import (
    UPDATES,
    VoteSelection,
    accuracy_by_updates,
    combine_votes,
    coupling_entropy,
    decode_vote,
    inspection_diagnostics,
    inspection_vote_cloud,
    iterations_for,
    principal_plane,
    routing_ablation,
    routing_diagnostics,
    updates_label,
    vote_pose,
)
from capsviewer.maths import squash
from capsviewer.training import load_checkpoint
from capsviewer.training.evaluation import EvaluationCancelled


@pytest.fixture(scope="module")
def capsnet(model_files):
    return load_checkpoint(model_files["capsnet"]).model.eval()


@pytest.fixture(scope="module")
def image(mnist_test):
    return mnist_test.images[0, 0]


@pytest.fixture(scope="module")
def traced(capsnet, image):
    """The core's own forward pass with 4 iterations: primary capsules, votes and trace."""
    with torch.no_grad():
        return capsnet(as_batch(image, torch.device("cpu")), iterations=4, trace=True)


@pytest.fixture(scope="module")
def capsules(capsnet, image):
    return inspect_capsnet(capsnet, image, iterations=4)


def test_uniform_couplings_have_entropy_log_J_and_max_coupling_1_over_J():
    uniform = np.full((1, 1152, 10), 0.1)
    diagnostics = routing_diagnostics(uniform, np.zeros_like(uniform))
    assert diagnostics.entropy[0] == pytest.approx(math.log(10), rel=1e-15)
    assert diagnostics.weighted_entropy[0] == pytest.approx(math.log(10), rel=1e-15)
    assert diagnostics.max_coupling[0] == pytest.approx(0.1, rel=1e-15)
    assert diagnostics.uniform_entropy == math.log(10) and diagnostics.uniform_max_coupling == 0.1
    # one certain child: H = 0 (0 log 0 = 0), max c = 1
    assert coupling_entropy(np.eye(10)[3]) == 0.0


def test_no_update_routes_uniformly(capsnet, image):
    one = inspect_capsnet(capsnet, image, iterations=iterations_for(0))
    assert len(one.iterations) == 1
    np.testing.assert_array_equal(one.iterations[0].couplings, np.float32(0.1))  # softmax of 0
    diagnostics = inspection_diagnostics(one)
    assert diagnostics.entropy[0] == pytest.approx(math.log(10), rel=1e-6)  # c in float32
    assert diagnostics.max_coupling[0] == pytest.approx(0.1, rel=1e-6)
    assert "uniform" in diagnostics.summary()


def test_diagnostics_equal_a_direct_computation(capsules, traced):
    diagnostics = inspection_diagnostics(capsules)
    u_length = traced.primary_capsules[0].double().norm(dim=-1)  # ‖u_i‖ (1152,)
    votes = traced.votes[0].double()  # û_{j|i} (1152, 10, 16)
    assert diagnostics.iterations == 4
    for r, step in enumerate(traced.routing.trace):
        c = step.couplings[0].double()
        v = step.outputs[0].double()
        entropy = -(c * c.log()).sum(-1)
        assert diagnostics.entropy[r] == pytest.approx(entropy.mean().item(), rel=1e-6)
        weighted = (u_length * entropy).sum() / u_length.sum()
        assert diagnostics.weighted_entropy[r] == pytest.approx(weighted.item(), rel=1e-6)
        assert diagnostics.max_coupling[r] == pytest.approx(c.max(-1).values.mean().item(), rel=1e-6)
        weighted_max = (u_length * c.max(-1).values).sum() / u_length.sum()
        assert diagnostics.weighted_max_coupling[r] == pytest.approx(weighted_max.item(), rel=1e-6)
        objective = torch.einsum("ij,ijd,jd->", c, votes, v)  # Σ_ij c_ij û_{j|i}·v_j
        assert diagnostics.objective[r] == pytest.approx(objective.item(), rel=1e-5)
        s = torch.einsum("ij,ijd->jd", c, votes)  # … = Σ_j s_j·v_j
        assert diagnostics.objective[r] == pytest.approx((s * v).sum().item(), rel=1e-5)
    # bounds: uniform couplings have the largest entropy and the smallest maximum
    assert np.all(diagnostics.entropy <= math.log(10) + 1e-6)
    assert np.all(diagnostics.max_coupling >= 0.1 - 1e-7)


def test_weighting_by_primary_length_discounts_absent_parts():
    couplings = np.full((1, 2, 10), 0.1)
    couplings[0, 1] = np.eye(10)[0]  # child 1 is certain, but barely there
    diagnostics = routing_diagnostics(couplings, np.zeros_like(couplings), np.array([1.0, 1e-6]))
    assert diagnostics.entropy[0] == pytest.approx(math.log(10) / 2)
    assert diagnostics.weighted_entropy[0] == pytest.approx(math.log(10), rel=1e-5)
    assert diagnostics.max_coupling[0] == pytest.approx(0.55)
    assert diagnostics.weighted_max_coupling[0] == pytest.approx(0.1, rel=1e-4)


def test_ablation_equals_the_forward_pass_for_each_k(capsnet, image):
    ablation = routing_ablation(capsnet, image)
    assert ablation.updates == UPDATES and ablation.trained_iterations == 3
    assert ablation.label(0) == "0 updates (uniform, r = 1)"
    assert ablation.label(2) == "2 updates (r = 3, as trained)"
    x = as_batch(image, torch.device("cpu"))
    for n, k in enumerate(UPDATES):
        with torch.no_grad():
            out = capsnet(x, iterations=k + 1)
        np.testing.assert_allclose(ablation.lengths[n], out.scores[0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(ablation.poses[n], out.digit_capsules[0].numpy(), atol=1e-7)
        assert ablation.predictions[n] == int(out.scores[0].argmax())
        np.testing.assert_allclose(ablation.reconstructions[n], out.reconstruction[0, 0].numpy(),
                                   atol=1e-6)


def test_updates_are_labelled_with_their_iterations():
    assert iterations_for(0) == 1 and iterations_for(5) == 6
    assert updates_label(1) == "1 update (r = 2)"
    assert updates_label(5, trained_iterations=6) == "5 updates (r = 6, as trained)"
    with pytest.raises(ValueError):
        iterations_for(-1)


def test_decoding_every_vote_with_its_coupling_gives_the_reconstruction(capsnet, capsules):
    everything = tuple(range(1152))
    j = capsules.prediction
    for scale in ("squash", "parent"):  # squash(Σ_i c_ij û_{j|i}) = v_j; so is its direction at ‖v_j‖
        decoded = decode_vote(capsnet, capsules, VoteSelection(j, everything, "couplings", scale))
        np.testing.assert_allclose(decoded.pose, capsules.poses[j], atol=1e-6)
        np.testing.assert_allclose(decoded.image, capsules.reconstruction, atol=1e-5)
    other = (j + 1) % 10  # any capsule: the decoder with v_other in its slot
    decoded = decode_vote(capsnet, capsules, VoteSelection(other, everything, "couplings", "squash"))
    with torch.no_grad():
        expected = capsnet.decode_pose(torch.from_numpy(capsules.poses[other])[None], other)
    np.testing.assert_allclose(decoded.image, expected[0, 0].numpy(), atol=1e-5)


def test_one_vote_is_decoded_in_its_digit_slot(capsnet, capsules, traced):
    i, j = 7 * 36 + 2 * 6 + 3, 4  # map 7, row 2, col 3
    vote = traced.votes[0, i, j]  # û_{j|i}
    np.testing.assert_allclose(capsules.votes[7, 2, 3, j], vote.numpy())
    raw = decode_vote(capsnet, capsules, VoteSelection(j, (i,), "sum", "raw"))
    np.testing.assert_allclose(raw.pose, vote.numpy(), atol=1e-7)
    masked = torch.zeros(1, 10, 16)
    masked[0, j] = vote  # the decoder's masking: slot j, the other nine zero
    with torch.no_grad():
        expected = capsnet.decode_flat(masked.flatten(1))[0, 0].numpy()
    np.testing.assert_allclose(raw.image, expected, atol=1e-6)
    scaled = decode_vote(capsnet, capsules, VoteSelection(j, (i,), "couplings", "parent"))
    length = capsules.iterations[-1].parent_lengths[j]
    assert np.linalg.norm(scaled.pose) == pytest.approx(length, rel=1e-5)
    np.testing.assert_allclose(scaled.pose / length, vote.numpy() / vote.norm().item(), atol=1e-5)
    assert not np.array_equal(raw.image, scaled.image)
    # a sum over a selection, weighted by the couplings of iteration 2
    chosen = (i, i + 1, 500)
    selection = VoteSelection(j, chosen, "couplings", "squash", iteration=1)
    c = capsules.iterations[1].couplings.reshape(1152, 10)[list(chosen), j]
    combined = (torch.from_numpy(c).double()[:, None] * traced.votes[0, list(chosen), j].double()).sum(0)
    np.testing.assert_allclose(combine_votes(capsules.votes, selection, capsules.iterations[1].couplings),
                               combined.numpy(), rtol=1e-6)
    np.testing.assert_allclose(vote_pose(combined.numpy(), "squash"), squash(combined).numpy(), rtol=1e-12)
    with pytest.raises(ValueError):
        VoteSelection(j, ())


def test_vote_cloud_is_the_pca_projection(capsules, traced):
    j = (capsules.prediction + 2) % 10
    cloud = inspection_vote_cloud(capsules, j)
    votes = traced.votes[0, :, j].double().numpy()  # (1152, 16)
    mean = votes.mean(axis=0)
    np.testing.assert_allclose(cloud.mean, mean, atol=1e-9)
    np.testing.assert_allclose(cloud.components @ cloud.components.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(cloud.coordinates, (votes - mean) @ cloud.components.T, atol=1e-12)
    np.testing.assert_allclose(cloud.project(votes), cloud.coordinates, atol=1e-12)
    # the components are the two leading eigenvectors of the covariance, with their shares
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(votes.T, bias=True))
    for k in range(2):
        leading = eigenvectors[:, -1 - k]
        assert abs(leading @ cloud.components[k]) == pytest.approx(1.0, abs=1e-8)
        assert cloud.explained[k] == pytest.approx(eigenvalues[-1 - k] / eigenvalues.sum(), rel=1e-8)
    variance = cloud.coordinates.var(axis=0)
    np.testing.assert_allclose(variance, eigenvalues[::-1][:2], rtol=1e-8)
    # per iteration: couplings of digit j, s_j and v_j projected, and the ray they lie on
    for r, step in enumerate(traced.routing.trace):
        c = step.couplings[0, :, j].double().numpy()
        np.testing.assert_allclose(cloud.couplings[r], c, rtol=1e-6)
        s = step.preactivations[0, j].double().numpy()
        np.testing.assert_allclose(cloud.preactivations[r], (s - mean) @ cloud.components.T, atol=1e-5)
        np.testing.assert_allclose(cloud.outputs[r], cloud.project(step.outputs[0, j].numpy()), atol=1e-9)
        np.testing.assert_allclose(cloud.centres[r], cloud.project(s / c.sum()), atol=1e-6)
        ray = cloud.outputs[r] - cloud.origin
        towards_centre = cloud.centres[r] - cloud.origin
        assert abs(ray[0] * towards_centre[1] - ray[1] * towards_centre[0]) < 1e-6 * np.linalg.norm(ray)
        np.testing.assert_allclose(cloud.agreement[r], votes @ step.outputs[0, j].double().numpy(),
                                   rtol=1e-4, atol=1e-6)
    assert np.all((cloud.in_plane > 0) & (cloud.in_plane <= 1 + 1e-12))
    np.testing.assert_allclose(cloud.couplings[0], 0.1, rtol=1e-6)  # r = 1: uniform


def test_principal_plane_signs_are_fixed():
    points = np.random.default_rng(0).normal(size=(200, 5)) * [5, 2, 1, 1, 1]
    mean, components, explained = principal_plane(points)
    _, flipped, _ = principal_plane(-points)
    np.testing.assert_allclose(components, flipped, atol=1e-12)
    assert explained[0] > explained[1] > 0 and explained.sum() < 1


def test_accuracy_by_updates_matches_the_model(capsnet, mnist_test):
    images, labels = mnist_test.images[:60], mnist_test.labels[:60]
    seen = []
    result = accuracy_by_updates(capsnet, images, labels, (0, 2, 4), batch_size=25,
                                 progress=lambda done, total: seen.append((done, total)))
    assert seen == [(25, 60), (50, 60), (60, 60)]
    assert result.updates == (0, 2, 4) and result.count == 60 and result.reference == 1
    x = images.float() / 255
    for n, k in enumerate((0, 2, 4)):
        with torch.no_grad():
            predicted = capsnet(x, iterations=k + 1).scores.argmax(1).numpy()
        np.testing.assert_array_equal(result.predictions[n], predicted)
        assert result.correct[n] == int((predicted == labels.numpy()).sum())
        assert result.accuracy[n] == pytest.approx(result.correct[n] / 60)
        assert result.changed[n] == int((predicted != result.predictions[1]).sum())
    assert result.changed[1] == 0
    rows = result.rows()
    assert [row["iterations"] for row in rows] == [1, 3, 5]
    assert rows[1]["label"] == "2 updates (r = 3, as trained)"
    with pytest.raises(EvaluationCancelled):
        accuracy_by_updates(capsnet, images, labels, should_stop=lambda: True)
