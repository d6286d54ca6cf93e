"""Peak memory and time of the masked-diffusion loss through the LM head, forward + backward, CPU.

    python bench/bench_loss.py                       # N=2048, H=4096, V=126464, float32, t=0.5
    python bench/bench_loss.py --n 512 --h 1024 --v 32000 --repeats 5 --json out.json

Methods (each in its own subprocess):
  torch_llada     LLaDA's way: logits = hidden @ W.T for every row, logits[masked],
                  F.cross_entropy(reduction='none') / p_mask, sum / (B*L)
  torch_gathered  PyTorch with the masked rows gathered before the matmul (a stronger baseline)
  ours_logits     masked_diffusion_loss (our fused CE op) on materialised logits
  ours_fused      fused_linear_masked_diffusion_loss (no [N, V] logits)

Peak memory: the worker allocates the inputs, runs one warm-up forward + backward, resets the
kernel's resident-set high-water mark (/proc/self/clear_refs), runs one forward + backward (the
gradients of the warm-up are dropped first), and reports VmHWM - VmRSS(before): the
extra peak resident memory, tracked by the kernel (independent of Python's and torch's allocators). It includes the two gradients every
method must return (grad W is V*H*4 bytes, 2 GB at the default sizes); the table also shows
the peak net of them. Time: median wall time of --repeats forward + backward runs (the measured
step is the first of them). Shared 2-core machine: repeat and take medians.
"""
import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, when run as a script

METHODS = ["torch_llada", "torch_gathered", "ours_logits", "ours_fused"]


def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def reset_peak_rss():
    """Current resident set size, after resetting the kernel's high-water mark to it (Linux >= 4.0:
    writing 5 to /proc/self/clear_refs); falls back to getrusage's lifetime peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss():
    try:
        return _status_kib("VmHWM") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args):
    import torch
    import torch.nn.functional as F

    import diffusion_kernels as dk

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    b, l = 2, args.n // 2
    hidden = torch.randn(b, l, args.h, dtype=dtype) / 4
    weight = torch.randn(args.v, args.h, dtype=dtype) / args.h**0.5
    x0 = torch.randint(0, args.v, (b, l))
    _, masked, p = dk.forward_mask(x0, 126336, t=args.t, seed=1)
    hidden.requires_grad_()
    weight.requires_grad_()

    def torch_llada():
        logits = hidden @ weight.t()
        token_loss = F.cross_entropy(logits[masked], x0[masked], reduction="none") / p[masked]
        return token_loss.sum() / (b * l)

    def torch_gathered():
        h = hidden[masked]
        logits = h @ weight.t()
        token_loss = F.cross_entropy(logits, x0[masked], reduction="none") / p[masked]
        return token_loss.sum() / (b * l)

    def ours_logits():
        return dk.masked_diffusion_loss(hidden @ weight.t(), x0, masked, p)

    def ours_fused():
        return dk.fused_linear_masked_diffusion_loss(hidden, weight, x0, masked, p, chunk_size=args.chunk)

    fn = locals()[args.worker]

    def step():
        hidden.grad = weight.grad = None
        loss = fn()
        loss.backward()
        return loss.item()

    # A warm-up step first: it pages in the libraries' code and the thread pools' stacks (tens
    # of MB, the same for every method), which would otherwise count as the first step's memory.
    step()
    hidden.grad = weight.grad = None  # so the measured step's gradients count in its peak
    before = reset_peak_rss()
    times = []
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
    peak = peak_rss() - before
    for _ in range(args.repeats - 1):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    grads = hidden.numel() * hidden.element_size() + weight.numel() * weight.element_size()
    print(json.dumps({"method": args.worker, "loss": loss, "peak_bytes": peak, "grad_bytes": grads,
                      "times_s": times, "median_s": statistics.median(times), "masked": int(masked.sum())}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--h", type=int, default=4096)
    ap.add_argument("--v", type=int, default=126464)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--t", type=float, default=0.5, help="mask time of every row (mask ratio ~ t)")
    ap.add_argument("--chunk", type=int, default=None, help="rows per chunk of the fused loss")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    results = []
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--worker", method] + [
            f"--{k}={v}" for k, v in vars(args).items() if k not in ("worker", "methods", "json") and v is not None]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{method}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{method:15s} loss {r['loss']:.6f}  peak {r['peak_bytes'] / 2**30:7.3f} GiB  "
              f"net of grads {(r['peak_bytes'] - r['grad_bytes']) / 2**30:7.3f} GiB  "
              f"median {r['median_s']:7.2f} s  runs {[round(x, 2) for x in r['times_s']]}", flush=True)
    base = {r["method"]: r for r in results}
    if "ours_fused" in base:
        ours = base["ours_fused"]
        for ref in ("torch_llada", "torch_gathered"):
            if ref in base:
                r = base[ref]
                net_r = r["peak_bytes"] - r["grad_bytes"]
                net_o = max(ours["peak_bytes"] - ours["grad_bytes"], 1)
                print(f"ours_fused vs {ref}: peak {r['peak_bytes'] / ours['peak_bytes']:.2f}x lower "
                      f"({net_r / net_o:.1f}x net of grads), time {ours['median_s'] / r['median_s']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": {k: v for k, v in vars(args).items() if k != "worker"}, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
