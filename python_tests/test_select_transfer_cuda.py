"""select_transfer on a real GPU (skipped without one; run by bench/gpu_validate.sh)."""
import pytest
import torch

import diffusion_kernels as dk
from transfer_cases import RULES, assert_matches_reference, make_confidence, make_tokens, per_row_k, rule_id

pytestmark = pytest.mark.cuda


def on_cuda(conf, x=None, x0=None, **rule):
    """dk.select_transfer on CUDA copies of the inputs; x is written back to the caller's tensor."""
    rule = {n: v.cuda() if isinstance(v, torch.Tensor) else v for n, v in rule.items()}
    xc = x.cuda() if x is not None else None
    mask = dk.select_transfer(conf.cuda(), x=xc, x0=x0.cuda() if x0 is not None else None, **rule)
    assert mask.is_cuda
    if x is not None:
        x.copy_(xc.cpu())
    return mask.cpu()


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 33), (64, 257), (8, 1000), (4, 4096), (3, 4097), (2, 40000)],
                         ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, rule):
    assert_matches_reference(on_cuda, make_confidence(*shape), **rule)


def test_per_row_k_tensor_and_repeatability():
    conf = make_confidence(16, 700).cuda()
    k = per_row_k(16, 700).cuda()
    a = dk.select_transfer(conf, k=k, alg_temp=0.5, seed=4, offset=2)
    for _ in range(3):
        assert torch.equal(a, dk.select_transfer(conf, k=k, alg_temp=0.5, seed=4, offset=2))
    assert torch.equal(a.cpu(), dk.select_transfer(conf.cpu(), k=k.cpu(), alg_temp=0.5, seed=4, offset=2))


def test_in_place_write_on_device():
    conf = make_confidence(4, 300).cuda()
    x, x0 = (t.cuda() for t in make_tokens(4, 300))
    before = x.clone()
    mask = dk.select_transfer(conf, k=17, x=x, x0=x0)
    assert torch.equal(x, torch.where(mask, x0, before))
