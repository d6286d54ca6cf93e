"""Gradients through attention_with_kv_cache (q, k, v), against autograd through the float64
reference."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference

CASES = {
    # name: (batch, q_len, heads_q, heads_kv, head_dim, cache_len, starts, mask kind)
    "no_cache": (2, 9, 4, 4, 64, 9, 0, None),
    "dual_gqa_padding": (3, 5, 4, 2, 64, 23, [0, 7, 18], "left_pad"),
    "prefix_lengths": (2, 6, 2, 1, 128, 17, [11, 5], "lengths"),
    "row_without_keys": (2, 4, 2, 2, 64, 12, [3, 3], "empty_row"),
}


def make(case, dtype, seed=0):
    b, lq, hq, hkv, d, lc, starts, kind = case
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, lq, hq, d, generator=g).to(dtype)
    k_cache = torch.randn(b, lc, hkv, d, generator=g).to(dtype)
    v_cache = torch.randn(b, lc, hkv, d, generator=g).to(dtype)
    k = torch.randn(b, lq, hkv, d, generator=g).to(dtype)
    v = torch.randn(b, lq, hkv, d, generator=g).to(dtype)
    extra = {"cache_seqlens": torch.tensor(starts) if isinstance(starts, list) else starts}
    if kind == "left_pad":
        extra["key_padding_mask"] = torch.arange(lc)[None, :] >= torch.tensor([0, 2, 5])[:, None]
    elif kind == "lengths":
        extra["key_lengths"] = torch.tensor([lc, 9])
    elif kind == "empty_row":
        mask = torch.ones(b, lc, dtype=torch.bool)
        mask[1] = False
        extra["key_padding_mask"] = mask
    return q, k_cache, v_cache, k, v, extra


def reference_op(q, k_cache, v_cache, k, v, cache_seqlens, return_softmax_lse, **masks):
    """The reference, which keeps the original argument names."""
    return reference.attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens, return_lse=return_softmax_lse,
                                             **masks)


def grads(fn, q, k_cache, v_cache, k, v, extra, w_out, w_lse):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out, lse = fn(q, k_cache, v_cache, k, v, return_softmax_lse=True, **extra)
    loss = (out.double() * w_out).sum() + (torch.where(torch.isfinite(lse), lse, 0).double() * w_lse).sum()
    loss.backward()
    return out, q.grad, k.grad, v.grad


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_float64_reference(name):
    q, kc, vc, kn, vn, extra = make(CASES[name], torch.float32)
    g = torch.Generator().manual_seed(1)
    w_out = torch.randn(q.shape, generator=g, dtype=torch.float64)
    w_lse = torch.randn(q.shape[0], q.shape[2], q.shape[1], generator=g, dtype=torch.float64)
    got = grads(dk.attention_with_kv_cache, q, kc.clone(), vc.clone(), kn, vn, extra, w_out, w_lse)
    want = grads(reference_op, *(t.double() for t in (q, kc, vc, kn, vn)), extra, w_out, w_lse)
    for what, a, b in zip(("out", "grad q", "grad k", "grad v"), got, want):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name} {what}: {m}")
    if name == "row_without_keys":
        assert torch.equal(got[1][1], torch.zeros_like(got[1][1]))  # no key: output 0, gradient 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_gradients(dtype, backend):
    """Gradients come back in the inputs' dtype; their error is that of rounding the float32
    recompute to it (the backward is the same PyTorch recompute on every backend; the forward and
    the cache write are the backend's)."""
    q, kc, vc, kn, vn, extra = make(CASES["dual_gqa_padding"], dtype)
    w_out = torch.randn(q.shape, dtype=torch.float64)
    w_lse = torch.zeros(q.shape[0], q.shape[2], q.shape[1], dtype=torch.float64)
    dev = backend.device
    got = grads(backend.attention_with_kv_cache, *(t.to(dev) for t in (q, kc, vc, kn, vn)),
                {n: t.to(dev) for n, t in extra.items()}, w_out.to(dev), w_lse.to(dev))
    want = grads(reference_op, *(t.double() for t in (q, kc, vc, kn, vn)), extra, w_out, w_lse)
    for a, b in zip(got[1:], want[1:]):
        a = a.cpu()
        assert a.dtype == dtype
        tol = 2 * torch.finfo(dtype).eps
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol * b.abs().max().item())


def test_the_cache_write_still_happens_and_no_grad_path_is_unchanged():
    q, kc, vc, kn, vn, extra = make(CASES["dual_gqa_padding"], torch.float32)
    kc2, vc2 = kc.clone(), vc.clone()
    out = dk.attention_with_kv_cache(q.requires_grad_(), kc, vc, kn, vn, **extra)
    assert out.grad_fn is not None
    for b, s in enumerate(extra["cache_seqlens"].tolist()):
        assert torch.equal(kc[b, s:s + kn.shape[1]], kn[b]) and torch.equal(vc[b, s:s + vn.shape[1]], vn[b])
    plain = dk.attention_with_kv_cache(q.detach(), kc2, vc2, kn, vn, **extra)
    assert plain.grad_fn is None
    assert torch.equal(plain, out.detach()) and torch.equal(kc2, kc)


def test_cache_requiring_grad_is_refused():
    q, kc, vc, kn, vn, extra = make(CASES["no_cache"], torch.float32)
    with pytest.raises(ValueError, match="'k_cache' must not require grad"):
        dk.attention_with_kv_cache(q, kc.requires_grad_(), vc, kn, vn, **extra)


def test_cache_modified_before_backward_is_refused():
    q, kc, vc, kn, vn, extra = make(CASES["no_cache"], torch.float32)
    out = dk.attention_with_kv_cache(q.requires_grad_(), kc, vc, kn, vn, **extra)
    kc.add_(1.0)
    with pytest.raises(RuntimeError, match="modified after the forward"):
        out.sum().backward()


def test_gqa_on_the_cpu_flash_path():
    """The autograd forward asks the op for the lse: with GQA and many query rows the CPU op takes
    ATen's flash attention, whose lse layout differs from ours."""
    g = torch.Generator().manual_seed(19)
    q, k_cache, v_cache = (torch.randn(s, generator=g) for s in ((1, 129, 4, 64), (1, 96, 2, 64), (1, 96, 2, 64)))
    k, v = (torch.randn(1, 6, 2, 64, generator=g) for _ in range(2))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = dk.attention_with_kv_cache(leaves[0], k_cache.clone(), v_cache.clone(), leaves[1], leaves[2])
    weight = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * weight).sum(), leaves)

    ref_leaves = [t.clone().double().requires_grad_() for t in (q, k, v)]
    ref_out, _ = reference.attention_with_kv_cache(ref_leaves[0], k_cache.double(), v_cache.double(), ref_leaves[1],
                                                   ref_leaves[2], return_lse=True)
    ref_grads = torch.autograd.grad((ref_out * weight.double()).sum(), ref_leaves)
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["block_causal", "training"])
def test_block_rule_gradients_match_sdpa_with_a_dense_mask(layout):
    """Values and gradients of q, k, v under a block rule against float64 SDPA given the mask as a
    dense boolean tensor: a block-causal prefill after a cached prefix (per-row starts, GQA), and
    the x_t (+) x_0 training layout (no cache)."""
    from attention_cases import dense_block_mask, sdpa_with_mask

    g = torch.Generator().manual_seed(7)
    b, hq, hkv, d = 2, 4, 2, 32
    if layout == "training":
        lc, lq, starts, block, noisy = 48, 48, [0, 0], 8, 24
    else:
        lc, lq, starts, block, noisy = 64, 20, [12, 40], 16, None
    q = torch.randn(b, lq, hq, d, generator=g)
    kc, vc = (torch.randn(b, lc, hkv, d, generator=g) for _ in range(2))
    k, v = (torch.randn(b, lq, hkv, d, generator=g) for _ in range(2))
    w = torch.randn(b, lq, hq, d, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = dk.attention_with_kv_cache(leaves[0], kc.clone(), vc.clone(), leaves[1], leaves[2],
                                     cache_seqlens=torch.tensor(starts), causal_block_size=block, noisy_length=noisy)
    got = torch.autograd.grad((out.double() * w).sum(), leaves)

    ref = [t.clone().double().requires_grad_() for t in (q, k, v)]
    full_k, full_v = kc.double(), vc.double()
    full_k, full_v = full_k.clone(), full_v.clone()
    for r, s in enumerate(starts):
        full_k[r, s:s + lq], full_v[r, s:s + lq] = ref[1][r], ref[2][r]
    want_out = sdpa_with_mask(ref[0], full_k, full_v, dense_block_mask(starts, lq, lc, block, noisy))
    want = torch.autograd.grad((want_out * w).sum(), ref)
    torch.testing.assert_close(out.double(), want_out, rtol=1e-5, atol=1e-5)
    for name, a, e in zip("qkv", got, want):
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-5, msg=lambda m: f"grad {name}: {m}")


def test_backward_chunks_agree_with_one_chunk():
    """The recompute backward walks the queries in chunks sized by a byte budget: chunks of a few
    rows (the training layout, GQA, padding, a row without keys, the lse's gradient) give the
    gradients of a single chunk."""
    from diffusion_kernels.ops.attention_autograd import attention_grads

    g = torch.Generator().manual_seed(3)
    b, lq, hq, hkv, d, lc = 2, 40, 4, 2, 32, 40
    q = torch.randn(b, lq, hq, d, generator=g)
    kc, vc, k, v = (torch.randn(b, lc, hkv, d, generator=g) for _ in range(4))
    mask = torch.ones(b, lc, dtype=torch.bool)
    mask[1, :3] = False
    grads = (torch.randn(b, lq, hq, d, generator=g), torch.randn(b, hq, lq, generator=g))
    args = (q, kc, vc, k, v, torch.zeros(b, dtype=torch.int64), mask, None, None, *grads, 8, 20)
    whole = attention_grads(*args)
    rows = attention_grads(*args, chunk_bytes=3 * 4 * 4 * b * hq * lc)  # 3 query rows per chunk
    for a, e in zip(rows, whole):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
