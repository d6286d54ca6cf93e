"""Models built on the package's ops."""
from .dream import DreamConfig, DreamModel
from .kv_cache import KVCache
from .llada import LLaDAConfig, LLaDAModel

__all__ = ["DreamConfig", "DreamModel", "KVCache", "LLaDAConfig", "LLaDAModel"]
