"""The embedded demo: a tiny masked-diffusion model that sorts digit strings."""
import os

import torch

from ..models import LLaDAConfig, LLaDAModel

WEIGHTS = os.path.join(os.path.dirname(__file__), "sort_model.pt")


def load_model(path: str = WEIGHTS) -> LLaDAModel:
    """The shipped sorting model (float32 on CPU)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = LLaDAModel(LLaDAConfig(**blob["config"]))
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return model.eval()
