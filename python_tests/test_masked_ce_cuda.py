"""The masked CE and forward_mask on a CUDA device (skipped without one)."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from loss_cases import make_logits, make_mask

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_masked_ce_matches_cpu(dtype):
    x = make_logits(33, 126464, dtype)
    t, m = torch.randint(0, 126464, (33,)), make_mask(33)
    xc = x.cuda().requires_grad_()
    ce, lse = dk.masked_cross_entropy(xc, t.cuda(), m.cuda())
    ce.sum().backward()
    xr = x.clone().requires_grad_()
    ce_cpu, lse_cpu = dk.masked_cross_entropy(xr, t, m)
    ce_cpu.sum().backward()
    torch.testing.assert_close(ce.cpu(), ce_cpu, atol=2e-5, rtol=2e-6)
    torch.testing.assert_close(xc.grad.cpu().float(), xr.grad.float(), atol=8e-3 if dtype != torch.float32 else 1e-6, rtol=0)


def test_forward_mask_same_draws_as_cpu():
    x0 = torch.randint(0, 1000, (7, 1000))
    for kw in ({}, {"antithetic": True}, {"prompt_lengths": torch.arange(7) * 100}):
        got = dk.forward_mask(x0.cuda(), 126336, seed=3, **{k: v.cuda() for k, v in kw.items() if torch.is_tensor(v)},
                              **{k: v for k, v in kw.items() if not torch.is_tensor(v)})
        want = reference.forward_mask(x0, 126336, seed=3, **kw)
        for g, w in zip(got, want):
            assert torch.equal(g.cpu(), w)


def test_fused_linear_loss_matches_materialised():
    x0 = torch.randint(0, 5000, (2, 64), device="cuda")
    _, masked, p = dk.forward_mask(x0, 126336, seed=1)
    h = torch.randn(2, 64, 128, device="cuda", requires_grad=True)
    w = torch.randn(5000, 128, device="cuda", requires_grad=True)
    ours = dk.fused_linear_masked_diffusion_loss(h, w, x0, masked, p, chunk_size=17)
    want = reference.masked_diffusion_loss(h @ w.t(), x0, masked, p)
    torch.testing.assert_close(ours, want, atol=1e-4, rtol=1e-4)
