"""The block-diffusion objective against a plain PyTorch computation with a dense [2L, 2L] mask,
its per-block noising, and the training layout against what the exact-cache sampler computes."""
import pytest
import torch
import torch.nn.functional as F

from block_models import MASK, TinyBlockLM, one_thread
from diffusion_kernels.block_diffusion_loss import block_diffusion_inputs, block_diffusion_loss

B, L, BLOCK = 2, 12, 4


_one_thread = pytest.fixture(autouse=True)(one_thread)


def _dense_training_mask(L, b):
    """BD3-LM's mask written position by position: query i of the noisy half (i < L) sees the noisy
    keys of its block and the clean keys of earlier blocks; a clean query sees clean blocks <= its own."""
    m = torch.zeros(2 * L, 2 * L, dtype=torch.bool)
    for i in range(2 * L):
        for j in range(2 * L):
            bi, bj = (i % L) // b, (j % L) // b
            if i < L:
                m[i, j] = (j < L and bj == bi) or (j >= L and bj < bi)
            else:
                m[i, j] = j >= L and bj <= bi
    return m


def _model():
    m = TinyBlockLM(block_size=BLOCK, dim=16, max_len=L)
    m.logits_dtype = torch.float64
    for p in m.parameters_list():
        p.requires_grad_(True)
    return m


def _plain_loss(model, x0, batch):
    """Σ CE / p over the masked noisy positions / (B L), from a forward with the dense mask."""
    logits = model(batch.inputs, visibility=_dense_training_mask(L, BLOCK), noisy_length=L)[:, :L]
    ce = F.cross_entropy(logits[batch.masked], x0[batch.masked], reduction="none")
    return (ce / batch.p_mask[batch.masked].double()).sum() / (B * L)


def test_loss_and_gradients_equal_the_dense_mask_computation():
    model = _model()
    x0 = torch.randint(0, MASK, (B, L), generator=torch.Generator().manual_seed(0))
    batch = block_diffusion_inputs(x0, MASK, BLOCK, seed=3, offset=1)
    want = _plain_loss(model, x0, batch)
    want_grads = torch.autograd.grad(want, model.parameters_list())
    got = block_diffusion_loss(model, x0, mask_id=MASK, block_size=BLOCK, seed=3, offset=1)
    got_grads = torch.autograd.grad(got, model.parameters_list())
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # the fused head: hidden states and the LM head weight, no [tokens, vocab] logits kept
    fused = block_diffusion_loss(lambda x, noisy_length: model(x, noisy_length=noisy_length, return_hidden=True),
                                 x0, mask_id=MASK, block_size=BLOCK, seed=3, offset=1, lm_head_weight=model.head,
                                 chunk_size=3)
    fused_grads = torch.autograd.grad(fused, model.parameters_list())
    torch.testing.assert_close(fused, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(fused_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_noise_is_drawn_per_block():
    x0 = torch.randint(0, MASK, (64, 32), generator=torch.Generator().manual_seed(1))
    batch = block_diffusion_inputs(x0, MASK, 8, seed=5, prompt_lengths=torch.tensor([10] * 32 + [0] * 32))
    p = batch.p_mask.view(64, 4, 8)
    assert (p == p[..., :1]).all()                        # one time per block
    assert (p[..., 0].std(1) > 0).all()                   # blocks of a row differ
    assert not batch.masked[:32, :10].any()               # the prompt stays clean
    assert torch.equal(batch.noisy[batch.masked], torch.full_like(x0[batch.masked], MASK))
    assert torch.equal(batch.noisy[~batch.masked], x0[~batch.masked])
    assert torch.equal(batch.inputs[:, 32:], x0)
    t = torch.rand(64, 4, generator=torch.Generator().manual_seed(2))
    given = block_diffusion_inputs(x0, MASK, 8, t=t, eps=0.01)
    torch.testing.assert_close(given.p_mask.view(64, 4, 8)[..., 0], (1 - 0.01) * t + 0.01)


def test_noisy_half_sees_what_the_sampler_feeds_the_block():
    # noisy block n of the layout = an uncached decoding forward of (clean blocks < n, noisy block n)
    model = TinyBlockLM(block_size=BLOCK, dim=16, max_len=L)
    model.logits_dtype = torch.float64
    x0 = torch.randint(0, MASK, (B, L), generator=torch.Generator().manual_seed(4))
    batch = block_diffusion_inputs(x0, MASK, BLOCK, seed=0)
    train = model(batch.inputs, noisy_length=L)[:, :L]
    for n in range(L // BLOCK):
        s, e = n * BLOCK, (n + 1) * BLOCK
        decode = model(torch.cat([x0[:, :s], batch.noisy[:, s:e]], 1))[:, s:e]
        torch.testing.assert_close(train[:, s:e], decode, rtol=1e-12, atol=1e-12)


def test_bad_arguments_name_themselves():
    model = _model()
    x0 = torch.randint(0, MASK, (B, L))
    with pytest.raises(ValueError, match="block_size"):
        block_diffusion_loss(model, x0[:, :10], mask_id=MASK, block_size=BLOCK)
    with pytest.raises(ValueError, match="'t'"):
        block_diffusion_inputs(x0, MASK, BLOCK, t=torch.rand(B, 2))
    with pytest.raises(ValueError, match=r"\[batch, 2L or L"):
        block_diffusion_loss(lambda x, noisy_length: torch.zeros(B, 5, 4), x0, mask_id=MASK, block_size=BLOCK)


def test_the_ops_training_layout_gives_the_dense_loss():
    # The same loss through attention_with_kv_cache(causal_block_size, noisy_length) in float32,
    # against the float64 dense mask: its error at most twice PyTorch's own float32 attention's.
    x0 = torch.randint(0, MASK, (B, L), generator=torch.Generator().manual_seed(6))
    results = {}
    for mode, dtype in (("dense", torch.float64), ("dense", torch.float32), ("op", torch.float32)):
        model = _model()
        model.attention, model.attention_dtype = mode, dtype
        loss = block_diffusion_loss(model, x0, mask_id=MASK, block_size=BLOCK, seed=9)
        results[(mode, dtype)] = (loss.detach(), torch.autograd.grad(loss, model.parameters_list()))
    ref, torch32, op = results[("dense", torch.float64)], results[("dense", torch.float32)], results[("op", torch.float32)]
    for got, base, want in zip((op[0],) + op[1], (torch32[0],) + torch32[1], (ref[0],) + ref[1]):
        err, base_err = (got - want).abs().max(), (base - want).abs().max()
        assert err <= 2 * base_err + 1e-6 * want.abs().max(), (float(err), float(base_err))


def test_the_package_model_through_its_training_forward():
    # BlockDiffusionModel takes the layout itself; the loss asks it for the noisy half only (and
    # for hidden states on the fused path): the same loss and gradients as from its full logits.
    from diffusion_kernels import masked_diffusion_loss
    from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel

    torch.manual_seed(0)
    model = BlockDiffusionModel(BlockDiffusionConfig(vocab_size=MASK + 1, hidden_size=32, intermediate_size=48,
                                                     num_attention_heads=4, num_key_value_heads=2, block_size=BLOCK,
                                                     mask_token_id=MASK))
    calls = []
    model.register_forward_pre_hook(lambda _, args, kwargs: calls.append(set(kwargs)), with_kwargs=True)
    params = list(model.parameters())
    x0 = torch.randint(0, MASK, (B, L), generator=torch.Generator().manual_seed(2))
    batch = block_diffusion_inputs(x0, MASK, BLOCK, seed=4)
    want = masked_diffusion_loss(model(batch.inputs, noisy_length=L)[:, :L], x0, batch.masked, batch.p_mask)
    want_grads = torch.autograd.grad(want, params)
    for head in (None, model.lm_head_weight):
        calls.clear()
        got = block_diffusion_loss(model, x0, mask_id=MASK, seed=4, lm_head_weight=head)
        assert calls == [{"noisy_length", "noisy_only"} | ({"return_hidden"} if head is not None else set())]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        for g, w in zip(torch.autograd.grad(got, params), want_grads):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
