"""Block-diffusion decoding: the exact cache against the uncached recompute, token for token;
sub-blocks and Fast-dLLM v2's block cache; per-row EOS stop; SDAR's rules; Dream's ``origin``."""
import math

import pytest
import torch

from block_models import EOS, MASK, EOSAt, TinyBlockLM, one_thread
from diffusion_kernels.decoding import LLaDAPlan, Proposal, Threshold, UntilDone
from diffusion_kernels.decoding.block_diffusion import BlockDiffusionLoop
from diffusion_kernels.decoding.dynamic_threshold import DynamicThreshold, SDARPlan
from diffusion_kernels.decoding.random_transfer import DreamOriginPlan, RandomTransfer, dream_origin_probability


_one_thread = pytest.fixture(autouse=True)(one_thread)


def _prompts(batch, length, seed=1, pad=True):
    g = torch.Generator().manual_seed(seed)
    p = torch.randint(4, MASK, (batch, length), generator=g)
    am = torch.ones(batch, length, dtype=torch.bool)
    if pad and batch > 1:
        for r in range(1, batch):  # left padding of r + 1 tokens (pad id 0)
            p[r, :r + 1], am[r, :r + 1] = 0, False
    return p, am


def _decode(model, prompt, am, gen, plan, *, cache="exact", proposal=Proposal(), seed=0, **kw):
    B, Lp = prompt.shape
    x = torch.full((B, Lp + gen), MASK, dtype=torch.long)
    x[:, :Lp] = prompt
    order = torch.full_like(x, -1)
    full = None if am is None else torch.cat([am, torch.ones(B, gen, dtype=torch.bool)], 1)
    kw.setdefault("block_size", model.config.block_size)
    loop = BlockDiffusionLoop(model, plan, proposal, mask_id=MASK, prompt_length=Lp, cache=cache, attention_mask=full,
                              seed=seed, **kw)
    nfe = loop.run(x, order)
    return x, order, nfe


PLANS = {
    "llada_topk": lambda b: LLaDAPlan(2),
    "threshold": lambda b: UntilDone(Threshold(0.15)),
    "sdar_dynamic": lambda b: SDARPlan(b // 2, b, threshold=0.15),
    "dream_origin": lambda b: DreamOriginPlan(3),
}


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("batch,prompt_len,gen", [(1, 6, 13), (3, 5, 12), (2, 8, 8)])
def test_exact_cache_equals_uncached(plan, batch, prompt_len, gen):
    model = TinyBlockLM(block_size=4)
    prompt, am = _prompts(batch, prompt_len)
    # Dream origin samples its tokens (temperature 1), never [MASK]
    proposal = Proposal(temperature=1.0, suppress_ids=(MASK,)) if plan == "dream_origin" else Proposal()
    runs = [_decode(model, prompt, am, gen, PLANS[plan](4), cache=c, proposal=proposal, seed=3)
            for c in ("exact", None)]
    (x, order, nfe), (x_ref, order_ref, nfe_ref) = runs
    assert not (x == MASK).any()
    assert torch.equal(x, x_ref) and torch.equal(order, order_ref)
    assert nfe == nfe_ref


def test_two_model_blocks_decoded_together_stay_exact():
    model = TinyBlockLM(block_size=4)
    prompt, am = _prompts(2, 5)
    a = _decode(model, prompt, am, 15, LLaDAPlan(3), block_size=8)
    b = _decode(model, prompt, am, 15, LLaDAPlan(3), block_size=8, cache=None)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2] == 3 * 3


def test_cached_forwards_run_one_block_and_commit_once():
    model = TinyBlockLM(block_size=4)
    prompt, am = _prompts(1, 6)
    model.calls.clear()
    _, _, nfe = _decode(model, prompt, am, 10, LLaDAPlan(2))
    assert len(model.calls) == nfe
    # the first forward prefills the prompt's full block with the first block; then per block: a
    # fused forward (finished block + this one, writing) and store_kv=False steps over the block
    assert model.calls[0] == (0, 8, True, True)
    assert all(n == 4 and not s for st, n, s, _ in model.calls if st % 4 == 0 and n == 4)
    assert sum(s for _, _, s, _ in model.calls) == 3  # one writing forward per block: blocks 1, 2, 3


@pytest.mark.parametrize("shift", [False, True])
def test_sub_blocks_exact_equal_uncached(shift):
    model = TinyBlockLM(block_size=8)
    prompt, am = _prompts(2, 5)
    plan = UntilDone(Threshold(0.5, strict=True))
    a = _decode(model, prompt, am, 19, plan, sub_block=4, shift_logits=shift)
    b = _decode(model, prompt, am, 19, plan, cache=None, sub_block=4, shift_logits=shift)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    # sub-blocks are decoded left to right: every position of a sub-block before the next one's
    order = a[1][:, 8:24].view(2, 4, 4)
    assert (order[:, :-1].amax(-1) < order[:, 1:].amin(-1)).all()


def test_block_cache_is_exact_for_one_layer_and_runs_sub_blocks():
    # One layer: a position's K/V depend on its token only, so v2's block cache (refreshed while a
    # sub-block's first token is masked) reads exact K/V, and must decode as the exact cache does.
    model = TinyBlockLM(block_size=8, layers=1)
    prompt, am = _prompts(2, 8)
    plan = UntilDone(Threshold(0.5, strict=True))
    for shift in (False, True):
        exact = _decode(model, prompt, am, 24, plan, sub_block=4, shift_logits=shift)
        model.calls.clear()
        cached = _decode(model, prompt, am, 24, plan, cache="block", sub_block=4, shift_logits=shift)
        assert torch.equal(exact[0], cached[0]) and torch.equal(exact[1], cached[1])
        assert any(n == 4 for _, n, _, _ in model.calls)  # some steps ran a sub-block alone


def test_block_cache_two_layers_completes():
    model = TinyBlockLM(block_size=8, layers=2)
    prompt, am = _prompts(2, 8)
    x, order, nfe = _decode(model, prompt, am, 16, UntilDone(Threshold(0.5, strict=True)), cache="block",
                            sub_block=4, shift_logits=True)
    assert not (x == MASK).any() and (order[:, 8:] >= 0).all()


@pytest.mark.parametrize("cache", ["exact", None])
def test_eos_stops_its_row_only(cache):
    inner = TinyBlockLM(block_size=4)
    prompt, am = _prompts(2, 6, pad=False)
    model = EOSAt(inner, rows=[0], position=9)
    x, order, nfe = _decode(model, prompt, am, 14, LLaDAPlan(2), cache=cache, eos_id=EOS, stop_at_eos=True)
    assert x[0, 9] == EOS and (x[0, 12:] == EOS).all() and (order[0, 12:] == -1).all()
    # row 1 goes on, exactly as decoded alone
    alone = _decode(model.inner, prompt[1:], am[1:], 14, LLaDAPlan(2), cache=cache, eos_id=EOS, stop_at_eos=True)
    assert torch.equal(x[1], alone[0][0])
    # every row ended: the loop stops after that block
    both = EOSAt(inner, rows=[0, 1], position=9)
    x2, _, nfe2 = _decode(both, prompt, am, 14, LLaDAPlan(2), cache=cache, eos_id=EOS, stop_at_eos=True)
    assert (x2[:, 12:] == EOS).all() and nfe2 == 2 + 2  # two steps in each of blocks 1 and 2, then stop
    assert nfe2 < nfe


def test_sdar_dynamic_threshold_matches_its_statement():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(64, 12, generator=g)
    conf[conf < 0.3] = -math.inf
    for k in (0, 1, 3, 20):
        got = DynamicThreshold(k, 0.7).select(conf)
        for r in range(conf.shape[0]):
            high = conf[r] > 0.7
            if int(high.sum()) >= k:
                want = high
            else:
                want = torch.zeros(12, dtype=torch.bool)
                want[torch.topk(conf[r], min(k, int(torch.isfinite(conf[r]).sum()))).indices] = True
            assert torch.equal(got[r], want), (k, r)


def test_sdar_plan_counts_come_from_the_block_length():
    plan = SDARPlan(3, 8)
    assert [plan.rule(i, None).k for i in range(3)] == [3, 3, 2]
    with pytest.raises(ValueError, match="block_length"):
        SDARPlan(3, 0)


def test_dream_origin_count_is_binomial():
    # 10^4 draws of the count of 24 candidates at p = 1 - s/t (step 0 of 4): a chi-square test
    n, rows = 24, 10_000
    p = dream_origin_probability(1, 4)
    conf = torch.zeros(rows, n + 3)
    conf[:, n:] = -math.inf  # not candidates: never chosen
    sel = RandomTransfer(p).select(conf, seed=1234, offset=7)
    assert not sel[:, n:].any()
    counts = torch.bincount(sel.sum(1), minlength=n + 1).double()
    pmf = torch.tensor([math.comb(n, c) * p ** c * (1 - p) ** (n - c) for c in range(n + 1)], dtype=torch.float64)
    exp = pmf * rows
    keep = exp >= 5  # pool the sparse tails
    obs_b = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    exp_b = torch.cat([exp[keep], exp[~keep].sum(0, keepdim=True)])
    chi2 = float(((obs_b - exp_b) ** 2 / exp_b).sum())
    dof = obs_b.numel() - 1
    assert chi2 < dof + 4.5 * math.sqrt(2 * dof), (chi2, dof)   # ~ p < 1e-3
    # each position is chosen with probability p, independently of its column
    per_col = sel[:, :n].double().mean(0)
    assert (per_col - p).abs().max() < 4.5 * math.sqrt(p * (1 - p) / rows)
    # keyed: the same key repeats, another offset differs
    assert torch.equal(sel, RandomTransfer(p).select(conf, seed=1234, offset=7))
    assert not torch.equal(sel, RandomTransfer(p).select(conf, seed=1234, offset=8))


def test_dream_origin_probabilities_and_plan():
    ts = torch.linspace(1, 1e-3, 5, dtype=torch.float32)
    assert dream_origin_probability(0, 4) == float(1 - ts[1] / ts[0])
    assert dream_origin_probability(3, 4) == 1.0
    plan = DreamOriginPlan(4)
    assert [plan.rule(i, None).p for i in range(4)] == [dream_origin_probability(i, 4) for i in range(4)]
    with pytest.raises(ValueError, match="'p'"):
        RandomTransfer(1.5)


def test_bad_arguments_name_themselves():
    model = TinyBlockLM()
    for kw, name in [(dict(cache="dual"), "cache"), (dict(sub_block=3), "sub_block"), (dict(cache="block"), "sub_block"),
                     (dict(stop_at_eos=True), "eos_id")]:
        with pytest.raises(ValueError, match=name):
            BlockDiffusionLoop(model, LLaDAPlan(2), Proposal(), mask_id=MASK, prompt_length=4, block_size=4, **kw)


def _real_model(naming="sdar", **kw):
    from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel
    from model_checkpoints import randomize
    extra = dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16, num_shared_experts=1,
                 first_k_dense_replace=1, n_group=4, topk_group=2) if naming == "llada2" else {}
    cfg = BlockDiffusionConfig(vocab_size=MASK + 1, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=12, block_size=4,
                               mask_token_id=MASK, naming=naming, **extra, **kw)
    m = randomize(BlockDiffusionModel(cfg), 5)
    with torch.no_grad():
        m.lm_head.weight[MASK] = 0  # as trained models: [MASK] is never proposed
    return m


@pytest.mark.parametrize("naming", ["sdar", "llada2"])
def test_block_diffusion_model_exact_cache_equals_uncached(naming):
    model = _real_model(naming)
    prompt, am = _prompts(3, 6)
    variants = [(LLaDAPlan(2), {}), (SDARPlan(2, 4, threshold=0.3), {}),
                (UntilDone(Threshold(0.3, strict=True)), dict(sub_block=2, shift_logits=True))]
    for plan, kw in variants:
        with torch.inference_mode():
            a = _decode(model, prompt, am, 13, plan, **kw)
            b = _decode(model, prompt, am, 13, plan, cache=None, **kw)
        assert not (a[0] == MASK).any()
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]


def test_llada21_editing_exact_cache_equals_uncached():
    from diffusion_kernels.decoding.editing import JointThreshold
    model = TinyBlockLM(block_size=4)
    prompt, am = _prompts(3, 6)
    rule = JointThreshold(threshold=0.5, edit_threshold=0.3, max_post_edit_steps=3)
    edits = []

    def count_edits(info):  # positions changed that were not masked before the step
        edits.append(int(info.transferred.sum()))

    a = _decode(model, prompt, am, 13, None, editing=rule, callback=count_edits)
    b = _decode(model, prompt, am, 13, None, editing=rule, cache=None)
    assert not (a[0] == MASK).any()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    masks = 13 * 3
    assert sum(edits) > masks  # some steps edited committed tokens, not only unmasked


def test_dream_origin_plan_in_generates_block_loop():
    from diffusion_kernels.decoding import BlockLoop, ModelForward
    from generate_models import MASK as LMASK, tiny_llada
    model = tiny_llada()
    prompt = torch.randint(0, LMASK, (4, 5), generator=torch.Generator().manual_seed(0))
    counts = []

    def run(seed):
        x = torch.full((4, 21), LMASK, dtype=torch.long)
        x[:, :5] = prompt
        order = torch.full_like(x, -1)
        loop = BlockLoop(ModelForward(model, x, mask_id=LMASK), DreamOriginPlan(4), Proposal(),
                         mask_id=LMASK, prompt_length=5, block_length=8, seed=seed,
                         callback=lambda info: counts.append(info.transferred.sum(1).tolist()))
        with torch.inference_mode():
            nfe = loop.run(x, order)
        return x, nfe

    x, nfe = run(7)
    assert nfe == 8 and not (x == LMASK).any()
    assert len({c for step in counts for c in step}) > 2  # random counts, not a schedule
    assert torch.equal(run(7)[0], x) and not torch.equal(run(8)[0], x)


def test_bad_run_arguments_leave_x_unchanged():
    model = TinyBlockLM()
    loop = BlockDiffusionLoop(model, LLaDAPlan(2), Proposal(), mask_id=MASK, prompt_length=4, block_size=4,
                              attention_mask=torch.ones(2, 9, dtype=torch.bool))
    x = torch.full((2, 8), MASK)
    before = x.clone()
    for args, name in [((x.float(), torch.full_like(x, -1)), "'x'"), ((x, torch.full((2, 7), -1)), "'order'"),
                       ((x, torch.full_like(x, -1)), "'attention_mask'")]:
        with pytest.raises(ValueError, match=name):
            loop.run(*args)
    off_grid = BlockDiffusionLoop(model, LLaDAPlan(2), Proposal(), mask_id=MASK, prompt_length=4, block_size=6)
    with pytest.raises(ValueError, match="'block_size'"):
        off_grid.run(x, torch.full_like(x, -1))
    assert torch.equal(x, before) and not model.calls


def test_v2_first_token_of_a_block_is_the_argmax_of_the_prefix():
    model = TinyBlockLM(block_size=4)
    prompt, am = _prompts(2, 8, pad=False)
    proposal = Proposal(temperature=1.0, suppress_ids=(MASK,))
    plan = UntilDone(Threshold(0.5, strict=True))
    x, order, _ = _decode(model, prompt, None, 12, plan, proposal=proposal, seed=2, shift_logits=True, sub_block=2)
    ref = _decode(model, prompt, None, 12, plan, proposal=proposal, seed=2, shift_logits=True, sub_block=2, cache=None)
    assert torch.equal(x, ref[0]) and torch.equal(order, ref[1])
    for bs in (8, 12, 16):
        assert torch.equal(x[:, bs], model(x[:, :bs])[:, -1].argmax(-1))
        assert (order[:, bs, None] < order[:, bs + 1:bs + 4]).all()  # committed first in its block


def test_block_cache_of_the_package_model_is_exact_for_one_layer():
    # BlockDiffusionModel with one layer: a sub-block step over v2's block cache must read the rest
    # of its block from the cache (the block-causal rule shows it), so it decodes as the exact cache.
    from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel
    from model_checkpoints import randomize

    model = randomize(BlockDiffusionModel(BlockDiffusionConfig(
        vocab_size=MASK + 1, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, block_size=8, mask_token_id=MASK)), seed=3)
    lengths = []
    model.register_forward_pre_hook(lambda _, args: lengths.append(args[0].shape[1]))
    prompt, am = _prompts(2, 8)
    plan, proposal = UntilDone(Threshold(0.5, strict=True)), Proposal(suppress_ids=(MASK,))
    with torch.no_grad():
        for shift in (False, True):
            exact = _decode(model, prompt, am, 24, plan, proposal=proposal, sub_block=4, shift_logits=shift)
            lengths.clear()
            cached = _decode(model, prompt, am, 24, plan, proposal=proposal, cache="block", sub_block=4,
                             shift_logits=shift)
            assert torch.equal(exact[0], cached[0]) and torch.equal(exact[1], cached[1])
            assert 4 in lengths  # some steps ran a sub-block alone over the block's cached K/V
