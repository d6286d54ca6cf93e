"""Models built on the package's ops."""
from .kv_cache import KVCache
from .llada import LLaDAConfig, LLaDAModel

__all__ = ["KVCache", "LLaDAConfig", "LLaDAModel"]
