"""RL post-training of the embedded demo model, the whole loop on a CPU in minutes.

    python -m diffusion_kernels.demo.rl [--iters 20] [--temperature 4] [--steps 4] [--group-steps 4]

The setting is one where the base model is weak: a fast strategy (the 24 digits in one block,
4 steps, 6 tokens per step) sampled at temperature 4. Each iteration samples a group of 8
completions for each of 16 prompts with ``generate(..., return_trajectory=True)``, rewards each
with the fraction of digits in place, and takes GRPO steps on TraceRL's trajectory
log-probabilities (:func:`~diffusion_kernels.rl.trajectory_log_probs`, here with one group of
all 4 steps, so one forward per update; group advantages,
:func:`~diffusion_kernels.rl.clipped_policy_loss`). Accuracy is measured on 128 held-out prompts
before and after, with the same strategy and sampling seeds (README: the numbers of a run).
"""
from __future__ import annotations

import argparse
import time

import torch

from ..generate import generate
from ..rl import clipped_policy_loss, group_advantages, trajectory_log_probs
from . import load_model, task


def reward(sequences: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """``[B]`` float32: the fraction of the answer's digits in place."""
    return (sequences == answers).float().mean(dim=1)


def sample(model, prompts: torch.Tensor, args, seed: int, trajectory: bool = False):
    # [MASK] is never proposed: at a high temperature it could be drawn, and a drawn [MASK] decodes nothing
    return generate(model, prompts, task.DIGITS, task.DIGITS, args.steps, mask_id=task.MASK,
                    temperature=args.temperature, seed=seed, eos_id=task.MASK, suppress_eos=True, progress=False,
                    return_dict=True, return_trajectory=trajectory)


def evaluate(model, prompts: torch.Tensor, answers: torch.Tensor, args) -> dict:
    """Per-digit and whole-answer accuracy over ``args.eval_seeds`` sampling seeds."""
    digit, exact = [], []
    for s in range(args.eval_seeds):
        out = sample(model, prompts, args, seed=10_000 + s).sequences
        digit.append(reward(out, answers).mean())
        exact.append((out == answers).all(dim=1).float().mean())
    return {"digits": float(torch.stack(digit).mean()), "exact": float(torch.stack(exact).mean())}


def train(model, args, log=print) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    for it in range(args.iters):
        prompts, answers = task.make_batch(args.prompts, g)
        prompts, answers = prompts.repeat_interleave(args.group, 0), answers.repeat_interleave(args.group, 0)
        model.eval()
        out = sample(model, prompts, args, seed=it, trajectory=True)
        traj = out.trajectory
        r = reward(out.sequences, answers)
        adv = group_advantages(r, args.group)
        if args.group_steps == 1:  # the sampler's own per-step values (with [MASK] out of its softmax)
            old = traj.log_prob
        else:  # the sampling policy by the estimator the update uses: one forward per group
            with torch.no_grad():
                old = trajectory_log_probs(model, traj, args.group_steps, temperature=args.temperature)
        model.train()
        for _ in range(args.updates):
            new = trajectory_log_probs(model, traj, args.group_steps, temperature=args.temperature)
            loss = clipped_policy_loss(new, old, adv, clip_eps=0.2, mask=traj.action_mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if it % args.log_every == 0 or it == args.iters - 1:
            log(f"iter {it:3d}  reward {float(r.mean()):.4f}  loss {float(loss.detach()):+.4f}")
    model.eval()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20, help="RL iterations (one batch of samples each)")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per iteration")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt (GRPO group)")
    ap.add_argument("--updates", type=int, default=2, help="policy updates per batch")
    ap.add_argument("--steps", type=int, default=4, help="decoding steps for the 24 digits (one block)")
    ap.add_argument("--group-steps", type=int, default=4, help="TraceRL's steps per forward")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval-prompts", type=int, default=128)
    ap.add_argument("--eval-seeds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=5)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    model = load_model()
    held_out, answers = task.make_batch(args.eval_prompts, torch.Generator().manual_seed(10_000 + args.seed))
    print(f"strategy: 24 digits in one block, {args.steps} steps, temperature {args.temperature}; "
          f"{args.iters} iterations x {args.prompts} prompts x {args.group} samples")
    t0 = time.perf_counter()
    before = evaluate(model, held_out, answers, args)
    print(f"held-out before: digits in place {100 * before['digits']:.1f}%, whole answers {100 * before['exact']:.1f}%")
    train(model, args)
    after = evaluate(model, held_out, answers, args)
    print(f"held-out after:  digits in place {100 * after['digits']:.1f}%, whole answers {100 * after['exact']:.1f}%")
    print(f"{time.perf_counter() - t0:.0f}s in all")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
