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
    # the direct entry takes the public function's arguments in its order, as given
    a = dict(k=None, threshold=None, eps=None, factor=None, alg_temp=None, seed=0, offset=0, x=None, x0=None,
             strict=False)
    a.update(kw)
    return (conf, *a.values())


def _forward_mask_args(x0, **kw):
    a = dict(eps=1e-3, t=None, seed=0, offset=0, prompt_lengths=None, antithetic=False)
    a.update(kw)
    return (x0, MASK_ID, *a.values())


def _confidence_args(logits, x, **options):
    # the direct entry takes the public function's arguments in its order, as given
    a = dict(temperature=0.0, top_p=None, top_k=None, confidence="prob", confidence_from="sampling", block_start=0,
             block_end=None, suppress_ids=None, seed=0, offset=0, return_lse=True, positions="masked",
             prev_token_penalty=0.0)
    a.update(options)
    return (logits, x, MASK_ID, *a.values())


def _attention_args(q, k_cache, v_cache, k=None, v=None, **options):
    # likewise for attention_with_kv_cache
    a = dict(cache_seqlens=None, key_padding_mask=None, key_lengths=None, softmax_scale=None,
             return_softmax_lse=True, write_status=None, causal_block_size=None, noisy_length=None, store_kv=True)
    a.update(options)
    return (q, k_cache, v_cache, k, v, *a.values())


def test_direct_matches_the_registered_op():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(3, 17, generator=g)
    conf[0, :4] = float("-inf")
    for kw in (dict(k=3), dict(k=torch.tensor([0, 2, 5])), dict(threshold=0.5), dict(threshold=0.5, eps=0.1),
               dict(threshold=torch.tensor([0.5, 0.2, 0.9]), strict=True), dict(factor=1.0),
               dict(k=2, alg_temp=0.5, seed=3, offset=torch.tensor(7))):
        want = torch.ops.diffusion_kernels.select_transfer(*select_transfer_args(conf, **kw))
        assert torch.equal(_C.select_transfer_direct(*_transfer_args(conf, **kw)), want), kw
    logits, x = torch.randn(2, 5, 31, generator=g), torch.full((2, 5), MASK_ID)
    x[0, 1] = 4
    op = torch.ops.diffusion_kernels.masked_confidence
    for given, op_options in (
            ({}, {}),
            (dict(temperature=0.7, top_p=0.9, top_k=5, confidence="margin", seed=3, offset=torch.tensor([9])),
             dict(temperature_value=0.7, top_p_value=0.9, top_k_value=5, confidence="margin", seed_value=3,
                  offset=torch.tensor([9]))),
            (dict(temperature=torch.tensor([0.5, 1.0]), block_start=torch.tensor([1, 0]), block_end=4,
                  positions="all", confidence_from="logits", prev_token_penalty=2, suppress_ids=torch.tensor([3])),
             dict(temperature=torch.tensor([0.5, 1.0]), block_start=torch.tensor([1, 0]), block_end_value=4,
                  all_positions=True, confidence_from_logits=True, prev_token_penalty_value=2.0,
                  suppress_ids=torch.tensor([3])))):
        direct = _C.masked_confidence_direct(*_confidence_args(logits, x, **given))
        want = op(logits, x, MASK_ID, return_lse=True, **op_options)
        assert all(torch.equal(a, b) for a, b in zip(direct, want, strict=True)), given
    assert len(_C.masked_confidence_direct(*_confidence_args(logits, x, return_lse=False))) == 2
    q, k_cache, v_cache = torch.randn(2, 3, 4, 16, generator=g), torch.randn(2, 9, 2, 16, generator=g), \
        torch.randn(2, 9, 2, 16, generator=g)
    k, v = torch.randn(2, 3, 2, 16, generator=g), torch.randn(2, 3, 2, 16, generator=g)
    for given, op_args in ((dict(cache_seqlens=4), (4, None, None, None, None)),
                           (dict(cache_seqlens=torch.tensor([1, 6]), key_lengths=torch.tensor([9, 7]), softmax_scale=0.5,
                                 causal_block_size=4),
                            (0, torch.tensor([1, 6]), None, torch.tensor([9, 7]), 0.5))):
        caches = k_cache.clone(), v_cache.clone()
        direct = _C.attention_direct(*_attention_args(q, *caches, k, v, **given))
        want_caches = k_cache.clone(), v_cache.clone()
        want = torch.ops.diffusion_kernels.attention_with_kv_cache(
            q, *want_caches, k, v, *op_args, True, None, given.get("causal_block_size", 0), 0, True)
        assert all(torch.equal(a, b) for a, b in zip(direct, want, strict=True)), given
        assert all(torch.equal(a, b) for a, b in zip(caches, want_caches)), given
    assert isinstance(_C.attention_direct(*_attention_args(q, k_cache, v_cache, return_softmax_lse=False)),
                      torch.Tensor)


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
    with pytest.raises(ValueError, match="argument 'x'"):
        _C.masked_confidence_direct(*_confidence_args(torch.randn(2, 4, 8), torch.full((2, 3), MASK_ID)))
    with pytest.raises(ValueError, match="argument 'temperature'"):
        _C.masked_confidence_direct(*_confidence_args(torch.randn(2, 3, 8), torch.full((2, 3), MASK_ID),
                                                      temperature=-1.0))
    with pytest.raises(ValueError, match="argument 'k_cache'"):
        _C.attention_direct(*_attention_args(torch.randn(1, 2, 2, 8), torch.randn(2, 4, 2, 8), torch.randn(2, 4, 2, 8)))


def test_direct_declines_what_the_wrapper_normalises():
    """Forms the wrappers convert or refuse themselves (their errors name the argument)."""
    conf = torch.rand(2, 5)
    x, x0 = torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long)
    for kw in (dict(k=torch.tensor([[1], [2]])), dict(k=torch.tensor([1, 2], dtype=torch.int32)), dict(k=True),
               dict(k=1, threshold=0.5), dict(), dict(k=1, eps=0.1), dict(k=1, strict=True),
               dict(threshold=0.5, eps=0.1, strict=True), dict(threshold=0.5, alg_temp=1.0),
               dict(threshold=torch.tensor([[0.5], [0.5]])), dict(threshold=torch.tensor([0.5, 0.5]).double()),
               dict(k=1, x=x), dict(k=1, x=x.t().contiguous().t(), x0=x0), dict(k=1, x=x, x0=x0.float()),
               dict(k=1, seed=2**64 - 1), dict(k=1, offset=torch.tensor([1, 2])), dict(factor=1.0, strict=1)):
        assert _C.select_transfer_direct(*_transfer_args(conf, **kw)) is None, kw
    assert _C.select_transfer_direct(*_transfer_args(conf.half(), k=1)) is None
    logits, x = torch.randn(2, 3, 8), torch.full((2, 3), MASK_ID)
    for options in (dict(temperature=torch.tensor(0.5)), dict(temperature=torch.tensor([1, 2])),
                    dict(top_k=torch.tensor([1, 2], dtype=torch.int32)), dict(suppress_ids=[1, 2]),
                    dict(confidence="best"), dict(positions="some"), dict(seed=2**63), dict(return_lse=1),
                    dict(block_end=1.5), dict(temperature="0")):
        assert _C.masked_confidence_direct(*_confidence_args(logits, x, **options)) is None, options
    assert _C.masked_confidence_direct(*_confidence_args(logits, x.int())) is None
    q, kc, vc = torch.randn(1, 2, 2, 8), torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8)
    for options in (dict(cache_seqlens=torch.tensor(1)), dict(cache_seqlens=torch.tensor([1], dtype=torch.int32)),
                    dict(cache_seqlens=1.0), dict(key_lengths=torch.tensor([4], dtype=torch.int32)),
                    dict(causal_block_size=0), dict(noisy_length=0), dict(store_kv=1), dict(softmax_scale=True)):
        assert _C.attention_direct(*_attention_args(q, kc, vc, **options)) is None, options


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
    q, kc, vc = torch.randn(1, 2, 2, 8), torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8)
    assert _C.attention_direct(*_attention_args(q.requires_grad_(), kc, vc)) is None  # autograd.Function path
    assert _C.attention_direct(*_attention_args(q.detach().as_subclass(Sub), kc, vc)) is None


def test_modes_and_the_profiler_still_see_the_ops():
    conf = torch.rand(2, 6)
    logits, x = torch.randn(1, 2, 8), torch.full((1, 2), MASK_ID)
    q, kc, vc = torch.randn(1, 2, 2, 8), torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8)
    with Seen() as seen:
        dk.select_transfer(conf, k=1)
        dk.masked_confidence(logits, x, MASK_ID)
        dk.attention_with_kv_cache(q, kc, vc)
    assert "diffusion_kernels.select_transfer.default" in seen.ops
    assert "diffusion_kernels.masked_confidence.default" in seen.ops
    assert "diffusion_kernels.attention_with_kv_cache.default" in seen.ops
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
    for kw in (dict(seed=5, offset=2), dict(eps=0.25, antithetic=True, seed=-3)):
        direct = _C.forward_mask_direct(*_forward_mask_args(x0, **kw))
        op = torch.ops.diffusion_kernels.forward_mask(*forward_mask_args(x0, MASK_ID, **kw))
        assert all(torch.equal(a, b) for a, b in zip(direct, op, strict=True)), kw
    # times and prompt lengths are range-checked by the wrapper; eps outside (0, 1) is its error too
    for kw in (dict(t=0.3), dict(prompt_lengths=torch.tensor([0, 4, 11])), dict(prompt_lengths=2), dict(eps=0.0),
               dict(eps=1), dict(seed=2**63), dict(antithetic=0)):
        assert _C.forward_mask_direct(*_forward_mask_args(x0, **kw)) is None, kw
    logits, targets = torch.randn(4, 9), torch.randint(0, 9, (4,))
    masked = torch.tensor([True, False, True, True])
    direct = _C.masked_ce_forward_direct(logits, targets, masked)
    assert all(torch.equal(a, b) for a, b in zip(direct, torch.ops.diffusion_kernels.masked_ce_forward(
        logits, targets, masked)))
    # logits that require grad go through the registered autograd kernel
    assert _C.masked_ce_forward_direct(logits.requires_grad_(), targets, masked) is None
    ce, _ = dk.masked_cross_entropy(logits, targets, masked)
    assert ce.grad_fn is not None
