"""Battery cases of masked_confidence (the CPU op and its emulated CUDA twin)."""
import copy

import torch

from diffusion_kernels import reference
from bad_input_case import Call, Case, Check, Raises, Same
from bad_input_tensors import INF, NAN, expanded, last_dim_strided, meta, padded, randn, transposed

MASK = 3
B, L, V = 2, 5, 7


def ref(logits, x, mask_id, *, top_p=None, top_k=None, **kw):
    return reference.masked_confidence(logits, x, mask_id, top_p=1.0 if top_p is None else top_p,
                                       top_k=0 if top_k is None else top_k, **kw)


def ref_float32_temperature(logits, x, mask_id, *, temperature, **kw):
    """The reference with a Python temperature rounded to float32 first, as the op documents."""
    return ref(logits, x, mask_id, temperature=INF if temperature > 3.4028234663852886e38 else temperature, **kw)


def ref_ignoring_out_of_range_ids(logits, x, mask_id, *, suppress_ids, **kw):
    ids = [i for i in torch.as_tensor(suppress_ids).tolist() if 0 <= i < logits.shape[-1]]
    return ref(logits, x, mask_id, suppress_ids=ids, **kw)


def tokens(b=B, l=L):
    x = torch.full((b, l), MASK, dtype=torch.int64)
    if l > 1:
        x[:, 1] = 5
    if b > 1 and l > 3:
        x[1, 3] = 6
    return x


def logits_with(*cells, dtype=torch.float32):
    """Seeded logits with cells[(b, l, v)] = value set."""
    t = randn(B, L, V)
    for (b, l, v), value in cells:
        t[b, l, v] = value
    return t.to(dtype)


def meta_outputs(result, call):
    x0, conf = result[0], result[1]
    assert x0.device.type == "meta" and x0.shape == (B, L) and x0.dtype == torch.int64, f"x0 {x0}"
    assert conf.device.type == "meta" and conf.shape == (B, L) and conf.dtype == torch.float32, f"conf {conf}"


def cases(fn, prefix, emulated=False):
    out = []

    def add(desc, build, expect):
        out.append(Case(f"{prefix}-{desc}", build, expect, emulated=emulated))

    def call(logits=None, x=None, mask_id=MASK, **kw):
        return lambda: Call(fn, (randn(B, L, V) if logits is None else logits(),
                                 tokens() if x is None else x(), mask_id), copy.deepcopy(kw))

    def same(desc, logits=None, x=None, rule="close", or_raises=None, **kw):
        add(desc, call(logits, x, **kw), Same(ref, rule=rule, rtol=1e-5, atol=1e-6, or_raises=or_raises))

    def raises(desc, names, logits=None, x=None, **kw):
        add(desc, call(logits, x, **kw), Raises(*names))

    # dtypes, ranks, shapes
    for dt in (torch.float64, torch.int64, torch.int32, torch.bool, torch.complex64):
        raises(f"logits-dtype-{str(dt)[6:]}", ["logits"], logits=lambda dt=dt: randn(B, L, V).to(dt))
    for dt in (torch.int32, torch.float32, torch.bool, torch.uint8):
        raises(f"x-dtype-{str(dt)[6:]}", ["x"], x=lambda dt=dt: tokens().to(dt))
    raises("logits-flat-rows-short", ["logits"], logits=lambda: randn(B * L - 1, V))
    raises("logits-flat-rows-transposed-x", ["logits"], logits=lambda: randn(B * L + 2, V))
    raises("logits-rank1", ["logits"], logits=lambda: randn(V))
    raises("logits-rank4", ["logits"], logits=lambda: randn(1, B, L, V))
    raises("logits-empty-vocab", ["logits"], logits=lambda: randn(B, L, 0))
    raises("x-rank1", ["x"], x=lambda: tokens()[0])
    raises("x-rank3", ["x"], x=lambda: tokens()[None])
    raises("x-short-seq", ["x"], x=lambda: tokens(B, L - 1))
    raises("x-extra-batch", ["x"], x=lambda: tokens(B + 1, L))
    raises("logits-vocab-strided", ["logits"], logits=lambda: last_dim_strided(randn(B, L, V)))
    raises("logits-vocab-stride0", ["logits"], logits=lambda: expanded(randn(B, L, V), 2))
    # devices
    raises("x-meta", ["x", "logits"], x=lambda: meta(tokens()))
    raises("logits-meta-x-cpu", ["x", "logits"], logits=lambda: meta(randn(B, L, V)))
    raises("temperature-tensor-meta", ["temperature"], temperature=torch.ones(B, device="meta"))
    raises("suppress_ids-meta", ["suppress_ids"], suppress_ids=torch.tensor([1], device="meta"))
    raises("seed-tensor-meta", ["seed"], seed=torch.tensor([1], device="meta"))
    # the emulated twin runs CUDA code on CPU tensors only: meta inputs are a device error there
    add("all-meta-shapes", lambda: Call(fn, (meta(randn(B, L, V)), meta(tokens()), MASK)),
        Raises("logits", "x") if emulated else Check(meta_outputs))
    # the emulated twin may refuse the meta device first (naming 'logits'), the op must name 'x'
    bad_meta = ["x", "logits"] if emulated else ["x"]
    raises("all-meta-x-wrong-shape", bad_meta, logits=lambda: meta(randn(B, L, V)), x=lambda: meta(tokens(B, L + 1)))
    raises("all-meta-x-int32", bad_meta, logits=lambda: meta(randn(B, L, V)), x=lambda: meta(tokens().int()))
    # scalar arguments
    raises("mask_id-float", ["mask_id"], mask_id=3.0)
    raises("mask_id-2pow63", ["mask_id"], mask_id=2**63)
    raises("mask_id-str", ["mask_id"], mask_id="3")
    raises("mask_id-float-tensor", ["mask_id"], mask_id=torch.tensor(3.0))
    raises("temperature-negative", ["temperature"], temperature=-1.0)
    raises("temperature-nan", ["temperature"], temperature=NAN)
    raises("temperature-str", ["temperature"], temperature="1")
    raises("temperature-tensor-batch3", ["temperature"], temperature=torch.ones(B + 1))
    raises("temperature-tensor-2d", ["temperature"], temperature=torch.ones(B, 1))
    raises("top_p-negative", ["top_p"], top_p=-0.5, temperature=1.0)
    raises("top_p-above-1", ["top_p"], top_p=1.5, temperature=1.0)
    raises("top_p-nan", ["top_p"], top_p=NAN, temperature=1.0)
    raises("top_k-negative", ["top_k"], top_k=-1, temperature=1.0)
    raises("top_k-float", ["top_k"], top_k=2.5, temperature=1.0)
    raises("top_k-float-tensor", ["top_k"], top_k=torch.tensor([2.0, 3.0]), temperature=1.0)
    raises("top_k-tensor-batch3", ["top_k"], top_k=torch.tensor([1, 2, 3]), temperature=1.0)
    raises("block_start-float", ["block_start"], block_start=1.5)
    raises("block_start-float-tensor", ["block_start"], block_start=torch.tensor([1.0, 2.0]))
    raises("block_end-float-tensor", ["block_end"], block_end=torch.tensor([4.5, 4.5]))
    raises("block_end-bool-tensor", ["block_end"], block_end=torch.tensor([True, True]))
    raises("block_start-tensor-batch3", ["block_start"], block_start=torch.tensor([0, 1, 2]))
    raises("confidence-unknown", ["confidence"], confidence="max")
    raises("confidence_from-unknown", ["confidence_from"], confidence_from="model")
    raises("seed-float", ["seed"], seed=1.0, temperature=1.0)
    raises("seed-2pow64", ["seed"], seed=2**64, temperature=1.0)
    raises("seed-float-tensor", ["seed"], seed=torch.tensor([1.0]), temperature=1.0)
    raises("seed-tensor-two-elements", ["seed"], seed=torch.tensor([1, 2]), temperature=1.0)
    raises("offset-float", ["offset"], offset=0.5, temperature=1.0)
    raises("offset-int32-tensor", ["offset"], offset=torch.tensor([1], dtype=torch.int32), temperature=1.0)
    raises("positions-unknown", ["positions"], positions="every")
    raises("positions-none", ["positions"], positions=None)
    raises("prev_token_penalty-negative", ["prev_token_penalty"], prev_token_penalty=-1.0)
    raises("prev_token_penalty-nan", ["prev_token_penalty"], prev_token_penalty=NAN)
    raises("prev_token_penalty-inf", ["prev_token_penalty"], prev_token_penalty=INF)
    raises("prev_token_penalty-str", ["prev_token_penalty"], prev_token_penalty="1")
    raises("prev_token_penalty-bool-tensor", ["prev_token_penalty"], prev_token_penalty=torch.tensor([True, False]))
    raises("prev_token_penalty-tensor-batch3", ["prev_token_penalty"], prev_token_penalty=torch.ones(B + 1))
    raises("prev_token_penalty-tensor-meta", ["prev_token_penalty"], prev_token_penalty=torch.ones(B, device="meta"))
    # suppress_ids
    raises("suppress_ids-float-list", ["suppress_ids"], suppress_ids=[1.5])
    raises("suppress_ids-float-tensor", ["suppress_ids"], suppress_ids=torch.tensor([1.0, 2.0]))
    raises("suppress_ids-2d", ["suppress_ids"], suppress_ids=torch.tensor([[1, 2]]))
    if emulated:  # documented: the CUDA kernel ignores ids outside [0, vocab) (no sync to check them)
        for desc, ids in (("suppress_ids-beyond-vocab", [V + 2, 1]), ("suppress_ids-negative", [-1, 1])):
            add(desc, call(suppress_ids=ids), Same(ref_ignoring_out_of_range_ids, or_raises=("suppress_ids",)))
    else:
        raises("suppress_ids-beyond-vocab", ["suppress_ids"], suppress_ids=[V + 2, 1])
        raises("suppress_ids-negative", ["suppress_ids"], suppress_ids=[-1, 1])
    same("suppress_ids-every-id", suppress_ids=list(range(V)))
    same("suppress_ids-empty", suppress_ids=[])
    same("suppress_ids-int32-tensor", suppress_ids=torch.tensor([0, 2], dtype=torch.int32),
         or_raises=("suppress_ids",))
    # well-formed edge cases: equal to the reference
    same("empty-batch", logits=lambda: randn(0, L, V), x=lambda: tokens(0, L))
    same("empty-seq", logits=lambda: randn(B, 0, V), x=lambda: tokens(B, 0))
    same("vocab-1", logits=lambda: randn(B, L, 1))
    same("logits-padded-rows", logits=lambda: padded(randn(B, L, V)))
    same("logits-batch-seq-transposed", logits=lambda: transposed(randn(B, L, V)))
    same("logits-row-stride0", logits=lambda: expanded(randn(B, L, V), 1))
    same("logits-batch-stride0", logits=lambda: expanded(randn(B, L, V), 0))
    same("x-transposed", x=lambda: transposed(tokens()))
    same("x-stride0", x=lambda: expanded(tokens(), 0))
    same("x-no-mask", x=lambda: torch.full((B, L), 4))
    same("x-negative-ids", x=lambda: torch.where(tokens() == MASK, MASK, -5))
    # the engines' options: flat logits, every position, the previous-token penalty
    same("logits-flat", logits=lambda: randn(B * L, V), prev_token_penalty=1.0)
    same("logits-flat-padded-rows", logits=lambda: padded(randn(B * L, V)), positions="all")
    same("logits-flat-row-stride0", logits=lambda: expanded(randn(B * L, V), 0), positions="all",
         prev_token_penalty=torch.tensor([2.0, 0.5]))
    same("positions-all", positions="all")
    same("positions-all-no-mask", x=lambda: torch.full((B, L), 4), positions="all", block_start=1, block_end=4)
    same("positions-all-negative-ids", x=lambda: torch.where(tokens() == MASK, MASK, -5), positions="all",
         prev_token_penalty=3.0)
    same("positions-all-ids-beyond-vocab", x=lambda: torch.where(tokens() == MASK, MASK, V + 9), positions="all",
         prev_token_penalty=3.0)
    same("prev_token_penalty-on-argmax", logits=lambda: logits_with(((0, 2, 5), 30.0), ((1, 1, MASK), 30.0)),
         prev_token_penalty=40.0, positions="all", return_lse=True)
    same("prev_token_penalty-tensor-nan-negative", prev_token_penalty=torch.tensor([NAN, -1.0]))
    same("prev_token_penalty-tensor-inf", prev_token_penalty=torch.tensor([INF, 2.0]), positions="all")
    same("prev_token_penalty-int-tensor", prev_token_penalty=torch.tensor([1, 0]))
    same("prev_token_penalty-huge", prev_token_penalty=1e38, temperature=1.0, top_p=0.9)
    same("prev_token_penalty-beyond-float32", prev_token_penalty=1e39)
    same("prev_token_penalty-posinf-logit", logits=lambda: logits_with(((0, 2, 5), INF)),
         prev_token_penalty=torch.tensor([INF, 1.0]))
    same("mask_id-negative", mask_id=-1, x=lambda: torch.where(tokens() == MASK, -1, 4))
    same("mask_id-int-tensor", mask_id=torch.tensor(MASK))
    for dt in (torch.float16, torch.bfloat16):
        same(f"logits-{str(dt)[6:]}", logits=lambda dt=dt: randn(B, L, V, dtype=dt))
    same("nan-row", logits=lambda: logits_with(((0, 0, 2), NAN), ((0, 0, 5), NAN)))
    same("posinf-row", logits=lambda: logits_with(((0, 2, 4), INF)))
    same("neginf-row", logits=lambda: torch.full((B, L, V), -INF))
    same("neginf-row-sampled", logits=lambda: torch.full((B, L, V), -INF), temperature=1.0)
    same("nan-row-sampled-top_p", logits=lambda: logits_with(((1, 0, 6), NAN)), temperature=0.7, top_p=0.9)
    same("nan-row-return_lse", logits=lambda: logits_with(((0, 0, 2), NAN), ((1, 2, 1), INF)), return_lse=True)
    same("neginf-row-return_lse", logits=lambda: torch.full((B, L, V), -INF), return_lse=True)
    same("huge-logits", logits=lambda: randn(B, L, V, scale=1e38))
    same("ties", logits=lambda: torch.zeros(B, L, V), confidence="margin")
    same("block-end-before-start", block_start=4, block_end=2)
    same("block-end-beyond-seq", block_start=0, block_end=L + 10)
    same("block-end-2pow62", block_end=2**62)
    same("block-start-tensor-rows", block_start=torch.tensor([0, 3]), block_end=torch.tensor([2, 5]))
    same("block-start-negative", block_start=-3, or_raises=("block_start",))
    same("block-start-negative-tensor", block_start=torch.tensor([-3, 0]), or_raises=("block_start",))
    same("temperature-tensor-nan-negative", temperature=torch.tensor([NAN, -1.0]))
    same("temperature-int-tensor", temperature=torch.tensor([0, 1]))
    same("temperature-scalar-tensor", temperature=torch.tensor(0.0))
    same("temperature-subnormal", temperature=1e-39)
    same("temperature-inf", temperature=INF, or_raises=("temperature",))
    add("temperature-huge", call(temperature=1e39), Same(ref_float32_temperature, rule="close",
                                                         or_raises=("temperature",)))
    same("temperature-tensor-inf", temperature=torch.tensor([INF, 1.0]), or_raises=("temperature",))
    same("top_p-tensor-negative", temperature=1.0, top_p=torch.tensor([-0.5, -2.0]))
    same("top_p-tensor-nan-and-above-1", temperature=1.0, top_p=torch.tensor([NAN, 1.5]))
    same("top_p-zero", temperature=1.0, top_p=0.0)
    same("top_k-tensor-zero-and-beyond", temperature=1.0, top_k=torch.tensor([0, V + 3]))
    same("top_k-tensor-negative", temperature=1.0, top_k=torch.tensor([-1, 2]))
    same("top_k-int32-tensor", temperature=1.0, top_k=torch.tensor([1, 2], dtype=torch.int32))
    same("seed-2pow64-minus-1", temperature=1.0, seed=2**64 - 1)
    same("seed-negative", temperature=1.0, seed=-(2**63))
    same("seed-tensor-0d", temperature=1.0, seed=torch.tensor(5))
    for kind in ("prob", "margin", "neg_entropy", "random"):
        same(f"confidence-{kind}-sampled", temperature=0.8, top_p=0.95, top_k=5, confidence=kind)
    return out
