import pytest
import torch

from capsviewer.models import CapsNet
from capsviewer.training import DeviceUnavailable, select_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_picks_cuda_when_present_else_cpu():
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceUnavailable, match="unknown device"):
        select_device("tpu9")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_request_without_gpu_is_refused():
    with pytest.raises(DeviceUnavailable, match="no CUDA GPU"):
        select_device("cuda")


@cuda
def test_capsnet_on_cuda_matches_cpu():
    torch.manual_seed(0)
    model = CapsNet().eval()
    x = torch.rand(4, 1, 28, 28)
    cpu = model(x, trace=True)
    gpu = model.to("cuda")(x.cuda(), trace=True)
    torch.testing.assert_close(gpu.scores.cpu(), cpu.scores, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu.routing.trace[-1].couplings.cpu(), cpu.routing.trace[-1].couplings,
                               rtol=1e-3, atol=1e-4)
