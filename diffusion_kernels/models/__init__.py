"""Models built on the package's ops."""
from .block_diffusion import BlockDiffusionConfig, BlockDiffusionModel
from .dream import DreamConfig, DreamModel
from .kv_cache import KVCache
from .llada import LLaDAConfig, LLaDAModel

__all__ = ["BlockDiffusionConfig", "BlockDiffusionModel", "DreamConfig", "DreamModel", "KVCache", "LLaDAConfig",
           "LLaDAModel"]
