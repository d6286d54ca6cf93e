"""Which torch a built diffusion_kernels binary runs with.

The extension links against libtorch's C++ API, which has no stable ABI: a binary built on one
torch release loads on the next minor release (CI builds on 2.13 and runs the smoke test on
2.14) but not on an older one (symbols such as ``torch::Library::_def`` change). So a build on
torch ``X.Y`` supports ``X.Y <= torch < X.(Y+2)``; the wheel's metadata says the same, and
``import diffusion_kernels`` refuses anything else with one clear error.
"""
import os
import re
from typing import Tuple

OVERRIDE = "DK_ALLOW_TORCH_MISMATCH"


def major_minor(version: str) -> Tuple[int, int]:
    """``"2.14.1+cu130"`` -> ``(2, 14)``."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:
        raise ValueError(f"not a torch version: {version!r}")
    return int(m.group(1)), int(m.group(2))


def requirement(built: str) -> str:
    """The pip requirement a binary built on torch ``built`` declares."""
    major, minor = major_minor(built)
    return f"torch>={major}.{minor},<{major}.{minor + 2}"


def supported(built: str, running: str) -> bool:
    (bmaj, bmin), (rmaj, rmin) = major_minor(built), major_minor(running)
    return rmaj == bmaj and bmin <= rmin <= bmin + 1


def check(built: str, running: str) -> None:
    """Raise ImportError naming both versions unless ``running`` is in the supported range."""
    if os.environ.get(OVERRIDE, "0") in ("1", "true", "yes", "on") or supported(built, running):
        return
    raise ImportError(
        f"diffusion_kernels was built against torch {built} and supports {requirement(built)}, but torch {running} "
        f"is installed. Install a torch in that range, or rebuild diffusion_kernels against this one "
        f"(pip install --no-build-isolation .); set {OVERRIDE}=1 to try anyway.")
