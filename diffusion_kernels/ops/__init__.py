from .confidence import masked_confidence

__all__ = ["masked_confidence"]
