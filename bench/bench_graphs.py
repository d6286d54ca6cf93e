"""Tokens/s of generate() with and without CUDA graphs on a random-weight LLaDA-8B-shaped model
(bench/gpu_validate.sh runs it on the rare machine with a GPU).

    python bench/bench_graphs.py --json graphs.json       # CUDA: bf16, 32 layers, hidden 4096, vocab 126464
    python bench/bench_graphs.py --merge-json gpu.json    # the rows as "graphs" in gpu_bench.py's file
    python bench/bench_graphs.py --tiny --device cpu      # the script itself at a tiny shape

Modes: vanilla (every step runs the whole sequence), dual cache (a block's later steps run the
block only) and dual + threshold 0.9, each with ``steps = gen_length``. Random weights propose
near-uniform distributions, so the threshold commits one token per step as the schedules do:
every mode runs the same NFE (reported), and graphs on/off decode the same tokens (checked), so
the ratio is the cost of a step with and without its launches from Python. Time = median of
``--reps`` whole generate() calls after one warm-up call (which also captures the graphs).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, when run as a script

import diffusion_kernels as dk  # noqa: E402
from diffusion_kernels.models import LLaDAConfig, LLaDAModel  # noqa: E402

LLADA_8B = dict(vocab_size=126464, d_model=4096, n_layers=32, n_heads=32, mlp_hidden_size=12288,
                mask_token_id=126336, rope_theta=500000.0)
TINY = dict(vocab_size=64, d_model=64, n_layers=2, n_heads=2, mlp_hidden_size=128, mask_token_id=63)
MODES = {"vanilla": dict(), "dual": dict(cache="dual"), "dual+threshold": dict(cache="dual", threshold=0.9)}


def random_model(config: dict, device: torch.device, dtype: torch.dtype) -> LLaDAModel:
    """Random weights made on the device in their dtype (no host copy of 16 GB, no float32 copy):
    N(0, 0.02) matrices, unit norms."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the parameters are made in their dtype, on the device
    try:
        with torch.device(device):
            model = LLaDAModel(LLaDAConfig(**config))
    finally:
        torch.set_default_dtype(default)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02, generator=g)
            else:
                p.fill_(1.0)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, reps, warmup=True):
    """(median seconds, last output) of reps calls after one warm-up call."""
    if warmup:
        fn()
        sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def graph_rows(device: torch.device, tiny: bool, reps: int, batch: int, prompt_len: int, gen: int, block: int):
    config = TINY if tiny else LLADA_8B
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    model = random_model(config, device, dtype)
    mask_id = config["mask_token_id"]
    prompt = torch.randint(0, mask_id, (batch, prompt_len), generator=torch.Generator().manual_seed(1)).to(device)
    rows = []
    for mode, kw in MODES.items():
        runs = {}
        for graphs in (False, True):
            def run():
                # eos_id = mask_id + suppress_eos: a random model must never propose [MASK] (trained ones do not)
                return dk.generate(model, prompt, gen, block, gen, mask_id=mask_id, progress=False, return_dict=True,
                                   eos_id=mask_id, suppress_eos=True, cuda_graph=graphs, **kw)
            runs[graphs] = timed(run, device, reps, warmup=not tiny)
        same = torch.equal(runs[False][1].sequences, runs[True][1].sequences)
        for graphs, (seconds, out) in runs.items():
            rows.append(dict(mode=mode, cuda_graph=graphs, seconds=seconds, nfe=out.nfe,
                             tokens_per_s=batch * gen / seconds, ms_per_step=1e3 * seconds / out.nfe,
                             speedup=runs[False][0] / seconds, same_tokens=same, batch=batch, prompt=prompt_len,
                             gen=gen, block=block, model="tiny" if tiny else "LLaDA-8B-shaped", dtype=str(dtype)))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the script, measures nothing")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--json", help="write {info, rows} to this file")
    p.add_argument("--merge-json", help="add the rows as 'graphs' to this JSON file (made if missing)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if a.tiny:
        a.reps, a.prompt, a.gen, a.block = 1, 4, 8, 4
    torch.manual_seed(0)
    t0 = time.perf_counter()
    rows = graph_rows(device, a.tiny, a.reps, a.batch, a.prompt, a.gen, a.block)
    print(f"{'mode':16s} {'graphs':>6s} {'nfe':>5s} {'tokens/s':>10s} {'ms/step':>9s} {'speedup':>8s}  same tokens")
    for r in rows:
        print(f"{r['mode']:16s} {str(r['cuda_graph']):>6s} {r['nfe']:5d} {r['tokens_per_s']:10.1f} "
              f"{r['ms_per_step']:9.3f} {r['speedup']:7.2f}x  {r['same_tokens']}")
    print(f"[graphs: {time.perf_counter() - t0:.1f} s]")
    info = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                torch=torch.__version__, build=dk.build_info())
    if a.json:
        Path(a.json).write_text(json.dumps(dict(info=info, rows=rows), indent=1, default=str))
    if a.merge_json:
        path = Path(a.merge_json)
        doc = json.loads(path.read_text()) if path.exists() else dict(info=info)
        doc["graphs"] = rows
        path.write_text(json.dumps(doc, indent=1, default=str))
    return rows


if __name__ == "__main__":
    main()
