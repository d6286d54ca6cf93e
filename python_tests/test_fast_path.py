"""The per-step ops' direct entries (diffusion_kernels._C.*_direct, csrc/ops/fast_path.h): they
skip the dispatcher only where it would go straight to our kernel, and decline (return None, so
the wrapper calls the registered op) wherever something else could see or reroute the call."""
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import diffusion_kernels as dk
from diffusion_kernels import _C
from diffusion_kernels.ops.transfer import select_transfer_args

MASK_ID = 99


class Seen(TorchDispatchMode):
    """Records the ops that reach the dispatcher's Python key."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


class SeenFunctions(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(str(func))
        return func(*args, **(kwargs or {}))


class Sub(torch.Tensor):
    pass


def _transfer_args(conf, **kw):
    return select_transfer_args(conf, **kw)


def _confidence_args(logits, x):
    # the direct entry's positional form of the default options (see ops/confidence.py)
    return (logits, x, MASK_ID, None, 0.0, None, 1.0, None, 0, "prob", False, None, 0, None, 2**63 - 1, None,
            None, 0, None, 0, True, False, None, 0.0)


def test_direct_matches_the_registered_op():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(3, 17, generator=g)
    conf[0, :4] = float("-inf")
    for kw in (dict(k=3), dict(k=torch.tensor([0, 2, 5])), dict(threshold=0.5), dict(threshold=0.5, eps=0.1),
               dict(factor=1.0), dict(k=2, alg_temp=0.5, seed=3, offset=torch.tensor(7))):
        args = _transfer_args(conf, **kw)
        assert torch.equal(_C.select_transfer_direct(*args), torch.ops.diffusion_kernels.select_transfer(*args)), kw
    logits, x = torch.randn(2, 5, 31, generator=g), torch.full((2, 5), MASK_ID)
    x[0, 1] = 4
    args = _confidence_args(logits, x)
    direct = _C.masked_confidence_direct(*args)
    names = ("temperature", "temperature_value", "top_p", "top_p_value", "top_k", "top_k_value", "confidence",
             "confidence_from_logits", "block_start", "block_start_value", "block_end", "block_end_value",
             "suppress_ids", "seed", "seed_value", "offset", "offset_value", "return_lse", "all_positions",
             "prev_token_penalty", "prev_token_penalty_value")
    op = torch.ops.diffusion_kernels.masked_confidence(*args[:3], **dict(zip(names, args[3:])))
    assert all(torch.equal(a, b) for a, b in zip(direct, op))


def test_direct_writes_x_in_place_like_the_op():
    conf = torch.tensor([[0.9, 0.2, 0.95], [0.1, 0.3, 0.2]])
    x, x0 = torch.full((2, 3), MASK_ID), torch.arange(6).reshape(2, 3)
    mask = _C.select_transfer_direct(*_transfer_args(conf, k=1, x=x, x0=x0))
    assert mask.tolist() == [[False, False, True], [False, True, False]]
    assert x.tolist() == [[MASK_ID, MASK_ID, 2], [MASK_ID, 4, MASK_ID]]


def test_direct_errors_name_the_argument():
    conf = torch.rand(2, 4)
    with pytest.raises(ValueError, match="argument 'k'"):
        _C.select_transfer_direct(*_transfer_args(conf, k=-1))
    args = list(_confidence_args(torch.randn(2, 4, 8), torch.full((2, 3), MASK_ID)))
    with pytest.raises(ValueError, match="argument 'x'"):
        _C.masked_confidence_direct(*args)


def test_direct_declines_subclasses_grad_and_meta():
    conf = torch.rand(2, 6)
    assert _C.select_transfer_direct(*_transfer_args(conf.as_subclass(Sub), k=1)) is None
    assert _C.select_transfer_direct(*_transfer_args(torch.nn.Parameter(conf), k=1)) is None  # requires grad
    with torch.no_grad():  # no autograd to skip: a Parameter is a plain tensor to C++
        assert _C.select_transfer_direct(*_transfer_args(torch.nn.Parameter(conf), k=1)) is not None
    assert _C.select_transfer_direct(*_transfer_args(conf.to("meta"), k=1)) is None
    assert _C.select_transfer_direct(*_transfer_args(conf, k=torch.tensor([1, 1]).as_subclass(Sub))) is None
    logits, x = torch.randn(1, 2, 8), torch.full((1, 2), MASK_ID)
    assert _C.masked_confidence_direct(*_confidence_args(logits.requires_grad_(), x)) is None


def test_modes_and_the_profiler_still_see_the_ops():
    conf = torch.rand(2, 6)
    logits, x = torch.randn(1, 2, 8), torch.full((1, 2), MASK_ID)
    with Seen() as seen:
        dk.select_transfer(conf, k=1)
        dk.masked_confidence(logits, x, MASK_ID)
    assert "diffusion_kernels.select_transfer.default" in seen.ops
    assert "diffusion_kernels.masked_confidence.default" in seen.ops
    with SeenFunctions() as functions:
        dk.select_transfer(conf, k=1)
    assert any("select_transfer" in c for c in functions.calls)
    with torch.autograd.profiler.profile() as prof:
        dk.select_transfer(conf, k=1)
        dk.masked_confidence(logits, x, MASK_ID)
    names = {e.name for e in prof.function_events}
    assert {"diffusion_kernels::select_transfer", "diffusion_kernels::masked_confidence"} <= names


def test_forward_mask_and_masked_ce_direct():
    from diffusion_kernels.ops.forward_mask import forward_mask_args
    x0 = torch.randint(0, 50, (3, 11))
    for kw in (dict(seed=5, offset=2), dict(t=0.3, prompt_lengths=torch.tensor([0, 4, 11])), dict(antithetic=True)):
        args = forward_mask_args(x0, MASK_ID, **kw)
        direct, op = _C.forward_mask_direct(*args), torch.ops.diffusion_kernels.forward_mask(*args)
        assert all(torch.equal(a, b) for a, b in zip(direct, op)), kw
    logits, targets = torch.randn(4, 9), torch.randint(0, 9, (4,))
    masked = torch.tensor([True, False, True, True])
    direct = _C.masked_ce_forward_direct(logits, targets, masked)
    assert all(torch.equal(a, b) for a, b in zip(direct, torch.ops.diffusion_kernels.masked_ce_forward(
        logits, targets, masked)))
    # logits that require grad go through the registered autograd kernel
    assert _C.masked_ce_forward_direct(logits.requires_grad_(), targets, masked) is None
    ce, _ = dk.masked_cross_entropy(logits, targets, masked)
    assert ce.grad_fn is not None
