"""attention_with_kv_cache on the CPU path that hands the query rows to ATen's flash attention.

With GQA the g query heads of a kv head are stacked into g * q_len rows for ATen; its lse comes back
[batch, heads_kv, g * q_len] and need not be contiguous (issue 19: return_lse raised "view size is
not compatible with input tensor's size and stride"). Checked against diffusion_kernels.reference
with flash-attn's rule: our error against float64 at most twice PyTorch's own at the input dtype.
"""
import pytest
import torch

import diffusion_kernels
from diffusion_kernels import reference

OP = torch.ops.diffusion_kernels.attention_with_kv_cache.default

# (q shape, cache shape, new rows, write_start, dtype): enough stacked rows per kv head that the
# CPU op takes ATen's flash attention rather than the brgemm kernel.
CASES = [
    ((1, 129, 4, 64), (1, 96, 2, 64), 0, 0, torch.float32),
    ((1, 129, 4, 64), (1, 96, 2, 64), 7, 10, torch.float32),
    ((2, 70, 8, 32), (2, 50, 2, 32), 5, 45, torch.float32),
    ((1, 40, 4, 64), (1, 96, 2, 64), 0, 0, torch.bfloat16),
    ((1, 40, 4, 64), (1, 96, 2, 64), 3, 0, torch.bfloat16),
]


def _inputs(q_shape, cache_shape, new_len, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    b, _, hkv, d = cache_shape
    q = torch.randn(q_shape, generator=g).to(dtype)
    k_cache = torch.randn(cache_shape, generator=g).to(dtype)
    v_cache = torch.randn(cache_shape, generator=g).to(dtype)
    k_new = torch.randn(b, new_len, hkv, d, generator=g).to(dtype) if new_len else None
    v_new = torch.randn(b, new_len, hkv, d, generator=g).to(dtype) if new_len else None
    return q, k_cache, v_cache, k_new, v_new


def _written(cache, new, start):
    out = cache.clone()
    if new is not None:
        out[:, start:start + new.shape[1]] = new
    return out


def _reference(q, k_cache, v_cache, dtype, upcast=True):
    out, lse = reference.attention_with_kv_cache(q.to(dtype), k_cache.to(dtype), v_cache.to(dtype),
                                                 return_lse=True, upcast=upcast)
    return out, lse


@pytest.mark.parametrize("forced", [None, "aten"])
@pytest.mark.parametrize("q_shape,cache_shape,new_len,write_start,dtype", CASES)
def test_gqa_lse_matches_reference(monkeypatch, forced, q_shape, cache_shape, new_len, write_start, dtype):
    if forced is not None:
        monkeypatch.setenv("DK_CPU_ATTENTION", forced)
    q, k_cache, v_cache, k_new, v_new = _inputs(q_shape, cache_shape, new_len, dtype, seed=sum(q_shape) + new_len)
    kc, vc = k_cache.clone(), v_cache.clone()
    out, lse = OP(q, kc, vc, k_new, v_new, write_start, None, None, None, None, True)

    k_ref, v_ref = _written(k_cache, k_new, write_start), _written(v_cache, v_new, write_start)
    assert torch.equal(kc, k_ref) and torch.equal(vc, v_ref)
    ref_out, ref_lse = _reference(q, k_ref, v_ref, torch.float64)
    pt_out, pt_lse = _reference(q, k_ref, v_ref, dtype, upcast=False)
    assert out.shape == q.shape and out.dtype == dtype
    assert lse.shape == (q_shape[0], q_shape[2], q_shape[1]) and lse.dtype == torch.float32

    pt_err = (pt_out.double() - ref_out).abs().max().item()
    rounding = (ref_out.to(dtype).double() - ref_out).abs().max().item()
    err = (out.double() - ref_out).abs().max().item()
    assert err <= 2 * pt_err + 2 * rounding + 1e-6, f"out error {err:.3g} vs PyTorch's {pt_err:.3g}"
    lse_pt_err = (pt_lse.double() - ref_lse).abs().max().item()
    lse_err = (lse.double() - ref_lse).abs().max().item()
    assert lse_err <= 2 * lse_pt_err + 1e-5, f"lse error {lse_err:.3g} vs PyTorch's {lse_pt_err:.3g}"


def test_gqa_through_autograd():
    """The autograd forward asks the op for the lse, so it took the same failing path."""
    q, k_cache, v_cache, k_new, v_new = _inputs((1, 129, 4, 64), (1, 96, 2, 64), 6, torch.float32, seed=19)
    leaves = [t.clone().requires_grad_() for t in (q, k_new, v_new)]
    res = diffusion_kernels.attention_with_kv_cache(leaves[0], k_cache.clone(), v_cache.clone(), leaves[1], leaves[2])
    out = res[0] if isinstance(res, tuple) else res
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out * weight).sum(), leaves)

    ref_leaves = [t.clone().double().requires_grad_() for t in (q, k_new, v_new)]
    ref_out, _ = reference.attention_with_kv_cache(ref_leaves[0], k_cache.double(), v_cache.double(), ref_leaves[1],
                                                   ref_leaves[2], return_lse=True)
    ref_grads = torch.autograd.grad((ref_out * weight.double()).sum(), ref_leaves)
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
