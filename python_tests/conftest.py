import os

import pytest
import torch

# Every native op fills its fresh outputs with poison first: an element a kernel forgets to
# write then fails the comparison instead of passing on stale memory.
os.environ.setdefault("DK_POISON_OUTPUTS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    from diffusion_kernels.testing import emulated

    skip_emu = pytest.mark.skip(reason="diffusion_kernels._simt not built (DK_BUILD_EMULATOR=1)")
    skip_cuda = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "emulated" in item.keywords and not emulated.AVAILABLE:
            item.add_marker(skip_emu)
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
