"""TraceRL log-probabilities of a trajectory, forward + backward, through a LLaDA-sized LM head
(H = 4096, V = 126464, float32) on CPU: ours (trajectory_log_probs on the model's logits, and the
fused_linear variant on its hidden states) vs the research code's plain way (per step group, a
full forward, log_softmax over every position, gather).

    pytest bench/bench_rl.py --benchmark-json=bench/results/rl.json
    python bench/summarize.py bench/results/rl.json

Scaled to this CPU by the number of tokens: one row, a prompt of 4 and 8 generated tokens, one
token committed per step (8 steps, LLaDA's steps = gen_length), groups of 1 and 4 steps. The head
is frozen (LoRA-style, as d1 trains LLaDA); a trainable head would add its 2 GB gradient to every
method alike. The body is an embedding plus positions, so almost all the time is the head.

Memory, measured on a separate call (which also warms up) before the timed rounds, by
diffusion_kernels.testing.live_memory (the live bytes of the tensors the call allocates, forward
and backward): ``extra_info.peak_extra_bytes`` (all of them: logits, saved tensors, gradients of
the body) and ``peak_vocab_bytes`` (those of ``[..., V]`` tensors only).
"""
import pytest
import torch
import torch.nn.functional as F

from diffusion_kernels.rl import Trajectory, fused_linear_trajectory_log_probs, trajectory_log_probs
from diffusion_kernels.testing.live_memory import LiveTensorPeak

H, V, MASK_ID = 4096, 126464, 126336
B, LP, GEN = 1, 4, 8
STEPS = GEN


class Body(torch.nn.Module):
    """Stand-in for the transformer: hidden = emb[x mod 64] + pos, trainable (1.2 MB of
    gradients); the head frozen."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randn(64, H, generator=g) / 4)
        self.pos = torch.nn.Parameter(torch.randn(LP + GEN, H, generator=g) / 4)
        self.head = torch.randn(V, H, generator=g) / H**0.5

    def hidden(self, x, attention_mask=None):
        return self.emb[x % 64] + self.pos[: x.shape[1]]

    def forward(self, x, attention_mask=None):
        return self.hidden(x) @ self.head.t()


def trajectory():
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, V - 1000, (B, LP + GEN), generator=g)
    step = torch.full((B, LP + GEN), -1)
    step[:, LP:] = torch.stack([torch.randperm(GEN, generator=g) for _ in range(B)])  # one token per step
    log_prob = torch.where(step >= 0, -1.0, 0.0)
    return Trajectory(seq, LP, MASK_ID, step, log_prob, STEPS)


def plain(model, traj, group_size):
    """The research code's way: a full log-softmax of every position at every group's forward."""
    out = torch.zeros(traj.sequences.shape)
    for first in range(0, traj.num_steps, group_size):
        state = torch.where(traj.step >= first, MASK_ID, traj.sequences)
        logp = F.log_softmax(model(state).float(), dim=-1).gather(-1, traj.sequences[..., None])[..., 0]
        out = torch.where((traj.step >= first) & (traj.step < first + group_size), logp, out)
    return out


IMPLS = {  # plain and ours back to back: the shared machine's load drifts over minutes
    "plain": plain,
    "ours": lambda m, t, s: trajectory_log_probs(m, t, s),
    "ours_fused": lambda m, t, s: fused_linear_trajectory_log_probs(m.hidden, m.head, t, s),
}


@pytest.fixture(scope="module")
def model():
    return Body()


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("group_size", [1, 4])
def test_trajectory_log_probs(benchmark, model, group_size, impl):
    traj = trajectory()
    weights = torch.linspace(-1, 1, B * (LP + GEN)).view(B, LP + GEN)  # a stand-in for the advantages

    def step():
        model.zero_grad(set_to_none=True)
        lp = IMPLS[impl](model, traj, group_size)
        (lp * weights).sum().backward()

    with LiveTensorPeak() as everything, LiveTensorPeak(last_dim=V) as vocab_sized:
        step()
    benchmark.group = f"TraceRL log-probs fwd+bwd, B={B} L={LP + GEN} steps={STEPS} s={group_size}, V={V} H={H}"
    benchmark.pedantic(step, rounds=3, iterations=1)
    benchmark.extra_info.update(impl=impl, group_size=group_size, forwards=len(traj.groups(group_size)),
                                peak_extra_bytes=everything.peak, peak_vocab_bytes=vocab_sized.peak,
                                tokens=B * (LP + GEN), committed=B * GEN)
