from .attention import attention_with_kv_cache
from .confidence import masked_confidence
from .transfer import select_transfer

__all__ = ["attention_with_kv_cache", "masked_confidence", "select_transfer"]
