import json

import pytest
import torch

from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel

from block_models import one_thread
from model_checkpoints import randomize, rewrite_shard, shard_holding, write_checkpoint

MASK, VOCAB, BLOCK = 37, 38, 4
SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=12, rope_theta=1000.0, block_size=BLOCK, mask_token_id=MASK)
VARIANTS = {
    "sdar": dict(naming="sdar", router="softmax", norm_topk_prob=False),  # what a Qwen3 config.json gives
    "sdar-moe": dict(naming="sdar", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, router="softmax",
                     norm_topk_prob=True, attention_bias=True, attention_out_bias=True),
    "llada2": dict(naming="llada2", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
                   num_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                   partial_rotary_factor=0.5, attention_bias=True, attention_out_bias=False),
}

_one_thread = pytest.fixture(autouse=True)(one_thread)  # tiny models: torch's thread pool only costs


def tiny(variant, seed=0, **kw):
    m = randomize(BlockDiffusionModel(BlockDiffusionConfig(**{**SIZES, **VARIANTS[variant], **kw})), seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, b in m.named_buffers():
            if name.endswith("expert_bias"):
                b.copy_(0.2 * torch.randn(b.shape, generator=g))
    return m


def eager_reference(m: BlockDiffusionModel, x, attention_mask=None, *, visible=None, positions=None,
                    dtype=torch.float64):
    """The block-diffusion forward written out in ``dtype`` (float64: the reference) from the public
    model definitions, token by token for the experts: q/k RMSNorm on the head dim, then rotate-half
    RoPE on the leading rotary share of the head, GQA (query head h reads kv head h // (H / Hkv)), a
    position sees the non-pad keys of its own block and the blocks before (or ``visible [T, T]``),
    SwiGLU or routed experts. ``positions [T]``: the RoPE positions (default ``arange(T)``).
    Differentiable with respect to the model's parameters."""
    p = {k: v.to(dtype) for k, v in [*m.named_parameters(), *m.named_buffers()]}
    c = m.config
    B, T = x.shape
    H, Hkv, D, R = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.rotary_dim
    keys_ok = torch.ones(B, T, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if visible is None:
        blk = torch.arange(T) // c.block_size
        visible = blk[None, :] <= blk[:, None]
    visible = visible[None, None] & keys_ok[:, None, None, :]
    inv = 1.0 / c.rope_theta ** (torch.arange(0, R, 2, dtype=torch.float64) / R)
    pos = torch.arange(T) if positions is None else positions
    ang = pos.to(torch.float64)[:, None] * inv
    ang = torch.cat([ang, ang], -1).to(dtype)

    def rope(t):  # [B, heads, T, D]
        r, rest = t[..., :R], t[..., R:]
        rot = torch.cat([-r[..., R // 2:], r[..., :R // 2]], -1)
        return torch.cat([r * ang.cos() + rot * ang.sin(), rest], -1)

    def norm(t, w):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + c.rms_norm_eps) * w

    def lin(t, name):
        out = t @ p[name + ".weight"].T
        return out + p[name + ".bias"] if name + ".bias" in p else out

    def swiglu(t, pre):
        return lin(torch.nn.functional.silu(lin(t, pre + "gate_proj")) * lin(t, pre + "up_proj"), pre + "down_proj")

    def experts(t, pre):
        out = torch.zeros_like(t)
        E, k = c.num_experts, c.num_experts_per_tok
        for n in range(t.shape[0]):
            logits = t[n] @ p[pre + "gate.weight"].T
            if c.router == "softmax":
                w, idx = logits.softmax(-1).topk(k)
                w = w / w.sum()
            else:
                s = logits.sigmoid()
                choice = s + p[pre + "gate.expert_bias"]
                per = E // c.n_group
                value = [choice[g * per:(g + 1) * per].topk(2).values.sum() for g in range(c.n_group)]
                kept = torch.stack(value).topk(c.topk_group).indices.tolist()
                allowed = torch.tensor([e // per in kept for e in range(E)])
                idx = choice.masked_fill(~allowed, -torch.inf).topk(k).indices
                w = s[idx] / s[idx].sum() * c.routed_scaling_factor
            for wi, e in zip(w, idx.tolist()):
                out[n] += wi * swiglu(t[n], pre + f"experts.{e}.")
        if c.num_shared_experts:
            out += swiglu(t, pre + "shared_experts.")
        return out

    h = p["model.embed_tokens.weight"][x]
    for i in range(c.num_hidden_layers):
        pre = f"model.layers.{i}."
        a = norm(h, p[pre + "input_layernorm.weight"])
        q = lin(a, pre + "self_attn.q_proj").view(B, T, H, D)
        k = lin(a, pre + "self_attn.k_proj").view(B, T, Hkv, D)
        v = lin(a, pre + "self_attn.v_proj").view(B, T, Hkv, D)
        if c.qk_norm:
            q, k = norm(q, p[pre + "self_attn.q_norm.weight"]), norm(k, p[pre + "self_attn.k_norm.weight"])
        q, k = rope(q.transpose(1, 2)), rope(k.transpose(1, 2)).repeat_interleave(H // Hkv, 1)
        v = v.transpose(1, 2).repeat_interleave(H // Hkv, 1)
        s = ((q @ k.transpose(-1, -2)) / D ** 0.5).masked_fill(~visible, -torch.inf)
        o = torch.nan_to_num(s.softmax(-1)) @ v
        h = h + lin(o.transpose(1, 2).reshape(B, T, H * D), pre + "self_attn.o_proj")
        f = norm(h, p[pre + "post_attention_layernorm.weight"])
        h = h + (experts(f.reshape(-1, f.shape[-1]), pre + "mlp.").view(f.shape) if c.is_moe_layer(i)
                 else swiglu(f, pre + "mlp."))
    return norm(h, p["model.norm.weight"]) @ p["lm_head.weight"].T


def _batch(padded, seed=0, length=14):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, MASK, (3 if padded else 1, length), generator=g)
    mask = torch.ones_like(x)
    if padded:
        mask[1, :3] = 0
        mask[2, :6] = 0
    return x, mask


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_matches_an_eager_float64_reference(variant):
    m = tiny(variant, seed=1)
    x, mask = _batch(True, length=10)
    with torch.no_grad():
        got = m(x, attention_mask=mask)
    want = eager_reference(m, x, mask)
    valid = mask.bool()
    torch.testing.assert_close(got[valid].double(), want[valid], atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("padded", [False, True], ids=["batch1", "left-padded"])
@pytest.mark.parametrize("variant", ["sdar", "llada2"])
def test_cached_block_decode_equals_the_uncached_forward(variant, padded):
    # SDAR's loop: prefill the prompt's whole blocks, then per block decode steps over the exact
    # cache (store_kv=False, the cache is left untouched), a commit (store_kv=True), next block.
    m = tiny(variant, seed=2)
    x, mask = _batch(padded, seed=3)
    B, L = x.shape
    prompt = 6
    x[:, prompt:] = MASK
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        # a prefill that ends inside a block sees none of the cache rows after it
        part = m(x[:, :prompt], attention_mask=mask, kv_cache=m.init_cache(B, L), start=0)
        want = m(x[:, :prompt], attention_mask=mask[:, :prompt])
        valid = mask[:, :prompt].bool()
        torch.testing.assert_close(part[valid], want[valid], atol=3e-5, rtol=3e-5)
        kv = m.init_cache(B, L)
        prefill = prompt // BLOCK * BLOCK
        m(x[:, :prefill], attention_mask=mask, kv_cache=kv, start=0)
        for s in range(prefill, L, BLOCK):
            e = min(s + BLOCK, L)
            for _ in range(2):
                before = [t.clone() for t in kv.k + kv.v]
                step = m(x[:, s:e], attention_mask=mask, kv_cache=kv, start=s, store_kv=False)
                assert all(torch.equal(a, b) for a, b in zip(before, kv.k + kv.v))
                full = m(x, attention_mask=mask)[:, s:e]
                valid = mask[:, s:e].bool()
                torch.testing.assert_close(step[valid], full[valid], atol=3e-5, rtol=3e-5)
                assert torch.equal(step[valid].argmax(-1), full[valid].argmax(-1))
                # a decoding step commits some tokens of the block
                pos = torch.randint(s, e, (B,), generator=g)
                x[torch.arange(B), pos] = torch.randint(0, MASK, (B,), generator=g)
            m(x[:, s:e], attention_mask=mask, kv_cache=kv, start=s)  # commit the finished block
        # the committed cache is the cache of one prefill of the final sequence
        whole = m.init_cache(B, L)
        m(x, attention_mask=mask, kv_cache=whole, start=0)
        rows = mask.bool()
        for a, b in zip(kv.k + kv.v, whole.k + whole.v):
            torch.testing.assert_close(a[rows], b[rows], atol=3e-5, rtol=3e-5)


def test_training_forward_has_gradients_through_the_block_rule():
    m = tiny("llada2", seed=3).train()
    x, mask = _batch(True, length=8)
    with torch.no_grad():
        want = m(x, attention_mask=mask)
    got = m(x, attention_mask=mask)
    valid = mask.bool()
    torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=1e-5)
    got[valid].logsumexp(-1).sum().backward()
    attn = m.model.layers[1].self_attn
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in (attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight))


def _training_visibility(L, b):
    """BD3-LM's [2L, 2L] mask written position by position: a noisy query (i < L) sees the noisy
    keys of its block and the clean keys of earlier blocks; a clean query the clean blocks <= its own."""
    m = torch.zeros(2 * L, 2 * L, dtype=torch.bool)
    for i in range(2 * L):
        for j in range(2 * L):
            bi, bj = (i % L) // b, (j % L) // b
            m[i, j] = ((j < L and bj == bi) or (j >= L and bj < bi)) if i < L else (j >= L and bj <= bi)
    return m


def _training_batch(B=2, L=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, MASK, (B, L), generator=g)
    x_t = x0.masked_fill(torch.rand(B, L, generator=g) < 0.5, MASK)
    return x0, torch.cat([x_t, x0], 1)


@pytest.mark.parametrize("variant", ["sdar", "llada2"])
def test_training_forward_equals_the_dense_mask_computation(variant):
    # The x_t ⊕ x_0 forward through the op's noisy_length rule (float32) against the eager forward
    # with an explicit [2L, 2L] mask and positions arange(L) twice, in float64: logits of the noisy
    # half and the gradients of a loss on them, each within twice PyTorch's own float32 error.
    m = tiny(variant, seed=5).train()
    L = 10  # not a multiple of the block: the last block of each half is partial
    x0, inputs = _training_batch(L=L)
    targets = torch.randint(0, MASK, x0.shape, generator=torch.Generator().manual_seed(1))
    params = [p for _, p in m.named_parameters()]
    dense = dict(visible=_training_visibility(L, BLOCK), positions=torch.arange(L).repeat(2))

    def loss_of(logits):
        return torch.nn.functional.cross_entropy(logits[:, :L].reshape(-1, VOCAB).double(), targets.reshape(-1))

    results = {}
    for name, run in (("op", lambda: m(inputs, noisy_length=L, noisy_only=True)),
                      ("torch32", lambda: eager_reference(m, inputs, dtype=torch.float32, **dense)[:, :L]),
                      ("ref", lambda: eager_reference(m, inputs, **dense)[:, :L])):
        logits = run()
        results[name] = [logits.detach().double()] + list(torch.autograd.grad(loss_of(logits), params))
    assert results["op"][0].shape == (2, L, VOCAB)
    for (pname, _), got, base, want in zip([("logits", None), *m.named_parameters()], *(
            results[k] for k in ("op", "torch32", "ref"))):
        err, base_err = (got.double() - want.double()).abs().max(), (base.double() - want.double()).abs().max()
        assert err <= 2 * base_err + 1e-6 * want.abs().max(), (pname, float(err), float(base_err))
    # every parameter that the noisy half reaches gets a gradient (the experts a token was routed to)
    grads = dict(zip([n for n, _ in m.named_parameters()], results["op"][1:]))
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "experts" not in n or "shared" in n)


def test_training_forward_options_and_the_decoding_it_trains_for():
    m = tiny("sdar-moe", seed=6)
    L = 12
    x0, inputs = _training_batch(L=L, seed=2)
    mask = torch.ones(2, L, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        full = m(inputs, noisy_length=L)
        noisy = m(inputs, noisy_length=L, noisy_only=True)
        hidden = m(inputs, noisy_length=L, noisy_only=True, return_hidden=True)
        padded = m(inputs, noisy_length=L, attention_mask=mask)
        padded2 = m(inputs, noisy_length=L, attention_mask=mask.repeat(1, 2))
        assert full.shape == (2, 2 * L, VOCAB) and noisy.shape == (2, L, VOCAB) and hidden.shape == (2, L, 32)
        torch.testing.assert_close(noisy, full[:, :L], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hidden @ m.lm_head_weight.T, noisy, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(padded, padded2, atol=0, rtol=0)
        # noisy block n = the uncached decoding forward of (clean blocks < n, noisy block n)
        for n in range(L // BLOCK):
            s, e = n * BLOCK, (n + 1) * BLOCK
            seq = torch.cat([x0[:, :s], inputs[:, s:e]], 1)
            torch.testing.assert_close(noisy[:, s:e], m(seq)[:, s:e], atol=3e-5, rtol=3e-5)
            valid = mask[:, :e].bool()
            torch.testing.assert_close(padded[:, s:e][valid[:, s:]], m(seq, attention_mask=mask[:, :e])[:, s:e][
                valid[:, s:]], atol=3e-5, rtol=3e-5)
    with pytest.raises(ValueError, match="'noisy_length'"):
        m(inputs, noisy_length=L + 1)
    with pytest.raises(ValueError, match="'noisy_length'.*'kv_cache'"):
        m(inputs, noisy_length=L, kv_cache=m.init_cache(2, 2 * L))
    with pytest.raises(ValueError, match="'noisy_only' needs 'noisy_length'"):
        m(inputs, noisy_only=True)
    with pytest.raises(ValueError, match="'attention_mask'"):
        m(inputs, noisy_length=L, attention_mask=torch.ones(2, 5))
    with pytest.raises(TypeError, match="'return_hidden'"):
        m(inputs, return_hidden=1)


def test_a_sub_block_step_reads_the_rest_of_its_block_from_the_cache():
    # Fast-dLLM v2's block cache: once the block's K/V are written, a step on a sub-block sees the
    # rest of its block (the block-causal rule), and none of the blocks after it.
    m = tiny("llada2", seed=8)
    x, mask = _batch(True, seed=9, length=16)
    B, L = x.shape
    with torch.no_grad():
        kv = m.init_cache(B, L)
        m(x, attention_mask=mask, kv_cache=kv, start=0)   # every block written
        full = m(x[:, :12], attention_mask=mask[:, :12])
        for s in (8, 9, 10):
            step = m(x[:, s:s + 2], attention_mask=mask, kv_cache=kv, start=s, store_kv=False)
            torch.testing.assert_close(step, full[:, s:s + 2], atol=3e-5, rtol=3e-5)


def test_a_fresh_model_is_deterministic_and_finite_moe_included():
    # Every parameter is initialised (the router too): the same seed builds the same model, and
    # its logits are finite.
    for variant in ("sdar-moe", "llada2"):
        models = []
        for _ in range(2):
            torch.manual_seed(11)
            models.append(BlockDiffusionModel(BlockDiffusionConfig(**{**SIZES, **VARIANTS[variant]})))
        a, b = (dict(mm.state_dict()) for mm in models)
        assert all(torch.equal(a[k], b[k]) and torch.isfinite(a[k]).all() for k in a)
        gate = a["model.layers.1.mlp.gate.weight"]
        assert gate.abs().max() <= 1 / gate.shape[1] ** 0.5  # nn.Linear's bound, as every projection
        with torch.no_grad():
            assert torch.isfinite(models[0](torch.randint(0, VOCAB, (2, 9)))).all()


# -- checkpoints -------------------------------------------------------------------------------

def sdar_config(c: BlockDiffusionConfig) -> dict:
    """A config.json as SDAR ships it (Qwen3 keys; Qwen3-MoE keys for SDAR-MoE)."""
    cfg = {"architectures": ["SDARForCausalLM"], "model_type": "sdar", "hidden_act": "silu", "rope_scaling": None,
           "max_position_embeddings": 32768, "torch_dtype": "bfloat16", "use_sliding_window": False,
           "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
           "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
           "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim, "rope_theta": c.rope_theta,
           "rms_norm_eps": c.rms_norm_eps, "tie_word_embeddings": c.tie_word_embeddings,
           "attention_bias": c.attention_bias}
    if c.num_experts:
        cfg.update(model_type="sdar_moe", num_experts=c.num_experts, num_experts_per_tok=c.num_experts_per_tok,
                   moe_intermediate_size=c.moe_intermediate_size, norm_topk_prob=c.norm_topk_prob,
                   decoder_sparse_step=1, mlp_only_layers=[])
    return cfg


def llada2_config(c: BlockDiffusionConfig) -> dict:
    """A config.json as LLaDA2.0-mini ships it (LLaDA2MoeConfig keys)."""
    return {"architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe", "hidden_act": "silu",
            "rope_scaling": None, "max_position_embeddings": 32768, "score_function": "sigmoid",
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim, "rope_theta": c.rope_theta,
            "partial_rotary_factor": c.partial_rotary_factor, "rms_norm_eps": c.rms_norm_eps,
            "tie_word_embeddings": c.tie_word_embeddings, "use_qkv_bias": c.attention_bias,
            "use_bias": c.attention_out_bias, "use_qk_norm": True, "num_experts": c.num_experts,
            "num_shared_experts": c.num_shared_experts, "num_experts_per_tok": c.num_experts_per_tok,
            "n_group": c.n_group, "topk_group": c.topk_group, "routed_scaling_factor": c.routed_scaling_factor,
            "moe_intermediate_size": c.moe_intermediate_size, "first_k_dense_replace": c.first_k_dense_replace,
            "mask_token_id": c.mask_token_id, "pad_token_id": 0}


def llada2_state(m: BlockDiffusionModel) -> dict:
    """The model's weights under LLaDA2's names, written out here from modeling_llada2_moe.py's
    module tree: word_embeddings, attention.{query_key_value (q, k, v heads stacked), query_layernorm,
    key_layernorm, dense}, the rest as in Qwen3."""
    out = {}
    for n, t in m.state_dict().items():
        if ".self_attn.k_proj." in n or ".self_attn.v_proj." in n:
            continue
        if ".self_attn.q_proj." in n:
            kind = n.rsplit(".", 1)[1]
            pre = n.split(".self_attn.")[0]
            parts = [m.state_dict()[f"{pre}.self_attn.{x}_proj.{kind}"] for x in "qkv"]
            out[f"{pre}.attention.query_key_value.{kind}"] = torch.cat(parts)
            continue
        for old, new in ((".self_attn.q_norm.", ".attention.query_layernorm."),
                         (".self_attn.k_norm.", ".attention.key_layernorm."),
                         (".self_attn.o_proj.", ".attention.dense."),
                         ("model.embed_tokens.", "model.word_embeddings.")):
            n = n.replace(old, new)
        out[n] = t
    return out


def _write(tmp_path, variant, seed=4, shards=3):
    pytest.importorskip("safetensors")
    m = tiny(variant, seed=seed)
    if m.config.naming == "sdar":
        cfg, state = sdar_config(m.config), m.state_dict()
    else:
        cfg, state = llada2_config(m.config), llada2_state(m)
    write_checkpoint(tmp_path, cfg, state, shards=shards)
    return m, cfg, state


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loader_round_trip(tmp_path, variant):
    m, cfg, state = _write(tmp_path, variant)
    loaded = BlockDiffusionModel.from_pretrained(str(tmp_path), block_size=BLOCK, mask_token_id=MASK)
    assert loaded.config == m.config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in m.state_dict().items())
    x, mask = _batch(True, length=9)
    with torch.no_grad():
        assert torch.equal(loaded(x, attention_mask=mask), m(x, attention_mask=mask))
    if variant == "llada2":
        fused = state["model.layers.1.attention.query_key_value.weight"]
        assert fused.shape[0] == (4 + 2 * 2) * 12
        assert torch.equal(loaded.model.layers[1].self_attn.k_proj.weight, fused[48:72])
        assert {"model.layers.1.mlp.gate.expert_bias", "model.layers.1.mlp.shared_experts.up_proj.weight"} <= set(state)
    bf = BlockDiffusionModel.from_pretrained(str(tmp_path), block_size=BLOCK, dtype=torch.bfloat16)
    assert bf.model.embed_tokens.weight.dtype == torch.bfloat16


def test_block_size_and_mask_id_come_from_the_argument_the_config_or_the_family_default(tmp_path):
    _, cfg, _ = _write(tmp_path, "sdar", shards=1)
    assert BlockDiffusionModel.from_pretrained(str(tmp_path)).block_size == 4  # SDAR's sampler default
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "block_size": 8, "mask_token_id": 5}))
    m = BlockDiffusionModel.from_pretrained(str(tmp_path))
    assert (m.block_size, m.mask_id) == (8, 5)
    assert BlockDiffusionModel.from_pretrained(str(tmp_path), block_size=16).block_size == 16
    with pytest.raises(ValueError, match="'block_size'"):
        BlockDiffusionModel.from_pretrained(str(tmp_path), block_size=0)


@pytest.mark.parametrize("variant,key", [("sdar", "hidden_size"), ("sdar", "num_key_value_heads"),
                                         ("sdar", "intermediate_size"), ("sdar-moe", "moe_intermediate_size"),
                                         ("llada2", "num_experts"), ("llada2", "rope_theta"),
                                         ("llada2", "intermediate_size")])
def test_config_json_without_a_required_key_names_it_and_the_file(tmp_path, variant, key):
    _, cfg, _ = _write(tmp_path, variant, shards=1)
    del cfg[key]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"config\.json lacks '{key}'") as err:
        BlockDiffusionModel.from_pretrained(str(tmp_path))
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("edit,match", [
    (dict(rope_scaling={"type": "yarn"}), "'rope_scaling'"), (dict(score_function="softmax"), "'score_function'"),
    (dict(norm_head=True), "'norm_head'"),
    (dict(num_key_value_heads=3), r"config\.json.*'num_key_value_heads' \(3\) must divide"),
    (dict(partial_rotary_factor=0.3), r"config\.json.*'partial_rotary_factor'"),
], ids=["rope_scaling", "score_function", "norm_head", "kv_heads", "rotary"])
def test_config_json_with_unsupported_or_inconsistent_values(tmp_path, edit, match):
    _, cfg, _ = _write(tmp_path, "llada2", shards=1)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(ValueError, match=match):
        BlockDiffusionModel.from_pretrained(str(tmp_path))


def test_missing_extra_and_misshaped_tensors_are_named(tmp_path):
    _write(tmp_path, "llada2")
    expert = "model.layers.1.mlp.experts.7.down_proj.weight"
    path = shard_holding(tmp_path, expert)
    saved = {}
    rewrite_shard(path, lambda t: saved.update(w=t.pop(expert)))
    with pytest.raises(ValueError, match=rf"missing tensor\(s\) '{expert}'"):
        BlockDiffusionModel.from_pretrained(str(tmp_path))
    rewrite_shard(path, lambda t: t.update({expert: saved["w"], "model.layers.0.mlp.gate.weight": torch.ones(8, 32)}))
    with pytest.raises(ValueError, match=rf"'model\.layers\.0\.mlp\.gate\.weight' in .*{path.name}.*unexpected"):
        BlockDiffusionModel.from_pretrained(str(tmp_path))
    rewrite_shard(path, lambda t: t.pop("model.layers.0.mlp.gate.weight"))
    qkv = "model.layers.0.attention.query_key_value.weight"
    path = shard_holding(tmp_path, qkv)
    rewrite_shard(path, lambda t: t.update({qkv: t[qkv][:72]}))
    with pytest.raises(ValueError, match=rf"'{qkv}' in .*{path.name} has shape \[72, 32\].*implies \[96, 32\]"):
        BlockDiffusionModel.from_pretrained(str(tmp_path))


def test_forward_checks_its_arguments():
    m = tiny("sdar")
    x = torch.randint(0, VOCAB, (2, 4))
    with pytest.raises(ValueError, match=r"BlockDiffusionModel: argument 'x' holds token id 38"):
        m(torch.full((2, 4), 38))
    with pytest.raises(ValueError, match="'start'"):
        m(x, kv_cache=m.init_cache(2, 8), start=5)
    with pytest.raises(TypeError, match="'store_kv'"):
        m(x, kv_cache=m.init_cache(2, 8), store_kv=None)
    with pytest.raises(ValueError, match="'attention_mask'"):
        m(x, kv_cache=m.init_cache(2, 8), attention_mask=torch.ones(2, 4))


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_generate_caches_are_exact_when_its_blocks_are_the_models(cache):
    # With generate's blocks on the model's blocks, the rows a step reads from the cache are final
    # tokens' K/V, so even several steps per block give the uncached tokens.
    from diffusion_kernels import generate

    m = tiny("llada2", seed=7)
    prompt = torch.randint(0, MASK, (2, 2 * BLOCK), generator=torch.Generator().manual_seed(0))
    ref = generate(m, prompt, 2 * BLOCK, BLOCK, 4, mask_id=MASK, progress=False)
    assert torch.equal(generate(m, prompt, 2 * BLOCK, BLOCK, 4, mask_id=MASK, progress=False, cache=cache), ref)
