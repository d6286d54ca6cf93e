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


def run_strategy(model, prompts, gen_length, block_length, mask_id, check=None, repeats=3, **kw):
    """Median wall time over ``repeats`` runs; returns a dict of tokens/s, NFE, accuracy and
    the tokens (for agreement with vanilla)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, prompts, gen_length, block_length, gen_length, mask_id=mask_id, progress=False,
                       return_dict=True, **kw)
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
