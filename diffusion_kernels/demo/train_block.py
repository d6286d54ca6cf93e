"""Train the embedded block-diffusion demo model (a tiny dense SDAR-style BlockDiffusionModel that
sorts 24 digits) with the block-diffusion loss.

    python -m diffusion_kernels.demo.train_block --steps 1500 --batch 64 --threads 1 --out diffusion_kernels/demo/block_model.pt

The sequence is the prompt (24 digits and ``=``), the sorted answer, and ``=`` padding up to a
multiple of the block size (the training layout needs whole blocks). The prompt stays clean; every
block of the rest is noised with its own time and the loss is taken over ``x_t ⊕ x_0`` in one
forward (:func:`~diffusion_kernels.block_diffusion_loss.block_diffusion_loss`), which trains each
block as if decoded after its clean prefix, i.e. what ``generate(cache="exact")`` feeds it.
"""
import argparse

import torch

from ..block_diffusion_loss import block_diffusion_loss
from ..models import BlockDiffusionConfig, BlockDiffusionModel
from . import task
from .train import fit, save

CONFIG = BlockDiffusionConfig(vocab_size=task.VOCAB, hidden_size=64, intermediate_size=192, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=2, block_size=4,
                              mask_token_id=task.MASK, naming="sdar")


def padded_batch(batch: int, generator: torch.Generator, block_size: int = CONFIG.block_size) -> torch.Tensor:
    """``x0 [B, L]``: prompt, sorted answer, then ``=`` up to a multiple of ``block_size``."""
    prompt, answer = task.make_batch(batch, generator)
    L = task.PROMPT_LEN + task.DIGITS
    pad = -L % block_size
    return torch.cat([prompt, answer, torch.full((batch, pad), task.EQ)], dim=1)


def train(steps: int, batch: int, lr: float, seed: int = 0, log_every: int = 50) -> BlockDiffusionModel:
    """Train from a fixed seed; returns the model in eval mode."""
    torch.manual_seed(seed)
    model = BlockDiffusionModel(CONFIG)

    def batch_loss(step, g):
        return block_diffusion_loss(model, padded_batch(batch, g), mask_id=task.MASK, seed=seed + 1234, offset=step,
                                    prompt_lengths=task.PROMPT_LEN, normalize="sft")

    return fit(model, batch_loss, steps, lr, seed, log_every)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="diffusion_kernels/demo/block_model.pt")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    save(train(a.steps, a.batch, a.lr, a.seed), CONFIG, a.out)


if __name__ == "__main__":
    main()
