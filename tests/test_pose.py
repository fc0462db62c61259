"""Pose perturbation (Sabour et al. Fig. 4): decoding a pose, one dimension at a time."""

import numpy as np
import pytest
import torch

from capsviewer.analysis.pose import (
    PAPER_OFFSETS,
    offset_pose,
    perturbation_grid,
    reconstruct,
)
from capsviewer.models import build_model


@pytest.fixture(scope="module")
def capsnet():
    torch.manual_seed(0)
    return build_model("capsnet").eval()


@pytest.fixture
def pose():
    return np.random.default_rng(1).normal(0, 0.2, 16).astype(np.float32)


def test_paper_offsets():
    assert len(PAPER_OFFSETS) == 11
    np.testing.assert_allclose(np.diff(PAPER_OFFSETS), 0.05)
    assert PAPER_OFFSETS[0] == -0.25 and PAPER_OFFSETS[-1] == 0.25 and PAPER_OFFSETS[5] == 0


def test_reconstruct_is_the_decoder(capsnet, pose):
    image = reconstruct(capsnet, pose, 3)
    with torch.no_grad():
        direct = capsnet.decode_pose(torch.from_numpy(pose)[None], 3)[0, 0].numpy()
    assert image.shape == (28, 28) and image.dtype == np.float32
    np.testing.assert_array_equal(image, direct)
    # The capsule matters: the same pose in another capsule decodes differently.
    assert not np.allclose(image, reconstruct(capsnet, pose, 4))


def test_offset_pose_changes_one_entry(pose):
    tweaked = offset_pose(pose, 5, 0.15)
    assert tweaked is not pose and tweaked.dtype == pose.dtype
    changed = np.flatnonzero(tweaked != pose)
    assert changed.tolist() == [5]
    assert tweaked[5] == pytest.approx(pose[5] + 0.15)
    assert pose[5] != tweaked[5]  # the input is left alone


def test_grid_matches_single_reconstructions(capsnet, pose):
    grid = perturbation_grid(capsnet, pose, 7)
    assert grid.shape == (16, 11, 28, 28) and grid.dtype == np.float32
    for d in range(16):
        for k, offset in enumerate(PAPER_OFFSETS):
            single = reconstruct(capsnet, offset_pose(pose, d, np.float32(offset)), 7)
            np.testing.assert_allclose(grid[d, k], single, atol=1e-6)
    plain = reconstruct(capsnet, pose, 7)
    for d in range(16):
        np.testing.assert_allclose(grid[d, 5], plain, atol=1e-6)
    # Tweaks change the image, and different dimensions change it differently.
    assert not np.allclose(grid[0, 0], grid[0, 10])
    assert not np.allclose(grid[0, 0], grid[1, 0])


def test_grid_custom_offsets(capsnet, pose):
    offsets = np.array([-1.0, 0.0, 1.0])
    grid = perturbation_grid(capsnet, pose, 2, offsets)
    assert grid.shape == (16, 3, 28, 28)
    np.testing.assert_allclose(grid[4, 2], reconstruct(capsnet, offset_pose(pose, 4, 1.0), 2),
                               atol=1e-6)
