import pytest
import torch

from diffusion_kernels import generate
from diffusion_kernels.schedules import llada_num_transfer_tokens

from generate_models import HFLike, dream_generate, llada_generate, tiny_llada

MASK = 37


def _prompt(B, Lp, seed=1):
    return torch.randint(0, MASK, (B, Lp), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("gen_length,block_length,steps", [(16, 4, 8), (12, 12, 5), (15, 5, 9), (8, 8, 8)])
@pytest.mark.parametrize("B", [1, 3])
def test_matches_llada_loop(gen_length, block_length, steps, B):
    model = tiny_llada(seed=gen_length + steps)
    prompt = _prompt(B, 6, seed=steps)
    want = llada_generate(model, prompt, steps, gen_length, block_length, MASK)
    got = generate(model, prompt, gen_length, block_length, steps, mask_id=MASK, progress=False)
    assert torch.equal(got, want)
    assert len(set(want.flatten().tolist())) > 2  # the model really varies its predictions


def test_matches_llada_loop_cfg_and_hf_style_model():
    model = tiny_llada(seed=5)
    prompt = _prompt(2, 5)
    want = llada_generate(model, prompt, 8, 16, 8, MASK, cfg_scale=0.7)
    got = generate(HFLike(model), prompt, 16, 8, 8, mask_id=MASK, cfg_scale=0.7, progress=False)
    assert torch.equal(got, want)


def test_schedule_and_order():
    model = tiny_llada(seed=2)
    out = generate(model, _prompt(3, 4), 15, 5, 6, mask_id=MASK, progress=False, return_dict=True)
    assert out.nfe == 6 and not (out.sequences == MASK).any()
    per_step = torch.stack([(out.order == s).sum(1) for s in range(6)], 1)  # [B, steps]
    want = llada_num_transfer_tokens(torch.full((3,), 5), 2).repeat(1, 3)
    assert torch.equal(per_step, want)
    # blocks are decoded left to right: every token of block b is committed before block b+1 starts
    blocks = out.order.view(3, 3, 5)
    assert (blocks[:, :-1].amax(-1) < blocks[:, 1:].amin(-1)).all()


def test_left_padded_batch_equals_rows_alone():
    model = tiny_llada(seed=3)
    lengths = [7, 3, 5]
    prompts = [_prompt(1, n, seed=n)[0] for n in lengths]
    Lp = max(lengths)
    batch = torch.zeros(3, Lp, dtype=torch.long)
    mask = torch.zeros(3, Lp, dtype=torch.long)
    for i, p in enumerate(prompts):
        batch[i, Lp - len(p):] = p
        mask[i, Lp - len(p):] = 1
    for cache in (None, "prefix", "dual"):
        got = generate(model, batch, 12, 4, 6, mask_id=MASK, attention_mask=mask, cache=cache, progress=False)
        for i, p in enumerate(prompts):
            alone = generate(model, p[None], 12, 4, 6, mask_id=MASK, cache=cache, progress=False)
            assert torch.equal(got[i], alone[0]), (cache, i)
    want = llada_generate(model, batch, 6, 12, 4, MASK, attention_mask=mask)
    assert torch.equal(generate(model, batch, 12, 4, 6, mask_id=MASK, attention_mask=mask, progress=False), want)


def test_cached_forward_equals_full_forward_on_same_tokens():
    # Mechanics of the caches: after a full forward wrote every K/V, running a slice against the
    # cache gives the full forward's logits on that slice (up to float32 rounding).
    model = tiny_llada(seed=4)
    x = _prompt(2, 20)
    with torch.no_grad():
        kv = model.init_cache(2, 20)
        full = model(x, kv_cache=kv, start=0)
        assert torch.allclose(full, model(x), atol=1e-5, rtol=1e-5)
        for q0, q1 in ((8, 20), (8, 12)):  # prefix mode, dual mode
            part = model(x[:, q0:q1], kv_cache=kv, start=q0)
            torch.testing.assert_close(part, full[:, q0:q1], atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cache_exact_with_one_step_per_block(cache):
    # The block's first step is a full forward, so with one step per block the caches are exact.
    model = tiny_llada(seed=6)
    prompt = _prompt(2, 5)
    ref = generate(model, prompt, 12, 3, 4, mask_id=MASK, progress=False)
    assert torch.equal(generate(model, prompt, 12, 3, 4, mask_id=MASK, cache=cache, progress=False), ref)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("kw", [dict(cfg_scale=0.7), dict(shift_logits=True), dict(cfg_scale=0.5, shift_logits=True)],
                         ids=["cfg", "shift", "cfg+shift"])
def test_cfg_and_shift_with_cache_exact_with_one_step_per_block(cache, kw):
    model = tiny_llada(seed=9)
    prompt = _prompt(2, 5, seed=3)
    ref = generate(model, prompt, 12, 3, 4, mask_id=MASK, progress=False, **kw)
    assert torch.equal(generate(model, prompt, 12, 3, 4, mask_id=MASK, cache=cache, progress=False, **kw), ref)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("kw", [dict(shift_logits=True), dict(cfg_scale=0.5, shift_logits=True)],
                         ids=["shift", "cfg+shift"])
def test_cfg_and_shift_with_cache_on_a_model_without_token_mixing(cache, kw):
    """With the attention output zeroed, position i's logits depend on token i alone, so a cache
    changes nothing: any misplaced query range, shift offset or CFG half shows up as a different
    result, at every step of every block. (Shifted, so that a position's proposal depends on its
    neighbour's token: unshifted, every masked position would propose the same.)"""
    model = tiny_llada(seed=10)
    with torch.no_grad():
        for block in model.transformer["blocks"]:
            block.attn_out.weight.zero_()
    prompt = _prompt(2, 5, seed=4)
    ref = generate(model, prompt, 12, 4, 12, mask_id=MASK, progress=False, return_dict=True, **kw)
    got = generate(model, prompt, 12, 4, 12, mask_id=MASK, cache=cache, progress=False, return_dict=True, **kw)
    assert torch.equal(got.sequences, ref.sequences) and torch.equal(got.order, ref.order)
    assert len(set(ref.sequences.flatten().tolist())) > 2


def test_threshold_limits():
    model = tiny_llada(seed=7)
    prompt = _prompt(2, 5)
    one = generate(model, prompt, 12, 4, 12, mask_id=MASK, threshold=1.5, progress=False, return_dict=True)
    assert one.nfe == 12  # nothing passes: the best token only, one per step
    assert torch.equal(one.sequences, generate(model, prompt, 12, 4, 12, mask_id=MASK, progress=False))
    allin = generate(model, prompt, 12, 4, 12, mask_id=MASK, threshold=0.0, progress=False, return_dict=True)
    assert allin.nfe == 3  # everything passes: one step per block
    for cache in (None, "dual"):
        out = generate(model, prompt, 12, 4, 1, mask_id=MASK, threshold=0.3, cache=cache, progress=False,
                       return_dict=True)
        assert not (out.sequences == MASK).any() and 3 <= out.nfe <= 12
        out = generate(model, prompt, 12, 4, 1, mask_id=MASK, factor=1.0, cache=cache, progress=False,
                       return_dict=True)
        assert not (out.sequences == MASK).any() and 3 <= out.nfe <= 12


def test_random_remasking_and_sampling_are_seeded():
    model = tiny_llada(seed=8)
    prompt = _prompt(2, 5)
    kw = dict(mask_id=MASK, remasking="random", temperature=0.8, top_k=5, progress=False)
    a = generate(model, prompt, 12, 4, 6, seed=3, **kw)
    assert torch.equal(a, generate(model, prompt, 12, 4, 6, seed=3, **kw))
    assert not torch.equal(a, generate(model, prompt, 12, 4, 6, seed=4, **kw))
    assert not (a == MASK).any()


def test_callback_streams_every_commit_and_eos_options():
    model = tiny_llada(seed=9)
    prompt = _prompt(2, 5)
    seen = []
    out = generate(model, prompt, 12, 4, 6, mask_id=MASK, progress=False, return_dict=True,
                   callback=lambda s: seen.append((s.step, s.transferred.clone(), s.x.clone())))
    assert [s for s, _, _ in seen] == list(range(6))
    committed = torch.stack([t for _, t, _ in seen]).sum(0)
    assert torch.equal(committed[:, 5:], torch.ones(2, 12, dtype=torch.long))
    assert torch.equal(seen[-1][2][:, 5:], out.sequences)
    # suppress_eos: the most frequent token can never be proposed
    eos = int(out.sequences.flatten().mode().values)
    assert not (generate(model, prompt, 12, 4, 6, mask_id=MASK, eos_id=eos, suppress_eos=True,
                         progress=False) == eos).any()


def test_confidence_eos_eot_inf_matches_llada_loop():
    model = tiny_llada(seed=11)
    prompt = _prompt(3, 5, seed=4)
    plain = generate(model, prompt, 12, 4, 6, mask_id=MASK, progress=False)
    eos, eot = torch.bincount(plain.flatten()).topk(2).indices.tolist()  # ids the model proposes often
    want = llada_generate(model, prompt, 6, 12, 4, MASK, eos_eot=(eos, eot))
    out = generate(model, prompt, 12, 4, 6, mask_id=MASK, eos_id=eos, eot_id=eot, confidence_eos_eot_inf=True,
                   progress=False, return_dict=True)
    assert torch.equal(out.sequences, want)
    assert not torch.equal(want, plain)  # the option changed the decoding order, hence the result
    # At T > 0 (only EoT renormalised, LLaDA's code) it runs and keeps the proposal's support.
    hot = generate(model, prompt, 12, 4, 6, mask_id=MASK, eos_id=eos, eot_id=eot, confidence_eos_eot_inf=True,
                   temperature=0.8, seed=3, progress=False)
    assert hot.shape == plain.shape and (hot != MASK).all()


@pytest.mark.parametrize("alg,confidence", [("maskgit_plus", "prob"), ("topk_margin", "margin"),
                                            ("entropy", "neg_entropy")])
@pytest.mark.parametrize("steps", [5, 12])
def test_dream_schedule_matches_dream_loop(alg, confidence, steps):
    model = tiny_llada(seed=steps + len(alg))
    prompt = _prompt(2, 6, seed=steps)
    want = dream_generate(model, prompt, steps, 12, MASK, alg=alg)
    got = generate(model, prompt, 12, 12, steps, mask_id=MASK, schedule="dream", confidence=confidence,
                   confidence_from="sampling", progress=False)
    assert torch.equal(got, want)


def test_dream_alg_temp_draws_positions_with_the_seed():
    model = tiny_llada(seed=2)
    prompt = _prompt(2, 6, seed=2)
    counts = []
    kw = dict(mask_id=MASK, schedule="dream", confidence="neg_entropy", alg_temp=0.5, progress=False,
              return_dict=True)
    a = generate(model, prompt, 12, 12, 6, seed=1, callback=lambda info: counts.append(
        info.transferred.sum(1).tolist()), **kw)
    assert torch.equal(a.sequences, generate(model, prompt, 12, 12, 6, seed=1, **kw).sequences)
    assert not torch.equal(a.order, generate(model, prompt, 12, 12, 6, seed=2, **kw).order)
    left, want = 12, []
    for i in range(6):  # Dream's counts from the masks left, both rows alike
        ts = torch.linspace(1, 1e-3, 7)
        n = int(torch.tensor(float(left)) * (1 - ts[i + 1] / ts[i])) if i < 5 else left
        want.append([n, n])
        left -= n
    assert counts == want
    assert (a.sequences != MASK).all()


def test_stop_at_eos_stops_after_the_block():
    model = tiny_llada(seed=10)
    prompt = _prompt(1, 5)
    ref = generate(model, prompt, 12, 3, 4, mask_id=MASK, progress=False, return_dict=True)
    eos = int(ref.sequences[0, 1])  # committed in the first block
    out = generate(model, prompt, 12, 3, 4, mask_id=MASK, eos_id=eos, stop_at_eos=True, progress=False,
                   return_dict=True)
    assert out.nfe == 1 and torch.equal(out.sequences[0, :3], ref.sequences[0, :3])
    assert (out.sequences[0, 3:] == eos).all()


@pytest.mark.parametrize("kw,name", [
    (dict(remasking="lowest"), "remasking"), (dict(cache="full"), "cache"), (dict(steps=5), "steps"),
    (dict(gen_length=10), "gen_length"), (dict(threshold=0.9, factor=1.0), "threshold"),
    (dict(stop_at_eos=True), "eos_id"),
    (dict(confidence_eos_eot_inf=True, eos_id=1), "eot_id"),
    (dict(schedule="cosine"), "schedule"), (dict(alg_temp=-1.0), "alg_temp"),
    (dict(alg_temp=0.5, threshold=0.9), "alg_temp"),
    (dict(confidence_eos_eot_inf=True, eos_id=1, eot_id=2, confidence="margin"), "confidence='prob'"),
])
def test_bad_arguments_name_the_argument(kw, name):
    args = dict(gen_length=12, block_length=4, steps=6)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        generate(tiny_llada(), _prompt(1, 3), mask_id=MASK, progress=False, **args)


def test_cache_needs_a_cache_capable_model():
    with pytest.raises(ValueError, match="init_cache"):
        generate(HFLike(tiny_llada()), _prompt(1, 3), 8, 4, 4, mask_id=MASK, cache="dual", progress=False)


class _Broken(torch.nn.Module):
    """tiny_llada with its logits overwritten by ``value`` in ``rows`` (all rows by default) at the
    answer's positions; fails loudly after ``limit`` calls so a hang becomes a test failure."""

    def __init__(self, value, rows=None, limit=60):
        super().__init__()
        self.inner, self.value, self.rows, self.calls, self.limit = tiny_llada(seed=1), value, rows, 0, limit

    def forward(self, x, attention_mask=None):
        self.calls += 1
        assert self.calls <= self.limit, "generate kept calling the model: it would never return"
        out = self.inner(x, attention_mask=attention_mask)
        rows = slice(None) if self.rows is None else self.rows
        if isinstance(self.value, int):  # a token id the model proposes everywhere
            out[rows, 4:, self.value] = 1e4
        else:
            out[rows, 4:] = self.value
        return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("kw", [dict(threshold=0.9), dict(factor=1.0), dict(), dict(schedule="dream"),
                                dict(alg_temp=0.5, confidence="neg_entropy"), dict(cache=None, cfg_scale=0.5)],
                         ids=["threshold", "factor", "llada", "dream", "alg_temp", "cfg"])
def test_non_finite_logits_raise_instead_of_hanging_or_returning_masks(value, kw):
    model = _Broken(value)
    with pytest.raises(RuntimeError, match="NaN or \\+inf"):
        generate(model, _prompt(2, 4), 8, 4, 4, mask_id=MASK, progress=False, **kw)
    assert model.calls <= 2  # stops in the first block


@pytest.mark.parametrize("kw", [dict(threshold=0.9), dict()], ids=["threshold", "llada"])
def test_one_broken_row_is_named(kw):
    with pytest.raises(RuntimeError, match=r"row\(s\) \[1\]"):
        generate(_Broken(float("nan"), rows=1), _prompt(3, 4), 8, 4, 4, mask_id=MASK, progress=False, **kw)


@pytest.mark.parametrize("kw", [dict(threshold=0.9), dict()], ids=["threshold", "llada"])
def test_a_model_proposing_mask_raises(kw):
    # Committing [MASK] leaves the position masked: an adaptive rule would loop forever, LLaDA's
    # schedule would re-commit the same positions and leave the others to no step.
    with pytest.raises(RuntimeError, match="proposes mask_id"):
        generate(_Broken(MASK), _prompt(1, 4), 8, 4, 4, mask_id=MASK, progress=False, **kw)


@pytest.mark.parametrize("cfg", [float("nan"), float("inf"), -0.5, "1"])
def test_cfg_scale_must_be_finite_and_non_negative(cfg):
    with pytest.raises((ValueError, TypeError), match="cfg_scale"):
        generate(tiny_llada(), _prompt(1, 3), 8, 4, 4, mask_id=MASK, cfg_scale=cfg, progress=False)


@pytest.mark.parametrize("mask", [torch.ones(2, 4), torch.ones(1, 3), torch.ones(2, 3, 1), torch.ones(2, 11)])
def test_attention_mask_of_the_wrong_shape_is_an_error(mask):
    with pytest.raises(ValueError, match="'attention_mask'"):
        generate(tiny_llada(), _prompt(2, 3), 8, 4, 4, mask_id=MASK, attention_mask=mask, progress=False)


@pytest.mark.parametrize("kw,name", [
    (dict(gen_length=-4), "'gen_length'"), (dict(gen_length=0), "'gen_length'"), (dict(gen_length=8.0), "'gen_length'"),
    (dict(block_length=0), "'block_length'"), (dict(block_length=-2), "'block_length'"),
    (dict(block_length=3), "'gen_length'"), (dict(steps=0), "'steps'"), (dict(steps=-6), "'steps'"),
    (dict(steps=0, threshold=0.9), "'steps'"), (dict(steps=3), "'steps'"),
    (dict(schedule_eps=0.0), "'schedule_eps'"), (dict(schedule_eps=1.0), "'schedule_eps'"),
    (dict(schedule_eps=float("nan"), schedule="dream"), "'schedule_eps'"),
    (dict(threshold=float("nan")), "'threshold'"), (dict(factor=-1.0), "'factor'"),
    (dict(confidence="max"), "'confidence'"), (dict(confidence_from="probs"), "'confidence_from'"),
    (dict(mask_id=2.5), "'mask_id'"), (dict(seed=1.5), "'seed'"), (dict(eos_id="2"), "'eos_id'"),
    (dict(mask_id=38), "'mask_id'"), (dict(mask_id=-1), "'mask_id'"), (dict(eos_id=40, suppress_eos=True), "'eos_id'"),
    (dict(temperature=-0.5), "'temperature'"), (dict(temperature=float("nan")), "'temperature'"),
    (dict(top_p=1.5), "'top_p'"), (dict(top_k=-1), "'top_k'"), (dict(callback=3), "'callback'"),
    (dict(attention_mask=torch.full((1, 3), 0.5)), "'attention_mask'"), (dict(attention_mask=[[1, 1, 1]]), "'attention_mask'"),
])
def test_bad_values_name_the_argument(kw, name):
    args = dict(gen_length=8, block_length=4, steps=4, mask_id=MASK)
    args.update(kw)
    with pytest.raises((ValueError, TypeError), match=name):
        generate(tiny_llada(), _prompt(1, 3), progress=False, **args)


@pytest.mark.parametrize("prompt", [torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool), torch.zeros(3, dtype=torch.long),
                                    torch.tensor([[1, 38, 2]]), torch.tensor([[1, -1, 2]]),
                                    torch.zeros(1, 3, dtype=torch.long, device="meta")])
def test_prompt_must_be_a_2d_integer_tensor(prompt):
    with pytest.raises((ValueError, TypeError), match="'prompt_ids'"):
        generate(tiny_llada(), prompt, 8, 4, 4, mask_id=MASK, progress=False)


@pytest.mark.parametrize("kw", [dict(), dict(threshold=0.9), dict(cache="dual")], ids=["llada", "threshold", "dual"])
def test_empty_batch_and_empty_prompt(kw):
    model = tiny_llada(seed=2)
    assert generate(model, _prompt(0, 3), 8, 4, 4, mask_id=MASK, progress=False, **kw).shape == (0, 8)
    out = generate(model, _prompt(2, 0), 8, 4, 4, mask_id=MASK, progress=False, **kw)
    assert out.shape == (2, 8) and not (out == MASK).any()


def test_eos_id_beyond_the_vocabulary_of_a_model_without_config_is_named():
    # HFLike hides the config, so only the logits tell the vocabulary.
    model = HFLike(tiny_llada(seed=2))
    for kw in (dict(eos_id=10**6, suppress_eos=True), dict(eos_id=3, eot_id=10**6, confidence_eos_eot_inf=True)):
        with pytest.raises(ValueError, match="eos_id"):
            generate(model, _prompt(1, 5), 4, 4, 2, mask_id=MASK, progress=False, **kw)


def test_any_adaptive_rule_of_the_decoding_core():
    from diffusion_kernels.decoding import DInferThreshold, Factor, Threshold, TopK

    model, prompt = tiny_llada(seed=7), _prompt(2, 5)
    run = lambda **kw: generate(model, prompt, 12, 4, 1, mask_id=MASK, progress=False, return_dict=True, **kw)  # noqa: E731
    for plain, rule in ((dict(threshold=0.3), Threshold(0.3)), (dict(factor=1.0), Factor(1.0))):
        a, b = run(**plain), run(rule=rule)
        assert torch.equal(a.sequences, b.sequences) and torch.equal(a.order, b.order) and a.nfe == b.nfe
    # Fast-dLLM's code variant commits at least as much per step as the paper's rule
    assert run(rule=Factor(1.0, variant="fastdllm_code")).nfe <= run(factor=1.0).nfe
    # dInfer: min(rowmax - eps, tau) far below every confidence admits the whole block in one step
    out = run(rule=DInferThreshold(1.5, eps=1e9))
    assert out.nfe == 3 and not (out.sequences == MASK).any()
    with pytest.raises(ValueError, match="'rule'"):
        run(rule=TopK(2))
    with pytest.raises(TypeError, match="'rule'"):
        run(rule="threshold")
    with pytest.raises(ValueError, match="'rule'"):
        run(rule=Threshold(0.3), threshold=0.3)
