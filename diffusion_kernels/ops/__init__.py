from .confidence import masked_confidence
from .transfer import select_transfer

__all__ = ["masked_confidence", "select_transfer"]
