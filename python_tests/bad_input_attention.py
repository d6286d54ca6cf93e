"""Battery cases of attention_with_kv_cache (the CPU op and its emulated CUDA twin).

Cases are written with flash-attn's argument names (k, v, cache_seqlens, softmax_scale,
return_softmax_lse); they are translated to the older names (k_new, v_new, write_start, scale,
return_lse) when the installed wrapper has only those, and an error may name either."""
import copy
import inspect

import torch

from diffusion_kernels import reference
from bad_input_case import Call, Case, Check, Raises, Same
from bad_input_tensors import INF, NAN, expanded, last_dim_strided, meta, padded, randn, transposed

B, LQ, HQ, HKV, D, LC, LN, START = 2, 4, 4, 2, 64, 10, 3, 5
OLD = {"k": "k_new", "v": "v_new", "cache_seqlens": "write_start", "softmax_scale": "scale",
       "return_softmax_lse": "return_lse"}
ALSO = {"cache_seqlens": ("write_start", "write_starts"), "k": ("k_new",), "v": ("v_new",),
        "softmax_scale": ("scale",)}  # older names an error message may use
WS = ("cache_seqlens",)


def _names(names):
    return tuple(n for name in names for n in (name,) + ALSO.get(name, ()))


def _old_names(kwargs):
    return {OLD.get(k, k): v for k, v in kwargs.items()}


def ref(**kw):
    """The reference (older names)."""
    return reference.attention_with_kv_cache(**_old_names(kw))


def _adapt(fn):
    """fn taking the canonical names, whatever names the installed wrapper has."""
    try:
        new = "cache_seqlens" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        new = False
    if not new and fn.__name__ == "attention_with_kv_cache" and fn.__module__.endswith("emulated"):
        from diffusion_kernels.ops import attention
        new = "cache_seqlens" in inspect.signature(attention.attention_with_kv_cache).parameters
    if new:
        return fn

    def old(**kw):
        return fn(**_old_names(kw))
    old.__name__ = fn.__name__
    return old


def cases(fn, prefix, emulated=False):
    out = []
    fn = _adapt(fn)
    # The emulated twin runs the CUDA kernels: 16-bit only. Its tolerance is one bf16 ulp of the
    # output (both sides round a float32 result to bf16); the CPU op's is float32 summation order.
    dt = torch.bfloat16 if emulated else torch.float32
    tol = dict(rtol=2 ** -7, atol=1e-2) if emulated else dict(rtol=1e-4, atol=1e-5)

    def add(desc, build, expect):
        out.append(Case(f"{prefix}-{desc}", build, expect, emulated=emulated))

    def inputs(b=B, lq=LQ, hq=HQ, hkv=HKV, d=D, lc=LC, ln=LN, dtype=dt):
        return dict(q=randn(b, lq, hq, d, dtype=dtype, seed=1, scale=1.0),
                    k_cache=randn(b, lc, hkv, d, dtype=dtype, seed=2, scale=1.0),
                    v_cache=randn(b, lc, hkv, d, dtype=dtype, seed=3, scale=1.0),
                    k=randn(b, ln, hkv, d, dtype=dtype, seed=4, scale=1.0) if ln else None,
                    v=randn(b, ln, hkv, d, dtype=dtype, seed=5, scale=1.0) if ln else None)

    def call(shape=None, change=None, **kw):
        """shape: keyword sizes of inputs(); change(args) edits the tensors; kw: other arguments."""
        def build():
            args = inputs(**(shape or {}))
            args.setdefault("cache_seqlens", START)
            args.update(copy.deepcopy(kw))
            if change is not None:
                change(args)
            return Call(fn, (), args)
        return build

    def same(desc, or_raises=None, **kw):
        add(desc, call(**kw), Same(ref, rule="close", or_raises=or_raises, **tol))

    def raises(desc, names, **kw):
        add(desc, call(**kw), Raises(*_names(names)))

    def setter(**edits):
        def change(args):
            for name, f in edits.items():
                args[name] = f(args)
        return change

    # dtypes, ranks, shapes
    raises("q-float64", ["q"], change=setter(q=lambda a: a["q"].double()))
    raises("q-int64", ["q"], change=setter(q=lambda a: a["q"].long()))
    other = torch.float16
    for name in ("k_cache", "v_cache", "k", "v"):
        raises(f"{name}-other-dtype", [name], change=setter(**{name: lambda a, n=name: a[n].to(other)}))
        raises(f"{name}-rank3", [name], change=setter(**{name: lambda a, n=name: a[n][0]}))
        raises(f"{name}-meta", [name, "q"], change=setter(**{name: lambda a, n=name: meta(a[n])}))
        raises(f"{name}-not-a-tensor", [name], change=setter(**{name: lambda a, n=name: a[n].tolist()}))
    raises("q-rank3", ["q"], change=setter(q=lambda a: a["q"][0]))
    raises("q-rank5", ["q"], change=setter(q=lambda a: a["q"][None]))
    raises("q-meta", ["q", "k_cache"], change=setter(q=lambda a: meta(a["q"])))
    raises("q-head_dim-strided", ["q"], change=setter(q=lambda a: last_dim_strided(a["q"])))
    raises("k_cache-head_dim-strided", ["k_cache"], change=setter(k_cache=lambda a: last_dim_strided(a["k_cache"])))
    raises("v_cache-shorter", ["v_cache"], change=setter(v_cache=lambda a: a["v_cache"][:, :-1]))
    raises("k_cache-other-batch", ["k_cache"], change=setter(k_cache=lambda a: a["k_cache"][:1]))
    raises("k_cache-other-head_dim", ["k_cache"], change=setter(k_cache=lambda a: a["k_cache"][..., :32]))
    raises("heads-not-divisible", ["k_cache", "q"], shape=dict(hq=3, hkv=2))
    raises("k-without-v", ["v", "k"], change=setter(v=lambda a: None))
    raises("v-without-k", ["k", "v"], change=setter(k=lambda a: None))
    raises("k-other-heads", ["k"], change=setter(k=lambda a: a["k"][:, :, :1]))
    raises("v-shorter", ["v"], change=setter(v=lambda a: a["v"][:, :-1]))
    raises("k-longer-than-cache", ["k", "cache_seqlens"], shape=dict(ln=LC + 1), cache_seqlens=0)
    raises("head_dim-zero", ["q"], shape=dict(d=0))
    # write starts
    raises("cache_seqlens-beyond", WS, cache_seqlens=LC - LN + 1)
    raises("cache_seqlens-negative", WS, cache_seqlens=-1)
    raises("cache_seqlens-2pow63", WS, cache_seqlens=2**63)
    raises("cache_seqlens-float", WS, cache_seqlens=5.0)
    raises("cache_seqlens-str", WS, cache_seqlens="5")
    raises("cache_seqlens-float-tensor", WS, cache_seqlens=torch.tensor([5.0, 5.0]))
    raises("cache_seqlens-float-tensor-fraction", WS, cache_seqlens=torch.tensor([5.7, 2.2]))
    raises("cache_seqlens-bool-tensor", WS, cache_seqlens=torch.tensor([True, False]))
    raises("cache_seqlens-tensor-batch3", WS, cache_seqlens=torch.tensor([0, 1, 2]))
    raises("cache_seqlens-tensor-2d", WS, cache_seqlens=torch.tensor([[0], [1]]))
    raises("cache_seqlens-tensor-meta", WS, cache_seqlens=torch.tensor([0, 1], device="meta"))
    raises("cache_seqlens-later-row-beyond", WS, cache_seqlens=torch.tensor([0, LC - LN + 1]))
    raises("cache_seqlens-later-row-negative", WS, cache_seqlens=torch.tensor([1, -1]))
    raises("cache_seqlens-first-row-beyond", WS, cache_seqlens=torch.tensor([LC, 0]))
    same("cache_seqlens-int-tensor-rows", cache_seqlens=torch.tensor([0, LC - LN]))
    same("cache_seqlens-0d-tensor", cache_seqlens=torch.tensor(2))
    same("cache_seqlens-int32-tensor", cache_seqlens=torch.tensor([1, 2], dtype=torch.int32), or_raises=WS)
    same("cache_seqlens-ignored-without-new", shape=dict(ln=0), cache_seqlens=0)
    same("cache_seqlens-at-end", cache_seqlens=LC - LN)
    same("cache_seqlens-tensor-transposed", cache_seqlens=torch.tensor([[3, 9], [1, 9]])[:, 0], or_raises=WS)
    # masks
    raises("key_padding_mask-float", ["key_padding_mask"], key_padding_mask=torch.ones(B, LC))
    raises("key_padding_mask-shape", ["key_padding_mask"], key_padding_mask=torch.ones(B, LC - 1, dtype=torch.bool))
    raises("key_padding_mask-3d", ["key_padding_mask"], key_padding_mask=torch.ones(B, 1, LC, dtype=torch.bool))
    raises("key_padding_mask-meta", ["key_padding_mask"], key_padding_mask=torch.ones(B, LC, dtype=torch.bool,
                                                                                       device="meta"))
    raises("key_lengths-float", ["key_lengths"], key_lengths=torch.tensor([3.0, 4.0]))
    raises("key_lengths-shape", ["key_lengths"], key_lengths=torch.tensor([3, 4, 5]))
    raises("key_lengths-meta", ["key_lengths"], key_lengths=torch.tensor([3, 4], device="meta"))
    raises("key_lengths-list", ["key_lengths"], key_lengths=[3, 4])
    same("key_padding_mask-all-false", key_padding_mask=torch.zeros(B, LC, dtype=torch.bool))
    same("key_padding_mask-uint8", key_padding_mask=torch.ones(B, LC, dtype=torch.uint8), or_raises=("key_padding_mask",))
    same("key_padding_mask-stride0", key_padding_mask=torch.tensor([True, False] * 5).expand(B, LC))
    same("key_lengths-zero-and-beyond", key_lengths=torch.tensor([0, LC + 5]))
    same("key_lengths-negative", key_lengths=torch.tensor([-3, 4]), or_raises=("key_lengths",))
    same("key_lengths-int32", key_lengths=torch.tensor([3, 4], dtype=torch.int32))
    # block rules (causal_block_size, noisy_length) and store_kv
    raises("causal_block_size-zero", ["causal_block_size"], causal_block_size=0)
    raises("causal_block_size-negative", ["causal_block_size"], causal_block_size=-4)
    raises("causal_block_size-float", ["causal_block_size"], causal_block_size=4.0)
    raises("causal_block_size-bool", ["causal_block_size"], causal_block_size=True)
    raises("causal_block_size-str", ["causal_block_size"], causal_block_size="4")
    raises("causal_block_size-2pow63", ["causal_block_size"], causal_block_size=2**63)
    raises("noisy_length-without-block", ["noisy_length"], noisy_length=5)
    raises("noisy_length-zero", ["noisy_length"], causal_block_size=2, noisy_length=0)
    raises("noisy_length-negative", ["noisy_length"], causal_block_size=2, noisy_length=-5)
    raises("noisy_length-beyond-cache", ["noisy_length"], causal_block_size=2, noisy_length=LC + 1)
    raises("noisy_length-float", ["noisy_length"], causal_block_size=2, noisy_length=5.0)
    raises("store_kv-int", ["store_kv"], store_kv=1)
    raises("store_kv-none", ["store_kv"], store_kv=None)
    same("causal_block_size-1", causal_block_size=1)
    same("causal_block_size-huge", causal_block_size=2**62)
    same("causal_block_size-0d-tensor", causal_block_size=torch.tensor(4))
    same("causal_block_size-rows", causal_block_size=3, cache_seqlens=torch.tensor([0, LC - LN]))
    same("causal_block_size-start-past-cache", shape=dict(ln=0), causal_block_size=4, cache_seqlens=LC + 100)
    same("causal_block_size-negative-start-read-only", shape=dict(ln=0), causal_block_size=4, cache_seqlens=-3,
         or_raises=WS)
    same("causal_block_size-2pow62-start", shape=dict(ln=0), causal_block_size=3, cache_seqlens=2**62)
    same("causal_block_size-with-padding", causal_block_size=4, key_padding_mask=torch.tensor([True, False] * 5).expand(B, LC))
    same("noisy_length-whole-cache", causal_block_size=2, noisy_length=LC, cache_seqlens=0)
    same("noisy_length-1", causal_block_size=3, noisy_length=1, cache_seqlens=0)
    same("noisy_length-block-past-cache", causal_block_size=LC + 4, noisy_length=LC // 2, cache_seqlens=0)
    same("store_kv-false", store_kv=False)
    same("store_kv-false-no-new-rows", shape=dict(ln=0), store_kv=False)
    same("store_kv-false-block", store_kv=False, causal_block_size=4)
    # scale
    raises("scale-overflow", ["softmax_scale"], softmax_scale=1e39)
    raises("scale-inf", ["softmax_scale"], softmax_scale=INF)
    raises("scale-nan", ["softmax_scale"], softmax_scale=NAN)
    raises("scale-str", ["softmax_scale"], softmax_scale="0.1")
    raises("scale-tensor-rows", ["softmax_scale"], softmax_scale=torch.tensor([0.1, 0.2]))
    same("scale-zero", softmax_scale=0.0)
    same("scale-negative", softmax_scale=-0.125)
    same("scale-0d-tensor", softmax_scale=torch.tensor(0.125))
    # in-place caches: stride 0 and aliasing
    raises("k_cache-stride0", ["k_cache"], change=setter(k_cache=lambda a: expanded(a["k_cache"], 0)))
    raises("v_cache-stride0-rows", ["v_cache"], change=setter(v_cache=lambda a: expanded(a["v_cache"], 1)))
    raises("k_cache-is-v_cache", ["k_cache", "v_cache"], change=setter(v_cache=lambda a: a["k_cache"]))
    # q reading rows the call rewrites: the reference (PyTorch) refuses such aliasing too
    raises("q-aliases-written-cache-rows", ["q", "k_cache"], shape=dict(hq=HKV),
           change=setter(q=lambda a: a["k_cache"][:, START - 1:START - 1 + LQ]))
    raises("k-overlaps-k_cache", ["k", "k_cache"], change=setter(k=lambda a: a["k_cache"][:, 3:6]))
    raises("v-overlaps-v_cache", ["v", "v_cache"], change=setter(v=lambda a: a["v_cache"][:, 4:7]))
    same("k_cache-stride0-read-only", shape=dict(ln=0), or_raises=("k_cache",),
         change=setter(k_cache=lambda a: expanded(a["k_cache"], 1)))
    raises("k_cache-requires-grad", ["k_cache"],
           change=setter(k_cache=lambda a: a["k_cache"].requires_grad_(), k=lambda a: a["k"].requires_grad_()))
    # layouts and empty shapes
    same("q-transposed", change=setter(q=lambda a: transposed(a["q"], 1, 2)))
    same("q-padded", change=setter(q=lambda a: padded(a["q"])))
    same("q-stride0-rows", change=setter(q=lambda a: expanded(a["q"], 1)))
    same("caches-transposed", change=setter(k_cache=lambda a: transposed(a["k_cache"], 1, 2),
                                            v_cache=lambda a: transposed(a["v_cache"], 0, 1)))
    same("k-stride0-batch", change=setter(k=lambda a: expanded(a["k"], 0)))
    same("v-padded", change=setter(v=lambda a: padded(a["v"])))
    same("empty-batch", shape=dict(b=0))
    same("empty-q_len", shape=dict(lq=0))
    same("empty-cache", shape=dict(lc=0, ln=0), cache_seqlens=0)
    same("no-new-rows", shape=dict(ln=0))
    same("new-fills-cache", shape=dict(ln=LC), cache_seqlens=0)
    same("nan-in-q", change=setter(q=lambda a: a["q"].index_fill(1, torch.tensor([1]), NAN)))
    same("mqa", shape=dict(hq=4, hkv=1))
    for ret in (False, True):
        same(f"return_softmax_lse-{ret}", return_softmax_lse=ret)
    # a well-formed call that failed: GQA with the lse on the path of many query rows
    same("gqa-lse-129-queries", shape=dict(b=1, lq=129, lc=96, ln=0), cache_seqlens=0, return_softmax_lse=True)
    # bf16 outputs: one rounding of the result (2**-8 relative) on either side
    add("gqa-lse-bf16-40-queries", call(shape=dict(b=1, lq=40, lc=96, ln=0, dtype=torch.bfloat16), cache_seqlens=0,
                                        return_softmax_lse=True), Same(ref, rule="close", rtol=2 ** -7, atol=1e-2))
    if not emulated:
        def autograd(result, call):
            out, lse = result
            want, want_lse = ref(**{k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in call.kwargs.items()})
            torch.testing.assert_close(out.detach(), want, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(lse.detach(), want_lse, rtol=1e-4, atol=1e-5)
            out.sum().backward()
            assert call.kwargs["q"].grad is not None and torch.isfinite(call.kwargs["q"].grad).all()
        add("gqa-lse-129-queries-autograd", call(shape=dict(b=1, lq=129, lc=96, ln=0), cache_seqlens=0, return_softmax_lse=True,
                                                 change=setter(q=lambda a: a["q"].requires_grad_())), Check(autograd))

        def meta_shapes(result, call):
            o, lse = result
            assert o.device.type == "meta" and o.shape == (B, LQ, HQ, D) and o.dtype == dt, f"out {o}"
            assert lse.device.type == "meta" and lse.shape == (B, HQ, LQ) and lse.dtype == torch.float32, f"lse {lse}"

        def all_meta(a):
            for k in ("q", "k_cache", "v_cache", "k", "v"):
                a[k] = meta(a[k])
        add("all-meta-shapes", call(change=all_meta, return_softmax_lse=True), Check(meta_shapes))

        def all_meta_bad(a):
            all_meta(a)
            a["v_cache"] = a["v_cache"][:, :-1]
        raises("all-meta-v_cache-shorter", ["v_cache"], change=all_meta_bad)
    return out
