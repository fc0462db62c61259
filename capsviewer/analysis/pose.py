"""What a digit capsule's pose encodes: decode a pose, or a pose with one dimension tweaked.

Sabour et al. (2017), Fig. 4: feed the decoder one digit capsule's 16-D activity vector v_j
(all other capsules masked to zero) with one dimension offset by −0.25, −0.20, …, +0.25, and
look at what changes in the reconstruction (stroke width, skew, scale, translation…).
"""

from __future__ import annotations

import numpy as np
import torch

from capsviewer.data.transforms import placement

# Fig. 4: "tweak one dimension by intervals of 0.05 in the range [−0.25, 0.25]".
PAPER_OFFSETS = np.linspace(-0.25, 0.25, 11)


@torch.no_grad()
def decode_poses(model, poses: np.ndarray, digit: int) -> np.ndarray:
    """Decode poses (B, 16) placed in digit capsule ``digit`` → images (B, H, W) float32."""
    device, dtype = placement(model)
    batch = torch.as_tensor(np.asarray(poses), dtype=dtype, device=device)
    images = model.decode_pose(batch, int(digit))  # (B, C, H, W)
    return images[:, 0].float().cpu().numpy()


def reconstruct(model, pose: np.ndarray, digit: int) -> np.ndarray:
    """x̂ = decoder(pose in capsule ``digit``, other capsules 0): one image (H, W) float32."""
    return decode_poses(model, np.asarray(pose)[None], digit)[0]


def offset_pose(pose: np.ndarray, dimension: int, offset: float) -> np.ndarray:
    """A copy of ``pose`` with ``pose[dimension] += offset``."""
    pose = np.asarray(pose)
    tweaked = np.array(pose, dtype=np.result_type(pose.dtype, np.float32))
    tweaked[dimension] += offset
    return tweaked


def perturbation_grid(
    model, pose: np.ndarray, digit: int, offsets: np.ndarray = PAPER_OFFSETS
) -> np.ndarray:
    """Fig. 4: image [d, k] decodes ``pose`` with dimension d offset by ``offsets[k]``.

    One batched decoder call of 16·len(offsets) poses; returns (16, K, H, W) float32.
    """
    pose = np.asarray(pose, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.float32)
    dims, count = pose.shape[0], offsets.shape[0]
    poses = np.broadcast_to(pose, (dims, count, dims)).copy()  # [d, k, :]
    poses[np.arange(dims), :, np.arange(dims)] += offsets  # poses[d, k, d] += offsets[k]
    images = decode_poses(model, poses.reshape(dims * count, dims), digit)
    return images.reshape(dims, count, *images.shape[1:])
