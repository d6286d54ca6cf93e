"""Print median times and speed-ups of 'ours' over every other impl, per benchmark group, from
a pytest-benchmark JSON file."""
import json
import sys
from collections import defaultdict


def main(path):
    groups = defaultdict(dict)
    for b in json.load(open(path))["benchmarks"]:
        groups[b["group"]][b["extra_info"]["impl"]] = b["stats"]["median"]
    print("| case | " + " | ".join(["ours (ms)", "others (ms)", "speed-up of ours"]) + " |")
    print("|---|---|---|---|")
    for group, times in groups.items():
        ours = times.get("ours")
        others = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in times.items() if k != "ours")
        ratios = ", ".join(f"{v / ours:.1f}x vs {k}" for k, v in times.items() if k != "ours" and ours)
        print(f"| {group} | {ours * 1e3:.3f} | {others} | {ratios} |")


if __name__ == "__main__":
    main(sys.argv[1])
