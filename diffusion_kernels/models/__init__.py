"""Models built on the package's ops."""
from .llada import KVCache, LLaDAConfig, LLaDAModel

__all__ = ["KVCache", "LLaDAConfig", "LLaDAModel"]
