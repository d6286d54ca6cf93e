"""monte_carlo_log_likelihood: LLaDA's estimator against a direct transcription with the same
masks, the exact single-token case, and the mask sampler's structure."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import diffusion_kernels as dk
from diffusion_kernels.likelihood import mc_masks

MASK_ID = 7
V = 8


class ToyModel:
    """Deterministic bidirectional toy: logits depend on the token and on how many are masked."""

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.emb = torch.randn(V, V, generator=g)

    def __call__(self, x):
        n_masked = (x == MASK_ID).sum(1, keepdim=True).float()
        return self.emb[x] + 0.3 * n_masked[:, :, None] + 0.1 * torch.arange(x.shape[1])[None, :, None]


def llada_transcription(model, prompt, answer, n_samples, batch_size, seed):
    seq = torch.cat([prompt, answer])
    t = answer.numel()
    losses = []
    for j in range(n_samples // batch_size):
        is_mask, counts = mc_masks(t, batch_size, j, seed, 0)
        mask_index = torch.cat([torch.zeros(batch_size, prompt.numel(), dtype=torch.bool), is_mask], 1)
        x = torch.where(mask_index, MASK_ID, seq.expand(batch_size, -1))
        p_mask = (counts.float() / t)[:, None].repeat(1, seq.numel())
        logits = model(x)
        loss = F.cross_entropy(logits[mask_index], x.new_tensor(seq).expand(batch_size, -1)[mask_index],
                               reduction="none") / p_mask[mask_index]
        losses.append(loss.sum().item() / batch_size)
    return -sum(losses) / len(losses)


@pytest.mark.parametrize("n_samples,batch_size", [(16, 4), (12, 12), (6, 1)])
def test_matches_llada_transcription(n_samples, batch_size):
    model = ToyModel()
    prompt, answer = torch.tensor([1, 2, 3]), torch.tensor([4, 0, 5, 6, 1])
    got = dk.monte_carlo_log_likelihood(model, prompt, answer, n_samples, batch_size, mask_id=MASK_ID, seed=3)
    want = llada_transcription(model, prompt, answer, n_samples, batch_size, 3)
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def test_single_answer_token_is_exact():
    """T = 1: every sample masks the one token with p = 1, so the estimate is log p(answer)."""
    model = ToyModel()
    prompt, answer = torch.tensor([1, 2]), torch.tensor([5])
    got = dk.monte_carlo_log_likelihood(model, prompt, answer, n_samples=8, batch_size=4, mask_id=MASK_ID)
    logits = model(torch.tensor([[1, 2, MASK_ID]]))[0, 2]
    assert math.isclose(got.item(), torch.log_softmax(logits, -1)[5].item(), rel_tol=1e-6)


def test_unbiased_for_two_tokens():
    """T = 2 with a model whose logits ignore the context: the ELBO equals Σ log p(x_i) exactly,
    whatever the masks, so every estimate must equal it."""
    emb = torch.randn(V, V)
    model = lambda x: emb[torch.zeros_like(x)]  # noqa: E731
    answer = torch.tensor([3, 4])
    exact = torch.log_softmax(emb[0], -1)[answer].sum().item()
    got = dk.monte_carlo_log_likelihood(model, torch.tensor([1]), answer, n_samples=32, batch_size=8, mask_id=MASK_ID)
    assert math.isclose(got.item(), exact, rel_tol=1e-5)


def test_mask_sampler_structure():
    t, b = 9, 16
    for j in range(3):
        is_mask, counts = mc_masks(t, b, j, seed=5, offset=0)
        assert torch.equal(is_mask.sum(1), counts)
        assert ((counts >= 1) & (counts <= t)).all()
        spread = torch.bincount(counts, minlength=t + 1)[1:]
        assert spread.max() - spread.min() <= 2, "stratified counts cover [1, T] evenly"
    a, _ = mc_masks(t, b, 0, seed=5, offset=0)
    assert torch.equal(a, mc_masks(t, b, 0, seed=5, offset=0)[0])
    assert not torch.equal(a, mc_masks(t, b, 0, seed=6, offset=0)[0])
    # Subsets of a given size are all reachable (positions chosen uniformly).
    seen = set()
    for j in range(200):
        m, c = mc_masks(4, 4, j, seed=1, offset=0)
        seen.update(tuple(r.tolist()) for r, k in zip(m, c) if k == 2)
    assert len(seen) == len(list(itertools.combinations(range(4), 2)))


def test_bad_inputs():
    model = ToyModel()
    with pytest.raises(ValueError, match="'n_samples'"):
        dk.monte_carlo_log_likelihood(model, torch.tensor([1]), torch.tensor([2]), n_samples=10, batch_size=4)
    with pytest.raises(ValueError, match="'answer' non-empty"):
        dk.monte_carlo_log_likelihood(model, torch.tensor([1]), torch.tensor([], dtype=torch.long))
