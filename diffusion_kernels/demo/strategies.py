"""The decoding strategies the bench compares, and one measured run of each."""
import time

import torch

from ..generate import generate

# name -> generate() keywords (steps = gen_length: one token per step, LLaDA's vanilla setting)
STRATEGIES = {
    "vanilla": dict(),
    "prefix cache": dict(cache="prefix"),
    "dual cache": dict(cache="dual"),
    "threshold 0.9": dict(threshold=0.9),
    "dual + threshold 0.9": dict(cache="dual", threshold=0.9),
}


def run_strategy(model, prompts, gen_length, block_length, mask_id, check=None, repeats=3, steps=None, **kw):
    """Median wall time over ``repeats`` runs; returns a dict of tokens/s, NFE, accuracy and
    the tokens (for agreement with vanilla). ``steps`` defaults to ``gen_length``."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, prompts, gen_length, block_length, gen_length if steps is None else steps,
                       mask_id=mask_id, progress=False, return_dict=True, **kw)
        times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    acc = float(check(out.sequences).float().mean()) if check is not None else float("nan")
    return dict(tokens_per_s=out.sequences.numel() / t, nfe=out.nfe, accuracy=acc, seconds=t, tokens=out.sequences)


def bench_table(model, prompts, gen_length, block_length, mask_id, check=None, repeats=3):
    rows, ref = [], None
    for name, kw in STRATEGIES.items():
        r = run_strategy(model, prompts, gen_length, block_length, mask_id, check, repeats, **kw)
        if ref is None:
            ref = r
        r["agree"] = float((r["tokens"] == ref["tokens"]).float().mean())
        r["speedup"] = r["tokens_per_s"] / ref["tokens_per_s"]
        rows.append((name, r))
    return rows


def format_table(rows) -> str:
    lines = ["| strategy | tokens/s | speed-up | NFE | accuracy | tokens equal to vanilla |",
             "|---|---|---|---|---|---|"]
    for name, r in rows:
        acc = "-" if r["accuracy"] != r["accuracy"] else f"{100 * r['accuracy']:.1f}%"
        lines.append(f"| {name} | {r['tokens_per_s']:.3g} | {r['speedup']:.2f}x | {r['nfe']} | {acc} | "
                     f"{100 * r['agree']:.1f}% |")
    return "\n".join(lines)


def model_rows(llada, block_model, prompts, answers, gen_length, block_length, block_steps, mask_id, repeats=3):
    """The full-attention demo model (dual cache) against the block-diffusion one (exact cache),
    one token per step and with threshold 0.9: ``[(model, decoding, result)]``, each result also
    with ``digit_accuracy`` (share of answer tokens right)."""
    runs = [("full attention", f"dual cache, block {block_length}", llada, block_length, None, dict(cache="dual")),
            ("full attention", f"dual + threshold 0.9, block {block_length}", llada, block_length, None,
             dict(cache="dual", threshold=0.9)),
            ("block diffusion", f"exact cache, block {block_model.config.block_size}", block_model,
             block_model.config.block_size, block_steps, dict(cache="exact")),
            ("block diffusion", f"exact + threshold 0.9, block {block_model.config.block_size}", block_model,
             block_model.config.block_size, block_steps, dict(cache="exact", threshold=0.9))]
    rows = []
    for name, decoding, model, block, steps, kw in runs:
        r = run_strategy(model, prompts, gen_length, block, mask_id, lambda s: (s == answers).all(1), repeats,
                         steps=steps, **kw)
        r["digit_accuracy"] = float((r["tokens"] == answers).float().mean())
        rows.append((name, decoding, r))
    return rows


def format_model_table(rows) -> str:
    lines = ["| model | decoding | tokens/s | NFE | answers right | digits right |", "|---|---|---|---|---|---|"]
    for name, decoding, r in rows:
        lines.append(f"| {name} | {decoding} | {r['tokens_per_s']:.3g} | {r['nfe']} | {100 * r['accuracy']:.1f}% | "
                     f"{100 * r['digit_accuracy']:.1f}% |")
    return "\n".join(lines)
