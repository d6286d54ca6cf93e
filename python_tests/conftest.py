import os

import pytest
import torch

# Every native op fills its fresh outputs with poison first: an element a kernel forgets to
# write then fails the comparison instead of passing on stale memory.
os.environ.setdefault("DK_POISON_OUTPUTS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class Backend:
    """Where an op runs: ``cpu`` (the native CPU kernels), ``emulated`` (the CUDA kernels executed
    on CPU tensors by the SIMT emulator) or ``cuda`` (a real GPU). ``backend.masked_confidence``
    etc. are the public functions with that backend's kernels; ``backend.device`` is where their
    tensors live."""

    def __init__(self, name):
        import diffusion_kernels
        from diffusion_kernels.testing import emulated

        self.name = name
        self.device = torch.device("cuda" if name == "cuda" else "cpu")
        self._ops = emulated if name == "emulated" else diffusion_kernels

    @property
    def emulated(self):
        return self.name == "emulated"

    def __getattr__(self, op):
        return getattr(self._ops, op)

    def __repr__(self):
        return self.name


@pytest.fixture(params=[pytest.param("cpu"), pytest.param("emulated", marks=pytest.mark.emulated),
                        pytest.param("cuda", marks=pytest.mark.cuda)])
def backend(request):
    """Runs a test once per backend; the emulated and cuda runs skip when not available."""
    return Backend(request.param)


def pytest_collection_modifyitems(config, items):
    from diffusion_kernels.testing import emulated

    skip_emu = pytest.mark.skip(reason="diffusion_kernels._simt not built (DK_BUILD_EMULATOR=1)")
    skip_cuda = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "emulated" in item.keywords and not emulated.AVAILABLE:
            item.add_marker(skip_emu)
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
