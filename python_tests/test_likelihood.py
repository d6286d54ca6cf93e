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
    got = dk.monte_carlo_log_likelihood(model, prompt, answer, MASK_ID, n_samples=n_samples, batch_size=batch_size,
                                        seed=3)
    want = llada_transcription(model, prompt, answer, n_samples, batch_size, 3)
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def test_single_answer_token_is_exact():
    """T = 1: every sample masks the one token with p = 1, so the estimate is log p(answer)."""
    model = ToyModel()
    prompt, answer = torch.tensor([1, 2]), torch.tensor([5])
    got = dk.monte_carlo_log_likelihood(model, prompt, answer, mask_id=MASK_ID, n_samples=8, batch_size=4)
    logits = model(torch.tensor([[1, 2, MASK_ID]]))[0, 2]
    assert math.isclose(got.item(), torch.log_softmax(logits, -1)[5].item(), rel_tol=1e-6)


def test_unbiased_for_two_tokens():
    """T = 2 with a model whose logits ignore the context: the ELBO equals Σ log p(x_i) exactly,
    whatever the masks, so every estimate must equal it."""
    emb = torch.randn(V, V)
    model = lambda x: emb[torch.zeros_like(x)]  # noqa: E731
    answer = torch.tensor([3, 4])
    exact = torch.log_softmax(emb[0], -1)[answer].sum().item()
    got = dk.monte_carlo_log_likelihood(model, torch.tensor([1]), answer, MASK_ID, n_samples=32, batch_size=8)
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


class TestBadInputs:
    def call(self, prompt=(1,), answer=(2,), mask_id=MASK_ID, model=None, **kw):
        prompt = torch.tensor(prompt) if isinstance(prompt, tuple) else prompt
        answer = torch.tensor(answer) if isinstance(answer, tuple) else answer
        kw = {"n_samples": 4, "batch_size": 2, **kw}
        return dk.monte_carlo_log_likelihood(model or ToyModel(), prompt, answer, mask_id, **kw)

    def test_counts(self):
        with pytest.raises(ValueError, match="'n_samples'"):
            self.call(n_samples=10, batch_size=4)
        with pytest.raises(ValueError, match="'batch_size'.*positive"):
            self.call(batch_size=0)
        with pytest.raises(TypeError, match="'n_samples'.*int"):
            self.call(n_samples=4.0)

    def test_token_ids(self):
        """Without config.vocab_size the ids are checked against the first logits' vocabulary (a
        model that does not index by token id, so the call itself succeeds)."""
        flat = lambda x: torch.zeros(*x.shape, V)  # noqa: E731
        with pytest.raises(ValueError, match="'answer' must be non-empty"):
            self.call(answer=torch.tensor([], dtype=torch.long))
        with pytest.raises(ValueError, match="'prompt'.*int64"):
            self.call(prompt=torch.tensor([1.0]))
        with pytest.raises(ValueError, match="'answer'.*1-D"):
            self.call(answer=torch.tensor([[2]]))
        with pytest.raises(ValueError, match=r"'answer'.*\[0, vocab = 8\).*got 9 at position 1"):
            self.call(answer=(2, 9), model=flat)
        with pytest.raises(ValueError, match=r"'prompt'.*\[0, vocab = 8\).*got -1"):
            self.call(prompt=(-1,), model=flat)
        with pytest.raises(ValueError, match=r"'mask_id'.*\[0, vocab = 8\)"):
            self.call(mask_id=8, model=flat)

    def test_ids_checked_against_the_model_config_before_the_call(self):
        """A model with config.vocab_size (as LLaDA's) is never called with an id its embedding lacks."""
        class Config:
            vocab_size = V

        calls = []

        def model(x):
            calls.append(x)
            return ToyModel()(x)

        model.config = Config()
        with pytest.raises(ValueError, match="'answer'.*vocab = 8"):
            self.call(answer=(8,), model=model)
        assert not calls

    def test_seed_and_model_output(self):
        with pytest.raises(TypeError, match="'seed'.*int"):
            self.call(seed=1.5)
        with pytest.raises(TypeError, match="'offset'.*int"):
            self.call(offset=0.5)
        with pytest.raises(ValueError, match="'model'.*\\[b, L, V\\]"):
            self.call(model=lambda x: torch.zeros(x.shape[0], 8))

    def test_model_not_callable(self):
        with pytest.raises(TypeError, match="'model'.*callable"):
            self.call(model=3)

    def test_mask_id_required(self):
        with pytest.raises(TypeError):
            dk.monte_carlo_log_likelihood(ToyModel(), torch.tensor([1]), torch.tensor([2]))
