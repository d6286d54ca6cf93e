from .attention import attention_with_kv_cache
from .confidence import masked_confidence
from .transfer import select_transfer
from .forward_mask import forward_mask
from .masked_ce import masked_cross_entropy

__all__ = ["attention_with_kv_cache", "masked_confidence", "select_transfer", "forward_mask", "masked_cross_entropy"]
