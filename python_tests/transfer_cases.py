"""Inputs and checks for select_transfer."""
import torch

from diffusion_kernels import reference

NEG_INF = float("-inf")
# backend -> (batch, seq): not multiples of 4/32/128; 4097 needs more than the CUDA kernel's
# shared-memory sort; every CUDA thread is a fiber under the emulator: modest sizes there.
SHAPES = {"cpu": [(1, 1), (3, 7), (5, 33), (4, 257), (2, 1000), (2, 4097)],
          "emulated": [(1, 1), (3, 7), (5, 33), (2, 257), (2, 1000)],
          "cuda": [(1, 1), (3, 7), (5, 33), (64, 257), (8, 1000), (4, 4096), (3, 4097), (2, 40000)]}
RULES = [
    dict(k=3),
    dict(k=0),
    dict(k=10**6),
    dict(threshold=0.9),
    dict(threshold=0.9, strict=True),
    dict(threshold=0.7, eps=1e-5),
    dict(threshold=0.95, eps=0.05),
    dict(factor=1.0),
    dict(factor=0.3),
    dict(k=5, alg_temp=0.5, seed=7, offset=3),
]


def per_row_threshold(batch):
    """A [batch] float32 threshold tensor cycling through ordinary values, both infinities, NaN
    and one exactly equal to a float32 confidence level (make_confidence draws from (0, 1])."""
    values = torch.tensor([0.9, 0.5, float("nan"), float("inf"), float("-inf"), 0.75, 0.999])
    return values[torch.arange(batch) % len(values)]


def rule_id(rule):
    return ",".join(f"{k}={v}" for k, v in rule.items())


def make_confidence(batch, seq, generator=None):
    """Probabilities (a softmax confidence) with ~40% of positions -inf (not masked); row 0 has
    every position a candidate and, when batch > 1, the last row has none."""
    conf = torch.rand(batch, seq, generator=generator) ** 0.3  # mass near 1, like real confidences
    masked = torch.rand(batch, seq, generator=generator) < 0.6
    masked[0] = True
    if batch > 1:
        masked[-1] = False
    return torch.where(masked, conf, torch.full_like(conf, NEG_INF))


def per_row_k(batch, seq, generator=None):
    """Counts covering 0, 1, a middle value and more than the row holds."""
    choices = torch.tensor([0, 1, max(1, seq // 3), seq, seq + 5])
    return choices[torch.randint(0, len(choices), (batch,), generator=generator)]


def make_tokens(batch, seq):
    x = torch.full((batch, seq), 126336)  # [MASK]
    x0 = torch.randint(0, 1000, (batch, seq))
    return x, x0


def assert_matches_reference(op, conf, **rule):
    """The mask equals the reference's; with x/x0 the in-place write touches exactly the
    transferred positions and leaves every other element bitwise unchanged. ``op`` takes and
    returns CPU tensors (sampling_cases.device_op)."""
    want = reference.select_transfer(conf, **rule)
    got = op(conf, **rule)
    assert got.dtype == torch.bool and got.shape == conf.shape
    assert torch.equal(got, want), f"mask differs in rows {torch.nonzero((got != want).any(1)).flatten().tolist()}"
    x, x0 = make_tokens(*conf.shape)
    x_before = x.clone()
    got2 = op(conf, x=x, x0=x0, **rule)
    assert torch.equal(got2, want)
    assert torch.equal(x, torch.where(want, x0, x_before))
    return got
