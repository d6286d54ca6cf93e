"""dInfer decoders (diffusion_kernels.integrations.dinfer) against the transcriptions of dInfer's
stock decoders (engine_stock.py), at temperature 0: identical tokens after every step."""
import pytest
import torch

import engine_stock as stock
from diffusion_kernels.integrations.dinfer import (DKFixedParallelDecoder, DKHierarchyDecoder,
                                                   DKThresholdParallelDecoder, run_maxima)

MASK = 30
VOCAB = 31  # the mask id is a column: dInfer's threshold decoder must skip proposals of it


class TokenArray:
    """The part of dInfer's TokenArray the decoders touch: ``data`` and 2-D slicing."""

    def __init__(self, data):
        self.data = data

    def __getitem__(self, idx):
        return self.data[idx]

    def __setitem__(self, idx, value):
        self.data[idx] = value


def sequences(seed, batch, prompt, block):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, MASK, (batch, prompt + block), generator=g)
    x[:, prompt:] = MASK
    x[1::3, prompt + 1::2] = torch.randint(0, MASK, (1,), generator=g)  # some rows partly decoded
    if batch > 2:
        x[2, prompt:] = 5  # a fully decoded row
    return x, g


def toy_logits(g, batch, block, scale=6.0):
    logits = (torch.randn(batch, block, VOCAB, generator=g) * scale).round() / 4
    logits[:, 1:3] = logits[:, :1]  # equal rows: tied confidences
    return logits


def lockstep(ours, decode_stock, x, g, block_start, block_end, steps, wrap=False):
    a, b = x.clone(), x.clone()
    ours.block_init(b[:, block_start:block_end], 0)
    for _ in range(steps):
        logits = toy_logits(g, x.shape[0], block_end - block_start)
        decode_stock(logits.clone(), a)
        ours.decode(logits.clone(), block_start, block_end, TokenArray(b) if wrap else b)
        assert torch.equal(a, b)
    return a


@pytest.mark.parametrize("threshold", [0.9, 0.5, 0.05])
@pytest.mark.parametrize("seed", range(2))
def test_threshold_decoder_matches_stock(seed, threshold):
    x, g = sequences(seed, 5, 3, 8)
    ours = DKThresholdParallelDecoder(0, threshold, mask_id=MASK)
    lockstep(ours, lambda l, a: stock.dinfer_threshold_decode(l, 3, 11, a, MASK, threshold), x, g, 3, 11, 8,
             wrap=seed == 1)


def test_threshold_decoder_iter_threshold_and_mask_proposals():
    x, g = sequences(3, 4, 2, 8)
    ours = DKThresholdParallelDecoder(0, 0.9, mask_id=MASK)
    a, b = x.clone(), x.clone()
    for t in (0.99, 0.3, 0.6):
        logits = toy_logits(g, 4, 8)
        logits[0, :, MASK] = 50.0  # row 0 proposes the mask everywhere: nothing committed
        stock.dinfer_threshold_decode(logits, 2, 10, a, MASK, t)
        ours.decode(logits, 2, 10, b, iter_threshold=t)
        assert torch.equal(a, b)
    assert bool((b[0, 2:] == MASK).all())


def test_threshold_batch_decode_rows_at_different_blocks():
    x, g = sequences(4, 3, 0, 16)
    starts = torch.tensor([0, 4, 8])
    ours = DKThresholdParallelDecoder(0, 0.7, mask_id=MASK)
    a, b = x.clone(), x.clone()
    for _ in range(3):
        logits = toy_logits(g, 3, 8)
        for r in range(3):  # the stock rule row by row on each row's own block
            s = int(starts[r])
            stock.dinfer_threshold_decode(logits[r:r + 1], s, s + 8, a[r:r + 1], MASK, 0.7)
        ours.batch_decode(logits, starts, TokenArray(b), 8)
        assert torch.equal(a, b)


@pytest.mark.parametrize("threshold,low", [(None, 0.4), (0.8, 0.4), (0.6, None), (None, None)])
@pytest.mark.parametrize("seed", range(2))
def test_hierarchy_decoder_matches_stock(seed, threshold, low):
    x, g = sequences(seed + 5, 5, 2, 8)
    ours = DKHierarchyDecoder(0, mask_id=MASK, threshold=threshold, low_threshold=low)
    lockstep(ours, lambda l, a: stock.dinfer_hierarchy_decode(l, 2, 10, a, MASK, threshold, low), x, g, 2, 10, 8)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_fixed_decoder_matches_stock(steps):
    x, g = sequences(steps, 5, 2, 8)
    ours = DKFixedParallelDecoder(0, steps, mask_id=MASK)
    counts = stock.dinfer_fixed_counts(x[:, 2:10], MASK, steps)
    it = iter(range(steps))
    lockstep(ours, lambda l, a: stock.dinfer_fixed_decode(l, 2, 10, a, MASK, counts[:, next(it)]), x, g, 2, 10, steps)
    with pytest.raises(RuntimeError, match="block_init"):
        ours.decode(toy_logits(g, 5, 8), 2, 10, x.clone())


def test_run_maxima_keeps_every_tied_maximum():
    conf = torch.tensor([[0.3, 0.3, 0.1, 0.8, 0.2, 0.8, 0.5]])
    cand = torch.tensor([[True, True, False, True, True, True, False]])
    assert run_maxima(conf, cand).tolist() == [[True, True, False, True, False, True, False]]


def test_sampling_is_seeded_and_decoders_have_dinfer_attributes():
    x, g = sequences(9, 2, 0, 8)
    logits = toy_logits(g, 2, 8)
    outs = []
    for _ in range(2):
        dec = DKThresholdParallelDecoder(0.8, 0.5, mask_id=MASK, seed=3)
        y = x.clone()
        dec.decode(logits, 0, 8, y)
        outs.append(y)
    assert torch.equal(outs[0], outs[1])
    for dec in (DKThresholdParallelDecoder(0, 0.9), DKHierarchyDecoder(0), DKFixedParallelDecoder(0, 4)):
        assert (dec.mask_id, dec.eos_id, dec.temperature) == (126336, 126081, 0)
    with pytest.raises(ValueError, match="remasking"):
        DKHierarchyDecoder(0, remasking="entropy")
