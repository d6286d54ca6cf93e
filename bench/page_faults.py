"""Page faults of the timed calls, so that a speed-up can be read against the state the baseline
ran in.

The research code's float64 temporaries are large, and every 4 KiB page that glibc takes fresh
from the kernel costs the call a minor fault (at [1, 32, 126464] two 32 MB copies: ~15800 faults,
about 15 ms on a 2 vCPU Xeon). Above 32 MiB (the [8, 32] and [1, 256] shapes) glibc maps and
unmaps every such block, in any process. Below it, after the first frees, glibc serves them from
its heap, but gives the heap's top back to the kernel whenever more than twice the largest block
freed so far lies free there (strace: brk up by 32 MB twice, then down by 64 MB, every call). Two
32 MB temporaries freed together sit right at that threshold, so whether each call faults depends
on what else the process holds: in one pytest process it does every call, in another never. Both
are the research code's steady state; the benchmarks warm up until a call takes no fault (or give
up), then record the faults per call beside the time.
"""
import resource


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # all threads of the process


def warm_up(fn, *args, max_calls):
    """Calls fn until one call takes no minor fault, at most max_calls times."""
    for _ in range(max_calls):
        before = _minor_faults()
        fn(*args)
        if _minor_faults() == before:
            return


class CountFaults:
    """fn, counting its calls and the minor faults they take (two getrusage calls, ~2 us)."""

    def __init__(self, fn):
        self.fn, self.calls, self.faults = fn, 0, 0

    def __call__(self, *args):
        before = _minor_faults()
        out = self.fn(*args)
        self.faults += _minor_faults() - before
        self.calls += 1
        return out

    def per_call(self):
        return self.faults / max(self.calls, 1)
