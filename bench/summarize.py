"""Print median times and speed-ups of 'ours' over every other impl, per benchmark group, from
a pytest-benchmark JSON file; where a benchmark records the bytes it reads, also GB/s (the
'read bandwidth' group, when present, is the machine's streaming read rate); where it records
minor page faults per call (page_faults.py), those after the impl's time."""
import json
import sys
from collections import defaultdict


def _faults(faults, group, impl):
    return f" ({faults[group, impl]:.0f} faults)" if (group, impl) in faults else ""


def main(path):
    groups = defaultdict(dict)
    nbytes = {}
    faults = {}
    for b in json.load(open(path))["benchmarks"]:
        groups[b["group"]][b["extra_info"]["impl"]] = b["stats"]["median"]
        if "minor_faults_per_call" in b["extra_info"]:
            faults[b["group"], b["extra_info"]["impl"]] = b["extra_info"]["minor_faults_per_call"]
        if "bytes" in b["extra_info"]:
            nbytes[b["group"]] = b["extra_info"]["bytes"]
    read = groups.get("read bandwidth", {}).get("read")
    peak = nbytes["read bandwidth"] / read / 1e9 if read else None
    if peak:
        print(f"read bandwidth: {peak:.1f} GB/s\n")
    print("| case | ours (ms) | others (ms) | speed-up of ours | ours GB/s |")
    print("|---|---|---|---|---|")
    for group, times in groups.items():
        ours = times.get("ours")
        if ours is None:
            continue
        others = ", ".join(f"{k} {v * 1e3:.2f}{_faults(faults, group, k)}" for k, v in times.items() if k != "ours")
        ratios = ", ".join(f"{v / ours:.1f}x vs {k}" for k, v in times.items() if k != "ours")
        gbs = f"{nbytes[group] / ours / 1e9:.1f}" if group in nbytes else ""
        if gbs and peak:
            gbs += f" ({100 * nbytes[group] / ours / 1e9 / peak:.0f}% of read)"
        print(f"| {group} | {ours * 1e3:.3f}{_faults(faults, group, 'ours')} | {others} | {ratios} | {gbs} |")


if __name__ == "__main__":
    main(sys.argv[1])
