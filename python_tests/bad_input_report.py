"""Runs the whole battery outside pytest and prints the failing cases grouped by function, as
markdown: what each failing case does today, and the entries for KNOWN_FAILING.

Usage: python python_tests/bad_input_report.py [--known] [substring ...]
(--known: print the failing cases as KNOWN_FAILING entries instead.)
"""
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from diffusion_kernels.testing import emulated  # noqa: E402

import bad_input_table  # noqa: E402
from bad_input_pool import Pool  # noqa: E402


def _reason(answer):
    """A short KNOWN_FAILING reason from an observed failure."""
    detail = answer["detail"].replace("\n", " ")
    if answer["outcome"] in ("hang", "crash"):
        return f"{answer['outcome']}: {detail}"
    return detail[:110].rstrip()


def main(filters):
    known = "--known" in filters
    filters = [f for f in filters if f != "--known"]
    cases = bad_input_table.cases()
    names = [n for n, c in cases.items() if (not filters or any(f in n for f in filters))
             and (emulated.AVAILABLE or not c.emulated)]
    start = time.monotonic()
    pool = Pool(cases, names, n=2)
    answers = {n: pool.result(n) for n in names}
    elapsed = time.monotonic() - start
    groups = defaultdict(list)
    for n, a in answers.items():
        if a["outcome"] != "pass":
            groups[n.split("-", 1)[0]].append((n, a))
    failing = sum(len(v) for v in groups.values())
    if known:
        for fn in sorted(groups):
            for n, a in groups[fn]:
                print(f"    {n!r}: {_reason(a)!r},")
        return
    print(f"{len(names)} cases, {failing} failing, {elapsed:.1f} s\n")
    for fn in sorted(groups):
        print(f"## {fn} ({len(groups[fn])})\n")
        for n, a in groups[fn]:
            print(f"- `{n}`: **{a['outcome']}**: {a['detail']}")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
