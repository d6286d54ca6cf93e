"""A progress bar: tqdm when installed, else one self-rewriting line on stderr."""
import sys
import time


class _Off:
    def update(self, n=1):
        pass

    def close(self):
        pass


class _Line:
    """Minimal stand-in for tqdm: ``step 12/64  35.1 step/s``, redrawn at most 10 times a second."""

    def __init__(self, total, unit):
        self.total, self.unit, self.n = total, unit, 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if now - self.last >= 0.1 or self.n == self.total:
            self.last = now
            self._draw(now)

    def _draw(self, now):
        rate = self.n / max(now - self.t0, 1e-9)
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\r{self.unit} {self.n}{of}  {rate:.1f} {self.unit}/s")
        sys.stderr.flush()

    def close(self):
        self._draw(time.perf_counter())
        sys.stderr.write("\n")
        sys.stderr.flush()


def progress_bar(total, enabled: bool, unit: str = "step"):
    if not enabled:
        return _Off()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Line(total, unit)
    return tqdm(total=total, unit=unit, leave=False, dynamic_ncols=True)
