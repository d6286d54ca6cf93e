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


def _cuda_op(logits, x, mask_id, **kw):
    kw = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    return tuple(t.cpu() for t in dk.masked_confidence(logits.cuda(), x.cuda(), mask_id, **kw))


SAMPLING_OPTIONS = [
    dict(temperature=0.7),  # split path at few rows
    dict(temperature=0.7, confidence_from="logits", suppress_ids=[5]),
    dict(temperature=1.0, confidence="random"),
    dict(temperature=0.9, top_k=50, confidence="margin"),
    dict(temperature=0.2, top_p=0.95, confidence="neg_entropy"),
    dict(top_k=5, confidence="neg_entropy", confidence_from="logits"),
]


@pytest.mark.parametrize("opts", SAMPLING_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("shape", [(1, 32, 126464), (4, 64, 5003)], ids=lambda s: "x".join(map(str, s)))
def test_sampling_options_match_reference_and_cpu(shape, opts):
    from sampling_cases import make_case, run_and_compare, safe_top_p

    logits, x = make_case(*shape, torch.bfloat16)
    opts = dict(opts, return_lse=True)
    if "top_p" in opts:
        opts["top_p"] = safe_top_p(logits, opts["top_p"], opts.get("temperature", 0.0))
    (x0, _, _), _ = run_and_compare(_cuda_op, logits, x, **opts)
    cpu_x0 = dk.masked_confidence(logits, x, MASK_ID, seed=1234, offset=5, **opts)[0]
    assert (x0 != cpu_x0).float().mean() < 0.01  # only near-ties (run_and_compare checked each one)
    again = _cuda_op(logits, x, MASK_ID, seed=1234, offset=5, **opts)
    assert torch.equal(again[0], x0)


def test_out_of_range_suppressed_ids_are_ignored_on_cuda():
    logits, x = make_logits(2, 3, 300, torch.float32), make_tokens(2, 3)
    ids = torch.tensor([17, -4, 300, 10**9], device="cuda")
    got = _cuda_op(logits, x, MASK_ID, suppress_ids=ids, temperature=0.5, seed=3)
    want = _cuda_op(logits, x, MASK_ID, suppress_ids=torch.tensor([17]), temperature=0.5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
