"""masked_confidence on a real GPU (skipped without one; run by bench/gpu_validate.sh)."""
import pytest
import torch

import diffusion_kernels as dk
from confidence_cases import DTYPES, MASK_ID, SHAPES, assert_matches_reference, make_logits, make_tokens

pytestmark = pytest.mark.cuda


def on_cuda(op):
    def run(logits, x, mask_id):
        x0, conf = op(logits.cuda(), x.cuda(), mask_id)
        assert x0.is_cuda and conf.is_cuda
        return x0.cpu(), conf.cpu()
    return run


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES + [(8, 256, 126464)], ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, dtype):
    b, l, v = shape
    assert_matches_reference(on_cuda(dk.masked_confidence), make_logits(b, l, v, dtype), make_tokens(b, l))


def test_nonfinite_policy():
    logits = make_logits(1, 4, 3000, torch.bfloat16)
    logits[0, 0, [900, 30]] = float("nan")
    logits[0, 1, [2999, 700]] = float("inf")
    logits[0, 2] = float("-inf")
    assert_matches_reference(on_cuda(dk.masked_confidence), logits, torch.full((1, 4), MASK_ID))


def test_non_contiguous():
    big = make_logits(4, 2, 700, torch.float16).cuda()
    logits = big[:, :, 3:603].transpose(0, 1)
    x = make_tokens(4, 2).t().cuda()
    x0, conf = dk.masked_confidence(logits, x, MASK_ID)
    ref_x0, ref = dk.reference.masked_confidence(logits, x, MASK_ID)
    assert torch.equal(x0, ref_x0)
    torch.testing.assert_close(conf, ref, rtol=1e-5, atol=1e-7)


def test_opcheck_and_compile():
    logits, x = make_logits(2, 5, 300, torch.bfloat16).cuda(), make_tokens(2, 5).cuda()
    torch.library.opcheck(torch.ops.diffusion_kernels.masked_confidence.default, (logits, x, MASK_ID))
    compiled = torch.compile(lambda a, b: dk.masked_confidence(a, b, MASK_ID), fullgraph=True)
    assert all(torch.equal(p, q) for p, q in zip(compiled(logits, x), dk.masked_confidence(logits, x, MASK_ID)))


def test_device_mismatch():
    with pytest.raises(ValueError, match="'x'.*same device"):
        dk.masked_confidence(torch.randn(1, 2, 5, device="cuda"), torch.zeros(1, 2, dtype=torch.long), 0)


def test_block_restriction_and_lse():
    from sampling_cases import run_and_compare

    logits, x = make_logits(3, 6, 1001, torch.bfloat16), make_tokens(3, 6)
    def op(logits, x, mask_id, **kw):
        kw = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        return tuple(t.cpu() for t in dk.masked_confidence(logits.cuda(), x.cuda(), mask_id, **kw))

    run_and_compare(op, logits, x, block_start=torch.tensor([0, 2, 6]), block_end=4, return_lse=True)
