from .attention import attention_with_kv_cache
from .confidence import masked_confidence

__all__ = ["masked_confidence", "attention_with_kv_cache"]
