"""masked_diffusion_loss and fused_linear_masked_diffusion_loss: LLaDA's and MDLM's normalisations
on hand-computed cases, against LLaDA's PyTorch code (reference.masked_diffusion_loss), gradients,
low precision, CUDA, empty inputs and bad inputs."""
import math

import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from tolerance import assert_within_torch_error

LOG4 = math.log(4)
CASES = [("pretrain", "mean"), ("sft", "mean"), ("masked_tokens", "mean"), ("pretrain", "sum"), ("pretrain", "none")]


def hand_case():
    """Uniform logits over 4 tokens: every masked token costs log 4. p = 1/2 (row 0), 1/4 (row 1);
    per-token losses 2 log4, 2 log4 (row 0) and 4 log4 (row 1): sum 8 log4."""
    logits = torch.zeros(2, 3, 4)
    targets = torch.tensor([[0, 1, 2], [3, 0, 1]])
    masked = torch.tensor([[True, False, True], [False, False, True]])
    p = torch.tensor([0.5, 0.25])
    return logits, targets, masked, p


@pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused_linear"])
def test_normalisations_hand_computed(fused):
    logits, targets, masked, p = hand_case()
    prompt_lengths = torch.tensor([1, 2])  # answer lengths 2 and 1

    def loss(**kw):
        if fused:  # hidden = identity rows, weight = 0: logits are all zero too
            hidden = torch.eye(3).expand(2, 3, 3)
            return dk.fused_linear_masked_diffusion_loss(hidden, torch.zeros(4, 3), targets, masked, p, **kw)
        return dk.masked_diffusion_loss(logits, targets, masked, p, **kw)

    close = lambda a, b: torch.testing.assert_close(a, torch.as_tensor(b, dtype=torch.float32))  # noqa: E731
    close(loss(normalize="pretrain"), 8 * LOG4 / 6)
    close(loss(normalize="sft", prompt_lengths=prompt_lengths), (2 * LOG4 / 2 * 2 + 4 * LOG4 / 1) / 2)
    close(loss(normalize="masked_tokens"), 8 * LOG4 / 3)
    close(loss(reduction="sum"), 8 * LOG4)
    close(loss(reduction="none"), [[2 * LOG4, 0, 2 * LOG4], [0, 0, 4 * LOG4]])


def test_nothing_masked():
    logits, targets, _, p = hand_case()
    none = torch.zeros(2, 3, dtype=torch.bool)
    for normalize in ("pretrain", "masked_tokens"):
        assert dk.masked_diffusion_loss(logits, targets, none, p, normalize=normalize).item() == 0.0
    assert dk.masked_diffusion_loss(logits, targets, none, p, normalize="sft", prompt_lengths=3).item() == 0.0


def random_batch(b=3, l=11, v=257, h=None, dtype=torch.float32):
    x0 = torch.randint(0, v, (b, l))
    _, masked, p = dk.forward_mask(x0, 126336, seed=4)
    masked[0, 0] = True
    prompt_lengths = torch.tensor([0, 3, 5])[:b]
    masked &= torch.arange(l)[None, :] >= prompt_lengths[:, None]
    return x0, masked, p, prompt_lengths


@pytest.mark.parametrize("normalize,reduction", CASES)
def test_matches_llada_reference_and_gradients(normalize, reduction):
    x0, masked, p, pl = random_batch()
    logits = (torch.randn(3, 11, 257) * 3).requires_grad_()
    ours = dk.masked_diffusion_loss(logits, x0, masked, p, normalize=normalize, reduction=reduction, prompt_lengths=pl)
    g_ours, = torch.autograd.grad(ours.sum(), logits)
    want = reference.masked_diffusion_loss(logits, x0, masked, p, normalize=normalize, reduction=reduction,
                                           prompt_lengths=pl)
    g_want, = torch.autograd.grad(want.sum(), logits)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_ours, g_want, atol=1e-6, rtol=1e-5)
    assert torch.equal(g_ours[~masked], torch.zeros_like(g_ours[~masked]))


def test_p_mask_shapes_and_flat_rows():
    x0, masked, p, _ = random_batch()
    logits = torch.randn(3, 11, 257)
    a = dk.masked_diffusion_loss(logits, x0, masked, p)
    torch.testing.assert_close(dk.masked_diffusion_loss(logits, x0, masked, p[:, 0]), a)
    flat = dk.masked_diffusion_loss(logits.reshape(33, 257), x0.reshape(33), masked.reshape(33), p.reshape(33))
    torch.testing.assert_close(flat, a)


@pytest.mark.parametrize("normalize,reduction", CASES)
@pytest.mark.parametrize("chunk_size", [None, 1, 4, 1000])
def test_fused_linear_matches_materialised_logits(normalize, reduction, chunk_size):
    b, l, v, h = 3, 11, 300, 24
    x0, masked, p, pl = random_batch(b, l, v)
    hidden = torch.randn(b, l, h, requires_grad=True)
    weight = (torch.randn(v, h) / h**0.5).requires_grad_()
    kw = dict(normalize=normalize, reduction=reduction, prompt_lengths=pl)
    ours = dk.fused_linear_masked_diffusion_loss(hidden, weight, x0, masked, p, chunk_size=chunk_size, **kw)
    want = reference.masked_diffusion_loss(hidden @ weight.t(), x0, masked, p, **kw)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-5)
    upstream = torch.rand_like(ours) + 0.5  # a non-unit incoming gradient
    g_ours = torch.autograd.grad((ours * upstream).sum(), (hidden, weight))
    g_want = torch.autograd.grad((want * upstream).sum(), (hidden, weight))
    for go, gw in zip(g_ours, g_want):
        torch.testing.assert_close(go, gw, atol=2e-6, rtol=1e-5)
    assert torch.equal(g_ours[0][~masked], torch.zeros_like(g_ours[0][~masked]))


def fused_f64_case():
    b, l, v, h = 2, 5, 13, 6
    x0, masked, p, _ = random_batch(b, l, v)
    hidden = torch.randn(b, l, h, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, dtype=torch.float64, requires_grad=True)
    return x0, masked, p.double(), hidden, weight


def test_fused_linear_gradcheck_float64_per_token():
    """reduction='none' (gradients recomputed in the backward) under torch.autograd.gradcheck."""
    x0, masked, p, hidden, weight = fused_f64_case()
    f = lambda hd, w: dk.fused_linear_masked_diffusion_loss(hd, w, x0, masked, p, reduction="none",  # noqa: E731
                                                            chunk_size=3)
    assert torch.autograd.gradcheck(f, (hidden, weight))


@pytest.mark.parametrize("normalize", ["pretrain", "sft", "masked_tokens"])
def test_fused_linear_scalar_gradient_float64_finite_differences(normalize):
    """The scalar reductions compute their gradients in the forward and hand them over once, so
    gradcheck (which backpropagates twice through one graph) cannot run on them: central finite
    differences along random directions instead, in float64."""
    x0, masked, p, hidden, weight = fused_f64_case()
    kw = dict(normalize=normalize, prompt_lengths=torch.tensor([0, 3]), chunk_size=3)
    f = lambda hd, w: dk.fused_linear_masked_diffusion_loss(hd, w, x0, masked, p, **kw)  # noqa: E731
    gh, gw = torch.autograd.grad(f(hidden, weight), (hidden, weight))
    eps = 1e-6
    for _ in range(4):
        dh, dw = torch.randn_like(hidden), torch.randn_like(weight)
        with torch.no_grad():
            fd = (f(hidden + eps * dh, weight + eps * dw) - f(hidden - eps * dh, weight - eps * dw)) / (2 * eps)
        analytic = (gh * dh).sum() + (gw * dw).sum()
        assert abs(fd.item() - analytic.item()) <= 1e-7 * max(1.0, abs(fd.item())), (fd.item(), analytic.item())


def test_fused_linear_second_backward_is_a_clear_error():
    x0, masked, p, hidden, weight = fused_f64_case()
    loss = dk.fused_linear_masked_diffusion_loss(hidden, weight, x0, masked, p)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="cannot backward twice"):
        loss.backward()


def test_fused_linear_only_one_input_needs_grad_and_no_grad():
    x0, masked, p, _ = random_batch(3, 11, 50)
    hidden, weight = torch.randn(3, 11, 8), torch.randn(50, 8, requires_grad=True)
    loss = dk.fused_linear_masked_diffusion_loss(hidden, weight, x0, masked, p)
    (gw,) = torch.autograd.grad(loss, weight)
    want = reference.masked_diffusion_loss(hidden @ weight.t(), x0, masked, p)
    torch.testing.assert_close(gw, torch.autograd.grad(want, weight)[0], atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(dk.fused_linear_masked_diffusion_loss(hidden, weight, x0, masked, p), want.detach())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_fused_linear_low_precision_within_torch_error(dtype):
    """|ours - fp32| <= |PyTorch at dtype - fp32| + tol for the loss, grad hidden, grad weight."""
    b, l, v, h = 2, 40, 1001, 64
    x0, masked, p, _ = random_batch(b, l, v)
    hidden32, weight32 = torch.randn(b, l, h), torch.randn(v, h) / 8
    hidden32, weight32 = hidden32.to(dtype).float(), weight32.to(dtype).float()  # same rounded inputs

    def run(fn, dt):
        hd = hidden32.to(dt).detach().clone().requires_grad_()
        w = weight32.to(dt).detach().clone().requires_grad_()
        loss = fn(hd, w)
        loss.backward()
        return loss.detach(), hd.grad, w.grad

    torch_way = lambda hd, w: reference.masked_diffusion_loss(hd @ w.t(), x0, masked, p)  # noqa: E731
    ours_way = lambda hd, w: dk.fused_linear_masked_diffusion_loss(hd, w, x0, masked, p, chunk_size=16)  # noqa: E731
    gt = run(torch_way, torch.float32)
    pt = run(torch_way, dtype)
    ours = run(ours_way, dtype)
    assert ours[1].dtype == dtype and ours[2].dtype == dtype
    for o, t, g, what in zip(ours, pt, gt, ("loss", "grad hidden", "grad weight")):
        assert_within_torch_error(o, t, g, atol=1e-2 if dtype == torch.bfloat16 else 1e-3, what=what)


def test_matches_reference_on_device(backend):
    """Both losses on the backend's device against the reference on the CPU."""
    if backend.emulated:
        pytest.skip("the losses call the native op; the emulated kernels are tested in test_masked_ce.py")
    x0 = torch.randint(0, 5000, (2, 64))
    _, masked, p = dk.forward_mask(x0, 126336, seed=1)
    hidden, weight = torch.randn(2, 64, 128), torch.randn(5000, 128)
    dev = backend.device
    want = reference.masked_diffusion_loss(hidden @ weight.t(), x0, masked, p)
    ours = dk.fused_linear_masked_diffusion_loss(hidden.to(dev), weight.to(dev), x0.to(dev), masked.to(dev), p.to(dev),
                                                 chunk_size=17)
    torch.testing.assert_close(ours.cpu(), want, atol=1e-4, rtol=1e-4)
    ours = dk.masked_diffusion_loss((hidden @ weight.t()).to(dev), x0.to(dev), masked.to(dev), p.to(dev))
    torch.testing.assert_close(ours.cpu(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("normalize,reduction", CASES)
def test_empty_token_input_as_reference(normalize, reduction):
    """No token at all: both losses give the reference's result (NaN for the 'pretrain' mean,
    0 / 0), with zero gradients, instead of failing inside."""
    for b, l in ((0, 3), (2, 0)):
        targets, masked = torch.zeros(b, l, dtype=torch.long), torch.zeros(b, l, dtype=torch.bool)
        kw = dict(normalize=normalize, reduction=reduction, prompt_lengths=0)
        hidden = torch.randn(b, l, 4, requires_grad=True)
        weight = torch.randn(6, 4, requires_grad=True)
        want = reference.masked_diffusion_loss(hidden @ weight.t(), targets, masked, 0.5, **kw)
        fused = dk.fused_linear_masked_diffusion_loss(hidden, weight, targets, masked, 0.5, **kw)
        plain = dk.masked_diffusion_loss(hidden @ weight.t(), targets, masked, 0.5, **kw)
        for got in (fused, plain):
            torch.testing.assert_close(got, want, equal_nan=True)
        if reduction != "none":
            gh, gw = torch.autograd.grad(fused, (hidden, weight))
            assert gh.shape == hidden.shape and not gw.any()


def test_zero_hidden_size():
    """H = 0: every logit is 0, so each masked token costs log(vocab) / p."""
    _, targets, masked, p = hand_case()
    got = dk.fused_linear_masked_diffusion_loss(torch.randn(2, 3, 0), torch.randn(4, 0), targets, masked, p,
                                                reduction="sum")
    torch.testing.assert_close(got, torch.tensor(8 * LOG4))


class TestBadInputs:
    def test_choices(self):
        logits, targets, masked, p = hand_case()
        with pytest.raises(ValueError, match="'reduction'"):
            dk.masked_diffusion_loss(logits, targets, masked, p, reduction="avg")
        with pytest.raises(ValueError, match="'normalize'"):
            dk.masked_diffusion_loss(logits, targets, masked, p, normalize="llada")
        with pytest.raises(ValueError, match="'prompt_lengths' is required"):
            dk.masked_diffusion_loss(logits, targets, masked, p, normalize="sft")
        with pytest.raises(ValueError, match="'sft' needs \\[batch, seq\\]"):
            dk.masked_diffusion_loss(logits[0], targets[0], masked[0], 0.5, normalize="sft", prompt_lengths=1)

    def test_shapes(self):
        logits, targets, masked, p = hand_case()
        with pytest.raises(ValueError, match="'targets'.*\\(2, 3\\)"):
            dk.masked_diffusion_loss(logits, targets[:, :2], masked, p)
        with pytest.raises(ValueError, match="'masked'.*bool"):
            dk.masked_diffusion_loss(logits, targets, masked.long(), p)
        with pytest.raises(ValueError, match="'p_mask'"):
            dk.masked_diffusion_loss(logits, targets, masked, torch.rand(5))
        with pytest.raises(ValueError, match="'prompt_lengths'.*\\[batch\\]"):
            dk.masked_diffusion_loss(logits, targets, masked, p, normalize="sft", prompt_lengths=torch.tensor([1, 2, 3]))

    def test_fused_linear(self):
        _, targets, masked, p = hand_case()
        hidden = torch.randn(2, 3, 5)
        with pytest.raises(ValueError, match="'lm_head_weight'.*\\[vocab, H = 5\\]"):
            dk.fused_linear_masked_diffusion_loss(hidden, torch.randn(4, 6), targets, masked, p)
        with pytest.raises(ValueError, match="'lm_head_weight'.*dtype"):
            dk.fused_linear_masked_diffusion_loss(hidden, torch.randn(4, 5, dtype=torch.float64), targets, masked, p)
        with pytest.raises(ValueError, match="'targets'.*\\[0, vocab = 4\\)"):
            dk.fused_linear_masked_diffusion_loss(hidden, torch.randn(4, 5), targets + 2, masked, p)
        with pytest.raises(ValueError, match="'chunk_size'"):
            dk.fused_linear_masked_diffusion_loss(hidden, torch.randn(4, 5), targets, masked, p, chunk_size=0)

    def test_fused_linear_names_hidden(self):
        _, targets, masked, p = hand_case()
        with pytest.raises(ValueError, match="'hidden'.*float32.*int64"):
            dk.fused_linear_masked_diffusion_loss(torch.ones(2, 3, 5, dtype=torch.long), torch.ones(4, 5, dtype=torch.long),
                                                  targets, masked, p)
        with pytest.raises(ValueError, match="'lm_head_weight'.*vocab >= 1, got \\(0, 5\\)"):
            dk.fused_linear_masked_diffusion_loss(torch.randn(2, 3, 5), torch.randn(0, 5), targets, masked, p)
        with pytest.raises(ValueError, match="'hidden'.*meta"):
            dk.fused_linear_masked_diffusion_loss(torch.randn(2, 3, 5, device="meta"), torch.randn(4, 5, device="meta"),
                                                  targets.to("meta"), masked.to("meta"), p.to("meta"))
        with pytest.raises(ValueError, match="'targets'.*device of 'hidden'"):
            dk.fused_linear_masked_diffusion_loss(torch.randn(2, 3, 5, device="meta"), torch.randn(4, 5, device="meta"),
                                                  targets, masked, p)

    def test_empty_vocabulary(self):
        _, targets, masked, p = hand_case()
        with pytest.raises(ValueError, match="'logits'.*non-empty vocabulary"):
            dk.masked_diffusion_loss(torch.randn(2, 3, 0), targets, masked, p)

    def test_targets(self):
        logits, targets, masked, p = hand_case()
        with pytest.raises(ValueError, match="'targets'.*int64"):
            dk.masked_diffusion_loss(logits, targets.float(), masked, p)
        for bad in (4, -1):
            with pytest.raises(ValueError, match=r"'targets'.*\[0, vocab = 4\)"):
                dk.masked_diffusion_loss(logits, torch.full_like(targets, bad), masked, p)

    @pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused_linear"])
    @pytest.mark.parametrize("bad", [0.0, -0.5, float("nan")])
    def test_p_mask_not_positive(self, fused, bad):
        """p_mask <= 0 or NaN at a masked position is refused (a number, a [batch] or a
        [batch, seq] tensor); at unmasked positions it is never read."""
        logits, targets, masked, p = hand_case()
        hidden, weight = torch.eye(3).expand(2, 3, 3), torch.zeros(4, 3)

        def loss(pm):
            if fused:
                return dk.fused_linear_masked_diffusion_loss(hidden, weight, targets, masked, pm)
            return dk.masked_diffusion_loss(logits, targets, masked, pm)

        full = p[:, None].expand(2, 3).clone()
        full[0, 1] = bad  # an unmasked position
        torch.testing.assert_close(loss(full), loss(p))
        full[1, 2] = bad  # a masked one
        for pm in (bad, torch.tensor([bad, 0.25]), full):
            with pytest.raises(ValueError, match="'p_mask'.*positive"):
                loss(pm)
        with pytest.raises(TypeError, match="'p_mask'"):
            loss("0.5")

    def test_meta_options_with_cpu_tensors_are_named(self):
        logits, targets, masked, p = hand_case()
        with pytest.raises(ValueError, match="'p_mask'.*device"):
            dk.masked_diffusion_loss(logits, targets, masked, p.to("meta"))
        with pytest.raises(ValueError, match="'prompt_lengths'.*device"):
            dk.masked_diffusion_loss(logits, targets, masked, p, normalize="sft",
                                     prompt_lengths=torch.zeros(2, dtype=torch.long, device="meta"))

    @pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused_linear"])
    def test_prompt_lengths(self, fused):
        logits, targets, masked, p = hand_case()

        def loss(pl):
            if fused:
                return dk.fused_linear_masked_diffusion_loss(torch.eye(3).expand(2, 3, 3), torch.zeros(4, 3), targets,
                                                             masked, p, normalize="sft", prompt_lengths=pl)
            return dk.masked_diffusion_loss(logits, targets, masked, p, normalize="sft", prompt_lengths=pl)

        for bad in (4, -1, torch.tensor([0, 4]), torch.tensor([-1, 0])):
            with pytest.raises(ValueError, match=r"'prompt_lengths'.*\[0, 3\]"):
                loss(bad)
        for bad in (1.5, torch.tensor([1.0, 2.0])):
            with pytest.raises(TypeError, match="'prompt_lengths'.*int"):
                loss(bad)

    def test_options_are_keyword_only(self):
        logits, targets, masked, p = hand_case()
        with pytest.raises(TypeError):
            dk.masked_diffusion_loss(logits, targets, masked, p, "pretrain")
