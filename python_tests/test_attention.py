"""attention_with_kv_cache on CPU (every CPU path) against the pure-PyTorch reference."""
import os

import pytest
import torch

import diffusion_kernels as dk
from attention_cases import CASES, Case, check_call, clone_args, make_inputs
from diffusion_kernels import reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(params=["auto", "native", "aten", "gemm", "gemm-widened", "gemm-staged"])
def cpu_path(request, monkeypatch):
    """The op picks the brgemm kernel (few rows per kv head, or a mask), ATen's CPU flash attention
    (every key valid) or the native kernel; DK_CPU_ATTENTION forces one where it applies (gemm:
    AVX-512, bfloat16 on AMX or widened to float32 without it, else the others; aten: every key
    valid). gemm-widened: bfloat16 widened to float32 GEMMs even on AMX; gemm-staged: float32
    chunks of consecutive keys staged rather than read in place."""
    monkeypatch.setenv("DK_CPU_ATTENTION", request.param.split("-")[0])
    if request.param == "gemm-widened":
        monkeypatch.setenv("DK_CPU_ATTENTION_WIDEN", "1")
    if request.param == "gemm-staged":
        monkeypatch.setenv("DK_CPU_ATTENTION_STAGE", "1")
    return request.param


def masks_reach(cpu_path):
    """Whether calls with a mask or lengths run the path under test (ATen's has no mask)."""
    return cpu_path != "aten"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_matches_reference(case, dtype, cpu_path):
    if masks_reach(cpu_path) or case.mask == "none":
        check_call(dk.attention_with_kv_cache, make_inputs(case, dtype))


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_cpu_isa_build(dtype, isa, monkeypatch):
    monkeypatch.setenv("DK_CPU_ISA", isa)
    check_call(dk.attention_with_kv_cache, make_inputs(Case(2, 9, 4, 2, 64, 90, 9, [3, 81], "random"), dtype))


def test_custom_scale_and_split_keys(cpu_path):
    # One task (batch 1, one kv head, 7 rows): the keys are split across threads and merged.
    args = make_inputs(Case(1, 7, 2, 1, 128, 3000, 7, 5, "random" if masks_reach(cpu_path) else "none"), torch.float32)
    check_call(dk.attention_with_kv_cache, args, scale=0.3)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous(dtype, cpu_path):
    """Caches as a window of a bigger buffer (head and row strides), q from a [B, H, L, D] tensor."""
    b, lq, h, d, lc = 2, 9, 4, 64, 50
    big_k = torch.randn(b, lc + 10, h + 2, d).to(dtype)
    big_v = torch.randn(b, h + 2, lc + 10, d).to(dtype)
    q = torch.randn(b, h, lq, d).to(dtype).transpose(1, 2)
    k_new = torch.randn(b, h, lq, d).to(dtype).transpose(1, 2)
    v_new = torch.randn(b, lq, h, 2 * d).to(dtype)[..., ::2].contiguous()
    args = dict(q=q, k_cache=big_k[:, 3:3 + lc, 1:1 + h], v_cache=big_v[:, 1:1 + h, 5:5 + lc].transpose(1, 2),
                k_new=k_new, v_new=v_new, write_start=20,
                key_padding_mask=(torch.rand(lc, b) < 0.8).t() if masks_reach(cpu_path) else None,
                key_lengths=None)
    assert not args["k_cache"].is_contiguous() and not args["v_cache"].is_contiguous()
    check_call(dk.attention_with_kv_cache, args)
    # The write lands in the underlying buffers, and nowhere else.
    before = big_k.clone()
    dk.attention_with_kv_cache(q, args["k_cache"], args["v_cache"], k_new, v_new, write_start=20)
    assert torch.equal(big_k[:, 23:32, 1:1 + h], k_new)
    untouched = torch.ones_like(big_k, dtype=torch.bool)
    untouched[:, 23:32, 1:1 + h] = False
    assert torch.equal(big_k[untouched], before[untouched])


# Each dtype's forms: float32 read in place or staged; bfloat16 as the CPU runs it (AMX, or
# widened without it) or widened.
GEMM_FORMS = [(torch.float32, "default"), (torch.float32, "stage"), (torch.bfloat16, "default"),
              (torch.bfloat16, "widen")]


@pytest.mark.parametrize("dtype,form", GEMM_FORMS, ids=lambda v: str(v))
@pytest.mark.parametrize("case", [
    Case(1, 33, 8, 1, 64, 257, 33, 224),                   # 264 stacked rows (9 tiles), odd last chunk
    Case(2, 5, 4, 2, 128, 300, 5, [0, 295], "lengths"),    # a row with few or no keys
    Case(3, 31, 2, 2, 128, 600, 0, 0, "random"),           # non-consecutive keys
    Case(1, 1, 2, 2, 64, 513, 1, 512, "left_pad"),         # one query, chunk boundary + 1
], ids=Case.id)
def test_gemm_kernel_edges(case, dtype, form, monkeypatch):
    """The brgemm kernel's tiles and chunks: row tiles past 32, chunks of 128 keys with a tail,
    odd key counts (AMX bf16 pairs keys), non-consecutive keys (staged even in float32), a
    negative scale; each form: bf16 widened to float32, float32 staged instead of read in place."""
    monkeypatch.setenv("DK_CPU_ATTENTION", "gemm")
    monkeypatch.setenv("DK_CPU_ATTENTION_WIDEN", "1" if form == "widen" else "0")
    monkeypatch.setenv("DK_CPU_ATTENTION_STAGE", "1" if form == "stage" else "0")
    args = make_inputs(case, dtype)
    check_call(dk.attention_with_kv_cache, args)
    check_call(dk.attention_with_kv_cache, args, scale=-0.2)


def test_cache_rows_outside_write_bitwise_unchanged():
    args = make_inputs(Case(3, 6, 2, 2, 64, 40, 6, [0, 34, 11]), torch.bfloat16)
    k0, v0 = args["k_cache"].clone(), args["v_cache"].clone()
    dk.attention_with_kv_cache(**args)
    for i, s in enumerate([0, 34, 11]):
        keep = torch.ones(40, dtype=torch.bool)
        keep[s:s + 6] = False
        assert torch.equal(args["k_cache"][i, keep].view(torch.int16), k0[i, keep].view(torch.int16))
        assert torch.equal(args["v_cache"][i, keep].view(torch.int16), v0[i, keep].view(torch.int16))
        assert torch.equal(args["k_cache"][i, s:s + 6], args["k_new"][i])


def _full_kv(b, length, h, d, dtype):
    return [torch.randn(b, length, h, d).to(dtype) for _ in range(3)]


def test_no_cache_equals_prefix_equals_dual(cpu_path):
    """With caches holding the exact K/V, the three Fast-dLLM modes give the no-cache rows."""
    b, length, hq, hkv, d, start, block = 2, 96, 4, 2, 64, 40, 16
    q = torch.randn(b, length, hq, d)
    k = torch.randn(b, length, hkv, d)
    v = torch.randn(b, length, hkv, d)
    buf_k, buf_v = torch.zeros_like(k), torch.zeros_like(v)
    full = dk.attention_with_kv_cache(q, buf_k, buf_v, k, v, write_start=0)
    assert torch.equal(buf_k, k) and torch.equal(buf_v, v)

    # Prefix cache: queries = block + suffix; the cache holds the prefix, the rest is written.
    pk, pv = torch.zeros_like(k), torch.zeros_like(v)
    pk[:, :start], pv[:, :start] = k[:, :start], v[:, :start]
    prefix = dk.attention_with_kv_cache(q[:, start:], pk, pv, k[:, start:], v[:, start:], write_start=start)
    torch.testing.assert_close(prefix, full[:, start:], rtol=1e-5, atol=1e-6)

    # Dual cache: queries = the block; the cache holds everything, stale values in the block rows.
    dk_, dv_ = k.clone(), v.clone()
    dk_[:, start:start + block] = 123.0
    dual = dk.attention_with_kv_cache(q[:, start:start + block], dk_, dv_, k[:, start:start + block],
                                      v[:, start:start + block], write_start=start)
    torch.testing.assert_close(dual, full[:, start:start + block], rtol=1e-5, atol=1e-6)
    assert torch.equal(dk_, k)


def gemm_runs(dtype):
    """Whether DK_CPU_ATTENTION=gemm runs the brgemm kernel for dtype here (else it falls back)."""
    if dtype == torch.float16 or not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    if os.environ.get("DK_CPU_ISA") in ("base", "v3"):  # the kernel needs the AVX-512 build
        return False
    return True  # float32, and bfloat16 on AMX or widened to float32


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_left_padding_invariance(dtype, cpu_path):
    """A row's output is unchanged when left padding (any finite values) plus its mask is added:
    bitwise on the native and brgemm kernels (the same keys in the same chunks); the unpadded call
    may take ATen's path, which rounds differently."""
    lq, h, d, length, pad = 8, 4, 64, 50, 13
    q = torch.randn(1, lq, h, d).to(dtype)
    k, v = torch.randn(1, length, h, d).to(dtype), torch.randn(1, length, h, d).to(dtype)
    kn, vn = torch.randn(1, lq, h, d).to(dtype), torch.randn(1, lq, h, d).to(dtype)
    plain = dk.attention_with_kv_cache(q, k.clone(), v.clone(), kn, vn, write_start=30)

    # Batch of two: row 0 the same sequence left-padded, row 1 something else entirely.
    pk = torch.randn(2, pad + length, h, d).mul(100).to(dtype)
    pv = torch.randn(2, pad + length, h, d).mul(100).to(dtype)
    pk[0, pad:], pv[0, pad:] = k[0], v[0]
    mask = torch.ones(2, pad + length, dtype=torch.bool)
    mask[0, :pad] = False
    padded = dk.attention_with_kv_cache(torch.cat([q, torch.randn_like(q)]), pk, pv,
                                        torch.cat([kn, torch.randn_like(kn)]), torch.cat([vn, torch.randn_like(vn)]),
                                        write_start=torch.tensor([pad + 30, 4]), key_padding_mask=mask)
    if cpu_path == "native" or (cpu_path.startswith("gemm") and gemm_runs(dtype)):
        torch.testing.assert_close(padded[0], plain[0], rtol=0, atol=0)
    else:
        # ATen's path rounds P to the dtype before P @ V, the native kernel keeps it in float32:
        # each result is within flash-attn's bound of the float64 truth, so they are within twice it.
        args = dict(q=q, k_cache=k, v_cache=v, k_new=kn, v_new=vn, write_start=30)
        ref = reference.attention_with_kv_cache(**clone_args(args, torch.float64))
        pt = reference.attention_with_kv_cache(**clone_args(args), upcast=False)
        bound = 2 * (pt.double() - ref).abs().max() + 2 * (ref.to(dtype).double() - ref).abs().max() + 1e-6
        assert (padded[0].double() - plain[0].double()).abs().max() <= 2 * bound


def test_rows_without_valid_keys_are_zero():
    q = torch.randn(3, 5, 2, 64)
    kc, vc = torch.randn(3, 20, 2, 64), torch.randn(3, 20, 2, 64)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1] = False
    out, lse = dk.attention_with_kv_cache(q, kc, vc, key_padding_mask=mask, key_lengths=torch.tensor([20, 20, 0]),
                                          return_lse=True)
    assert (out[1:] == 0).all() and torch.isneginf(lse[1:]).all()
    assert torch.isfinite(lse[0]).all() and out[0].abs().sum() > 0


def test_empty_shapes():
    for b, lq, lc in [(0, 4, 6), (2, 0, 6), (2, 3, 0)]:
        q = torch.randn(b, lq, 2, 64)
        out, lse = dk.attention_with_kv_cache(q, torch.randn(b, lc, 2, 64), torch.randn(b, lc, 2, 64), return_lse=True)
        assert out.shape == q.shape and lse.shape == (b, 2, lq)
        assert (out == 0).all() and torch.isneginf(lse).all()


def test_return_lse_flag():
    args = make_inputs(Case(1, 3, 2, 2, 64, 10, 0, 0), torch.float32)
    out = dk.attention_with_kv_cache(**args)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 2, 64)


class TestBadInputs:
    def args(self, **over):
        a = dict(q=torch.randn(2, 4, 4, 64), k_cache=torch.randn(2, 10, 2, 64), v_cache=torch.randn(2, 10, 2, 64),
                 k_new=torch.randn(2, 4, 2, 64), v_new=torch.randn(2, 4, 2, 64), write_start=0)
        a.update(over)
        return a

    def raises(self, match, exc=ValueError, **over):
        a = self.args(**over)
        k0, v0 = a["k_cache"].clone(), a["v_cache"].clone()
        with pytest.raises(exc, match=match):
            dk.attention_with_kv_cache(**a)
        # A rejected call writes nothing.
        assert torch.equal(a["k_cache"], k0) and torch.equal(a["v_cache"], v0)

    def test_write_range_outside_cache(self):
        self.raises(r"'write_start'.*\[7, 11\).*\[0, 10\)", write_start=7)
        self.raises(r"'write_start'.*\[-1, 3\)", write_start=-1)
        self.raises(r"'write_starts'.*\[8, 12\) of batch row 1", write_start=torch.tensor([0, 8]))
        self.raises(r"'write_starts'.*batch row 0", write_start=torch.tensor([-2, 0]))
        self.raises(r"'write_start'.*int64 range", write_start=2**63)

    def test_dtypes(self):
        self.raises(r"'q'.*float32, float16 or bfloat16.*Double", q=torch.randn(2, 4, 4, 64, dtype=torch.float64))
        self.raises(r"'k_cache'.*dtype of 'q'", k_cache=torch.randn(2, 10, 2, 64).half())
        self.raises(r"'v_new'.*dtype of 'q'", v_new=torch.randn(2, 4, 2, 64).bfloat16())
        self.raises(r"'key_padding_mask'.*bool", key_padding_mask=torch.ones(2, 10))
        self.raises(r"'key_lengths'.*integer", key_lengths=torch.ones(2))

    def test_shapes(self):
        self.raises(r"'q'.*4 dimensions", q=torch.randn(4, 4, 64))
        self.raises(r"'k_cache'.*heads_kv, head_dim\].*batch = 2", k_cache=torch.randn(3, 10, 2, 64))
        self.raises(r"'v_cache'.*shape of 'k_cache'", v_cache=torch.randn(2, 11, 2, 64))
        self.raises(r"'k_cache'.*divides heads_q = 4", k_cache=torch.randn(2, 10, 3, 64), v_cache=torch.randn(2, 10, 3, 64),
                    k_new=None, v_new=None)
        self.raises(r"'k_new'.*new_len, heads_kv", k_new=torch.randn(2, 4, 1, 64))
        self.raises(r"'v_new'.*shape of 'k_new'", v_new=torch.randn(2, 5, 2, 64))
        self.raises(r"'key_padding_mask'.*\[2, 10\]", key_padding_mask=torch.ones(2, 9, dtype=torch.bool))
        self.raises(r"'key_lengths'.*\[2\]", key_lengths=torch.ones(3, dtype=torch.long))
        self.raises(r"'write_starts'.*\[2\]", write_start=torch.tensor([0, 0, 0]))

    def test_k_new_without_v_new(self):
        self.raises(r"'v_new'.*together with 'k_new'", v_new=None)

    def test_last_dim_not_contiguous(self):
        self.raises(r"'q'.*contiguous last dimension", q=torch.randn(2, 4, 64, 4).transpose(2, 3))

    def test_aliasing(self):
        kc = torch.randn(2, 10, 2, 64)
        self.raises(r"'k_cache'.*must not share memory with 'v_cache'", k_cache=kc, v_cache=kc)
        self.raises(r"'k_cache'.*overlapping elements", k_cache=torch.randn(1, 10, 2, 64).expand(2, 10, 2, 64))
        self.raises(r"'k_cache'.*must not share memory with 'k_new'", k_cache=kc, k_new=kc, v_new=torch.randn(2, 10, 2, 64))
        buf = torch.randn(2 * 10 * 2 * 64)
        self.raises(r"'k_cache'.*must not share memory with 'q'", q=buf[:2 * 4 * 4 * 64].view(2, 4, 4, 64),
                    k_cache=buf.view(2, 10, 2, 64))

    def test_scale(self):
        self.raises(r"'scale'.*finite", scale=float("inf"))

    def test_device_mismatch(self):
        with pytest.raises((ValueError, RuntimeError), match="'k_cache'.*same device as 'q'"):
            dk.attention_with_kv_cache(**self.args(q=torch.randn(2, 4, 4, 64, device="meta")))


def _opcheck_args(return_lse, per_row):
    args = make_inputs(Case(2, 5, 4, 2, 64, 16, 5, [3, 11] if per_row else 4, "both"), torch.bfloat16)
    ws = args["write_start"]
    return (args["q"], args["k_cache"], args["v_cache"], args["k_new"], args["v_new"],
            0 if per_row else ws, ws if per_row else None, args["key_padding_mask"], args["key_lengths"], None,
            return_lse)


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("return_lse", [False, True])
def test_opcheck(return_lse, per_row):
    torch.library.opcheck(torch.ops.diffusion_kernels.attention_with_kv_cache.default, _opcheck_args(return_lse, per_row))


def test_torch_compile_fullgraph_matches_eager():
    def step(q, kc, vc, kn, vn, mask):
        out, lse = dk.attention_with_kv_cache(q, kc, vc, kn, vn, write_start=3, key_padding_mask=mask, return_lse=True)
        return out * 2, lse

    args = make_inputs(Case(2, 5, 4, 2, 64, 16, 5, 3, "random"), torch.float32)
    eager_args, comp_args = clone_args(args), clone_args(args)
    names = ["q", "k_cache", "v_cache", "k_new", "v_new", "key_padding_mask"]
    want = step(*[eager_args[n] for n in names])
    got = torch.compile(step, fullgraph=True)(*[comp_args[n] for n in names])
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(comp_args["k_cache"], eager_args["k_cache"]), "the in-place cache write was lost"
    assert torch.equal(comp_args["v_cache"], eager_args["v_cache"])


def test_reference_rejects_out_of_range_write():
    args = make_inputs(Case(1, 4, 2, 2, 64, 6, 4, 3), torch.float32)
    with pytest.raises(ValueError, match="outside the cache"):
        reference.attention_with_kv_cache(**args)
