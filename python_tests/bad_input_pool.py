"""A few long-lived worker processes that run the battery's cases, so that a hang or a crash
(segfault, abort) is caught and reported as such without one process per case.

Protocol: the parent writes a case name per line on the worker's stdin; the worker answers one
JSON line ``{"name", "outcome", "detail"}`` on a private pipe (its stdout is redirected to
stderr, so a print inside the library cannot corrupt the protocol). A case that does not answer
within its timeout is a "hang": the worker is killed and a fresh one started; a worker that
dies is a "crash" with its exit status.
"""
import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STARTUP_TIMEOUT = 120.0  # importing torch and the extension on a loaded 2-core machine

_WORKER = """
import os, sys, json, traceback
out = os.fdopen(int(sys.argv[1]), "w", buffering=1)
os.dup2(2, 1)
sys.path.insert(0, sys.argv[2])
import torch
torch.set_num_threads(1)
torch.empty(1, device="meta").normal_()  # imports torch._refs now, not inside a timed case
import bad_input_case, bad_input_table
cases = bad_input_table.cases()
out.write(json.dumps({"ready": True}) + "\\n")
for line in sys.stdin:
    name = line.strip()
    try:
        outcome, detail = bad_input_case.run(cases[name])
    except BaseException as e:
        outcome, detail = "error", "the case itself failed: " + "".join(traceback.format_exception_only(type(e), e)).strip()[:500]
    out.write(json.dumps({"name": name, "outcome": outcome, "detail": detail}) + "\\n")
"""


class _Worker:
    def __init__(self):
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, DK_POISON_OUTPUTS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.stderr = tempfile.TemporaryFile()  # read back when the worker fails to start
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(write_fd), HERE], stdin=subprocess.PIPE,
                                     pass_fds=(write_fd,), env=env, cwd=HERE, text=True, stderr=self.stderr)
        os.close(write_fd)
        self.fd = read_fd
        self.buffer = b""
        ready = self.read_line(STARTUP_TIMEOUT)
        if not isinstance(ready, dict) or not ready.get("ready"):
            self.kill()
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"battery worker did not start: {ready}: {' | '.join(tail)}")

    def read_line(self, timeout):
        """The next JSON line, "timeout", or ("exit", returncode)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return ("exit", self.proc.wait())
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, name, timeout):
        try:
            self.proc.stdin.write(name + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"name": name, "outcome": "crash", "detail": f"worker gone (exit {self.proc.wait()})"}
        answer = self.read_line(timeout)
        if answer == "timeout":
            return {"name": name, "outcome": "hang", "detail": f"no answer within {timeout:.0f} s"}
        if isinstance(answer, tuple):
            return {"name": name, "outcome": "crash", "detail": f"worker died, exit status {answer[1]}"}
        return answer

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.fd)
        self.stderr.close()


class Pool:
    """Runs the submitted case names on ``n`` workers in background threads; ``result(name)``
    waits for one case's answer."""

    def __init__(self, cases: dict, names, n: int = 2):
        self.cases = cases
        self.todo = queue.Queue()
        self.results = {}
        self.done = {name: threading.Event() for name in names}
        for name in names:
            self.todo.put(name)
        self.threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(min(n, len(names)) or 1)]
        for t in self.threads:
            t.start()

    def _serve(self):
        worker = None
        try:
            while True:
                try:
                    name = self.todo.get_nowait()
                except queue.Empty:
                    return
                if worker is None:
                    try:
                        worker = _Worker()
                    except Exception as e:  # noqa: BLE001
                        self._finish(name, {"outcome": "error", "detail": str(e)})
                        continue
                answer = worker.run(name, self.cases[name].timeout)
                if answer["outcome"] in ("hang", "crash"):
                    worker.kill()
                    worker = None
                self._finish(name, answer)
        finally:
            if worker is not None:
                worker.kill()

    def _finish(self, name, answer):
        self.results[name] = answer
        self.done[name].set()

    def result(self, name, timeout=600.0):
        if not self.done[name].wait(timeout):
            return {"outcome": "error", "detail": "the pool never ran this case"}
        return self.results[name]
