"""End-to-end generate() benchmark: tokens/s, NFE, accuracy and agreement with vanilla for
vanilla / prefix cache / dual cache / threshold 0.9 / dual + threshold, and the embedded
block-diffusion model (exact cache) against the full-attention one.

    python bench/bench_generate.py               # embedded sorting model + a wide random model
    python bench/bench_generate.py --only embedded

The wide model is a random LLaDAModel (no accuracy: its confidences are flat, so threshold
decoding degenerates to one token per step; the row measures the caches' cost model).
Timings are medians; on a shared machine repeat and compare ratios, not absolute numbers.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from diffusion_kernels.__main__ import default_steps  # noqa: E402
from diffusion_kernels.demo import load_block_model, load_model, task  # noqa: E402
from diffusion_kernels.demo.strategies import bench_table, format_model_table, format_table, model_rows  # noqa: E402
from diffusion_kernels.models import LLaDAConfig, LLaDAModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["embedded", "wide"], default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--wide-d", type=int, default=1024)
    ap.add_argument("--wide-layers", type=int, default=4)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--block", type=int, default=16)
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.only in (None, "embedded"):
        prompts, answers = task.make_batch(64, torch.Generator().manual_seed(1))
        for block in (task.BLOCK, task.DIGITS):  # the demo's blocks, then the answer as one block
            rows = bench_table(load_model(), prompts, task.DIGITS, block, task.MASK,
                               check=lambda s: (s == answers).all(1), repeats=a.repeats)
            print(f"## embedded sorting model (batch 64, gen {task.DIGITS}, block {block}, steps = gen)\n")
            print(format_table(rows), "\n")
        block_model = load_block_model()
        steps = default_steps("block", block_model.config.block_size)
        rows = model_rows(load_model(), block_model, prompts, answers, task.DIGITS, task.BLOCK, steps, task.MASK,
                          repeats=a.repeats)
        print(f"## full attention vs block diffusion (batch 64, gen {task.DIGITS}; block model: steps {steps}, "
              f"exact cache)\n")
        print(format_model_table(rows), "\n")
    if a.only in (None, "wide"):
        cfg = LLaDAConfig(vocab_size=4096, d_model=a.wide_d, n_layers=a.wide_layers, n_heads=a.wide_d // 64,
                          mlp_hidden_size=3 * a.wide_d, mask_token_id=4095)
        model = LLaDAModel(cfg).eval()
        prompts = torch.randint(0, 4095, (1, 32))
        rows = bench_table(model, prompts, a.gen, a.block, 4095, repeats=a.repeats)
        print(f"## random LLaDAModel d={a.wide_d}, {a.wide_layers} layers (batch 1, prompt 32, gen {a.gen}, "
              f"block {a.block}, steps = gen)\n")
        print(format_table(rows))


if __name__ == "__main__":
    main()
