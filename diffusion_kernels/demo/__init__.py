"""The embedded demo: a tiny masked-diffusion model that sorts digit strings."""
import os

import torch

from ..models import BlockDiffusionConfig, BlockDiffusionModel, LLaDAConfig, LLaDAModel

WEIGHTS = os.path.join(os.path.dirname(__file__), "sort_model.pt")


def load_model(path: str = WEIGHTS) -> LLaDAModel:
    """The shipped sorting model (float32 on CPU)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = LLaDAModel(LLaDAConfig(**blob["config"]))
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return model.eval()


BLOCK_WEIGHTS = os.path.join(os.path.dirname(__file__), "block_model.pt")


def load_block_model(path: str = BLOCK_WEIGHTS) -> BlockDiffusionModel:
    """The shipped block-diffusion sorting model (float32 on CPU), decoded with ``cache="exact"``.

    Args:
        path: the weights file (default: the embedded ``block_model.pt``).

    Returns:
        A :class:`~diffusion_kernels.models.BlockDiffusionModel` in eval mode.

    Examples:
        >>> model = load_block_model()
        >>> model.config.block_size
        4
    """
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = BlockDiffusionModel(BlockDiffusionConfig(**blob["config"]))
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return model.eval()
