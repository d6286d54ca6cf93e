"""Which backends a test runs on. The ``backend`` fixture (conftest.py) runs a test on all three;
these narrow it, or pair each backend with its own parameter values (e.g. smaller shapes under
the emulator, where every CUDA thread is a fiber)."""
import pytest

NAMES = ("cpu", "emulated", "cuda")
MARKS = {"cpu": (), "emulated": (pytest.mark.emulated,), "cuda": (pytest.mark.cuda,)}


def backends(*names):
    """Runs a test with the ``backend`` fixture on these backends only."""
    return pytest.mark.parametrize("backend", [pytest.param(n, marks=MARKS[n]) for n in names], indirect=True)


def on_backends(values, extra=lambda name: [()]):
    """Parameters ``(backend, value, *more)``: ``values`` maps a backend name to its values of
    one parameter, ``extra(name)`` lists further parameter tuples of that backend. Use with
    ``indirect=["backend"]`` (plus any other fixture-backed name)."""
    return [pytest.param(name, v, *e, marks=MARKS[name], id="-".join(_id(p) for p in (name, v, *e)))
            for name, vs in values.items() for v in vs for e in extra(name)]


def _id(v):
    if hasattr(v, "id") and callable(v.id):
        return v.id()
    if isinstance(v, tuple) and all(isinstance(e, int) for e in v):
        return "x".join(map(str, v))
    if isinstance(v, dict):
        return ",".join(f"{k}={w}" for k, w in v.items()) or "plain"
    return str(v).replace("torch.", "")
