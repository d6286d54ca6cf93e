"""The fused masked cross-entropy op (CPU kernel) against F.cross_entropy: forward, backward,
gradcheck, low precision, non-finite policy, in-place forward+backward, opcheck, bad inputs."""
import pytest
import torch
import torch.nn.functional as F

import diffusion_kernels as dk
from diffusion_kernels import reference
from loss_cases import LOW_PRECISION, TOL, assert_within_torch_error, make_logits, make_mask, torch_masked_ce

ops = torch.ops.diffusion_kernels
SIZES = [(1, 1), (3, 2), (5, 17), (7, 1000), (4, 5003), (2, 2049), (1, 126464)]


def grads_fp32(logits, targets, masked, weights):
    x = logits.to(torch.promote_types(logits.dtype, torch.float32)).detach().requires_grad_()
    (torch_masked_ce(x, targets, masked) * weights).sum().backward()
    return x.grad


@pytest.mark.parametrize("rows,vocab", SIZES)
def test_fp32_forward_backward_match_cross_entropy(rows, vocab):
    x = make_logits(rows, vocab)
    t = torch.randint(0, vocab, (rows,))
    m = make_mask(rows)
    w = torch.rand(rows) + 0.5
    xr = x.clone().requires_grad_()
    ce, lse = dk.masked_cross_entropy(xr, t, m)
    torch.testing.assert_close(ce, torch_masked_ce(x, t, m), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, torch.where(m, torch.logsumexp(x, -1), 0.0), atol=1e-5, rtol=1e-6)
    (ce * w).sum().backward()
    # Against float64 within PyTorch's own float32 error (PyTorch's float32 softmax gradient is
    # off by ~5e-5 on peaked rows of 126464 entries; ours is not).
    assert_within_torch_error(xr.grad, grads_fp32(x, t, m, w), grads_fp32(x.double(), t, m, w.double()), 1e-6)
    assert torch.equal(xr.grad[~m], torch.zeros_like(xr.grad[~m])), "unmasked rows must get exactly 0"


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
@pytest.mark.parametrize("dtype", [torch.float32] + LOW_PRECISION, ids=str)
def test_every_cpu_isa_build(dtype, isa, monkeypatch):
    monkeypatch.setenv("DK_CPU_ISA", isa)
    rows, vocab = 6, 4133
    x = make_logits(rows, vocab, dtype)
    t, m = torch.randint(0, vocab, (rows,)), make_mask(rows, 0.7)
    ce, lse = dk.masked_cross_entropy(x, t, m)
    ref_ce, ref_lse = reference.masked_cross_entropy(x.double(), t, m)
    torch.testing.assert_close(ce.double(), ref_ce, atol=2e-5, rtol=2e-6)
    g = ops.masked_ce_backward(torch.ones(rows), torch.zeros(rows), x, t, m, lse)
    assert_within_torch_error(g, grads_fp32(x, t, m, torch.ones(rows)).to(dtype), grads_fp32(x.double(), t, m, torch.ones(rows)),
                              TOL[dtype][1])


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("rows,vocab", [(9, 3001), (3, 126464)])
def test_low_precision_within_torch_error(rows, vocab, dtype):
    """|ours - fp32| <= |torch at dtype - fp32| + tol, for the CE and the logits gradient."""
    x32 = make_logits(rows, vocab)
    x = x32.to(dtype)
    t, m = torch.randint(0, vocab, (rows,)), make_mask(rows, 0.5)
    gt_in = x.float()  # the same rounded inputs, computed in float32
    gt_ce = torch_masked_ce(gt_in, t, m)
    xl = x.clone().requires_grad_()
    torch_ce = torch_masked_ce(xl, t, m)
    torch_ce.sum().backward()
    xo = x.clone().requires_grad_()
    ce, _ = dk.masked_cross_entropy(xo, t, m)
    ce.sum().backward()
    fwd_tol, bwd_tol = TOL[dtype]
    assert_within_torch_error(ce, torch_ce.detach(), gt_ce, fwd_tol)
    assert_within_torch_error(xo.grad, xl.grad, grads_fp32(gt_in, t, m, torch.ones(rows)), bwd_tol)
    assert xo.grad.dtype == dtype


def test_gradcheck_float64():
    x = make_logits(6, 13, torch.float64).requires_grad_()
    t, m = torch.randint(0, 13, (6,)), make_mask(6, 0.6)

    def f(x):
        ce, lse = dk.masked_cross_entropy(x, t, m)
        return ce * 1.5 + lse * 0.25  # exercises grad_ce and grad_lse together

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck is not None  # double backward is not supported (documented)


def test_lse_gradient_is_softmax():
    x = make_logits(4, 50, torch.float64).requires_grad_()
    m = torch.tensor([True, False, True, True])
    _, lse = dk.masked_cross_entropy(x, torch.zeros(4, dtype=torch.long), m)
    lse.sum().backward()
    want = torch.softmax(x.detach(), -1) * m[:, None]
    torch.testing.assert_close(x.grad, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64] + LOW_PRECISION, ids=str)
def test_forward_backward_in_place_matches_backward_op(dtype):
    rows, vocab = 7, 3003
    x = make_logits(rows, vocab, dtype)
    t, m = torch.randint(0, vocab, (rows,)), make_mask(rows)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    scale = torch.rand(rows, dtype=acc) + 0.1
    ce, lse = ops.masked_ce_forward(x, t, m)
    g = ops.masked_ce_backward(scale, torch.zeros_like(scale), x, t, m, lse)
    y = x.clone()
    ce2, lse2 = ops.masked_ce_forward_backward_(y, t, m, scale)
    assert torch.equal(ce, ce2) and torch.equal(lse, lse2)
    tol = {torch.float32: 1e-6, torch.float64: 1e-12, torch.bfloat16: 8e-3, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(y.double(), g.double(), atol=tol, rtol=0)
    assert (y[~m] == 0).all()


def test_non_contiguous_rows():
    big = make_logits(5, 1200)
    x = big[:, 100:1100]  # row stride 1200
    t, m = torch.randint(0, 1000, (10,))[::2], make_mask(10)[::2]
    ce, lse = dk.masked_cross_entropy(x, t, m)
    torch.testing.assert_close(ce, torch_masked_ce(x.contiguous(), t, m), atol=1e-5, rtol=1e-5)
    g = ops.masked_ce_backward(torch.ones(5), torch.zeros(5), x, t, m, lse)
    assert g.is_contiguous()
    torch.testing.assert_close(g, grads_fp32(x.contiguous(), t, m, torch.ones(5)), atol=1e-6, rtol=1e-5)


def test_all_masked_and_none_masked():
    x = make_logits(4, 300)
    t = torch.randint(0, 300, (4,))
    ce, lse = dk.masked_cross_entropy(x, t, torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(ce, F.cross_entropy(x, t, reduction="none"), atol=1e-5, rtol=1e-5)
    xr = x.clone().requires_grad_()
    ce, lse = dk.masked_cross_entropy(xr, torch.full((4,), -100), torch.zeros(4, dtype=torch.bool))
    assert torch.equal(ce, torch.zeros(4)) and torch.equal(lse, torch.zeros(4))
    ce.sum().backward()
    assert torch.equal(xr.grad, torch.zeros_like(x))


def test_nonfinite_policy_matches_cross_entropy():
    vocab = 2100  # two CPU chunks
    x = make_logits(6, vocab)
    x[0, 77] = float("nan")
    x[1, 5] = float("inf")
    x[2] = float("-inf")
    x[3, :2050] = float("-inf")   # first chunk all -inf, finite values later
    x[4, 9] = float("-inf")       # the target itself at -inf: CE = +inf
    t = torch.tensor([1, 2, 3, 2060, 9, 4])
    m = torch.ones(6, dtype=torch.bool)
    xr = x.clone().requires_grad_()
    ce, _ = dk.masked_cross_entropy(xr, t, m)
    xt = x.clone().requires_grad_()
    want = F.cross_entropy(xt, t, reduction="none")
    torch.testing.assert_close(ce, want, atol=1e-5, rtol=1e-5, equal_nan=True)
    assert torch.isnan(ce[:3]).all() and torch.isinf(ce[4])
    (ce[[0, 1, 2, 3, 5]].sum()).backward()
    want[[0, 1, 2, 3, 5]].sum().backward()
    torch.testing.assert_close(xr.grad, xt.grad, atol=1e-6, rtol=1e-5, equal_nan=True)


def test_large_logits_no_overflow():
    x = torch.full((2, 1000), 80.0)
    x[:, 500] = 85.0
    t = torch.tensor([500, 3])
    ce, _ = dk.masked_cross_entropy(x, t, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(ce, F.cross_entropy(x.double(), t, reduction="none").float(), atol=1e-5, rtol=1e-6)


def test_empty_rows():
    ce, lse = dk.masked_cross_entropy(torch.randn(0, 7), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool))
    assert ce.shape == (0,) and lse.shape == (0,)


class TestBadInputs:
    def call(self, logits=None, targets=None, masked=None):
        logits = torch.randn(3, 10) if logits is None else logits
        targets = torch.zeros(3, dtype=torch.long) if targets is None else targets
        masked = torch.ones(3, dtype=torch.bool) if masked is None else masked
        return dk.masked_cross_entropy(logits, targets, masked)

    def test_logits(self):
        with pytest.raises(ValueError, match="'logits'.*float32, float16, bfloat16.*Long"):
            self.call(logits=torch.zeros(3, 10, dtype=torch.long))
        with pytest.raises(ValueError, match="'logits'.*2 dimensions"):
            self.call(logits=torch.randn(1, 3, 10))
        with pytest.raises(ValueError, match="'logits'.*non-empty vocabulary"):
            self.call(logits=torch.randn(3, 0))
        with pytest.raises(ValueError, match="'logits'.*contiguous last dimension"):
            self.call(logits=torch.randn(10, 3).t())

    def test_targets(self):
        with pytest.raises(ValueError, match="'targets'.*int64"):
            self.call(targets=torch.zeros(3, dtype=torch.int32))
        with pytest.raises(ValueError, match="'targets'.*3 entries"):
            self.call(targets=torch.zeros(4, dtype=torch.long))
        with pytest.raises(ValueError, match=r"'targets'.*\[0, vocab = 10\).*got 10 at row 1"):
            self.call(targets=torch.tensor([0, 10, -5]), masked=torch.tensor([True, True, False]))
        with pytest.raises(ValueError, match="'targets'.*got -1"):
            self.call(targets=torch.tensor([-1, 0, 0]))

    def test_masked(self):
        with pytest.raises(ValueError, match="'masked'.*bool"):
            self.call(masked=torch.ones(3, dtype=torch.uint8))

    def test_backward_vectors(self):
        x, t, m = torch.randn(3, 10), torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool)
        with pytest.raises(ValueError, match="'grad_ce'.*float32"):
            ops.masked_ce_backward(torch.ones(3, dtype=torch.float64), torch.zeros(3), x, t, m, torch.zeros(3))
        with pytest.raises(ValueError, match="'lse'.*3 entries"):
            ops.masked_ce_backward(torch.ones(3), torch.zeros(3), x, t, m, torch.zeros(2))
        with pytest.raises(ValueError, match="'scale'.*float32"):
            ops.masked_ce_forward_backward_(x, t, m, torch.ones(3, dtype=torch.float16))

    def test_device_mismatch(self):
        with pytest.raises(RuntimeError, match="'targets'.*same device as 'logits'"):
            self.call(logits=torch.randn(3, 10, device="meta"))


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
