"""Battery cases of forward_mask, masked_cross_entropy (and the emulated twins of both), the two
diffusion losses and the Monte Carlo likelihood."""
import copy

import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from bad_input_case import Call, Case, Check, Raises, Same
from bad_input_tensors import INF, NAN, expanded, last_dim_strided, meta, padded, randint, randn, transposed

MASK = 9
B, L, V, H = 2, 6, 11, 8
R = B * L


def _add(out, prefix, emulated=False):
    def add(desc, build, expect):
        out.append(Case(f"{prefix}-{desc}", build, expect, emulated=emulated))
    return add


# -- forward_mask ----------------------------------------------------------------------------

def forward_mask_cases(fn, prefix, emulated=False):
    out = []
    add = _add(out, prefix, emulated)
    x0 = lambda: randint(0, MASK, B, L, seed=3)  # noqa: E731

    def call(x=None, *args, **kw):
        return lambda: Call(fn, ((x0() if x is None else x()), MASK) + args, copy.deepcopy(kw))

    def same(desc, or_raises=None, **kw):
        add(desc, call(**kw), Same(reference.forward_mask, or_raises=or_raises))

    def raises(desc, names, **kw):
        add(desc, call(**kw), Raises(*names))

    raises("x0-float", ["x0"], x=lambda: x0().float())
    raises("x0-int32", ["x0"], x=lambda: x0().int())
    raises("x0-rank1", ["x0"], x=lambda: x0()[0])
    raises("x0-rank3", ["x0"], x=lambda: x0()[None])
    raises("eps-negative", ["eps"], eps=-0.1)
    raises("eps-above-1", ["eps"], eps=1.5)
    raises("eps-nan", ["eps"], eps=NAN)
    raises("t-batch3", ["t"], t=torch.full((B + 1,), 0.5))
    raises("t-2d", ["t"], t=torch.full((B, L), 0.5))
    raises("t-meta", ["t"], t=torch.full((B,), 0.5, device="meta"))
    same("t-negative", t=torch.tensor([-0.5, 0.5]), or_raises=("t",))
    same("t-above-1", t=torch.tensor([0.5, 1.5]), or_raises=("t",))
    same("t-nan", t=torch.tensor([NAN, 0.5]), or_raises=("t",))
    raises("prompt_lengths-float", ["prompt_lengths"], prompt_lengths=torch.tensor([1.5, 2.0]))
    raises("prompt_lengths-batch3", ["prompt_lengths"], prompt_lengths=torch.tensor([1, 2, 3]))
    raises("prompt_lengths-meta", ["prompt_lengths"], prompt_lengths=torch.tensor([1, 2], device="meta"))
    raises("antithetic-with-t", ["antithetic", "t"], t=torch.tensor([0.5, 0.5]), antithetic=True)
    same("prompt_lengths-beyond-seq", prompt_lengths=torch.tensor([L + 3, 2]), or_raises=("prompt_lengths",))
    same("prompt_lengths-negative", prompt_lengths=torch.tensor([-2, 2]), or_raises=("prompt_lengths",))
    same("basic")
    same("empty-batch", x=lambda: x0()[:0])
    same("empty-seq", x=lambda: x0()[:, :0])
    same("x0-transposed", x=lambda: transposed(x0()))
    same("x0-stride0", x=lambda: expanded(x0(), 0))
    same("t-rows", t=torch.tensor([0.0, 1.0]))
    same("eps-zero-t-zero", eps=0.0, t=torch.tensor([0.0, 0.0]), or_raises=("eps",))  # documented [0, 1]
    same("eps-one", eps=1.0, or_raises=("eps",))
    same("prompt_lengths-rows", prompt_lengths=torch.tensor([0, 4]))
    if not emulated:  # the wrapper's conveniences; the emulated op takes tensors as they are
        raises("x0-list", ["x0"], x=lambda: x0().tolist())
        add("mask_id-float", lambda: Call(fn, (x0(), 9.0)), Raises("mask_id"))
        raises("eps-str", ["eps"], eps="0.1")
        raises("seed-float", ["seed"], seed=1.5)
        raises("offset-2pow63", ["offset"], offset=2**63)
        raises("prompt_lengths-float-scalar", ["prompt_lengths"], prompt_lengths=2.5)
        same("t-float", t=0.25)
        same("t-int-tensor", t=torch.tensor([0, 1]))
        same("prompt_lengths-int", prompt_lengths=3)
        same("prompt_lengths-int32", prompt_lengths=torch.tensor([1, 2], dtype=torch.int32))
        same("antithetic", antithetic=True)
        same("seed-negative", seed=-5, offset=2**62)

        def meta_shapes(result, call):
            for t, dt in zip(result, (torch.int64, torch.bool, torch.float32)):
                assert t.device.type == "meta" and t.shape == (B, L) and t.dtype == dt, f"{t}"
        add("all-meta-shapes", lambda: Call(fn, (meta(x0()), MASK)), Check(meta_shapes))
    return out


# -- masked cross-entropy --------------------------------------------------------------------

def masked_ce_cases(fn, prefix, emulated=False):
    out = []
    add = _add(out, prefix, emulated)
    logits = lambda: randn(R, V, seed=5)  # noqa: E731
    targets = lambda: randint(0, V, R, seed=6)  # noqa: E731
    masked = lambda: torch.arange(R) % 3 != 1  # noqa: E731

    def call(lg=None, t=None, m=None):
        return lambda: Call(fn, (logits() if lg is None else lg(), targets() if t is None else t(),
                                 masked() if m is None else m()))

    def same(desc, rule="close", or_raises=None, **kw):
        add(desc, call(**kw), Same(reference.masked_cross_entropy, rule=rule, rtol=1e-5, atol=1e-5,
                                   or_raises=or_raises))

    def raises(desc, names, **kw):
        add(desc, call(**kw), Raises(*names))

    for dt in (torch.int64, torch.bool, torch.complex64):
        raises(f"logits-{str(dt)[6:]}", ["logits"], lg=lambda dt=dt: logits().to(dt))
    raises("logits-rank1", ["logits"], lg=lambda: logits()[0])
    raises("logits-rank3", ["logits"], lg=lambda: logits()[None])
    raises("logits-empty-vocab", ["logits"], lg=lambda: randn(R, 0))
    raises("logits-vocab-strided", ["logits"], lg=lambda: last_dim_strided(logits()))
    raises("logits-vocab-stride0", ["logits"], lg=lambda: expanded(logits(), 1))
    raises("targets-int32", ["targets"], t=lambda: targets().int())
    raises("targets-float", ["targets"], t=lambda: targets().float())
    raises("targets-short", ["targets"], t=lambda: targets()[:-1])
    raises("targets-2d", ["targets"], t=lambda: targets()[None])
    if emulated:  # documented: on CUDA an out-of-range target gives NaN for its row (checking would sync)
        def nan_row(row):
            def check(result, call):
                want = reference.masked_cross_entropy(call.args[0], call.args[1].clamp(0, V - 1), call.args[2])[0]
                assert torch.isnan(result[0][row]), f"ce of row {row}: {result[0][row].item()}, want NaN"
                keep = torch.arange(R) != row
                torch.testing.assert_close(result[0][keep], want[keep], rtol=1e-5, atol=1e-5)
            return Check(check, or_raises=("targets",))
        add("targets-beyond-vocab", call(t=lambda: targets().index_fill(0, torch.tensor([3]), V)), nan_row(3))
        add("targets-negative", call(t=lambda: targets().index_fill(0, torch.tensor([0]), -1)), nan_row(0))
    else:
        raises("targets-beyond-vocab", ["targets"], t=lambda: targets().index_fill(0, torch.tensor([3]), V))
        raises("targets-negative", ["targets"], t=lambda: targets().index_fill(0, torch.tensor([0]), -1))
    raises("masked-uint8", ["masked"], m=lambda: masked().to(torch.uint8))
    raises("masked-float", ["masked"], m=lambda: masked().float())
    raises("masked-long", ["masked"], m=lambda: masked()[1:])
    raises("targets-meta", ["targets", "logits"], t=lambda: meta(targets()))
    raises("masked-meta", ["masked", "logits"], m=lambda: meta(masked()))
    raises("logits-meta", ["targets", "logits", "masked"], lg=lambda: meta(logits()))
    same("targets-out-of-range-unmasked", t=lambda: targets().index_fill(0, torch.tensor([1]), V + 100))
    same("empty-rows", lg=lambda: randn(0, V), t=lambda: targets()[:0], m=lambda: masked()[:0])
    same("nothing-masked", m=lambda: torch.zeros(R, dtype=torch.bool))
    same("vocab-1", lg=lambda: randn(R, 1), t=lambda: torch.zeros(R, dtype=torch.int64))
    same("logits-padded", lg=lambda: padded(logits()))
    same("logits-row-stride0", lg=lambda: expanded(logits(), 0))
    same("targets-stride0", t=lambda: expanded(targets(), 0))
    same("masked-stride0", m=lambda: torch.tensor([True]).expand(R))
    same("targets-strided", t=lambda: randint(0, V, 2 * R, seed=6)[::2])
    same("nan-row", lg=lambda: logits().index_fill(0, torch.tensor([0]), NAN))
    same("posinf-row", lg=lambda: logits().index_put((torch.tensor([2]), torch.tensor([3])), torch.tensor(INF)))
    same("neginf-row", lg=lambda: logits().index_fill(0, torch.tensor([0, 2]), -INF))
    same("neginf-target-logit", lg=lambda: logits().index_put((torch.tensor([0]), torch.tensor([0])),
                                                             torch.tensor(-INF)),
         t=lambda: torch.zeros(R, dtype=torch.int64))
    same("huge-logits", lg=lambda: randn(R, V, scale=1e38))
    for dt in (torch.float16, torch.bfloat16):
        add(f"logits-{str(dt)[6:]}", call(lg=lambda dt=dt: randn(R, V, dtype=dt, seed=5)),
            Same(reference.masked_cross_entropy, rule="close", rtol=1e-5, atol=1e-5))
    if emulated:
        raises("logits-float64", ["logits"], lg=lambda: logits().double())
    else:
        same("logits-float64", lg=lambda: logits().double())

        def meta_shapes(result, call):
            for t in result:
                assert t.device.type == "meta" and t.shape == (R,) and t.dtype == torch.float32, f"{t}"
        add("all-meta-shapes", call(lg=lambda: meta(logits()), t=lambda: meta(targets()), m=lambda: meta(masked())),
            Check(meta_shapes))
        raises("all-meta-targets-short", ["targets"], lg=lambda: meta(logits()), t=lambda: meta(targets()[:-1]),
               m=lambda: meta(masked()))
        raises("logits-list", ["logits"], lg=lambda: logits().tolist())
    return out


def emulated_masked_ce(logits, targets, masked):
    from diffusion_kernels.testing import emulated
    return emulated.masked_ce_forward(logits, targets, masked)


# -- the losses ------------------------------------------------------------------------------

def loss_inputs():
    masked = torch.tensor([[False, True, True, False, True, True], [True, False, False, True, True, False]])
    return dict(logits=randn(B, L, V, seed=7), targets=randint(0, V, B, L, seed=8), masked=masked,
                p_mask=torch.tensor([0.5, 0.25]))


def fused_reference(hidden, lm_head_weight, targets, masked, p_mask, normalize="pretrain", reduction="mean",
                    prompt_lengths=None, chunk_size=None):
    return reference.masked_diffusion_loss(hidden @ lm_head_weight.T, targets, masked, p_mask, normalize, reduction,
                                           prompt_lengths)


def loss_cases():
    out = []
    for fused in (False, True):
        prefix = "fused_linear_masked_diffusion_loss" if fused else "masked_diffusion_loss"
        fn = dk.fused_linear_masked_diffusion_loss if fused else dk.masked_diffusion_loss
        ref = fused_reference if fused else reference.masked_diffusion_loss
        first = "hidden" if fused else "logits"
        add = _add(out, prefix)

        def call(change=None, fused=fused, fn=fn, **kw):
            def build():
                a = loss_inputs()
                if fused:
                    a = dict(hidden=randn(B, L, H, seed=7, scale=1.0), lm_head_weight=randn(V, H, seed=9, scale=1.0),
                             targets=a["targets"], masked=a["masked"], p_mask=a["p_mask"])
                a.update(copy.deepcopy(kw))
                if change is not None:
                    change(a)
                return Call(fn, (), a)
            return build

        def same(desc, or_raises=None, add=add, call=call, ref=ref, **kw):
            add(desc, call(**kw), Same(ref, rule="close", rtol=1e-5, atol=1e-6, or_raises=or_raises))

        def raises(desc, names, add=add, call=call, **kw):
            add(desc, call(**kw), Raises(*names))

        def set_(name, f):
            def change(a):
                a[name] = f(a[name])
            return change

        raises(f"{first}-rank1", [first], change=set_(first, lambda t: t[0, 0]))
        raises(f"{first}-int", [first], change=set_(first, lambda t: t.long()))
        raises(f"{first}-list", [first], change=set_(first, lambda t: t.tolist()))
        raises(f"{first}-meta", [first, "targets", "masked", "lm_head_weight"], change=set_(first, meta))
        raises("targets-shape", ["targets"], change=set_("targets", lambda t: t[:, :-1]))
        raises("targets-float", ["targets"], change=set_("targets", lambda t: t.float()))
        raises("targets-beyond-vocab", ["targets"], change=set_("targets", lambda t: t.index_fill(1, torch.tensor([1]), V)))
        raises("targets-negative", ["targets"], change=set_("targets", lambda t: t.index_fill(1, torch.tensor([2]), -3)))
        raises("masked-uint8", ["masked"], change=set_("masked", lambda t: t.to(torch.uint8)))
        raises("masked-shape", ["masked"], change=set_("masked", lambda t: t[:1]))
        raises("p_mask-int", ["p_mask"], p_mask=torch.tensor([1, 1]))
        raises("p_mask-shape", ["p_mask"], p_mask=torch.full((B + 1,), 0.5))
        raises("p_mask-zero", ["p_mask"], p_mask=torch.tensor([0.0, 0.5]))
        raises("p_mask-negative", ["p_mask"], p_mask=torch.tensor([0.5, -0.5]))
        raises("p_mask-nan", ["p_mask"], p_mask=torch.tensor([NAN, 0.5]))
        raises("p_mask-zero-scalar", ["p_mask"], p_mask=0.0)
        raises("p_mask-zero-at-masked-position", ["p_mask"], p_mask=torch.full((B, L), 0.5).index_fill(1, torch.tensor([1]), 0.0))
        raises("p_mask-meta", ["p_mask"], p_mask=torch.full((B,), 0.5, device="meta"))
        raises("p_mask-str", ["p_mask"], p_mask="0.5")
        raises("normalize-unknown", ["normalize"], normalize="tokens")
        raises("reduction-unknown", ["reduction"], reduction="avg")
        raises("sft-without-prompt_lengths", ["prompt_lengths"], normalize="sft")
        raises("sft-prompt_lengths-beyond-seq", ["prompt_lengths"], normalize="sft", prompt_lengths=torch.tensor([L + 1, 2]))
        raises("sft-prompt_lengths-negative", ["prompt_lengths"], normalize="sft", prompt_lengths=torch.tensor([-1, 2]))
        raises("sft-prompt_lengths-float", ["prompt_lengths"], normalize="sft", prompt_lengths=torch.tensor([1.5, 2.0]))
        raises("sft-prompt_lengths-batch3", ["prompt_lengths"], normalize="sft", prompt_lengths=torch.tensor([1, 2, 3]))
        raises("sft-prompt_lengths-meta", ["prompt_lengths"], normalize="sft", prompt_lengths=torch.tensor([1, 2], device="meta"))
        same("p_mask-zero-at-unmasked-position", p_mask=torch.full((B, L), 0.5).index_put(
            (torch.tensor([0]), torch.tensor([0])), torch.tensor(0.0)))
        for normalize in ("pretrain", "sft", "masked_tokens"):
            for reduction in ("mean", "sum", "none"):
                same(f"{normalize}-{reduction}", normalize=normalize, reduction=reduction,
                     prompt_lengths=torch.tensor([1, 0]) if normalize == "sft" else None)
        same("sft-prompt_lengths-int", normalize="sft", prompt_lengths=0)
        same("sft-prompt_lengths-equal-seq-nothing-masked", normalize="sft", prompt_lengths=torch.tensor([L, 0]),
             change=lambda a: a["masked"][0].zero_())
        same("p_mask-scalar", p_mask=0.5)
        same("p_mask-positions", p_mask=torch.rand(B, L, generator=torch.Generator().manual_seed(1)) + 0.1)
        same("p_mask-float64", p_mask=torch.tensor([0.5, 0.25], dtype=torch.float64))
        same("nothing-masked", change=lambda a: a["masked"].zero_(), normalize="masked_tokens")
        same("targets-out-of-range-unmasked", change=set_("targets", lambda t: t.index_put(
            (torch.tensor([0]), torch.tensor([0])), torch.tensor(V + 5))))
        same("empty-batch", change=lambda a, first=first: a.update(
            {k: v[:0] for k, v in a.items() if k in (first, "targets", "masked")}), p_mask=0.5)
        same(f"{first}-stride0", change=set_(first, lambda t: expanded(t, 1)))
        same(f"{first}-transposed", change=set_(first, lambda t: transposed(t)))
        same(f"{first}-nan-at-masked", change=set_(first, lambda t: t.index_fill(1, torch.tensor([1]), NAN)))
        same(f"{first}-nan-at-unmasked", change=set_(first, lambda t: t.index_fill(1, torch.tensor([0]), NAN)))
        same("rows-form", change=lambda a, first=first: a.update({first: a[first].reshape(R, -1), "targets": a["targets"].reshape(R),
                                                     "masked": a["masked"].reshape(R), "p_mask": 0.5}))
        if fused:
            raises("lm_head_weight-other-H", ["lm_head_weight"], change=set_("lm_head_weight", lambda t: t[:, :-1]))
            raises("lm_head_weight-float64", ["lm_head_weight"], change=set_("lm_head_weight", lambda t: t.double()))
            raises("lm_head_weight-rank1", ["lm_head_weight"], change=set_("lm_head_weight", lambda t: t[0]))
            raises("lm_head_weight-meta", ["lm_head_weight"], change=set_("lm_head_weight", meta))
            raises("chunk_size-zero", ["chunk_size"], chunk_size=0)
            raises("chunk_size-float", ["chunk_size"], chunk_size=2.0)
            raises("targets-int32", ["targets"], change=set_("targets", lambda t: t.int()))
            same("chunk_size-1", chunk_size=1)
            same("chunk_size-huge", chunk_size=2**40)
            same("lm_head_weight-transposed-storage", change=set_("lm_head_weight", lambda t: t.t().contiguous().t()))
            same("vocab-1", change=set_("lm_head_weight", lambda t: t[:1]),
                 targets=torch.zeros(B, L, dtype=torch.int64))
        else:
            raises("logits-vocab-strided", ["logits"], change=set_("logits", last_dim_strided))
    return out


# -- Monte Carlo likelihood ------------------------------------------------------------------

class _Uniformish(torch.nn.Module):
    """Logits that depend on the input: a fixed embedding of each id."""

    def __init__(self, vocab=V):
        super().__init__()
        self.table = randn(vocab, vocab, seed=11, scale=1.0)

    def forward(self, x):
        return self.table[x % self.table.shape[0]]  # any id maps to a row: the vocab check is the library's


def likelihood_cases():
    out = []
    add = _add(out, "monte_carlo_log_likelihood")
    fn = dk.monte_carlo_log_likelihood
    prompt = lambda: randint(0, MASK, 3, seed=12)  # noqa: E731
    answer = lambda: randint(0, MASK, 4, seed=13)  # noqa: E731

    def call(model=None, p=None, a=None, **kw):
        kw.setdefault("n_samples", 4)
        kw.setdefault("batch_size", 2)
        kw.setdefault("mask_id", MASK)
        return lambda: Call(fn, ((model or _Uniformish)(), prompt() if p is None else p(), answer() if a is None else a()),
                            copy.deepcopy(kw))

    def raises(desc, names, **kw):
        add(desc, call(**kw), Raises(*names))

    def negative_finite(result, call):
        assert isinstance(result, torch.Tensor) and result.shape == () and result.dtype == torch.float32, f"{result}"
        assert torch.isfinite(result) and result <= 0, f"estimate {result}"
        again = call.fn(*call.args, **call.kwargs)
        assert torch.equal(again, result), "not deterministic for a fixed seed"

    add("basic", call(), Check(negative_finite))
    add("empty-prompt", call(p=lambda: prompt()[:0]), Check(negative_finite))
    raises("prompt-2d", ["prompt"], p=lambda: prompt()[None])
    raises("prompt-float", ["prompt"], p=lambda: prompt().float())
    raises("prompt-list", ["prompt"], p=lambda: prompt().tolist())
    raises("answer-empty", ["answer"], a=lambda: answer()[:0])
    raises("answer-2d", ["answer"], a=lambda: answer()[None])
    raises("answer-float", ["answer"], a=lambda: answer().float())
    raises("answer-beyond-vocab", ["answer"], a=lambda: answer().index_fill(0, torch.tensor([1]), V + 3))
    raises("prompt-beyond-vocab", ["prompt"], p=lambda: prompt().index_fill(0, torch.tensor([0]), V + 3))
    raises("answer-negative", ["answer"], a=lambda: answer().index_fill(0, torch.tensor([1]), -2))
    raises("answer-meta", ["answer", "prompt"], a=lambda: meta(answer()))
    raises("n_samples-not-multiple", ["n_samples"], n_samples=5)
    raises("n_samples-float", ["n_samples"], n_samples=4.0)
    raises("n_samples-zero", ["n_samples"], n_samples=0)
    raises("batch_size-zero", ["batch_size"], batch_size=0)
    raises("batch_size-float", ["batch_size"], batch_size=2.0)
    raises("mask_id-float", ["mask_id"], mask_id=9.0)
    raises("seed-float", ["seed"], seed=0.5)
    raises("model-wrong-vocab-rank", ["model", "logits"], model=lambda: (lambda x: torch.zeros(x.shape)))
    raises("model-not-callable", ["model"], model=lambda: 3)
    return out
