"""Battery cases of select_transfer (the CPU op and its emulated CUDA twin)."""
import copy

import torch

from diffusion_kernels import reference
from bad_input_case import Call, Case, Raises, Same
from bad_input_tensors import INF, NAN, expanded, meta, padded, randint, transposed

B, L = 3, 6


def confidence(b=B, l=L, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    c = torch.rand(b, l, generator=g)
    if l > 2:
        c[:, 2] = -INF
    if b > 2:
        c[2] = -INF  # a row without candidates
    return c.to(dtype)


def tokens(b=B, l=L):
    return torch.full((b, l), 99, dtype=torch.int64)


def proposals(b=B, l=L):
    return randint(0, 50, b, l, seed=2)


def cases(fn, prefix, emulated=False):
    out = []

    def add(desc, build, expect):
        out.append(Case(f"{prefix}-{desc}", build, expect, emulated=emulated))

    def call(conf=None, inplace=True, x=None, x0=None, **kw):
        def build():
            c = confidence() if conf is None else conf()
            extra = {}
            if inplace:
                extra = dict(x=tokens() if x is None else x(), x0=proposals() if x0 is None else x0())
            return Call(fn, (c,), {**copy.deepcopy(kw), **extra})
        return build

    def same(desc, or_raises=None, **kw):
        add(desc, call(**kw), Same(reference.select_transfer, or_raises=or_raises))

    def raises(desc, names, **kw):
        add(desc, call(**kw), Raises(*names))

    k2 = dict(k=2)
    for dt in (torch.float64, torch.int64, torch.bool, torch.int32):
        raises(f"confidence-dtype-{str(dt)[6:]}", ["confidence"], conf=lambda dt=dt: confidence().to(dt), **k2)
    raises("confidence-rank1", ["confidence"], conf=lambda: confidence()[0], inplace=False, **k2)
    raises("confidence-rank3", ["confidence"], conf=lambda: confidence()[None], inplace=False, **k2)
    raises("confidence-rank0", ["confidence"], conf=lambda: torch.tensor(0.5), inplace=False, **k2)
    raises("confidence-meta-x-cpu", ["confidence", "x"], conf=lambda: meta(confidence()), **k2)
    raises("confidence-not-a-tensor", ["confidence"], conf=lambda: [[0.5, 0.2]], inplace=False, **k2)
    # the rule
    raises("no-rule", ["k", "threshold", "factor"])
    raises("k-and-threshold", ["k", "threshold"], k=1, threshold=0.5)
    raises("threshold-and-factor", ["threshold", "factor"], threshold=0.5, factor=1.0)
    raises("k-negative", ["k"], k=-1)
    raises("k-float", ["k"], k=2.5)
    raises("k-float-integral", ["k"], k=2.0)
    raises("k-bool", ["k"], k=True)
    raises("k-str", ["k"], k="2")
    raises("k-float-tensor", ["k"], k=torch.tensor([1.5, 2.0, 1.0]))
    raises("k-bool-tensor", ["k"], k=torch.tensor([True, False, True]))
    raises("k-tensor-batch2", ["k"], k=torch.tensor([1, 2]))
    raises("k-tensor-2cols", ["k"], k=torch.ones(B, 2, dtype=torch.int64))
    if emulated:  # documented: on CUDA a negative count transfers nothing (checking would sync)
        same("k-tensor-negative", k=torch.tensor([1, -1, 0]), or_raises=("k",))
    else:
        raises("k-tensor-negative", ["k"], k=torch.tensor([1, -1, 0]))
    raises("k-tensor-meta", ["k"], k=torch.ones(B, dtype=torch.int64, device="meta"))
    raises("k-2pow63", ["k"], k=2**63)
    raises("eps-with-k", ["eps"], k=1, eps=0.1)
    raises("eps-with-factor", ["eps"], factor=1.0, eps=0.1)
    raises("alg_temp-with-threshold", ["alg_temp"], threshold=0.5, alg_temp=1.0)
    raises("threshold-str", ["threshold"], threshold="0.5")
    raises("factor-str", ["factor"], factor="1")
    raises("threshold-tensor-batch2", ["threshold"], threshold=torch.tensor([0.5, 0.5]))
    raises("threshold-tensor-2cols", ["threshold"], threshold=torch.full((B, 2), 0.5))
    raises("threshold-bool-tensor", ["threshold"], threshold=torch.tensor([True, False, True]))
    raises("threshold-tensor-meta", ["threshold"], threshold=torch.full((B,), 0.5, device="meta"))
    raises("threshold-tensor-with-k", ["k", "threshold"], k=1, threshold=torch.full((B,), 0.5))
    raises("strict-with-k", ["strict"], k=2, strict=True)
    raises("strict-with-factor", ["strict"], factor=1.0, strict=True)
    raises("strict-with-eps", ["strict"], threshold=0.5, eps=0.1, strict=True)
    raises("strict-int", ["strict"], threshold=0.5, strict=1)
    raises("strict-none", ["strict"], threshold=0.5, strict=None)
    raises("seed-float", ["seed"], k=2, alg_temp=0.5, seed=1.5)
    raises("seed-float-tensor", ["seed"], k=2, alg_temp=0.5, seed=torch.tensor([1.0]))
    raises("offset-tensor-two", ["offset"], k=2, alg_temp=0.5, offset=torch.tensor([1, 2]))
    raises("offset-2pow64", ["offset"], k=2, alg_temp=0.5, offset=2**64)
    # the in-place tokens
    add("x-without-x0", lambda: Call(fn, (confidence(),), dict(k=2, x=tokens())), Raises("x0", "x"))
    add("x0-without-x", lambda: Call(fn, (confidence(),), dict(k=2, x0=proposals())), Raises("x", "x0"))
    raises("x-int32", ["x"], k=2, x=lambda: tokens().int())
    raises("x0-float", ["x0"], k=2, x0=lambda: proposals().float())
    raises("x-short", ["x"], k=2, x=lambda: tokens(B, L - 1))
    raises("x0-rank1", ["x0"], k=2, x0=lambda: proposals()[0])
    raises("x-meta", ["x"], k=2, x=lambda: meta(tokens()))
    raises("x0-meta", ["x0"], k=2, x0=lambda: meta(proposals()))
    raises("x-stride0", ["x"], k=2, x=lambda: expanded(tokens(), 0))
    raises("x-stride0-rows", ["x"], k=2, x=lambda: torch.full((B, 1), 99).expand(B, L))
    same("x0-stride0", k=2, x0=lambda: expanded(proposals(), 0))
    same("x-transposed", k=2, x=lambda: transposed(tokens()))
    same("x-padded", k=2, x=lambda: padded(tokens()))
    add("x0-is-x", lambda: (lambda t: Call(fn, (confidence(),), dict(k=2, x=t, x0=t)))(proposals()),
        Same(reference.select_transfer))
    add("x0-overlaps-x", lambda: (lambda buf: Call(fn, (confidence(),), dict(k=2, x=buf[:, :L], x0=buf[:, 1:])))(
        randint(0, 50, B, L + 1, seed=4)), Same(reference.select_transfer, or_raises=("x", "x0")))
    # well-formed edge cases
    for rule in (dict(k=2), dict(k=0), dict(k=10**6), dict(threshold=0.5), dict(threshold=0.5, eps=1e-5),
                 dict(factor=1.0), dict(k=3, alg_temp=0.7, seed=3, offset=1)):
        rid = "+".join(f"{k}={v}" for k, v in rule.items())
        same(f"empty-batch-{rid}", conf=lambda: confidence(0, L), x=lambda: tokens(0, L),
             x0=lambda: proposals(0, L), **rule)
        same(f"empty-seq-{rid}", conf=lambda: confidence(B, 0), x=lambda: tokens(B, 0),
             x0=lambda: proposals(B, 0), **rule)
        same(f"nan-and-posinf-{rid}", conf=lambda: torch.tensor([[NAN, 0.5, INF, 0.2, -INF, 0.9]] * B), **rule)
        same(f"all-ties-{rid}", conf=lambda: torch.full((B, L), 0.5), **rule)
    for dt in (torch.float16, torch.bfloat16):
        same(f"confidence-{str(dt)[6:]}", conf=lambda dt=dt: confidence(dtype=dt), k=2)
    same("confidence-transposed", conf=lambda: transposed(confidence()), k=2)
    same("confidence-padded", conf=lambda: padded(confidence()), threshold=0.3)
    same("confidence-stride0", conf=lambda: expanded(confidence(), 0), factor=0.5)
    same("k-tensor-b1", k=torch.tensor([[1], [3], [2]]))
    same("k-tensor-0d", k=torch.tensor(2))
    same("k-int32-tensor", k=torch.tensor([1, 2, 0], dtype=torch.int32))
    same("k-2pow62", k=2**62)
    same("threshold-above-1", threshold=1.5)
    same("threshold-negative", threshold=-2.0)
    same("threshold-inf", threshold=INF)
    same("threshold-nan", threshold=NAN, or_raises=("threshold",))
    same("threshold-tensor-rows", threshold=torch.tensor([0.5, 0.9, 0.1]))
    same("threshold-tensor-rows-strict", threshold=torch.tensor([0.5, 0.9, 0.1]), strict=True)
    same("threshold-tensor-nan-inf", threshold=torch.tensor([NAN, INF, -INF]))
    same("threshold-tensor-nan-inf-strict", threshold=torch.tensor([NAN, INF, -INF]), strict=True)
    same("threshold-tensor-nan-inf-eps", threshold=torch.tensor([NAN, INF, -INF]), eps=1e-5)
    same("threshold-tensor-column", threshold=torch.tensor([[0.5], [0.9], [0.1]]), eps=0.0)
    same("threshold-tensor-0d", threshold=torch.tensor(0.4), strict=True)
    same("threshold-tensor-float64", threshold=torch.tensor([0.5, 0.9, 0.1], dtype=torch.float64))
    same("threshold-tensor-int", threshold=torch.tensor([0, 1, 0]))
    same("threshold-tensor-stride0", threshold=torch.tensor(0.3).expand(B))
    same("strict-false-with-k", k=2, strict=False)
    same("strict-all-ties", conf=lambda: torch.full((B, L), 0.5), threshold=0.5, strict=True)
    same("threshold-eps-negative", threshold=0.5, eps=-0.1, or_raises=("eps",))
    same("factor-zero", factor=0.0, or_raises=("factor",))
    same("factor-negative", factor=-1.0, or_raises=("factor",))
    same("factor-nan", factor=NAN, or_raises=("factor",))
    same("factor-inf", factor=INF, or_raises=("factor",))
    same("alg_temp-zero", k=2, alg_temp=0.0)
    same("alg_temp-negative", k=2, alg_temp=-0.5, or_raises=("alg_temp",))
    same("alg_temp-nan", k=2, alg_temp=NAN, or_raises=("alg_temp",))
    same("alg_temp-tiny", k=2, alg_temp=1e-30)
    same("seed-2pow64-minus-1", k=2, alg_temp=0.5, seed=2**64 - 1)
    same("seed-tensor", k=2, alg_temp=0.5, seed=torch.tensor([5]), offset=torch.tensor(7))
    return out
