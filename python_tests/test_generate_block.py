"""generate() on block-diffusion models: cache='exact'/'block', sub-blocks, token editing and
Dream's ``origin`` reach BlockDiffusionLoop, and equal the uncached recompute token for token."""
import pytest
import torch

from block_models import MASK, TinyBlockLM, one_thread
from test_block_decoding import _decode, _prompts, _real_model
from diffusion_kernels import generate
from diffusion_kernels.decoding import JointThreshold, LLaDAPlan, Proposal, SDARPlan, Threshold, UntilDone

_one_thread = pytest.fixture(autouse=True)(one_thread)


def _generate(model, prompt, am, gen, **kw):
    kw.setdefault("block_length", model.config.block_size)
    return generate(model, prompt, gen, mask_id=MASK, attention_mask=am, progress=False, return_dict=True, **kw)


@pytest.mark.parametrize("naming", ["sdar", "llada2"])
def test_exact_cache_equals_the_uncached_loop(naming):
    model = _real_model(naming)
    prompt, am = _prompts(3, 6)
    blocks = 4  # positions 6..18 on the grid of 4: blocks [4,8), [8,12), [12,16), [16,20)
    out = _generate(model, prompt, am, 13, steps=2 * blocks, cache="exact")
    with torch.inference_mode():
        x, order, nfe = _decode(model, prompt, am, 13, LLaDAPlan(2), cache=None)
    assert torch.equal(out.sequences, x[:, 6:]) and torch.equal(out.order, order[:, 6:]) and out.nfe == nfe


def test_sdar_schedule_threshold_and_sub_blocks_through_generate():
    model = _real_model("sdar")
    prompt, am = _prompts(2, 8)
    out = _generate(model, prompt, am, 8, steps=4, cache="exact", schedule="sdar", threshold=0.3)
    with torch.inference_mode():
        x, _, nfe = _decode(model, prompt, am, 8, SDARPlan(2, 4, threshold=0.3), cache=None)
    assert torch.equal(out.sequences, x[:, 8:]) and out.nfe == nfe
    out = _generate(model, prompt, am, 8, cache="exact", threshold=0.3, sub_block=2)
    with torch.inference_mode():
        x, _, _ = _decode(model, prompt, am, 8, UntilDone(Threshold(0.3)), cache=None, sub_block=2)
    assert torch.equal(out.sequences, x[:, 8:])


def test_editing_through_generate_equals_the_loop():
    model = TinyBlockLM(block_size=4)
    prompt, am = _prompts(2, 6)
    rule = JointThreshold(threshold=0.5, edit_threshold=0.3, max_post_edit_steps=2)
    out = _generate(model, prompt, am, 10, cache="exact", editing=rule)
    with torch.inference_mode():
        x, order, nfe = _decode(model, prompt, am, 10, None, editing=rule, cache=None)
    assert torch.equal(out.sequences, x[:, 6:]) and out.nfe == nfe
    assert not (out.sequences == MASK).any()


def test_dream_origin_is_deterministic_per_seed_and_completes():
    model = TinyBlockLM(block_size=4)
    prompt, am = _prompts(2, 4)
    a = _generate(model, prompt, am, 8, steps=6, cache="exact", remasking="origin", temperature=1.0, seed=3)
    b = _generate(model, prompt, am, 8, steps=6, cache="exact", remasking="origin", temperature=1.0, seed=3)
    assert torch.equal(a.sequences, b.sequences) and not (a.sequences == MASK).any()


def test_block_options_are_refused_where_they_do_not_apply():
    from generate_models import MASK as LMASK, tiny_llada
    llada, prompt = tiny_llada(), torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="block-diffusion model"):
        generate(llada, prompt, 8, 4, 4, mask_id=LMASK, cache="exact", progress=False)
    with pytest.raises(ValueError, match="'editing' and 'sub_block'"):
        generate(llada, prompt, 8, 4, 4, mask_id=LMASK, sub_block=2, progress=False)
    model = TinyBlockLM(block_size=4)
    with pytest.raises(ValueError, match="cfg_scale"):
        generate(model, prompt, 8, 4, 4, mask_id=MASK, cache="exact", cfg_scale=1.0, progress=False)
