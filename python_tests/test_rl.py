"""diffusion_kernels.rl: Trajectory, TraceRL / d1 log-probabilities against a plain PyTorch
computation (full logits, log_softmax, gather), the fused linear variants, the clipped policy
loss, and the live memory of the log-prob functions."""
import doctest

import pytest
import torch
import torch.nn.functional as F

import diffusion_kernels.rl as rl
from diffusion_kernels._philox import philox_uniform
from diffusion_kernels.rl import Trajectory, clipped_policy_loss
from diffusion_kernels.testing.live_memory import LiveTensorPeak

MASK = 0


class TinyLM(torch.nn.Module):
    """A bidirectional toy LM: each position sees the mean of the valid positions' embeddings, so
    a log-prob depends on the whole state and on the attention mask."""

    def __init__(self, vocab=11, hidden=6, dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.emb = torch.nn.Parameter(torch.randn(vocab, hidden, generator=g, dtype=dtype))
        self.mix = torch.nn.Parameter(torch.randn(hidden, hidden, generator=g, dtype=dtype) / hidden**0.5)
        self.head = torch.nn.Parameter(torch.randn(vocab, hidden, generator=g, dtype=dtype))
        self.calls = 0

    def hidden(self, x, attention_mask=None):
        self.calls += 1
        e = self.emb[x]
        keys = torch.ones_like(x, dtype=e.dtype) if attention_mask is None else attention_mask.to(e.dtype)
        ctx = (e * keys[..., None]).sum(1, keepdim=True) / keys.sum(1, keepdim=True)[..., None]
        return torch.tanh(e + ctx @ self.mix)

    def forward(self, x, attention_mask=None):
        return self.hidden(x, attention_mask) @ self.head.t()


def make_trajectory(B=3, Lp=4, gen=6, steps=4, vocab=11, pad=True, seed=0):
    """A random but valid trajectory: every answer position committed at a random step, the first
    rows left-padded."""
    g = torch.Generator().manual_seed(seed)
    L = Lp + gen
    seq = torch.randint(1, vocab, (B, L), generator=g)
    step = torch.full((B, L), -1)
    step[:, Lp:] = torch.randint(0, steps, (B, gen), generator=g)
    log_prob = torch.where(step >= 0, -torch.rand(B, L, generator=g), 0.0)
    am = None
    if pad:
        am = torch.ones(B, L, dtype=torch.bool)
        for b in range(min(B - 1, Lp - 1)):
            am[b, : b + 1] = False
    return Trajectory(seq, Lp, MASK, step, log_prob, steps, am)


def plain_trajectory_log_probs(model, traj, group_size, temperature=1.0, shift=False):
    """The research code's way: a full forward per group, log_softmax of every position, gather."""
    out = torch.zeros(traj.sequences.shape, dtype=torch.float64)
    for first in range(0, traj.num_steps, group_size):
        state = torch.where(traj.step >= first, MASK, traj.sequences)
        logits = model(state, attention_mask=traj.attention_mask)
        if shift:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        logp = F.log_softmax(logits.double() / temperature, dim=-1).gather(-1, traj.sequences[..., None])[..., 0]
        in_group = (traj.step >= first) & (traj.step < first + group_size)
        out = torch.where(in_group, logp, out)
    return out


def _grads(model, value):
    model.zero_grad()
    w = torch.linspace(-1, 1, value.numel(), dtype=value.dtype).view_as(value)
    (value * w).sum().backward()
    return [p.grad.clone() for p in (model.emb, model.mix, model.head)]


# --- Trajectory -------------------------------------------------------------------------------

def test_trajectory_state_before_groups_action_mask():
    traj = make_trajectory(B=2, Lp=3, gen=5, steps=5, pad=False)
    assert traj.state_before(0).eq(torch.where(traj.step >= 0, MASK, traj.sequences)).all()
    assert traj.state_before(5).equal(traj.sequences)
    for s in range(6):
        state = traj.state_before(s)
        assert (state[:, :3] == traj.sequences[:, :3]).all()
        assert ((state == MASK) == (traj.step >= s)).all()
    assert traj.groups(1) == [(i, i + 1) for i in range(5)]
    assert traj.groups(2) == [(0, 2), (2, 4), (4, 5)]
    assert traj.groups(7) == [(0, 5)]
    assert traj.action_mask.equal(traj.step >= 0)
    assert Trajectory(traj.sequences, 3, MASK, torch.full_like(traj.step, -1), torch.zeros(2, 8), 0).groups(1) == []


@pytest.mark.parametrize("change, field", [
    (dict(sequences=torch.zeros(2, 8)), "sequences"),
    (dict(step=torch.zeros(2, 7, dtype=torch.int64)), "step"),
    (dict(step=torch.full((2, 8), 5)), "step"),             # >= num_steps
    (dict(step=torch.zeros(2, 8, dtype=torch.int64)), "step"),  # committed inside the prompt
    (dict(log_prob=torch.zeros(2, 8, dtype=torch.float64)), "log_prob"),
    (dict(log_prob=torch.full((2, 8), -1.0)), "log_prob"),  # nonzero at step == -1
    (dict(prompt_length=9), "prompt_length"),
    (dict(num_steps=-1), "num_steps"),
    (dict(mask_id=1.0), "mask_id"),
    (dict(attention_mask=torch.zeros(2, 8, dtype=torch.bool)), "attention_mask"),  # pads in the answer
])
def test_trajectory_rejects_bad_fields(change, field):
    t = make_trajectory(B=2, Lp=3, gen=5, steps=5, pad=False)
    fields = dict(sequences=t.sequences, prompt_length=3, mask_id=MASK, step=t.step, log_prob=t.log_prob,
                  num_steps=5, attention_mask=None)
    fields.update(change)
    with pytest.raises((TypeError, ValueError), match=f"'{field}'"):
        Trajectory(**fields)


def test_trajectory_rejects_committed_mask_id():
    t = make_trajectory(B=2, Lp=3, gen=5, steps=5, pad=False)
    seq = t.sequences.clone()
    seq[0, 4] = MASK
    with pytest.raises(ValueError, match="'sequences'"):
        Trajectory(seq, 3, MASK, t.step, t.log_prob, 5)


# --- log-probs against the plain computation -------------------------------------------------

@pytest.mark.parametrize("group_size", [1, 2, 3, 4])
@pytest.mark.parametrize("pad, temperature, shift", [(False, 1.0, False), (True, 1.0, False), (True, 0.7, True)])
def test_trajectory_log_probs_match_plain(group_size, pad, temperature, shift):
    model = TinyLM()
    traj = make_trajectory(pad=pad)
    model.calls = 0
    ours = rl.trajectory_log_probs(model, traj, group_size, temperature=temperature, shift_logits=shift)
    assert model.calls == len(traj.groups(group_size))
    ref = plain_trajectory_log_probs(model, traj, group_size, temperature, shift)
    assert ours.dtype == torch.float32 and ours.shape == traj.sequences.shape
    assert (ours[~traj.action_mask] == 0).all()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    for g_ours, g_ref in zip(_grads(model, ours), _grads(model, ref)):
        torch.testing.assert_close(g_ours.double(), g_ref.double(), rtol=1e-4, atol=1e-5)


def test_trajectory_log_probs_skip_groups_without_actions():
    model = TinyLM()
    traj = make_trajectory(B=2, Lp=3, gen=4, steps=6, pad=False)
    step = traj.step.clone()
    step[step >= 0] = step[step >= 0] % 2 * 4  # steps 0 and 4 only: groups of 2 -> (2, 4) is empty
    traj = Trajectory(traj.sequences, 3, MASK, step, traj.log_prob, 6)
    model.calls = 0
    ours = rl.trajectory_log_probs(model, traj, 2)
    assert model.calls == 2
    torch.testing.assert_close(ours.double(), plain_trajectory_log_probs(model, traj, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("group_size", [1, 3])
def test_fused_linear_trajectory_matches_logits(group_size):
    model = TinyLM()
    traj = make_trajectory()
    ours = rl.fused_linear_trajectory_log_probs(model.hidden, model.head, traj, group_size, temperature=0.8,
                                                chunk_size=2)
    ref = plain_trajectory_log_probs(model, traj, group_size, 0.8)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    for g_ours, g_ref in zip(_grads(model, ours), _grads(model, ref)):
        torch.testing.assert_close(g_ours.double(), g_ref.double(), rtol=1e-4, atol=1e-5)


def test_gradcheck_float64():
    model = TinyLM(vocab=7, hidden=3, dtype=torch.float64)
    traj = make_trajectory(B=2, Lp=2, gen=3, steps=2, vocab=7)

    params = [p.detach().clone().requires_grad_() for p in (model.emb, model.mix, model.head)]
    for name in ("emb", "mix", "head"):
        delattr(model, name)  # plain tensor attributes from here on, set by gradcheck

    def with_params(fn):
        def f(emb, mix, head):
            model.emb, model.mix, model.head = emb, mix, head
            return fn()
        return f

    assert torch.autograd.gradcheck(with_params(lambda: rl.trajectory_log_probs(model, traj, 1, temperature=0.9)),
                                    params)
    assert torch.autograd.gradcheck(with_params(lambda: rl.fused_linear_trajectory_log_probs(
        model.hidden, model.head, traj, 2, chunk_size=2)), params)
    prompt, completion = traj.sequences[:, :2], traj.sequences[:, 2:]
    assert torch.autograd.gradcheck(with_params(lambda: rl.one_step_log_probs(
        model, prompt, completion, 0.5, 3, mask_id=MASK)), params)


def test_generate_run_as_trajectory():
    """A trajectory built from generate()'s order: its states are the states generate's steps saw
    (with left padding), and group size 1 scores each token from the logits at its commit step."""
    from diffusion_kernels import generate
    from diffusion_kernels.models import LLaDAConfig, LLaDAModel

    model = LLaDAModel(LLaDAConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, mlp_hidden_size=32,
                                   mask_token_id=31)).eval()
    prompt = torch.randint(0, 31, (2, 3))
    am = torch.tensor([[False, True, True], [True, True, True]])
    seen = []
    out = generate(model, prompt, 6, 3, 4, mask_id=31, attention_mask=am, progress=False, return_dict=True,
                   callback=lambda info: seen.append((info.x.clone(), info.transferred.clone())))
    seq = torch.cat([prompt, out.sequences], dim=1)
    step = torch.cat([torch.full_like(prompt, -1), out.order], dim=1)
    full_am = torch.cat([am, torch.ones(2, 6, dtype=torch.bool)], dim=1)
    traj = Trajectory(seq, 3, 31, step, torch.where(step >= 0, -1.0, 0.0), out.nfe, full_am)
    lp = rl.trajectory_log_probs(model, traj, 1)
    for s, (x_after, moved) in enumerate(seen):
        before = torch.where(moved, 31, x_after)
        assert traj.state_before(s).equal(before)
        with torch.no_grad():
            ref = F.log_softmax(model(before, attention_mask=full_am).double(), -1).gather(-1, seq[..., None])[..., 0]
        torch.testing.assert_close(lp.detach().double()[moved], ref[moved], rtol=1e-5, atol=1e-5)


# --- one-step (d1) ------------------------------------------------------------------------------

def plain_one_step(model, prompt, completion, p, seed, am=None, offset=0):
    B, Lp = prompt.shape
    hide = philox_uniform(seed, offset, torch.arange(B)[:, None], torch.arange(Lp)[None, :]) < p
    if am is not None:
        hide &= am
    x = torch.cat([torch.where(hide, MASK, prompt), torch.full_like(completion, MASK)], dim=1)
    full = None if am is None else torch.cat([am, torch.ones_like(completion, dtype=torch.bool)], dim=1)
    logp = F.log_softmax(model(x, attention_mask=full).double(), dim=-1)[:, Lp:]
    return logp.gather(-1, completion[..., None])[..., 0], x


@pytest.mark.parametrize("pad", [False, True])
def test_one_step_log_probs_match_plain(pad):
    model = TinyLM()
    traj = make_trajectory(B=3, Lp=6, gen=5)
    prompt, completion = traj.sequences[:, :6], traj.sequences[:, 6:]
    am = traj.attention_mask[:, :6] if pad else None
    ours = rl.one_step_log_probs(model, prompt, completion, 0.4, 11, mask_id=MASK, attention_mask=am, offset=2)
    ref, x = plain_one_step(model, prompt, completion, 0.4, 11, am, offset=2)
    assert (x[:, :6] == MASK).any() and (x[:, :6] != MASK).any()  # the key does mask some, not all
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    for g_ours, g_ref in zip(_grads(model, ours), _grads(model, ref)):
        torch.testing.assert_close(g_ours.double(), g_ref.double(), rtol=1e-4, atol=1e-5)
    fused = rl.fused_linear_one_step_log_probs(model.hidden, model.head, prompt, completion, 0.4, 11, mask_id=MASK,
                                               attention_mask=am, offset=2, chunk_size=4)
    torch.testing.assert_close(fused.double(), ref, rtol=1e-5, atol=1e-5)


def test_one_step_input_masking():
    prompt = torch.randint(1, 11, (4, 64))
    am = torch.ones(4, 64, dtype=torch.bool)
    am[0, :10] = False
    x = rl.one_step_input(prompt, 3, 0.3, 5, mask_id=MASK, attention_mask=am)
    assert x.equal(rl.one_step_input(prompt, 3, 0.3, 5, mask_id=MASK, attention_mask=am))
    assert not x.equal(rl.one_step_input(prompt, 3, 0.3, 6, mask_id=MASK, attention_mask=am))
    assert (x[:, 64:] == MASK).all() and (x[0, :10] == prompt[0, :10]).all()
    assert 0.15 < (x[:, :64] == MASK).float().mean() < 0.45
    assert rl.one_step_input(prompt, 2, 0.0, 5, mask_id=MASK)[:, :64].equal(prompt)
    assert (rl.one_step_input(prompt, 2, 1.0, 5, mask_id=MASK) == MASK).all()


# --- clipped policy loss ---------------------------------------------------------------------

def test_clipped_policy_loss_formula_and_reductions():
    g = torch.Generator().manual_seed(3)
    lp = (-torch.rand(3, 5, generator=g, dtype=torch.float64)).requires_grad_()
    old = lp.detach() + 0.3 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    ref = lp.detach() + 0.2 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    adv = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    mask = torch.rand(3, 5, generator=g) < 0.7
    mask[2] = False
    r = torch.exp(lp - old)
    d = ref - lp
    token = -torch.minimum(r * adv[:, None], r.clamp(0.9, 1.3) * adv[:, None]) + 0.1 * (d.exp() - d - 1)
    token = torch.where(mask, token, 0.0)
    kw = dict(clip_eps=(0.1, 0.3), ref_log_probs=ref, kl_coef=0.1, mask=mask)
    torch.testing.assert_close(clipped_policy_loss(lp, old, adv, reduction="none", **kw), token)
    torch.testing.assert_close(clipped_policy_loss(lp, old, adv, reduction="sum", **kw), token.sum())
    torch.testing.assert_close(clipped_policy_loss(lp, old, adv, reduction="token", **kw), token.sum() / mask.sum())
    per_row = token.sum(1) / mask.sum(1).clamp(min=1)
    loss = clipped_policy_loss(lp, old, adv[:, None].expand(3, 5), **kw)
    torch.testing.assert_close(loss, per_row.mean())
    loss.backward()
    expected, = torch.autograd.grad(per_row.mean(), lp)
    torch.testing.assert_close(lp.grad, expected)


def test_clipped_policy_loss_clips_and_ignores_masked_garbage():
    lp = torch.tensor([[0.0, 0.0, float("-inf")]], requires_grad=True)
    old = torch.tensor([[-1.0, 1.0, 0.0]])  # ratios e and 1/e: both outside [0.8, 1.2]
    mask = torch.tensor([[True, True, False]])
    loss = clipped_policy_loss(lp, old, torch.tensor([1.0]), mask=mask)
    loss.backward()
    # A > 0: the ratio e is clipped (no gradient), 1/e is not (min picks the unclipped term).
    torch.testing.assert_close(lp.grad, torch.tensor([[0.0, -torch.e**-1 / 2, 0.0]]))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("kwargs, name", [
    (dict(clip_eps=-0.1), "clip_eps"), (dict(kl_coef=0.1), "ref_log_probs"), (dict(kl_coef=float("nan")), "kl_coef"),
    (dict(mask=torch.ones(2, 3)), "mask"), (dict(reduction="mean"), "reduction"),
])
def test_clipped_policy_loss_rejects(kwargs, name):
    lp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=f"'{name}'"):
        clipped_policy_loss(lp, lp, torch.zeros(2), **kwargs)
    with pytest.raises(ValueError, match="'advantages'"):
        clipped_policy_loss(lp, lp, torch.zeros(3))


def test_group_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 2.0, 2.0, 2.0])
    adv = rl.group_advantages(r, 3)
    g = r.view(2, 3)
    torch.testing.assert_close(adv, ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).reshape(-1))
    assert (adv[3:] == 0).all()
    assert (rl.group_advantages(r, 1) == 0).all()
    with pytest.raises(ValueError, match="'rewards'"):
        rl.group_advantages(r, 4)


def test_log_prob_argument_errors():
    model = TinyLM()
    traj = make_trajectory()
    with pytest.raises(ValueError, match="'temperature'"):
        rl.trajectory_log_probs(model, traj, temperature=0.0)
    with pytest.raises(ValueError, match="'group_size'"):
        rl.trajectory_log_probs(model, traj, 0)
    with pytest.raises(TypeError, match="'trajectory'"):
        rl.trajectory_log_probs(model, traj.sequences)
    with pytest.raises(ValueError, match="'model'"):
        rl.trajectory_log_probs(lambda x, attention_mask=None: x, traj)
    with pytest.raises(ValueError, match=r"vocab = 5"):
        rl.trajectory_log_probs(lambda x, attention_mask=None: torch.zeros(*x.shape, 5), traj)
    with pytest.raises(ValueError, match="'model'"):  # hidden width differs from the head's
        rl.fused_linear_trajectory_log_probs(model.hidden, torch.zeros(11, 5), traj)
    with pytest.raises(ValueError, match="'prompt_mask_p'"):
        rl.one_step_log_probs(model, traj.sequences[:, :4], traj.sequences[:, 4:], 1.5, 0, mask_id=MASK)
    with pytest.raises(ValueError, match="'completion'"):
        rl.one_step_log_probs(model, traj.sequences[:, :4], traj.sequences[:2, 4:], 0.1, 0, mask_id=MASK)


# --- memory: no [positions, vocab] tensor alive at the peak ------------------------------------

def _peak_bytes(fn, vocab):
    with LiveTensorPeak(last_dim=vocab) as mode:
        fn().sum().backward()
    return mode.peak


def test_memory_no_positions_by_vocab_tensor_alive():
    vocab, B, Lp, gen, steps = 4096, 2, 4, 8, 8
    model = TinyLM(vocab=vocab, hidden=4)
    traj = make_trajectory(B=B, Lp=Lp, gen=gen, steps=steps, vocab=vocab)
    row = vocab * 4  # bytes of one float32 logits row
    n_rows = steps * B * (Lp + gen)  # every position of every step's forward
    plain = _peak_bytes(lambda: plain_trajectory_log_probs(model, traj, 1), vocab)
    assert plain > n_rows * row  # the measurement sees the plain way's saved log-softmaxes
    ours = _peak_bytes(lambda: rl.trajectory_log_probs(model, traj, 1), vocab)
    # The committed rows the CE keeps (and a group's gradient of them), plus one step's logits or
    # their gradient.
    assert ours <= (2 * B * gen + B * (Lp + gen)) * row < n_rows * row
    fused = _peak_bytes(lambda: rl.fused_linear_trajectory_log_probs(model.hidden, model.head, traj, 1, chunk_size=2),
                        vocab)
    # At most two chunks of 2 logits rows (the next one is computed before the last is released).
    assert fused <= 2 * 2 * row


def test_doctests():
    from diffusion_kernels.testing import live_memory

    for module in (rl.trajectory, rl.log_probs, rl.policy_loss, live_memory):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0
