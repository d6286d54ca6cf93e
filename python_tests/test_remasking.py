"""Remasking of committed tokens (ReMDM, RemaskLowConfidence) and generate's trajectories."""
import doctest

import pytest
import torch

from diffusion_kernels import generate
from diffusion_kernels.decoding import remasking, token_log_prob
from diffusion_kernels.decoding.remasking import ReMDM, RemaskLowConfidence
from diffusion_kernels.schedules import llada_num_transfer_tokens

from generate_models import tiny_llada

MASK = 37


def _prompt(B, Lp, seed=1):
    return torch.randint(0, MASK, (B, Lp), generator=torch.Generator().manual_seed(seed))


def _run(model, prompt, gen=12, block=4, steps=6, **kw):
    return generate(model, prompt, gen, block, steps, mask_id=MASK, progress=False, return_dict=True, **kw)


@pytest.mark.parametrize("remask", [ReMDM("cap", eta=0.0), ReMDM("rescale", eta=0.0), RemaskLowConfidence(0.0)],
                         ids=["cap", "rescale", "low_confidence"])
@pytest.mark.parametrize("kw", [dict(), dict(temperature=0.8, seed=3, cache="dual"), dict(schedule="dream")],
                         ids=["greedy", "sampled+dual", "dream"])
def test_zero_remasking_probability_equals_plain_generate(remask, kw):
    model, prompt = tiny_llada(seed=3), _prompt(2, 5)
    plain = _run(model, prompt, **kw)
    got = _run(model, prompt, remask_committed=remask, **kw)
    assert torch.equal(got.sequences, plain.sequences) and torch.equal(got.order, plain.order)


def test_fixed_seed_is_deterministic_and_the_seed_matters():
    model, prompt = tiny_llada(seed=4), _prompt(2, 5)

    def run(seed):
        seen = []
        out = _run(model, prompt, gen=12, block=12, steps=8, temperature=0.5, seed=seed,
                   remask_committed=ReMDM("cap", eta=0.5), callback=lambda s: seen.append(s.remasked.clone()))
        return out, torch.stack(seen)

    a, ra = run(3)
    b, rb = run(3)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.order, b.order) and torch.equal(ra, rb)
    assert ra.any()  # it did remask
    _, rc = run(4)
    assert not torch.equal(ra, rc)


@pytest.mark.parametrize("remask", [ReMDM("cap", eta=0.6), ReMDM("rescale", eta=0.8), ReMDM("conf"),
                                    RemaskLowConfidence(0.9), RemaskLowConfidence(0.9, max_per_step=1)],
                         ids=["cap", "rescale", "conf", "low_confidence", "max_per_step"])
def test_committed_count_keeps_the_schedule(remask):
    model, prompt = tiny_llada(seed=5), _prompt(3, 4)
    counts, remasked = [], []

    def cb(info):
        blk = info.x[:, 4 + 6 * info.block: 4 + 6 * (info.block + 1)]
        counts.append((blk != MASK).sum(1))
        remasked.append(info.remasked.sum(1))

    out = _run(model, prompt, gen=12, block=6, steps=10, remask_committed=remask, temperature=0.7, seed=1,
               callback=cb)
    want = llada_num_transfer_tokens(torch.full((3,), 6), 5).cumsum(1)  # committed after each step of a block
    assert torch.equal(torch.stack(counts, 1), want.repeat(1, 2))
    r = torch.stack(remasked, 1)
    assert r.sum() > 0
    if getattr(remask, "max_per_step", None) == 1:
        assert r.max() == 1
    assert r[:, 4].sum() == 0 and r[:, 9].sum() == 0  # a block's last step never remasks
    assert not (out.sequences == MASK).any() and (out.order >= 0).all()


def test_loop_phases():
    model, prompt = tiny_llada(seed=6), _prompt(2, 4)
    counts, remasked = [], []
    remask = ReMDM("loop", eta=0.5, t_on=0.6, t_off=0.2, alpha_on=0.5)
    _run(model, prompt, gen=8, block=8, steps=10, remask_committed=remask, seed=2,
         callback=lambda s: (counts.append((s.x[:, 4:] != MASK).sum(1)), remasked.append(s.remasked.sum(1))))
    counts, r = torch.stack(counts, 1), torch.stack(remasked, 1)
    # steps start at t = 1, .9, ..., .1: decode to 4 = 0.5 * 8 by t_on (linearly), hold it while
    # t_off < t <= t_on (steps 4-7), then to 8 linearly over t in [t_off, 0]
    assert counts[0].tolist() == [1, 2, 3, 4, 4, 4, 4, 4, 6, 8]
    assert r[:, :4].sum() == 0 and r[:, 4:8].sum() > 0 and r[:, 8:].sum() == 0


class _Planted(torch.nn.Module):
    """Vocabulary 0..37 (37 = [MASK]); at the answer's first position the model is sure of token
    1 while three or more answer positions are masked, and of token 2 once fewer are; the other
    positions prefer token 3, less surely. So the first step commits the wrong 1 there."""

    def forward(self, x, attention_mask=None):
        B, L = x.shape
        logits = torch.zeros(B, L, MASK + 1)
        logits[..., MASK] = -30
        logits[:, :, 3] = 2.0
        early = ((x[:, -4:] == MASK).sum(1) >= 3)[:, None]
        logits[:, -4, 1] = torch.where(early, 12.0, -8.0)[:, 0]
        logits[:, -4, 2] = torch.where(early, 0.0, 12.0)[:, 0]
        logits[:, -4, 3] = 0.0
        return logits


@pytest.mark.parametrize("remask", [None, RemaskLowConfidence(0.5), ReMDM("cap", eta=1.0)],
                         ids=["off", "low_confidence", "remdm_cap"])
def test_a_planted_wrong_token_is_fixed(remask):
    for seed in (0, 1):
        out = _run(_Planted(), _prompt(2, 3), gen=4, block=4, steps=4, remask_committed=remask, seed=seed)
        assert (out.order[:, 0] == 0).all() if remask is None else True
        assert (out.sequences[:, 0] == (1 if remask is None else 2)).all()
        assert (out.sequences[:, 1:] == 3).all()


@pytest.mark.parametrize("kw", [dict(), dict(temperature=0.7, seed=5), dict(temperature=1.3, seed=2, cache="dual"),
                                dict(eos_id=4, suppress_eos=True, temperature=0.9, seed=1)],
                         ids=["greedy", "sampled", "sampled+dual", "suppressed"])
def test_trajectory_rebuilds_states_and_log_probs(kw):
    model, prompt = tiny_llada(seed=7), _prompt(2, 5)
    logits_seen, states = [], []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def init_cache(self, *a):
            return model.init_cache(*a)

        def forward(self, x, attention_mask=None, **cache):
            out = model(x, attention_mask=attention_mask, **cache)
            out[..., MASK] = -30.0  # as trained models: never sampled, so every step commits a token
            logits_seen.append((cache.get("start", 0), out.clone()))
            return out

    start = torch.cat([prompt, torch.full((2, 12), MASK)], 1)
    rec = Recording()
    out = _run(rec, prompt, return_trajectory=True,
               callback=lambda s: states.append(s.x.clone()), **kw)
    tr = out.trajectory
    assert tr.num_steps == out.nfe == 6 and tr.prompt_length == 5
    assert torch.equal(tr.sequences[:, 5:], out.sequences) and torch.equal(tr.step[:, 5:], out.order)
    before = [start] + states[:-1]
    for s in range(6):
        assert torch.equal(tr.state_before(s), before[s])
    # the log-probability of each committed token under the logits of its step, the plain way
    T = kw.get("temperature", 0) or 1.0
    want = torch.zeros(2, 17)
    for s, (lo, logits) in enumerate(logits_seen):  # a cached step runs from position lo
        z = logits.double() / T
        if "eos_id" in kw:
            z[..., kw["eos_id"]] = -float("inf")
        hi = lo + logits.shape[1]
        lp = z.log_softmax(-1).gather(-1, tr.sequences[:, lo:hi, None])[..., 0]
        want[:, lo:hi] = torch.where(tr.step[:, lo:hi] == s, lp.float(), want[:, lo:hi])
    torch.testing.assert_close(tr.log_prob, want, atol=2e-5, rtol=1e-5)
    assert (tr.log_prob[:, :5] == 0).all() and (tr.log_prob[:, 5:] < 0).all()
    if "cache" not in kw and "eos_id" not in kw:  # the RL recomputation sees the same states
        from diffusion_kernels.rl import trajectory_log_probs
        with torch.no_grad():
            again = trajectory_log_probs(rec, tr, 1, temperature=T)
        torch.testing.assert_close(again, tr.log_prob, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("kw,error,name", [
    (dict(remask_committed=ReMDM(), return_trajectory=True), ValueError, "remask_committed"),
    (dict(remask_committed=ReMDM(), threshold=0.9), ValueError, "remask_committed"),
    (dict(remask_committed="cap"), TypeError, "remask_committed"),
    (dict(remask_committed=ReMDM("loop"), schedule="dream"), ValueError, "schedule='llada'"),
    (dict(return_trajectory=True, stop_at_eos=True, eos_id=3), ValueError, "stop_at_eos"),
    (dict(return_trajectory=1), TypeError, "return_trajectory"),
])
def test_bad_combinations_name_the_argument(kw, error, name):
    with pytest.raises(error, match=name):
        generate(tiny_llada(), _prompt(1, 3), 8, 4, 4, mask_id=MASK, progress=False, **kw)


@pytest.mark.parametrize("kw,name", [
    (dict(schedule="linear"), "schedule"), (dict(eta=1.5), "eta"), (dict(eta=float("nan")), "eta"),
    (dict(t_on=0.0), "t_on"), (dict(alpha_on=1.0), "alpha_on"), (dict(t_on=0.3, t_off=0.4), "t_off"),
])
def test_remdm_arguments(kw, name):
    with pytest.raises(ValueError, match=name):
        ReMDM(**kw)
    with pytest.raises(ValueError, match="threshold"):
        RemaskLowConfidence(1.5)
    with pytest.raises(ValueError, match="max_per_step"):
        RemaskLowConfidence(0.5, max_per_step=-1)


def test_doctests():
    for module in (remasking, token_log_prob):
        result = doctest.testmod(module, extraglobs={"torch": torch})
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_rl_demo_runs_the_whole_loop(capsys):
    from diffusion_kernels.demo import rl

    res = rl.main(["--iters", "1", "--prompts", "2", "--group", "2", "--updates", "1", "--steps", "2",
                   "--group-steps", "1", "--eval-prompts", "4", "--eval-seeds", "1"])
    for when in ("before", "after"):
        assert 0.0 <= res[when]["exact"] <= res[when]["digits"] <= 1.0
    out = capsys.readouterr().out
    assert "held-out before" in out and "held-out after" in out and "iter   0" in out
    assert torch.equal(rl.reward(torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2, 0, 4]])), torch.tensor([0.75]))
