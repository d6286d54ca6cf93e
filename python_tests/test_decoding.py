"""The decoding core on its own: each transfer rule against a small pure-PyTorch transcription of
the research code's rule (LLaDA's low-confidence top-k, Fast-dLLM's threshold and factor rules, the
factor rule as Fast-dLLM's code runs it, SGLang's strict threshold, dInfer's row-max threshold), the
step function against LLaDA's, Fast-dLLM's and dInfer's steps, and the plan / cache-policy helpers."""
import math

import pytest
import torch

from diffusion_kernels import reference
from diffusion_kernels.decoding import (ALG_TEMP_OFFSET, DInferThreshold, DreamPlan, Factor, LLaDAPlan, Proposal, Threshold, TopK,
                                        UntilDone, decode_step, query_range)
from diffusion_kernels.schedules import dream_num_transfer_tokens, llada_num_transfer_tokens


def _confidences(seed, batch=5, seq=23):
    """Rounded to 1/16 (many ties), with non-candidates (-inf, NaN, +inf), an empty row and a full row."""
    g = torch.Generator().manual_seed(seed)
    conf = (torch.rand(batch, seq, generator=g) * 16).round() / 16
    drop = torch.rand(batch, seq, generator=g) < 0.3
    conf = conf.masked_fill(drop, float("-inf"))
    conf[1, 3], conf[1, 7] = float("nan"), float("inf")
    conf[2] = float("-inf")
    conf[3] = torch.rand(seq, generator=g)
    return conf


def _ranked(row):
    """Candidates (finite) by confidence descending, ties to the lowest index."""
    idx = torch.nonzero(torch.isfinite(row)).flatten()
    return idx[torch.sort(row[idx], descending=True, stable=True).indices]


def llada_topk(conf, k):
    """LLaDA: per row, ``torch.topk(confidence[j], k=num_transfer_tokens[j, i])`` (ties lowest index)."""
    out = torch.zeros(conf.shape, dtype=torch.bool)
    for j in range(conf.shape[0]):
        out[j, _ranked(conf[j])[: int(k[j]) if isinstance(k, torch.Tensor) else k]] = True
    return out


def fast_dllm_threshold(conf, tau):
    """Fast-dLLM get_transfer_index: top-k of all masked, then drop ranks >= 1 with confidence < tau."""
    out = torch.zeros(conf.shape, dtype=torch.bool)
    for j in range(conf.shape[0]):
        sel = _ranked(conf[j])
        out[j, sel] = True
        for r in range(1, len(sel)):
            if conf[j, sel[r]] < tau:
                out[j, sel[r]] = False
    return out


def sglang_low_confidence(conf, tau):
    """SGLang LowConfidence: ``confidence > threshold``, else the row's argmax."""
    out = torch.isfinite(conf) & (conf > tau)
    for j in range(conf.shape[0]):
        sel = _ranked(conf[j])
        if len(sel) and not out[j].any():
            out[j, sel[0]] = True
    return out


def fast_dllm_factor_paper(conf, factor):
    """Fast-dLLM's factor rule as the paper states it: the longest prefix of the ranked candidates
    with ``c_k >= 1 - factor / (k + 1)``... written as ``(n + 1) (1 - c_n) < factor``; at least one."""
    out = torch.zeros(conf.shape, dtype=torch.bool)
    for j in range(conf.shape[0]):
        sel = _ranked(conf[j])
        n = 0
        for r in range(len(sel)):
            if r > 0 and not (r + 2) * (1 - float(conf[j, sel[r]])) < factor:
                break
            n = r + 1
        out[j, sel[:n]] = True
    return out


def fast_dllm_factor_code(conf, factor):
    """Fast-dLLM get_transfer_index_dynamic as its code runs: per row, sorted candidate confidences
    against ``1 - factor / (n + 1)`` (rank 1 against -1), stop at the first below its bound, and
    one more when the stop is at the first or the last rank. (The code fails on a row without
    candidates; this commits nothing there.)"""
    out = torch.zeros(conf.shape, dtype=torch.bool)
    for j in range(conf.shape[0]):
        m = int(torch.isfinite(conf[j]).sum())
        if m == 0:
            continue
        bounds = [-1.0] + [1 - factor / (n + 1) for n in range(2, m + 1)]
        values = sorted((float(c) for c in conf[j][torch.isfinite(conf[j])]), reverse=True)
        top = 0
        for top in range(m):
            if values[top] < bounds[top]:
                break
        if top == 0 or top == m - 1:
            top += 1
        out[j, _ranked(conf[j])[:top]] = True
    return out


def dinfer_threshold(conf, x0, mask_id, tau, eps=1e-5):
    """dInfer get_transfer_index_threshold (float32): candidates minus the positions proposing the
    mask id (``mask_id=None``: rm_mask off), bound ``(rowmax - eps).clamp(-1000, tau)``, ``>=``."""
    mask_index = torch.isfinite(conf)
    if mask_id is not None:
        mask_index = mask_index & (x0 != mask_id)
    c = torch.where(mask_index, conf.float(), -math.inf)
    bound = (c.max(dim=1).values - eps).clamp(-1000, tau).unsqueeze(-1)
    return c >= bound


def _apply(rule, conf, **kw):
    """The rule's mask, and the write it does into x (x0 = position index + 100)."""
    x = torch.full(conf.shape, -1, dtype=torch.int64)
    x0 = torch.arange(conf.shape[1]).expand(conf.shape).contiguous() + 100
    mask = rule.select(conf, x, x0, **kw)
    assert torch.equal(x, torch.where(mask, x0, -1))
    return mask


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [0, 1, 4, 30, "rows"])
def test_topk_is_llada_topk(seed, k):
    conf = _confidences(seed)
    if k == "rows":
        k = torch.tensor([0, 2, 5, 23, 7])
    assert torch.equal(_apply(TopK(k), conf), llada_topk(conf, k))


@pytest.mark.parametrize("seed", range(3))
def test_topk_alg_temp_is_gumbel_top_k_at_its_own_offset(seed):
    conf = _confidences(seed)
    k = torch.tensor([1, 3, 2, 6, 4])
    got = _apply(TopK(k, alg_temp=0.3), conf, seed=seed, offset=5)
    want = reference.select_transfer(conf, k=k, alg_temp=0.3, seed=seed, offset=ALG_TEMP_OFFSET + 5)
    assert torch.equal(got, want)
    assert torch.equal(got.sum(1), torch.minimum(k, torch.isfinite(conf).sum(1)))
    assert torch.equal(_apply(TopK(k, alg_temp=0.0), conf), llada_topk(conf, k))  # 0: plain top-k


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tau", [0.0, 0.5, 0.8125, 0.9, 2.0])
def test_threshold_is_fast_dllm_inclusive_and_sglang_strict(seed, tau):
    conf = _confidences(seed)
    inclusive = _apply(Threshold(tau), conf)
    assert torch.equal(inclusive, fast_dllm_threshold(conf, tau))
    strict = _apply(Threshold(tau, strict=True), conf)
    assert torch.equal(strict, sglang_low_confidence(conf, tau))


def test_threshold_strict_differs_only_at_the_bound():
    conf = torch.tensor([[0.5, 0.75, 0.75, 0.25], [0.75, 0.5, 0.5, 0.5]])
    assert _apply(Threshold(0.5), conf).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert _apply(Threshold(0.5, strict=True), conf).tolist() == [[False, True, True, False], [True, False, False, False]]
    # the float32 neighbour of 0.1 above and below: the bound is float32(0.1), as torch compares
    t = torch.tensor(0.1, dtype=torch.float32)
    up, down = torch.nextafter(t, torch.tensor(1.0)), torch.nextafter(t, torch.tensor(0.0))
    conf = torch.stack([t, up, down, torch.tensor(0.0)])[None]
    assert _apply(Threshold(0.1), conf).tolist() == [[True, True, False, False]]
    assert _apply(Threshold(0.1, strict=True), conf).tolist() == [[False, True, False, False]]


@pytest.mark.parametrize("strict", [False, True])
def test_threshold_per_row_tensor_is_each_rows_rule(strict):
    """Engines batch requests at different steps: one threshold per row, the same decisions as
    each row's own scalar rule (SGLang's strict and Fast-dLLM's inclusive)."""
    conf = _confidences(4, batch=6)
    tau = torch.tensor([0.0, 0.5, 0.8125, 0.9, 2.0, 0.75])
    got = _apply(Threshold(tau, strict=strict), conf)
    for j in range(6):
        want = sglang_low_confidence if strict else fast_dllm_threshold
        assert torch.equal(got[j:j + 1], want(conf[j:j + 1], float(tau[j]))), j
    got = _apply(DInferThreshold(tau), conf)
    for j in range(6):
        assert torch.equal(got[j], DInferThreshold(float(tau[j])).select(conf[j:j + 1])[0]), j


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("factor", [0.01, 0.5, 1.0, 3.0, 100.0])
def test_factor_is_the_paper_rule(seed, factor):
    conf = _confidences(seed)
    conf[4] = 1 - torch.tensor([0.01, 0.3, 0.02, 0.2] * 5 + [0.1, 0.15, 0.05])  # ranks that pass, then fail
    assert torch.equal(_apply(Factor(factor), conf), fast_dllm_factor_paper(conf, factor))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("factor", [0.01, 0.5, 1.0, 3.0, 100.0])
def test_factor_code_variant_is_fast_dllm_code(seed, factor):
    conf = _confidences(seed)  # 1/16 grid: some confidences sit exactly on 1 - factor / (n + 1)
    conf[4] = 1 - torch.tensor([0.01, 0.3, 0.02, 0.2] * 5 + [0.1, 0.15, 0.05])
    conf[0, :2] = torch.tensor([0.99, 0.2])
    conf[0, 2:] = -math.inf  # two candidates: the code commits both whatever the second's value
    rule = Factor(factor, variant="fastdllm_code")
    want = fast_dllm_factor_code(conf, factor)
    assert torch.equal(_apply(rule, conf), want)
    assert torch.equal(rule.select(conf.t().contiguous().t()), want)  # any strides
    assert torch.equal(rule.select(conf.half()), fast_dllm_factor_code(conf.half().float(), factor))


@pytest.mark.parametrize("seed", range(4))
def test_factor_variants_differ_only_when_the_last_ranked_alone_fails(seed):
    g = torch.Generator().manual_seed(seed)
    conf = 1 - torch.rand(64, 9, generator=g) ** 3 * 0.6  # continuous: no confidence on a bound
    conf = conf.masked_fill(torch.rand(64, 9, generator=g) < 0.3, -math.inf)
    conf[0] = -math.inf
    for factor in (0.3, 1.0, 2.0):
        paper = Factor(factor).select(conf)
        code = Factor(factor, variant="fastdllm_code").select(conf)
        m = torch.isfinite(conf).sum(1, keepdim=True)
        last_alone = (paper.sum(1, keepdim=True) == m - 1) & (m >= 2)
        assert torch.equal(code, paper | (last_alone & torch.isfinite(conf)))
        assert last_alone.any() and not last_alone.all()  # both cases occur
    # exactly on the bound 1 - 1/4 at rank 3 (of 5): the code keeps it (>=), the paper's strict form not
    on_bound = torch.tensor([[0.9, 0.8, 0.75, 0.1, 0.05]])
    assert Factor(1.0).select(on_bound).tolist() == [[True, True, False, False, False]]
    assert Factor(1.0, variant="fastdllm_code").select(on_bound).tolist() == [[True, True, True, False, False]]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tau,eps", [(0.9, 1e-5), (0.5, 0.0), (0.0, 1e-5), (2.0, 1e-5), (2.0, 0.1), (-1.0, 0.3)])
def test_dinfer_threshold_is_dinfer(seed, tau, eps):
    conf = _confidences(seed)  # ties at the row maximum, -inf / NaN / +inf non-candidates, empty row
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(100, 104, conf.shape, generator=g)  # 103 plays the mask id
    x0[0, conf[0].nan_to_num(neginf=-1).argmax()] = 103  # the row's best proposes the mask
    for mask_id in (103, None):
        x = torch.full(conf.shape, -1, dtype=torch.int64)
        got = DInferThreshold(tau, eps, mask_id=mask_id).select(conf, x, x0)
        assert torch.equal(got, dinfer_threshold(conf, x0, mask_id, tau, eps))
        assert torch.equal(x, torch.where(got, x0, -1))
    assert not (DInferThreshold(tau, eps, mask_id=103).select(conf, x0=x0) & (x0 == 103)).any()
    assert torch.equal(DInferThreshold(tau, eps).select(conf), dinfer_threshold(conf, x0, None, tau, eps))


def test_dinfer_threshold_bound_and_mask_exclusion():
    # within eps of the row maximum is committed; the bound is float32(rowmax - eps), as dInfer's
    top = torch.tensor(0.5, dtype=torch.float32)
    near = (top - torch.tensor(1e-5, dtype=torch.float32))
    below = torch.nextafter(near, torch.tensor(0.0))
    conf = torch.stack([top, near, below, torch.tensor(-math.inf)])[None]
    assert DInferThreshold(0.9).select(conf).tolist() == [[True, True, False, False]]
    # the best proposes [MASK]: it leaves the row maximum, the next best becomes the anchor
    conf = torch.tensor([[0.6, 0.3, 0.29, 0.1], [0.2, 0.2, 0.1, 0.05]])
    x0 = torch.tensor([[7, 1, 2, 3], [7, 7, 7, 7]])
    x = torch.full((2, 4), 7)
    got = DInferThreshold(0.9, mask_id=7).select(conf, x, x0)
    assert got.tolist() == [[False, True, False, False], [False, False, False, False]]  # row 1: nothing left
    assert x.tolist() == [[7, 1, 7, 7], [7, 7, 7, 7]]
    with pytest.raises(ValueError, match="'x0'"):
        DInferThreshold(0.9, mask_id=7).select(conf)


@pytest.mark.parametrize("rule,arg", [(lambda: Factor(1.0, variant="code"), "'variant'"),
                                      (lambda: Factor(-1.0, variant="fastdllm_code"), "'factor'"),
                                      (lambda: DInferThreshold(math.nan), "'threshold'"),
                                      (lambda: DInferThreshold(0.9, eps=-1e-5), "'eps'"),
                                      (lambda: DInferThreshold(0.9, eps=math.inf), "'eps'"),
                                      (lambda: DInferThreshold(0.9, mask_id=1.5), "'mask_id'")])
def test_new_rules_reject_bad_values(rule, arg):
    with pytest.raises((TypeError, ValueError), match=arg):
        rule()


@pytest.mark.parametrize("rule,arg", [(lambda: TopK(-1), "'k'"), (lambda: TopK(1.5), "'k'"),
                                      (lambda: TopK(2, alg_temp=-0.1), "'alg_temp'"),
                                      (lambda: TopK(2, alg_temp=math.nan), "'alg_temp'"),
                                      (lambda: Threshold(math.nan), "'threshold'"),
                                      (lambda: Threshold("0.9"), "'threshold'"),
                                      (lambda: Threshold(torch.ones(2, dtype=torch.bool)), "'threshold'"),
                                      (lambda: Threshold(0.9, strict=1), "'strict'"),
                                      (lambda: Factor(0.0), "'factor'"), (lambda: Factor(math.nan), "'factor'")])
def test_rules_reject_bad_values(rule, arg):
    with pytest.raises((TypeError, ValueError), match=arg):
        rule()


def test_adaptive_flags():
    assert not TopK(1).adaptive and Threshold(0.9).adaptive and Factor(1.0).adaptive
    assert Factor(1.0, variant="fastdllm_code").adaptive and DInferThreshold(0.9).adaptive


def llada_step(logits, x, mask_id, block_start, block_end, k):
    """One step of LLaDA's generate() at temperature 0, low_confidence, on these logits."""
    mask_index = x == mask_id
    x0 = logits.argmax(-1)
    x0_p = torch.softmax(logits.double(), -1).gather(-1, x0[..., None])[..., 0]
    x0_p[:, block_end:] = -math.inf
    x0_p[:, :block_start] = -math.inf
    x0 = torch.where(mask_index, x0, x)
    conf = torch.where(mask_index, x0_p, -math.inf)
    transfer = llada_topk(conf, k)
    out = x.clone()
    out[transfer] = x0[transfer]
    return out, transfer


@pytest.mark.parametrize("seed", range(4))
def test_decode_step_is_llada_step(seed):
    g = torch.Generator().manual_seed(seed)
    B, L, V, mask = 3, 19, 29, 28
    logits = torch.randn(B, L, V, generator=g) * 3
    logits[..., mask] = -math.inf  # trained models never propose [MASK]
    x = torch.randint(0, mask, (B, L), generator=g)
    x[:, 6:] = mask
    x[1, 9] = 4  # a committed token inside the block
    k = torch.tensor([2, 5, 1])
    want_x, want_t = llada_step(logits, x, mask, 6, 14, k)
    res = decode_step(logits, x, TopK(k), mask_id=mask, block_start=6, block_end=14)
    assert torch.equal(res.transferred, want_t) and torch.equal(x, want_x)
    assert torch.equal(res.proposal[:, 6:14][res.transferred[:, 6:14]], want_x[:, 6:14][want_t[:, 6:14]])
    assert torch.isinf(res.confidence[:, :6]).all() and torch.isinf(res.confidence[:, 14:]).all()


def _block_state(seed, B=4, L=19, V=29, mask=28):
    """Logits and tokens of rows in different states: block [6, 14) part-decoded, fully masked,
    fully decoded; the mask id's logit is the best at a few positions (dInfer's exclusion)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g) * 4
    logits[torch.rand(B, L, generator=g) < 0.15, mask] = 30.0
    x = torch.randint(0, mask, (B, L), generator=g)
    x[:, 6:] = mask
    x[0, 9] = 4
    x[2, 6:14] = torch.arange(6, 14)
    return logits, x, mask


def _commit(x, x0, mask_index, transfer):
    out = x.clone()
    out[transfer] = torch.where(mask_index, x0, x)[transfer]
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("factor", [0.5, 1.0, 3.0])
def test_decode_step_factor_code_is_fast_dllm_step(seed, factor):
    logits, x, mask = _block_state(seed)
    logits[..., mask] = -math.inf  # Fast-dLLM's models never propose [MASK]
    mask_index = x == mask
    mask_index[:, 14:] = False
    x0 = logits.argmax(-1)
    conf = torch.where(mask_index, torch.softmax(logits.double(), -1).gather(-1, x0[..., None])[..., 0], -math.inf)
    transfer = fast_dllm_factor_code(conf, factor)
    want = _commit(x, x0, mask_index, transfer)
    res = decode_step(logits, x, Factor(factor, variant="fastdllm_code"), mask_id=mask, block_start=6, block_end=14)
    assert torch.equal(res.transferred, transfer) and torch.equal(x, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tau", [0.5, 0.9])
def test_decode_step_dinfer_threshold_is_dinfer_step(seed, tau):
    logits, x, mask = _block_state(seed)
    mask_index = x == mask
    mask_index[:, 14:] = False
    x0 = logits.argmax(-1)  # dInfer may propose the mask id; rm_mask drops those positions
    x0_p = torch.softmax(logits.float(), -1).gather(-1, x0[..., None])[..., 0]
    transfer = dinfer_threshold(torch.where(mask_index, x0_p, -math.inf), x0, mask, tau)
    assert (mask_index & (x0 == mask)).any() and transfer.any()
    want = _commit(x, x0, mask_index, transfer)
    res = decode_step(logits, x, DInferThreshold(tau, mask_id=mask), mask_id=mask, block_start=6, block_end=14)
    assert torch.equal(res.transferred, transfer) and torch.equal(x, want)


def test_decode_step_writes_through_a_view_and_keeps_its_arguments():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 8, 11, generator=g)
    logits[..., 10] = -math.inf
    full = torch.full((2, 12), 10)
    full[:, :4] = 3
    before = logits.clone()
    res = decode_step(logits, full[:, 4:], Threshold(0.0), mask_id=10)
    assert torch.equal(logits, before)
    assert (full[:, :4] == 3).all() and (full[:, 4:] != 10).all() and res.transferred.all()


def test_decode_step_proposal_options_reach_the_op():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 9, generator=g)
    x = torch.full((2, 6), 8)
    res = decode_step(logits, x.clone(), TopK(6), mask_id=8, proposal=Proposal(suppress_ids=(int(logits[0, 0].argmax()),)))
    assert not (res.proposal == int(logits[0, 0].argmax())).any()
    a = decode_step(logits, x.clone(), TopK(2), mask_id=8, proposal=Proposal(temperature=1.0), seed=1, offset=4)
    b = decode_step(logits, x.clone(), TopK(2), mask_id=8, proposal=Proposal(temperature=1.0), seed=1, offset=4)
    assert torch.equal(a.proposal, b.proposal) and torch.equal(a.transferred, b.transferred)
    with pytest.raises(ValueError, match="'confidence'"):
        Proposal(confidence="max")
    assert Proposal(confidence="margin").confidence_from == "sampling" and Proposal().confidence_from == "logits"


def test_proposal_positions_and_penalty_reach_the_op():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 6, 9, generator=g)
    x = torch.tensor([[8, 1, 8, 2, 3, 8], [4, 8, 8, 5, 8, 6]])
    want = reference.masked_confidence(logits, x, 8, positions="all", prev_token_penalty=torch.tensor([2.0, 0.5]))
    got = decode_step(logits, x.clone(), TopK(0), mask_id=8,
                      proposal=Proposal(positions="all", prev_token_penalty=torch.tensor([2.0, 0.5])))
    assert torch.equal(got.proposal, want[0])
    flat = decode_step(logits.reshape(12, 9), x.clone(), TopK(0), mask_id=8,
                       proposal=Proposal(positions="all", prev_token_penalty=torch.tensor([2.0, 0.5])))
    assert torch.equal(flat.proposal, want[0])
    for bad, arg in ((dict(positions="some"), "'positions'"), (dict(prev_token_penalty=-1.0), "'prev_token_penalty'"),
                     (dict(prev_token_penalty=math.nan), "'prev_token_penalty'"),
                     (dict(prev_token_penalty=math.inf), "'prev_token_penalty'")):
        with pytest.raises(ValueError, match=arg):
            Proposal(**bad)


def test_plans_give_the_schedules_counts():
    left = torch.tensor([8, 5])
    plan = LLaDAPlan(3)
    plan.begin_block(left)
    counts = llada_num_transfer_tokens(left, 3)
    assert all(torch.equal(plan.rule(i, left).k, counts[:, i]) for i in range(3))
    dream = DreamPlan(4, eps=1e-3, alg_temp=0.2)
    assert torch.equal(dream.rule(1, left).k, dream_num_transfer_tokens(left, 1, 4)) and dream.rule(1, left).alg_temp == 0.2
    until = UntilDone(Threshold(0.9))
    assert until.steps_per_block is None and until.rule(5, left) == Threshold(0.9)


def test_cache_policy_query_ranges():
    assert query_range(None, 3, 10, 14, 30) == (0, 30)
    assert query_range("prefix", 0, 10, 14, 30) == (0, 30) == query_range("dual", 0, 10, 14, 30)
    assert query_range("prefix", 1, 10, 14, 30) == (10, 30)
    assert query_range("dual", 1, 10, 14, 30) == (10, 14)
