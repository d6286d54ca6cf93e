"""Fused CPU/CUDA kernels for diffusion language models.

Ops live under ``torch.ops.diffusion_kernels``; the functions here are thin wrappers that
normalise arguments and document them. Pure-PyTorch references of every op are in
``diffusion_kernels.reference``.
"""
import torch  # noqa: F401  (first: _C links against libtorch/libc10, which importing torch loads)

from ._version import __version__
from . import _torch_compat

try:
    from ._build_config import BUILT_TORCH as _BUILT_TORCH
except ImportError:  # a tree that setup.py has not built yet: _C's own import error says more
    _BUILT_TORCH = None
if _BUILT_TORCH is not None:
    _torch_compat.check(_BUILT_TORCH, torch.__version__)
from . import _C  # noqa: F401,E402  (registers torch.ops.diffusion_kernels.*)
from .ops import attention_with_kv_cache, masked_confidence, select_transfer
from .ops import forward_mask, masked_cross_entropy
from . import schedules
from .loss import masked_diffusion_loss
from .fused_linear_loss import fused_linear_masked_diffusion_loss
from .likelihood import monte_carlo_log_likelihood
from .generate import GenerateOutput, generate
from .block_diffusion_loss import block_diffusion_loss
from . import decoding, models, rl

__all__ = ["__version__", "build_info", "attention_with_kv_cache", "masked_confidence", "schedules",
           "select_transfer", "generate", "GenerateOutput", "decoding", "models", "forward_mask", "masked_cross_entropy",
           "masked_diffusion_loss", "fused_linear_masked_diffusion_loss", "monte_carlo_log_likelihood",
           "block_diffusion_loss", "rl"]


def build_info() -> dict:
    """How the native extension was built: package version, the torch it was compiled against,
    whether CUDA kernels were compiled (and for which archs), whether the SIMT-emulated test
    module is present, and the torch running now."""
    info = dict(_C.build_info())
    info["cuda_archs"] = [a for a in info["cuda_archs"].split(";") if a]
    try:
        from . import _simt  # noqa: F401

        info["emulator"] = True
    except ImportError:
        info["emulator"] = False
    info["torch_runtime_version"] = torch.__version__
    return info
