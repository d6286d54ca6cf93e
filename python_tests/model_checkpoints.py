"""Tiny random models and checkpoint directories (config.json + safetensors shards) for the model tests."""
import json

import torch


def randomize(model, seed):
    """Weights large enough that the argmax varies with the input (the default init makes every
    position predict alike); norm weights near 1, biases small. Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                scale = 1.0 if "embed" in name else 1.5 / p.shape[1] ** 0.5
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def write_checkpoint(directory, config: dict, state: dict, shards: int = 2):
    """``config.json`` and ``state`` split over ``shards`` files named as Hugging Face names them."""
    from safetensors.torch import save_file

    (directory / "config.json").write_text(json.dumps(config))
    names = sorted(state)
    per = -(-len(names) // shards)
    for i in range(shards):
        part = {k: state[k].contiguous() for k in names[i * per:(i + 1) * per]}
        save_file(part, str(directory / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"))


def shard_holding(directory, name):
    """The shard file that holds tensor ``name``."""
    from safetensors import safe_open

    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            if name in f.keys():
                return path
    raise KeyError(name)


def rewrite_shard(path, edit):
    """Rewrite one shard with ``edit(dict of tensors)`` applied."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))
