import json

import pytest
import torch

from diffusion_kernels import generate
from diffusion_kernels.models import DreamConfig, DreamModel

from model_checkpoints import randomize, rewrite_shard, shard_holding, write_checkpoint

MASK, VOCAB = 37, 38


def tiny_dream(seed=0, **kw):
    cfg = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, mask_token_id=MASK, rope_theta=1000.0)
    m = randomize(DreamModel(DreamConfig(**{**cfg, **kw})), seed)
    with torch.no_grad():  # trained models never propose [MASK]
        (m.model.embed_tokens if m.config.tie_word_embeddings else m.lm_head).weight[MASK] = 0
    return m


def hf_config(c: DreamConfig) -> dict:
    """A config.json as Dream-v0-7B ships it (its keys, plus ones this model ignores)."""
    return {"architectures": ["DreamModel"], "model_type": "Dream", "hidden_act": "silu", "rope_scaling": None,
            "attention_dropout": 0.0, "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
            "use_sliding_window": False, "pad_token_id": c.pad_token_id, "bos_token_id": 1, "eos_token_id": 2,
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "rope_theta": c.rope_theta, "rms_norm_eps": c.rms_norm_eps,
            "tie_word_embeddings": c.tie_word_embeddings, "mask_token_id": c.mask_token_id}


def eager_reference(m: DreamModel, x, attention_mask=None):
    """Dream's forward written out in float64 from its public definition: Qwen2 layers, rotate-half
    RoPE at positions cumsum(mask) - 1, each query head h reading kv head h // (H / Hkv), padded
    keys excluded."""
    p = {k: v.double() for k, v in m.state_dict().items()}
    c = m.config
    B, T = x.shape
    H, Hkv, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    mask = torch.ones(B, T, dtype=torch.long) if attention_mask is None else attention_mask.long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0).double()
    inv = 1.0 / c.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.cat([pos[..., None] * inv, pos[..., None] * inv], -1)[:, None]  # [B, 1, T, D]

    def rope(t):
        rot = torch.cat([-t[..., D // 2:], t[..., :D // 2]], -1)
        return t * ang.cos() + rot * ang.sin()

    def norm(t, w):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + c.rms_norm_eps) * w

    h = p["model.embed_tokens.weight"][x]
    for i in range(c.num_hidden_layers):
        pre = f"model.layers.{i}."
        a = norm(h, p[pre + "input_layernorm.weight"])
        proj = {n: a @ p[pre + f"self_attn.{n}_proj.weight"].T + p[pre + f"self_attn.{n}_proj.bias"] for n in "qkv"}
        q = rope(proj["q"].view(B, T, H, D).transpose(1, 2))
        k = rope(proj["k"].view(B, T, Hkv, D).transpose(1, 2)).repeat_interleave(H // Hkv, 1)
        v = proj["v"].view(B, T, Hkv, D).transpose(1, 2).repeat_interleave(H // Hkv, 1)
        s = (q @ k.transpose(-1, -2)) / D ** 0.5
        s = s.masked_fill(mask[:, None, None, :] == 0, -torch.inf)
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * D)
        h = h + o @ p[pre + "self_attn.o_proj.weight"].T
        f = norm(h, p[pre + "post_attention_layernorm.weight"])
        g = torch.nn.functional.silu(f @ p[pre + "mlp.gate_proj.weight"].T) * (f @ p[pre + "mlp.up_proj.weight"].T)
        h = h + g @ p[pre + "mlp.down_proj.weight"].T
    h = norm(h, p["model.norm.weight"])
    return h @ p["lm_head.weight"].T


def _left_padded(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, MASK, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, :5] = 0
    return x, mask


def test_forward_matches_an_eager_float64_dream():
    m = tiny_dream(seed=1)
    x, mask = _left_padded()
    with torch.no_grad():
        got = m(x, attention_mask=mask)
    want = eager_reference(m, x, mask)
    valid = mask.bool()
    torch.testing.assert_close(got[valid].double(), want[valid], atol=2e-4, rtol=2e-4)
    # a left-padded row's logits are those of the row alone (same positions, pads never attended)
    with torch.no_grad():
        torch.testing.assert_close(got[2, 5:], m(x[2:, 5:])[0], atol=1e-5, rtol=1e-5)


def test_cached_forward_equals_full_forward_on_same_tokens():
    m = tiny_dream(seed=2)
    x, mask = _left_padded(seed=1)
    with torch.no_grad():
        full = m(x, attention_mask=mask)
        kv = m.init_cache(3, 9)
        torch.testing.assert_close(m(x, attention_mask=mask, kv_cache=kv, start=0), full, atol=1e-5, rtol=1e-5)
        for q0, q1 in ((4, 9), (4, 7)):  # prefix mode, dual mode
            part = m(x[:, q0:q1], attention_mask=mask, kv_cache=kv, start=q0)
            torch.testing.assert_close(part, full[:, q0:q1], atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_generation_equals_uncached_with_one_step_per_block(cache):
    # The block's first step is a full forward that rewrites every K/V, so with one step per block
    # the caches are exact: token for token, also with the shifted logits and a left-padded batch.
    m = tiny_dream(seed=3)
    x, mask = _left_padded(seed=2)
    kw = dict(mask_id=MASK, shift_logits=True, progress=False)
    ref = generate(m, x, 12, 4, 3, attention_mask=mask, **kw)
    assert torch.equal(generate(m, x, 12, 4, 3, attention_mask=mask, cache=cache, **kw), ref)
    assert torch.equal(generate(m, x[2:, 5:], 12, 4, 3, cache=cache, **kw)[0], ref[2])
    assert len(set(ref.flatten().tolist())) > 3  # the tokens depend on the input


def test_loader_round_trip_in_dream_naming(tmp_path):
    pytest.importorskip("safetensors")
    m = tiny_dream(seed=4)
    state = m.state_dict()
    assert {"model.layers.1.self_attn.q_proj.bias", "model.layers.0.mlp.down_proj.weight", "lm_head.weight",
            "model.embed_tokens.weight", "model.norm.weight"} <= set(state)
    write_checkpoint(tmp_path, hf_config(m.config), state, shards=3)
    loaded = DreamModel.from_pretrained(str(tmp_path))
    assert loaded.config == m.config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    x = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    assert DreamModel.from_pretrained(str(tmp_path), dtype=torch.bfloat16).lm_head.weight.dtype == torch.bfloat16


def test_loader_with_tied_embeddings(tmp_path):
    pytest.importorskip("safetensors")
    m = tiny_dream(seed=5, tie_word_embeddings=True)
    assert "lm_head.weight" not in m.state_dict()
    write_checkpoint(tmp_path, hf_config(m.config), m.state_dict(), shards=1)
    x = torch.randint(0, VOCAB, (1, 6))
    with torch.no_grad():
        assert torch.equal(DreamModel.from_pretrained(str(tmp_path))(x), m(x))


def _checkpoint(tmp_path, seed=6):
    pytest.importorskip("safetensors")
    m = tiny_dream(seed=seed)
    write_checkpoint(tmp_path, hf_config(m.config), m.state_dict(), shards=2)
    return hf_config(m.config)


@pytest.mark.parametrize("key", ["hidden_size", "num_key_value_heads", "rope_theta", "mask_token_id", "vocab_size"])
def test_config_json_without_a_required_key_names_it_and_the_file(tmp_path, key):
    cfg = _checkpoint(tmp_path)
    del cfg[key]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"config\.json lacks '{key}'") as err:
        DreamModel.from_pretrained(str(tmp_path))
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("edit,match", [
    (dict(rope_scaling={"type": "yarn", "factor": 4.0}), "'rope_scaling'"),
    (dict(hidden_act="gelu"), "'hidden_act'"),
    (dict(num_attention_heads=5), r"config\.json.*'num_attention_heads' \(5\) must divide"),
    (dict(num_key_value_heads=3), r"config\.json.*'num_key_value_heads' \(3\) must divide"),
], ids=["rope_scaling", "hidden_act", "heads", "kv_heads"])
def test_config_json_with_unsupported_or_inconsistent_values(tmp_path, edit, match):
    cfg = _checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(ValueError, match=match):
        DreamModel.from_pretrained(str(tmp_path))


def test_missing_extra_and_misshaped_tensors_are_named(tmp_path):
    _checkpoint(tmp_path)
    name = "model.layers.1.self_attn.k_proj.bias"
    path = shard_holding(tmp_path, name)
    saved = {}
    rewrite_shard(path, lambda t: saved.update(bias=t.pop(name)))
    with pytest.raises(ValueError, match=rf"missing tensor\(s\) '{name}'"):
        DreamModel.from_pretrained(str(tmp_path))
    rewrite_shard(path, lambda t: t.update({name: saved["bias"], "model.layers.0.self_attn.rotary_emb.inv_freq":
                                            torch.ones(4)}))
    with pytest.raises(ValueError, match=rf"'model\.layers\.0\.self_attn\.rotary_emb\.inv_freq' in .*{path.name}.*"
                                         "unexpected"):
        DreamModel.from_pretrained(str(tmp_path))
    rewrite_shard(path, lambda t: t.pop("model.layers.0.self_attn.rotary_emb.inv_freq"))
    DreamModel.from_pretrained(str(tmp_path))  # whole again
    rewrite_shard(path, lambda t: t.update({name: torch.zeros(17)}))
    with pytest.raises(ValueError, match=rf"'{name}' in .*{path.name} has shape \[17\].*implies \[16\]"):
        DreamModel.from_pretrained(str(tmp_path))


def test_forward_checks_its_arguments():
    m = tiny_dream(seed=1)
    x = torch.randint(0, VOCAB, (2, 3))
    with pytest.raises(ValueError, match=r"DreamModel: argument 'x' holds token id 38"):
        m(torch.full((2, 3), 38))
    with pytest.raises(ValueError, match="'start'"):
        m(x, kv_cache=m.init_cache(2, 8), start=6)
    with pytest.raises(ValueError, match="'attention_mask'"):
        m(x, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="'kv_cache'"):
        m(x, kv_cache=m.init_cache(3, 8))


def test_hidden_states_feed_the_fused_head_paths():
    # return_hidden=True gives the final normed states; rl's fused_linear_* scores (shifted logits)
    # equal the logits path.
    from functools import partial

    from diffusion_kernels.rl import fused_linear_one_step_log_probs, one_step_log_probs

    m = tiny_dream(seed=7)
    x, mask = _left_padded(seed=3)
    hidden = m(x, attention_mask=mask, return_hidden=True)
    assert hidden.shape == (3, 9, m.config.hidden_size)
    torch.testing.assert_close(hidden @ m.lm_head_weight.T, m(x, attention_mask=mask), atol=1e-5, rtol=1e-5)
    kw = dict(mask_id=MASK, seed=1, prompt_mask_p=0.2, attention_mask=mask[:, :6], shift_logits=True)
    want = one_step_log_probs(m, x[:, :6], x[:, 6:], **kw)
    got = fused_linear_one_step_log_probs(partial(m, return_hidden=True), m.lm_head_weight, x[:, :6], x[:, 6:], **kw)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="'return_hidden'"):
        m(x, return_hidden="yes")
