"""TraceRL log-probs at a longer trajectory than bench_rl.py's timed one: peak extra memory (live
tensors, forward + backward) and thread CPU time of the plain way vs ours, one call each.

    python bench/rl_memory.py --prompt 16 --gen 32 --group 4 [--out run.json]

Reuses bench_rl.py's model (LLaDA-sized frozen head, H = 4096, V = 126464) and trajectory (one
token committed per step); only the lengths change. Memory does not depend on the machine's load;
the CPU times do a little (the three calls run back to back).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_rl  # noqa: E402
from diffusion_kernels.testing.live_memory import LiveTensorPeak  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    bench_rl.LP, bench_rl.GEN, bench_rl.STEPS = a.prompt, a.gen, a.gen
    model, traj = bench_rl.Body(), bench_rl.trajectory()
    weights = torch.linspace(-1, 1, bench_rl.B * (a.prompt + a.gen)).view(bench_rl.B, -1)
    rows = {}
    for impl in ("plain", "ours", "ours_fused"):
        model.zero_grad(set_to_none=True)
        t0 = time.thread_time()
        with LiveTensorPeak() as live:
            (bench_rl.IMPLS[impl](model, traj, a.group) * weights).sum().backward()
        rows[impl] = {"peak_extra_bytes": live.peak, "thread_cpu_s": time.thread_time() - t0}
        print(f"{impl:10s} peak {live.peak / 2**20:7.1f} MiB  cpu {rows[impl]['thread_cpu_s']:6.1f} s", flush=True)
    for impl in ("ours", "ours_fused"):
        print(f"plain / {impl}: memory {rows['plain']['peak_extra_bytes'] / rows[impl]['peak_extra_bytes']:.1f}x lower, "
              f"time {rows[impl]['thread_cpu_s'] / rows['plain']['thread_cpu_s']:.2f}x")
    if a.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        with open(a.out, "w") as f:
            json.dump({"datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(), "commit": commit,
                       "machine": os.uname().nodename, "torch_threads": torch.get_num_threads(),
                       "shape": {"B": bench_rl.B, "prompt": a.prompt, "gen": a.gen, "steps": a.gen,
                                 "group_size": a.group, "H": bench_rl.H, "V": bench_rl.V},
                       "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
