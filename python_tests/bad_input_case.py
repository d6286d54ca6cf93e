"""The battery's case type and the three expectations a case can declare, with the checks that
run inside a worker process (python_tests/bad_input_pool.py).

A case builds its call lazily (fresh tensors in the worker, never in the pytest process) and
declares one expectation:

* :class:`Raises`: a TypeError/ValueError/RuntimeError whose message names one of the given
  arguments as a whole word, and every input tensor bitwise unchanged afterwards;
* :class:`Same`: the result equals the reference called on copies of the inputs, and every
  input tensor ends bitwise equal to the reference's copy (so in-place writes match too);
* :class:`Check`: a documented meaning, checked by a function of the result and the inputs.
"""
import copy
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import torch

ACCEPTED_ERRORS = (TypeError, ValueError, RuntimeError)


@dataclass
class Call:
    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass
class Raises:
    """``types``: the accepted exception types (file errors of a loader may add OSError)."""
    names: Tuple[str, ...]
    types: tuple = ACCEPTED_ERRORS

    def __init__(self, *names: str, types: tuple = ACCEPTED_ERRORS):
        self.names, self.types = names, types


@dataclass
class Same:
    """Equal to ``ref(*args, **kwargs)`` on deep copies. ``rule``: "exact" (bitwise, NaN equal
    to NaN) or "close" (floats within ``rtol``/``atol`` of the reference at the same precision:
    the battery checks meanings; precision is the property suite's job)."""
    ref: Callable
    rule: str = "exact"
    rtol: float = 1e-5
    atol: float = 1e-6
    or_raises: Optional[Tuple[str, ...]] = None  # an ill-defined input: a clear refusal passes too


@dataclass
class Check:
    """``fn(result, call)`` raises AssertionError when the documented meaning does not hold."""
    fn: Callable
    or_raises: Optional[Tuple[str, ...]] = None  # an ill-defined input: a clear refusal passes too


@dataclass
class Case:
    name: str
    build: Callable[[], Call]
    expect: object
    timeout: float = 8.0
    emulated: bool = False


# -- snapshots -------------------------------------------------------------------------------

def _tensors(obj, path, out, seen):
    """Every tensor reachable from obj (containers, KV caches, modules), keyed by a path."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        out[path] = obj
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _tensors(v, f"{path}[{i}]", out, seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _tensors(v, f"{path}.{k}", out, seen)
    elif isinstance(obj, torch.nn.Module):
        for k, v in obj.state_dict(keep_vars=True).items():
            _tensors(v, f"{path}.{k}", out, seen)
    elif hasattr(obj, "__dict__") and not callable(obj):
        for k, v in vars(obj).items():
            _tensors(v, f"{path}.{k}", out, seen)


def tensors_of(call: Call) -> dict:
    out = {}
    seen = set()
    for i, a in enumerate(call.args):
        _tensors(a, f"arg{i}", out, seen)
    for k, v in call.kwargs.items():
        _tensors(v, k, out, seen)
    return out


def bits(t: torch.Tensor) -> Optional[torch.Tensor]:
    """A bitwise copy (None for meta tensors, which hold no values)."""
    if t.device.type == "meta":
        return None
    c = t.detach().clone()
    if c.is_floating_point() or c.is_complex():
        c = c.contiguous().view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[c.element_size()])
    return c


def snapshot(call: Call) -> dict:
    return {k: bits(t) for k, t in tensors_of(call).items()}


def changed(call: Call, snap: dict) -> list:
    now = snapshot(call)
    return [k for k, v in snap.items() if v is not None and not torch.equal(now[k], v)]


# -- comparisons -----------------------------------------------------------------------------

def assert_equal(got, want, where="result", rule="exact", rtol=0.0, atol=0.0):
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor), f"{where}: got {type(got).__name__}, want a tensor"
        assert got.shape == want.shape, f"{where}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, want {want.dtype}"
        assert got.device == want.device, f"{where}: device {got.device}, want {want.device}"
        if got.device.type == "meta":
            return
        if not want.is_floating_point() or rule == "exact":
            same = torch.equal(bits(got), bits(want)) if want.is_floating_point() else torch.equal(got, want)
            if not same and want.is_floating_point():
                same = torch.equal(torch.isnan(got), torch.isnan(want)) and torch.equal(
                    torch.nan_to_num(got), torch.nan_to_num(want))  # NaN payloads and -0.0 aside
            if not same:
                diff = (got != want) & ~(torch.isnan(got) & torch.isnan(want)) if want.is_floating_point() else got != want
                idx = diff.nonzero()[:4].tolist()
                raise AssertionError(f"{where} differs at {idx}: got {[got[tuple(i)].item() for i in idx]}, "
                                     f"want {[want[tuple(i)].item() for i in idx]}")
            return
        g, w = got.double(), want.double()
        assert torch.equal(torch.isnan(g), torch.isnan(w)), f"{where}: NaN pattern differs: {g.tolist()} vs {w.tolist()}"
        inf = torch.isinf(w)
        assert torch.equal(g[inf], w[inf]) and torch.equal(torch.isinf(g), inf), f"{where}: inf pattern differs"
        fin = torch.isfinite(w)
        err = (g - w)[fin].abs()
        bound = atol + rtol * w[fin].abs()
        assert (err <= bound).all(), f"{where}: max error {err.max().item():.3g} beyond rtol={rtol}, atol={atol}"
    elif isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), \
            f"{where}: got {type(got).__name__} of {len(got) if hasattr(got, '__len__') else '?'}, want {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_equal(g, w, f"{where}[{i}]", rule, rtol, atol)
    elif hasattr(want, "__dataclass_fields__"):
        for k in want.__dataclass_fields__:
            assert_equal(getattr(got, k), getattr(want, k), f"{where}.{k}", rule, rtol, atol)
    else:
        assert got == want, f"{where}: got {got!r}, want {want!r}"


# -- running ---------------------------------------------------------------------------------

def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:300] if msg else ''}"


def names_argument(message: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def run(case: Case) -> Tuple[str, str]:
    """("pass" | "fail", detail)."""
    call = case.build()
    expect = case.expect
    if isinstance(expect, Raises):
        snap = snapshot(call)
        try:
            result = call.fn(*call.args, **call.kwargs)
        except expect.types as e:
            msg = str(e)
            touched = changed(call, snap)
            if touched:
                return "fail", f"partial write: refused ({_short(e)}) but changed {touched}"
            if not any(names_argument(msg, n) for n in expect.names):
                return "fail", f"message does not name {' or '.join(repr(n) for n in expect.names)}: {_short(e)}"
            return "pass", _short(e)
        except BaseException as e:  # noqa: BLE001 - any other type is the finding
            touched = changed(call, snap)
            return "fail", f"wrong exception type {_short(e)}" + (f"; changed {touched}" if touched else "")
        touched = changed(call, snap)
        return "fail", f"accepted silently: returned {_describe(result)}" + (f"; wrote {touched}" if touched else "")
    if isinstance(expect, Same):
        ref_call = Call(expect.ref, copy.deepcopy(call.args), copy.deepcopy(call.kwargs))
        want = ref_call.fn(*ref_call.args, **ref_call.kwargs)
        snap = snapshot(call)
        try:
            got = call.fn(*call.args, **call.kwargs)
        except ACCEPTED_ERRORS as e:
            if expect.or_raises and any(names_argument(str(e), n) for n in expect.or_raises):
                touched = changed(call, snap)
                return ("fail", f"partial write: refused ({_short(e)}) but changed {touched}") if touched \
                    else ("pass", _short(e))
            return "fail", f"well-formed call raised {_short(e)}"
        except BaseException as e:  # noqa: BLE001
            return "fail", f"well-formed call raised {_short(e)}"
        try:
            assert_equal(got, want, "result", expect.rule, expect.rtol, expect.atol)
            mine, theirs = tensors_of(call), tensors_of(ref_call)
            for k, t in mine.items():
                if k in theirs and t.is_floating_point() == theirs[k].is_floating_point():
                    assert_equal(t, theirs[k], f"input {k} after the call", "exact")
        except AssertionError as e:
            return "fail", f"wrong result: {e}"
        return "pass", "equal to the reference"
    if isinstance(expect, Check):
        snap = snapshot(call)
        try:
            got = call.fn(*call.args, **call.kwargs)
        except ACCEPTED_ERRORS as e:
            touched = changed(call, snap)
            if expect.or_raises and any(names_argument(str(e), n) for n in expect.or_raises):
                return ("fail", f"partial write: refused ({_short(e)}) but changed {touched}") if touched \
                    else ("pass", _short(e))
            return "fail", f"well-formed call raised {_short(e)}" + (f"; changed {touched}" if touched else "")
        except BaseException as e:  # noqa: BLE001
            return "fail", f"well-formed call raised {_short(e)}" + (f"; changed {changed(call, snap)}" if changed(call, snap) else "")
        try:
            expect.fn(got, call)
        except AssertionError as e:
            return "fail", f"wrong result: {e}"
        return "pass", "documented meaning holds"
    raise TypeError(f"unknown expectation {expect!r}")


def _describe(result) -> str:
    if isinstance(result, torch.Tensor):
        if result.device.type == "meta" or result.numel() > 8:
            return f"tensor{tuple(result.shape)} {result.dtype} on {result.device}"
        return f"{result.tolist()}"
    if isinstance(result, (tuple, list)):
        return "(" + ", ".join(_describe(r) for r in result) + ")"
    return repr(result)[:200]
