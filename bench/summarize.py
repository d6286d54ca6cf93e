"""Tables from stored benchmark results (bench/results/*.json).

    python bench/summarize.py bench/results/sampling.json            # print one file's section
    python bench/summarize.py --markdown docs/benchmarks.md bench/results/*.json

Reads pytest-benchmark's ``--benchmark-json`` (bench_*.py: commit, date and machine are in the
file), ``bench/gpu_bench.py --json``, ``bench/bench_loss.py --json``,
``bench/attention_training_memory.py --json`` and ``bench/rl_memory.py --out``. Formats that
record no commit or date get the commit that stored the file, from git.

Each pytest-benchmark group compares ``ours`` with every other implementation by median time;
where a benchmark records the bytes it reads, also GB/s (the "read bandwidth" group, when present,
is the machine's streaming read rate); where it records minor page faults per call
(bench/page_faults.py), those follow the time.
"""
import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _stored_by(path):
    """(short commit, date) of the last commit that wrote `path`, or None outside git."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %cs", "--", str(Path(path).resolve())],
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return tuple(out) if len(out) == 2 else None


def _provenance_from_git(path, recorded):
    """The provenance line of a format that may not record its commit and date."""
    if recorded.get("commit") and recorded.get("datetime"):
        return f"commit `{recorded['commit'][:7]}`, {recorded['datetime'][:16].replace('T', ' ')} UTC"
    stored = _stored_by(path)
    where = f"stored by commit `{stored[0]}` on {stored[1]}" if stored else "not in git"
    return f"the file records no commit or date; {where}"


# --- pytest-benchmark -------------------------------------------------------------------------

def _cpu_line(machine):
    cpu = machine.get("cpu", {})
    flags = set(cpu.get("flags", []))
    isa = [name for name, flag in (("AVX-512", "avx512f"), ("AMX", "amx_bf16"), ("AVX2", "avx2")) if flag in flags]
    isa = [i for i in isa if not (i == "AVX2" and "AVX-512" in isa)]
    parts = [f"{cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} logical CPUs"]
    if isa:
        parts.append(" + ".join(isa))
    parts.append(f"Linux {machine.get('release', '?')}, Python {machine.get('python_version', '?')}")
    if "torch" in machine:
        parts.append(f"torch {machine['torch']} ({machine.get('torch_threads', '?')} threads)")
    return "; ".join(parts)


def _pytest_benchmark(path, data):
    commit = data.get("commit_info", {})
    cid = commit.get("id") or "unknown"
    cid = cid[:7] if len(cid) == 40 else cid  # pytest-benchmark writes "unversioned" outside git
    dirty = " with uncommitted changes" if commit.get("dirty") else ""
    modules = sorted({b["fullname"].split("::")[0] for b in data["benchmarks"]})
    meta = [f"- commit `{cid}`{dirty}, {data.get('datetime', '?')[:16].replace('T', ' ')} UTC",
            f"- machine: {_cpu_line(data.get('machine_info', {}))}",
            f"- source: {', '.join(f'`{m}`' for m in modules)} (pytest-benchmark {data.get('version', '?')}); "
            "medians of each benchmark's rounds"]

    groups, nbytes, faults = defaultdict(dict), {}, {}
    for b in data["benchmarks"]:
        impl = b["extra_info"]["impl"]
        groups[b["group"]][impl] = b["stats"]["median"]
        if "minor_faults_per_call" in b["extra_info"]:
            faults[b["group"], impl] = b["extra_info"]["minor_faults_per_call"]
        if "bytes" in b["extra_info"]:
            nbytes[b["group"]] = b["extra_info"]["bytes"]

    def ms(group, impl):
        t = f"{groups[group][impl] * 1e3:.4g}"
        return t + (f" ({faults[group, impl]:.0f} faults)" if (group, impl) in faults else "")

    read = groups.get("read bandwidth", {}).get("read")
    peak = nbytes["read bandwidth"] / read / 1e9 if read else None
    if peak:
        meta.append(f"- the machine's read bandwidth in the same run: {peak:.1f} GB/s (`torch.sum`)")
    if faults:
        meta.append("- in brackets: minor page faults per call")
    if nbytes:
        meta.append("- ours GB/s: bytes read / median time (inputs of a few MB may stay in the CPU's cache "
                    "between rounds)")
    rows = []
    for group, times in groups.items():
        if "ours" not in times:
            continue
        gbs = ""
        if group in nbytes:
            rate = nbytes[group] / times["ours"] / 1e9
            gbs = f"{rate:.1f}" + (f" ({100 * rate / peak:.0f}% of read)" if peak else "")
        for impl in times:
            if impl != "ours":
                rows.append([group, ms(group, "ours"), impl, ms(group, impl), f"{times[impl] / times['ours']:.1f}x", gbs])
    header = ["case", "ours (ms)", "baseline", "baseline (ms)", "speed-up", "ours GB/s"]
    if not any(row[-1] for row in rows):
        header, rows = header[:-1], [row[:-1] for row in rows]
    return meta, _table(header, rows)


# --- bench/gpu_bench.py -----------------------------------------------------------------------

def _gpu_bench(path, data):
    info = data.get("info", {})
    build = info.get("build", {})
    meta = [f"- {_provenance_from_git(path, info)}",
            f"- machine: {info.get('device', '?')}, torch {info.get('torch', '?')}, CUDA {build.get('cuda_version', '?')}, "
            f"kernels built for sm {', '.join(build.get('cuda_archs', [])) or '?'}",
            "- source: `bench/gpu_bench.py`; each cell is latency / pipelined / kernels in µs: latency is the median "
            "of one call plus a device sync, pipelined of calls queued back to back with one sync, kernels the GPU "
            "time of one call's kernels (torch.profiler); speed-up of ours by latency / pipelined"]
    groups = defaultdict(dict)
    for r in data.get("rows", []):
        groups[r["group"]][r["impl"]] = r
    card = groups.pop("bandwidth", {})
    if card:
        meta.append("- the card in the same run: " + ", ".join(f"{k} {r['gbps']:.0f} GB/s" for k, r in card.items()))

    def cell(r):
        t = " / ".join(f"{r[k] * 1e6:.1f}" if r.get(k) is not None else "-"
                       for k in ("seconds", "pipelined_seconds", "kernel_seconds"))
        return t + (f", peak +{r['peak_extra_gib']:.2f} GiB" if "peak_extra_gib" in r else "")

    rows = []
    for group, impls in groups.items():
        ours = impls.get("ours")
        if ours is None:
            continue
        for impl, r in impls.items():
            if impl == "ours":
                continue
            pipe = (f"{r['pipelined_seconds'] / ours['pipelined_seconds']:.1f}x"
                    if r.get("pipelined_seconds") and ours.get("pipelined_seconds") else "-")
            rows.append([group, cell(ours), impl, cell(r), f"{r['seconds'] / ours['seconds']:.1f}x / {pipe}"])
    table = _table(["case", "ours (µs)", "baseline", "baseline (µs)", "speed-up"], rows)
    return meta, table


# --- bench/bench_loss.py ----------------------------------------------------------------------

def _loss_bench(path, data):
    c = data.get("config", {})
    meta = [f"- {_provenance_from_git(path, c)}",
            f"- forward + backward through the LM head: N = {c.get('n')} tokens, H = {c.get('h')}, V = {c.get('v')}, "
            f"{c.get('dtype')}, t = {c.get('t')}, {c.get('threads')} threads, median of {c.get('repeats')}, "
            "each method in its own process",
            "- source: `bench/bench_loss.py`; peak: rise of the resident set during one step; net: minus the "
            "gradients every method returns"]
    rows = []
    for r in data.get("results", []):
        rows.append([r["method"], r.get("masked", "?"), f"{r['peak_bytes'] / 2**30:.3f}",
                     f"{(r['peak_bytes'] - r['grad_bytes']) / 2**30:.3f}", f"{r['median_s']:.2f}", f"{r['loss']:.6f}"])
    table = _table(["method", "masked rows", "peak (GiB)", "net of grads (GiB)", "time (s)", "loss"], rows)
    return meta, table


# --- bench/attention_training_memory.py, bench/rl_memory.py -------------------------------------

def _attention_memory(path, data):
    c = data["config"]
    meta = [f"- {_provenance_from_git(path, c)}",
            f"- {c.get('layout')}: L = {c.get('noisy')} (sequence {c.get('sequence')}), block {c.get('block')}, "
            f"batch {c.get('batch')}, heads {c.get('heads')}/{c.get('kv_heads')} x {c.get('head_dim')}, "
            f"{c.get('threads')} threads, median of {c.get('repeats')}, each method in its own process",
            "- source: `bench/attention_training_memory.py`; peak: rise of the resident set during forward + "
            "backward; live tensors: the allocator's peak of live tensor bytes"]
    rows = [[r["method"], f"{r['peak_bytes'] / 2**20:.1f}", f"{r.get('tensor_peak_bytes', 0) / 2**20:.1f}",
             f"{r['median_s']:.2f}", f"{r['loss']:.6f}"] for r in data["results"]]
    return meta, _table(["method", "peak (MiB)", "live tensors (MiB)", "time (s)", "loss"], rows)


def _rl_memory(path, data):
    shape = ", ".join(f"{k} = {v}" for k, v in data["shape"].items())
    meta = [f"- {_provenance_from_git(path, {'commit': data.get('commit'), 'datetime': data.get('datetime')})}",
            f"- {shape}; {data.get('torch_threads')} threads; one call each",
            "- source: `bench/rl_memory.py`; peak: extra live tensor bytes during forward + backward"]
    plain = data["results"].get("plain")
    rows = []
    for impl, r in data["results"].items():
        ratio = f"{plain['peak_extra_bytes'] / r['peak_extra_bytes']:.1f}x" if plain else "?"
        rows.append([impl, f"{r['peak_extra_bytes'] / 2**20:.1f}", ratio, f"{r['thread_cpu_s']:.1f}"])
    return meta, _table(["method", "peak extra (MiB)", "lower than plain", "thread CPU (s)"], rows)


def section(path):
    """Markdown section of one results file: a heading, its provenance and its table."""
    data = json.loads(Path(path).read_text())
    if "benchmarks" in data:
        meta, table = _pytest_benchmark(path, data)
    elif "rows" in data:
        meta, table = _gpu_bench(path, data)
    elif "results" in data and "config" in data and "layout" in data["config"]:
        meta, table = _attention_memory(path, data)
    elif "results" in data and "config" in data:
        meta, table = _loss_bench(path, data)
    elif "results" in data and "shape" in data:
        meta, table = _rl_memory(path, data)
    else:
        raise ValueError(f"{path}: not a pytest-benchmark, gpu_bench or bench_loss results file")
    return "\n".join([f"## `{Path(path).name}`", "", *meta, "", table, ""])


def document(paths):
    command = "python bench/summarize.py --markdown docs/benchmarks.md bench/results/*.json"
    head = ["# Benchmarks", "",
            f"Generated by `{command}` from the stored results; do not edit by hand. Each section names "
            "the commit, date and machine of its run. Speed-ups compare ours with the research code's way "
            "of doing the same work, on the same machine and inputs.", ""]
    return "\n".join(head + [section(p) for p in paths])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="results files (JSON)")
    ap.add_argument("--markdown", metavar="OUT", help="write one Markdown document with a section per file")
    args = ap.parse_args(argv)
    if args.markdown:
        Path(args.markdown).write_text(document(sorted(args.files)))
        print(f"wrote {args.markdown}")
    else:
        print("\n".join(section(p) for p in args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
