from .confidence import masked_confidence
from .forward_mask import forward_mask
from .masked_ce import masked_cross_entropy

__all__ = ["masked_confidence", "forward_mask", "masked_cross_entropy"]
