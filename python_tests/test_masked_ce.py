"""The fused masked cross-entropy op on every backend (CPU kernel, CUDA kernel under the emulator,
CUDA) against F.cross_entropy / the float64 reference: forward, backward, in-place
forward+backward, low precision, non-finite rows, bad inputs; plus the CPU-only paths (ISA builds,
float64 gradcheck, opcheck, torch.compile)."""
import pytest
import torch
import torch.nn.functional as F

import diffusion_kernels as dk
from diffusion_kernels import reference
from diffusion_kernels.testing import emulated
from loss_cases import LOW_PRECISION, TOL, make_logits, make_mask, torch_masked_ce
from tolerance import assert_within_torch_error

ops = torch.ops.diffusion_kernels
DTYPES = [torch.float32] + LOW_PRECISION
SIZES = [(1, 1), (3, 2), (5, 17), (7, 1000), (4, 5003), (2, 2049), (1, 126464)]
EMULATED_SIZES = [(3, 1), (4, 37), (3, 1025), (2, 126464)]  # every fiber is a CPU thread: few rows
GRAD_ATOL = {torch.float32: 1e-6, torch.float16: 1e-4, torch.bfloat16: 1e-3}  # slack on 2x torch's error
ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]


def op(backend, name):
    """The registered masked-CE op ``name`` as ``backend`` runs it."""
    return getattr(emulated, name) if backend.emulated else getattr(ops, name)


def grads(logits, targets, masked, weights):
    """PyTorch's gradient of Σ weights * CE, computed in the logits' dtype."""
    x = logits.detach().requires_grad_()
    (torch_masked_ce(x, targets, masked) * weights.to(x.dtype)).sum().backward()
    return x.grad


def on(backend, *tensors):
    """Copies on the backend's device (never the inputs themselves: tests mark them requires_grad)."""
    return [t.to(backend.device, copy=True) for t in tensors]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_backward_match_reference(backend, dtype):
    """ce, lse and the logits gradient (through autograd and through the in-place op) against the
    float64 reference, within twice PyTorch's own error at the same precision."""
    sizes = EMULATED_SIZES if backend.emulated else SIZES + ([(33, 126464)] if backend.name == "cuda" else [])
    for rows, vocab in sizes:
        if not backend.emulated and dtype != torch.float32 and vocab not in (1, 5003):
            continue  # low precision: two sizes on top of test_low_precision_within_torch_error
        x = make_logits(rows, vocab, dtype)
        t, m = torch.randint(0, vocab, (rows,)), make_mask(rows, 0.6)
        w = torch.rand(rows) + 0.5
        xr = on(backend, x)[0].requires_grad_()
        ce, lse = backend.masked_cross_entropy(xr, *on(backend, t, m))
        ref_ce, ref_lse = reference.masked_cross_entropy(x.double(), t, m)
        torch_ce = torch_masked_ce(x.float(), t, m)
        what = f"[{rows}, {vocab}] {dtype}"
        assert_within_torch_error(ce, torch_ce, ref_ce, atol=2e-5, rtol=2e-6, what=f"ce {what}")
        assert_within_torch_error(lse, torch.where(m, torch.logsumexp(x.float(), -1), 0.0), ref_lse, atol=2e-5,
                                  rtol=2e-6, what=f"lse {what}")
        (ce * w.to(backend.device)).sum().backward()
        want = grads(x.double(), t, m, w.double())
        torch_grad = grads(x, t, m, w)
        assert_within_torch_error(xr.grad, torch_grad, want, atol=GRAD_ATOL[dtype], what=f"grad {what}")
        assert torch.equal(xr.grad[~m.to(backend.device)].cpu(), torch.zeros(int((~m).sum()), vocab, dtype=dtype)), \
            "unmasked rows must get exactly 0"
        y = on(backend, x)[0]
        ce2, lse2 = op(backend, "masked_ce_forward_backward_")(y, *on(backend, t, m, w))
        assert torch.equal(ce2, ce) and torch.equal(lse2, lse), "in-place op: ce and lse as the forward"
        assert_within_torch_error(y, torch_grad, want, atol=GRAD_ATOL[dtype], what=f"in-place grad {what}")


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_cpu_isa_build(dtype, isa, monkeypatch):
    monkeypatch.setenv("DK_CPU_ISA", isa)
    rows, vocab = 6, 4133
    x = make_logits(rows, vocab, dtype)
    t, m = torch.randint(0, vocab, (rows,)), make_mask(rows, 0.7)
    ce, lse = dk.masked_cross_entropy(x, t, m)
    ref_ce, _ = reference.masked_cross_entropy(x.double(), t, m)
    assert_within_torch_error(ce, torch_masked_ce(x.float(), t, m), ref_ce, atol=2e-5, rtol=2e-6)
    g = ops.masked_ce_backward(torch.ones(rows), torch.zeros(rows), x, t, m, lse)
    assert_within_torch_error(g, grads(x.float(), t, m, torch.ones(rows)).to(dtype), grads(x.double(), t, m, torch.ones(rows)),
                              atol=TOL[dtype][1])


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("rows,vocab", [(9, 3001), (3, 126464)])
def test_low_precision_within_torch_error(rows, vocab, dtype):
    """CE and logits gradient against float32 on the same rounded inputs, within PyTorch's error
    at the low precision."""
    x = make_logits(rows, vocab).to(dtype)
    t, m = torch.randint(0, vocab, (rows,)), make_mask(rows, 0.5)
    gt_in = x.float()
    xl = x.clone().requires_grad_()
    torch_ce = torch_masked_ce(xl, t, m)
    torch_ce.sum().backward()
    xo = x.clone().requires_grad_()
    ce, _ = dk.masked_cross_entropy(xo, t, m)
    ce.sum().backward()
    fwd_tol, bwd_tol = TOL[dtype]
    assert_within_torch_error(ce, torch_ce.detach(), torch_masked_ce(gt_in, t, m), atol=fwd_tol)
    assert_within_torch_error(xo.grad, xl.grad, grads(gt_in.double(), t, m, torch.ones(rows)), atol=bwd_tol)
    assert xo.grad.dtype == dtype


def test_gradcheck_float64():
    x = make_logits(6, 13, torch.float64).requires_grad_()
    t, m = torch.randint(0, 13, (6,)), make_mask(6, 0.6)

    def f(x):
        ce, lse = dk.masked_cross_entropy(x, t, m)
        return ce * 1.5 + lse * 0.25  # exercises grad_ce and grad_lse together

    assert torch.autograd.gradcheck(f, (x,))


def test_lse_gradient_is_softmax(backend):
    dtype = torch.float32 if backend.emulated or backend.name == "cuda" else torch.float64
    x = make_logits(4, 50, dtype)
    m = torch.tensor([True, False, True, True])
    xr = on(backend, x)[0].requires_grad_()
    _, lse = backend.masked_cross_entropy(xr, *on(backend, torch.zeros(4, dtype=torch.long), m))
    lse.sum().backward()
    want = torch.softmax(x.double(), -1) * m[:, None]
    torch.testing.assert_close(xr.grad.cpu().double(), want, atol=1e-7 if dtype == torch.float32 else 1e-15, rtol=1e-5)


def test_forward_backward_in_place_float64_matches_backward_op():
    rows, vocab = 7, 3003
    x = make_logits(rows, vocab, torch.float64)
    t, m = torch.randint(0, vocab, (rows,)), make_mask(rows)
    scale = torch.rand(rows, dtype=torch.float64) + 0.1
    ce, lse = ops.masked_ce_forward(x, t, m)
    g = ops.masked_ce_backward(scale, torch.zeros_like(scale), x, t, m, lse)
    y = x.clone()
    ce2, lse2 = ops.masked_ce_forward_backward_(y, t, m, scale)
    assert torch.equal(ce, ce2) and torch.equal(lse, lse2)
    torch.testing.assert_close(y, g, atol=1e-12, rtol=0)
    assert (y[~m] == 0).all()


def test_non_contiguous_rows(backend):
    big = make_logits(5, 1200)
    x = big[:, 100:1100]  # row stride 1200
    t, m = torch.randint(0, 1000, (10,))[::2], make_mask(10)[::2]
    xd, td, md = on(backend, x, t, m)
    ce, lse = backend.masked_cross_entropy(xd, td, md)
    torch.testing.assert_close(ce.cpu(), torch_masked_ce(x.contiguous(), t, m), atol=1e-5, rtol=1e-5)
    g = op(backend, "masked_ce_backward")(*on(backend, torch.ones(5), torch.zeros(5)), xd, td, md, lse)
    assert g.is_contiguous()
    torch.testing.assert_close(g.cpu(), grads(x.contiguous(), t, m, torch.ones(5)), atol=1e-6, rtol=1e-5)


def test_all_masked_and_none_masked(backend):
    x = make_logits(4, 300)
    t = torch.randint(0, 300, (4,))
    ce, lse = backend.masked_cross_entropy(*on(backend, x, t, torch.ones(4, dtype=torch.bool)))
    torch.testing.assert_close(ce.cpu(), F.cross_entropy(x, t, reduction="none"), atol=1e-5, rtol=1e-5)
    xr = on(backend, x)[0].requires_grad_()
    ce, lse = backend.masked_cross_entropy(xr, *on(backend, torch.full((4,), -100), torch.zeros(4, dtype=torch.bool)))
    assert torch.equal(ce.cpu(), torch.zeros(4)) and torch.equal(lse.cpu(), torch.zeros(4))
    ce.sum().backward()
    assert torch.equal(xr.grad.cpu(), torch.zeros_like(x))


def nonfinite_rows(vocab):
    """Rows 0-3: a NaN, a +inf, only -inf, -inf over the first CPU chunk; row 4: the target at
    -inf (CE +inf); row 5: a +inf and a -inf; row 6: finite."""
    x = make_logits(7, vocab)
    x[0, 77] = float("nan")
    x[1, 5] = float("inf")
    x[2] = float("-inf")
    x[3, :min(2050, vocab - 50)] = float("-inf")
    x[4, 9] = float("-inf")
    x[5, 3], x[5, 4] = float("inf"), float("-inf")
    return x, torch.tensor([1, 2, 3, vocab - 40, 9, 4, 6])


def test_nonfinite_rows_match_torch(backend):
    """ce as F.cross_entropy and lse as torch.logsumexp (NaN / +inf / -inf, never NaN where torch
    has an infinity), in every dtype; the gradient as F.cross_entropy's."""
    vocab = 300 if backend.emulated else 2100  # 2100: two CPU chunks
    for dtype in DTYPES:
        x, t = nonfinite_rows(vocab)
        x = x.to(dtype)
        m = torch.ones(7, dtype=torch.bool)
        xr = on(backend, x)[0].requires_grad_()
        ce, lse = backend.masked_cross_entropy(xr, *on(backend, t, m))
        ref_ce, ref_lse = reference.masked_cross_entropy(x.double(), t, m)
        assert_within_torch_error(ce, torch_masked_ce(x.float(), t, m), ref_ce, atol=2e-5, rtol=2e-6, what=f"ce {dtype}")
        assert_within_torch_error(lse, torch.logsumexp(x.float(), -1), ref_lse, atol=2e-5, rtol=2e-6,
                                  what=f"lse {dtype}")
        assert torch.isnan(ce[[0, 1, 2, 5]].cpu()).all() and torch.isposinf(ce[4].cpu())
        assert lse[1].item() == float("inf") and lse[2].item() == float("-inf") and lse[5].item() == float("inf")
        keep = [0, 1, 2, 3, 5, 6]
        ce[keep].sum().backward()
        xt = x.float().requires_grad_()
        F.cross_entropy(xt, t, reduction="none")[keep].sum().backward()
        torch.testing.assert_close(xr.grad.cpu().float(), xt.grad, atol=TOL[dtype][1], rtol=1e-5, equal_nan=True)
        y = on(backend, x)[0]
        op(backend, "masked_ce_forward_backward_")(y, *on(backend, t, m, torch.ones(7)))
        assert torch.isnan(y[[0, 1, 2, 5]].float().cpu()).all(), "in-place op: NaN gradient rows where ce is NaN"


def test_out_of_range_targets_without_host_check_give_nan_rows():
    """The CUDA launcher reads targets only on the device: an out-of-range target gives a NaN row
    and never an out-of-bounds access (run under the emulator, whose CPU tensors the host could
    read, to exercise the launcher's path)."""
    if not emulated.AVAILABLE:
        pytest.skip("diffusion_kernels._simt not built")
    x = make_logits(4, 600)
    x[0, 7] = float("nan")
    x[1] = float("-inf")
    t = torch.tensor([1, 2, 600, -3])
    m = torch.ones(4, dtype=torch.bool)
    ce, lse = emulated.masked_ce_forward(x, t, m)
    assert torch.isnan(ce).all()
    g = emulated.masked_ce_backward(torch.ones(4), torch.zeros(4), x, t, m, lse)
    assert torch.isnan(g).all()


def test_bitwise_identical_across_resume_orders():
    if not emulated.AVAILABLE:
        pytest.skip("diffusion_kernels._simt not built")
    x = make_logits(3, 3001)
    t, m = torch.randint(0, 3001, (3,)), torch.tensor([True, False, True])
    results = []
    for order, seed in ORDERS:
        with emulated.resume_order(order, seed):
            ce, lse = emulated.masked_ce_forward(x, t, m)
            y = x.clone()
            emulated.masked_ce_forward_backward_(y, t, m, torch.ones(3))
            results.append((ce, lse, y))
    for (order, seed), res in zip(ORDERS[1:], results[1:]):
        for a, b in zip(res, results[0]):
            assert torch.equal(a.view(torch.int32), b.view(torch.int32)), f"bits differ in {order}/{seed}"


def test_large_logits_no_overflow(backend):
    x = torch.full((2, 1000), 80.0)
    x[:, 500] = 85.0
    t = torch.tensor([500, 3])
    ce, _ = backend.masked_cross_entropy(*on(backend, x, t, torch.ones(2, dtype=torch.bool)))
    torch.testing.assert_close(ce.cpu(), F.cross_entropy(x.double(), t, reduction="none").float(), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
def test_huge_finite_logits(backend, isa, monkeypatch):
    """|logits| up to ~1e38: the CPU fast path's exponent rounding (about |x| * 2^-24) would
    flush the shifted sum to 0 (lse -inf); such rows take the exact path."""
    if isa != "base" and backend.name != "cpu":
        pytest.skip("the x86 levels are CPU builds")
    monkeypatch.setenv("DK_CPU_ISA", isa)
    for scale in (1e7, 1e10, 1e38):
        x = make_logits(4, 40, peaked=False) * scale
        t, m = torch.randint(0, 40, (4,)), torch.ones(4, dtype=torch.bool)
        ce, lse = backend.masked_cross_entropy(*on(backend, x, t, m))
        ref_ce, ref_lse = reference.masked_cross_entropy(x.double(), t, m)
        assert_within_torch_error(ce, torch_masked_ce(x, t, m), ref_ce, what=f"ce at {scale:g}")
        assert_within_torch_error(lse, torch.logsumexp(x, -1), ref_lse, what=f"lse at {scale:g}")


def test_empty_rows(backend):
    ce, lse = backend.masked_cross_entropy(*on(backend, torch.randn(0, 7), torch.zeros(0, dtype=torch.long),
                                               torch.zeros(0, dtype=torch.bool)))
    assert ce.shape == (0,) and lse.shape == (0,)


class TestBadInputs:
    def call(self, backend, logits=None, targets=None, masked=None):
        logits = torch.randn(3, 10) if logits is None else logits
        targets = torch.zeros(3, dtype=torch.long) if targets is None else targets
        masked = torch.ones(3, dtype=torch.bool) if masked is None else masked
        return backend.masked_cross_entropy(*on(backend, logits, targets, masked))

    def test_logits(self, backend):
        with pytest.raises(ValueError, match="'logits'.*float32, float16, bfloat16.*Long"):
            self.call(backend, logits=torch.zeros(3, 10, dtype=torch.long))
        with pytest.raises(ValueError, match="'logits'.*2 dimensions"):
            self.call(backend, logits=torch.randn(1, 3, 10))
        with pytest.raises(ValueError, match="'logits'.*non-empty vocabulary"):
            self.call(backend, logits=torch.randn(3, 0))
        with pytest.raises(ValueError, match="'logits'.*contiguous last dimension"):
            self.call(backend, logits=torch.randn(10, 3).t())

    def test_float64_is_cpu_only(self, backend):
        if not backend.emulated:
            pytest.skip("the CUDA launcher's check, run under the emulator")
        with pytest.raises(ValueError, match="'logits'.*float64 is CPU-only"):
            self.call(backend, logits=torch.randn(3, 10, dtype=torch.float64))

    def test_targets(self, backend):
        with pytest.raises(ValueError, match="'targets'.*int64"):
            self.call(backend, targets=torch.zeros(3, dtype=torch.int32))
        with pytest.raises(ValueError, match="'targets'.*int64"):
            self.call(backend, targets=torch.zeros(3))
        with pytest.raises(ValueError, match="'targets'.*3 entries"):
            self.call(backend, targets=torch.zeros(4, dtype=torch.long))

    def test_targets_range_checked_on_cpu(self):
        with pytest.raises(ValueError, match=r"'targets'.*\[0, vocab = 10\).*got 10 at row 1"):
            dk.masked_cross_entropy(torch.randn(3, 10), torch.tensor([0, 10, -5]), torch.tensor([True, True, False]))
        with pytest.raises(ValueError, match="'targets'.*got -1"):
            dk.masked_cross_entropy(torch.randn(3, 10), torch.tensor([-1, 0, 0]), torch.ones(3, dtype=torch.bool))

    def test_masked(self, backend):
        with pytest.raises(ValueError, match="'masked'.*bool"):
            self.call(backend, masked=torch.ones(3, dtype=torch.uint8))

    def test_backward_vectors(self, backend):
        x, t, m = on(backend, torch.randn(3, 10), torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool))
        ones, zeros = on(backend, torch.ones(3), torch.zeros(3))
        backward, in_place = op(backend, "masked_ce_backward"), op(backend, "masked_ce_forward_backward_")
        with pytest.raises(ValueError, match="'grad_ce'.*float32"):
            backward(ones.double(), zeros, x, t, m, zeros)
        with pytest.raises(ValueError, match="'lse'.*3 entries"):
            backward(ones, zeros, x, t, m, zeros[:2])
        y = x.clone()
        with pytest.raises(ValueError, match="'scale'.*float32"):
            in_place(y, t, m, ones.half())
        assert torch.equal(y, x), "a refused in-place call leaves the logits unchanged"

    def test_device_mismatch(self):
        with pytest.raises(RuntimeError, match="'targets'.*same device as 'logits'"):
            dk.masked_cross_entropy(torch.randn(3, 10, device="meta"), torch.zeros(3, dtype=torch.long),
                                    torch.ones(3, dtype=torch.bool))


def test_meta_tensors_shape_check():
    ce, lse = dk.masked_cross_entropy(torch.randn(3, 10, device="meta"), torch.zeros(3, dtype=torch.long, device="meta"),
                                      torch.ones(3, dtype=torch.bool, device="meta"))
    assert ce.shape == lse.shape == (3,) and ce.device.type == "meta"
    with pytest.raises(RuntimeError, match="'targets'"):
        dk.masked_cross_entropy(torch.randn(3, 10, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"),
                                torch.ones(3, dtype=torch.bool, device="meta"))


def test_emulated_refuses_non_cpu_tensors():
    if not emulated.AVAILABLE:
        pytest.skip("diffusion_kernels._simt not built")
    x, t, m = torch.randn(3, 10), torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool)
    for name, args in (("logits", (x.to("meta"), t, m)), ("targets", (x, t.to("meta"), m)), ("masked", (x, t, m.to("meta")))):
        with pytest.raises(RuntimeError, match=f"'{name}'.*CPU"):
            emulated.masked_cross_entropy(*args)


def test_opcheck():
    x = make_logits(5, 300, torch.bfloat16)
    t, m = torch.randint(0, 300, (5,)), make_mask(5)
    torch.library.opcheck(ops.masked_ce_forward.default, (x, t, m))
    torch.library.opcheck(ops.masked_ce_forward.default, (make_logits(5, 30, torch.float64).requires_grad_(), t % 30, m))
    _, lse = ops.masked_ce_forward(x, t, m)
    torch.library.opcheck(ops.masked_ce_backward.default, (torch.rand(5), torch.rand(5), x, t, m, lse))
    torch.library.opcheck(ops.masked_ce_forward_backward_.default, (x.clone(), t, m, torch.rand(5)))


def test_torch_compile_fullgraph_matches_eager():
    def loss(x, t, m):
        ce, _ = dk.masked_cross_entropy(x, t, m)
        return (ce * 2).sum()

    x = make_logits(6, 301)
    t, m = torch.randint(0, 301, (6,)), make_mask(6)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = loss(xe, t, m)
    want.backward()
    got = torch.compile(loss, fullgraph=True)(xc, t, m)
    got.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(xc.grad, xe.grad)


def test_in_place_logits_with_shared_rows_are_refused(backend):
    """An expanded logits tensor would receive several rows' gradients in one memory row."""
    row = torch.randn(1, 50).to(backend.device)
    y = row.expand(4, 50)
    t, m, s = on(backend, torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool), torch.ones(4))
    with pytest.raises(ValueError, match="'logits'.*overlapping"):
        op(backend, "masked_ce_forward_backward_")(y, t, m, s)
    assert torch.equal(row, y[:1])
