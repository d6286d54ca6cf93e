"""The demo task: sort a string of digits. Checkable, and a masked-diffusion model learns it in
minutes on a CPU. Tokens: digits 0-9, ``=`` (10), ``[MASK]`` (11). The answer (24 digits) spans
three blocks of 8, so LLaDA's semi-autoregressive schedule and Fast-dLLM's caches have work to do."""
import torch

DIGITS = 24
BLOCK = 8  # the demo's default block length: DIGITS // BLOCK blocks
EQ, MASK, VOCAB = 10, 11, 12
PROMPT_LEN = DIGITS + 1


def make_batch(batch: int, generator: torch.Generator):
    """``(prompt [B, DIGITS + 1], answer [B, DIGITS])``: the digits then ``=``, and the digits sorted."""
    digits = torch.randint(0, 10, (batch, DIGITS), generator=generator)
    prompt = torch.cat([digits, torch.full((batch, 1), EQ)], dim=1)
    return prompt, digits.sort(dim=1).values


def parse(text: str) -> torch.Tensor:
    if len(text) != DIGITS or not text.isdigit():
        raise ValueError(f"the demo sorts exactly {DIGITS} digits, got {text!r}")
    return torch.tensor([[int(c) for c in text] + [EQ]])


def render(tokens) -> str:
    return "".join("=" if t == EQ else "_" if t == MASK else str(int(t)) for t in tokens)
