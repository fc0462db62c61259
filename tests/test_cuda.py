"""The CUDA path: the same numbers as the CPU, bf16 close to fp32, the trainer end to end.
Skipped where no CUDA GPU is present."""

import pytest
import torch

from capsviewer.models import CapsNet, build_model
from capsviewer.training import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

TINY = {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]}


@pytest.fixture(autouse=True)
def plain_fp32():
    """No TF32: CUDA must match the CPU to fp32 rounding."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("name", ["capsnet", "cnn"])
def test_forward_and_backward_on_cuda_equal_the_cpu(name):
    torch.manual_seed(0)
    cpu = build_model(name).eval()  # eval: no dropout in the CNN
    gpu = build_model(name).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    outputs = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        xd, yd = x.to(device), y.to(device)
        out = model(xd, yd)
        model.loss(out, xd, yd).total.backward()
        outputs.append((out.scores.cpu(), {k: p.grad.cpu() for k, p in model.named_parameters()}))
    (scores_cpu, grads_cpu), (scores_gpu, grads_gpu) = outputs
    torch.testing.assert_close(scores_gpu, scores_cpu, rtol=1e-4, atol=1e-5)
    for key, grad in grads_cpu.items():
        scale = grad.abs().max().clamp_min(1e-12)
        assert (grads_gpu[key] - grad).abs().max() / scale < 1e-3, key


def test_bf16_autocast_on_cuda_stays_close_to_fp32():
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16")
    torch.manual_seed(0)
    model = CapsNet().cuda().eval()
    x = torch.rand(64, 1, 28, 28, device="cuda")
    with torch.no_grad():
        plain = model(x)
        with torch.autocast("cuda", torch.bfloat16):
            mixed = model(x)
    assert mixed.digit_capsules.dtype == torch.float32
    relative = (mixed.digit_capsules - plain.digit_capsules).norm() / plain.digit_capsules.norm()
    assert relative < 0.02
    assert (mixed.scores.argmax(1) == plain.scores.argmax(1)).float().mean() > 0.9


def test_trainer_runs_on_cuda_with_data_on_the_device(mnist_train, mnist_test, tmp_path):
    out = tmp_path / "m.safetensors"
    config = TrainConfig(model_config=TINY, epochs=2, batch_size=32, subset=256, test_subset=64,
                         device="cuda", output=str(out), seed=0)
    trainer = Trainer(config, mnist_train, mnist_test)
    finished = trainer.run()
    assert finished.completed and len(finished.history) == 2
    assert trainer.precision in ("bf16", "fp32")
    assert all(e.test_accuracy >= 0 and e.images_per_second > 0 for e in finished.history)
    # same seed, same result on the GPU too (cuDNN autotuning may pick other kernels: close)
    again = Trainer(config, mnist_train, mnist_test)
    again.run()
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value, rtol=1e-3, atol=1e-4)


def test_bf16_training_matches_fp32_training_on_cuda(mnist_train, mnist_test):
    """Same seed and steps: the bf16 path learns what the fp32 path learns."""
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16")
    accuracies = {}
    for precision in ("bf16", "fp32"):
        config = TrainConfig(epochs=1, batch_size=64, subset=4096, test_subset=1000,
                             device="cuda", precision=precision, seed=0)
        accuracies[precision] = Trainer(config, mnist_train, mnist_test).run().history[-1].test_accuracy
    assert accuracies["fp32"] > 0.85
    assert abs(accuracies["bf16"] - accuracies["fp32"]) < 0.02


def test_batch_loop_does_not_wait_for_the_gpu(mnist_train, mnist_test):
    """Per batch the host only queues work: with progress reported once per epoch, the loop
    makes far fewer host–device synchronisations than it has batches."""
    import warnings

    config = TrainConfig(model_config=TINY, epochs=1, batch_size=16, subset=16 * 24,
                         test_subset=16, device="cuda", progress_interval=1e9, seed=0)
    trainer = Trainer(config, mnist_train, mnist_test)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) < 12, [str(w.message) for w in syncs[:5]]
