"""Train the embedded demo model (a small LLaDAModel that sorts 24 digits) with masked diffusion.

    python -m diffusion_kernels.demo.train --steps 800 --out diffusion_kernels/demo/sort_model.pt

LLaDA SFT objective: the prompt stays clean, each answer token is masked with probability
``p = (1 - eps) t + eps``, ``t ~ U(0, 1)`` per row, and the loss is the cross-entropy at masked
positions divided by ``p``, summed and divided by the answer length and the batch. Built on the
package's loss API: ``forward_mask`` (Philox noising) + ``masked_diffusion_loss`` (fused masked CE).
"""
import argparse
import time
from typing import Callable

import torch

from ..models import LLaDAConfig, LLaDAModel
from . import task

CONFIG = LLaDAConfig(vocab_size=task.VOCAB, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2,
                     mlp_hidden_size=256, mask_token_id=task.MASK)


def _loss(model, prompt, answer, step, seed):
    """LLaDA's SFT objective with the package's loss API: prompt clean, answer tokens masked with
    p = (1 - eps) t + eps, CE / p at masked positions, / answer length, batch mean."""
    import diffusion_kernels as dk

    x0 = torch.cat([prompt, answer], dim=1)
    xt, masked, p = dk.forward_mask(x0, task.MASK, seed=seed, offset=step, prompt_lengths=task.PROMPT_LEN)
    return dk.masked_diffusion_loss(model(xt), x0, masked, p, normalize="sft", prompt_lengths=task.PROMPT_LEN)


def fit(model: torch.nn.Module, batch_loss: Callable[[int, torch.Generator], torch.Tensor], steps: int, lr: float,
        seed: int = 0, log_every: int = 100) -> torch.nn.Module:
    """AdamW + one-cycle schedule + gradient clipping over ``batch_loss(step, generator)``, from a
    fixed seed (both demo models); returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        loss = batch_loss(step, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - t0:.0f}s", flush=True)
    return model.eval()


def save(model: torch.nn.Module, config, out: str) -> None:
    """The embedded file: the config's fields and the weights in float16 (halves the file)."""
    state = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
    torch.save({"config": config.__dict__, "state_dict": state}, out)
    print("wrote", out)


def train(steps: int, batch: int, lr: float, seed: int = 0, log_every: int = 100):
    torch.manual_seed(seed)
    model = LLaDAModel(CONFIG)

    def batch_loss(step, g):
        prompt, answer = task.make_batch(batch, g)
        return _loss(model, prompt, answer, step, seed + 1234)

    return fit(model, batch_loss, steps, lr, seed, log_every)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="diffusion_kernels/demo/sort_model.pt")
    a = ap.parse_args(argv)
    save(train(a.steps, a.batch, a.lr, a.seed), CONFIG, a.out)


if __name__ == "__main__":
    main()
