import json

import pytest
import torch

from diffusion_kernels.models import LLaDAConfig, LLaDAModel

from generate_models import tiny_llada


def test_rope_is_relative_and_gqa_matches_repeated_heads():
    m = tiny_llada(seed=1, n_kv_heads=2)
    x = torch.randint(0, 30, (2, 9))
    with torch.no_grad():
        # GQA == MHA with each kv head repeated for its query group
        c = m.config
        mha = LLaDAModel(LLaDAConfig(**{**c.__dict__, "n_kv_heads": c.n_heads}))
        sd = m.state_dict()
        rep = c.n_heads // c.kv_heads
        for k, v in list(sd.items()):
            if k.endswith(("k_proj.weight", "v_proj.weight")):
                sd[k] = v.view(c.kv_heads, c.head_dim, -1).repeat_interleave(rep, 0).reshape(-1, v.shape[1])
        mha.load_state_dict(sd)
        torch.testing.assert_close(mha(x), m(x), atol=1e-5, rtol=1e-5)
        # left padding with a mask leaves the real tokens' logits unchanged (RoPE is relative)
        padded = torch.cat([torch.zeros(2, 4, dtype=torch.long), x], 1)
        am = torch.cat([torch.zeros(2, 4), torch.ones(2, 9)], 1)
        torch.testing.assert_close(m(padded, attention_mask=am)[:, 4:], m(x), atol=1e-5, rtol=1e-5)


def test_loads_a_hugging_face_style_checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file, save_file

    m = tiny_llada(seed=2)
    m.save_pretrained(str(tmp_path))
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert "model.transformer.blocks.1.ff_proj.weight" in keys and "model.transformer.ff_out.weight" in keys
    # write it the way LLaDA-8B ships: OLMo-style config keys, two shards
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg = {"d_model": cfg["d_model"], "n_heads": cfg["n_heads"], "n_kv_heads": cfg["n_kv_heads"],
           "n_layers": cfg["n_layers"], "mlp_hidden_size": cfg["mlp_hidden_size"], "vocab_size": 30,
           "embedding_size": cfg["vocab_size"], "rope_theta": cfg["rope_theta"], "rms_norm_eps": 1e-5,
           "weight_tying": False, "mask_token_id": cfg["mask_token_id"], "block_type": "llama"}
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    state = {"model." + k: v for k, v in m.state_dict().items()}
    names = sorted(state)
    save_file({k: state[k] for k in names[:7]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in names[7:]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    loaded = LLaDAModel.from_pretrained(str(tmp_path))
    assert loaded.config.vocab_size == m.config.vocab_size
    x = torch.randint(0, 30, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    bf = LLaDAModel.from_pretrained(str(tmp_path), dtype=torch.bfloat16)
    assert bf.transformer["wte"].weight.dtype == torch.bfloat16
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ValueError, match="missing"):
        LLaDAModel.from_pretrained(str(tmp_path))


def test_training_path_matches_the_op_and_has_gradients():
    m = tiny_llada(seed=3).train()
    x = torch.randint(0, 30, (2, 8))
    am = torch.ones(2, 8)
    am[0, :3] = 0
    with torch.no_grad():
        want = m(x, attention_mask=am)
    got = m(x, attention_mask=am)  # grad enabled: the SDPA path
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0, 3:], want[0, 3:], atol=1e-5, rtol=1e-5)
    got[:, 3:].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def _checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    tiny_llada(seed=4).save_pretrained(str(tmp_path))
    return json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize("key", ["n_heads", "mask_token_id", "d_model", "n_layers", "rope_theta", "vocab_size"])
def test_config_json_without_a_required_key_names_it_and_the_file(tmp_path, key):
    cfg = _checkpoint(tmp_path)
    del cfg[key]
    if key == "vocab_size":
        del cfg["embedding_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"config\.json lacks '{key}'") as err:
        LLaDAModel.from_pretrained(str(tmp_path))
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("text", ["{\"d_model\": 32,", "", "[1, 2]"], ids=["truncated", "empty", "not-an-object"])
def test_invalid_config_json_names_the_file(tmp_path, text):
    _checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match="config.json"):
        LLaDAModel.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_unreadable_safetensors_names_the_file(tmp_path, damage):
    _checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00" * 64}[damage])
    with pytest.raises(ValueError, match="model.safetensors"):
        LLaDAModel.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("kw,name", [(dict(d_model=30, n_heads=4), "'n_heads'"), (dict(n_kv_heads=3), "'n_kv_heads'"),
                                     (dict(d_model=36, n_heads=12), "even"), (dict(mask_token_id=64), "'mask_token_id'"),
                                     (dict(n_layers=0), "'n_layers'"), (dict(n_heads=2.0), "'n_heads'"),
                                     (dict(rope_theta=float("nan")), "'rope_theta'")])
def test_config_rejects_inconsistent_sizes(kw, name):
    with pytest.raises((ValueError, TypeError), match=name):
        LLaDAConfig(**kw)


def test_config_json_with_n_heads_not_dividing_d_model_names_the_file(tmp_path):
    cfg = _checkpoint(tmp_path)
    cfg["n_heads"] = 5
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json.*'n_heads' \(5\) must divide 'd_model'"):
        LLaDAModel.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("bad", [38, 1000, -1])
def test_token_ids_outside_the_vocabulary_name_x(bad):
    m = tiny_llada(seed=1)
    x = torch.randint(0, 30, (2, 5))
    x[1, 2] = bad
    with pytest.raises(ValueError, match=rf"'x' holds token id {bad}, outside the vocabulary \[0, 38\)"):
        m(x)
    with pytest.raises(ValueError, match="'x'"):
        m(x.float())


def test_forward_checks_the_mask_and_the_cache_window():
    m = tiny_llada(seed=1)
    x = torch.randint(0, 30, (2, 3))
    with pytest.raises(ValueError, match="'attention_mask'"):
        m(x, attention_mask=torch.ones(2, 4))
    kv = m.init_cache(2, 8)
    for start in (6, -1, 2.0):
        with pytest.raises(ValueError, match="'start'"):
            m(x, kv_cache=kv, start=start)
    with pytest.raises(ValueError, match="'kv_cache'"):
        m(x, kv_cache=m.init_cache(3, 8))
    with pytest.raises(ValueError, match="'attention_mask'"):
        m(x, kv_cache=kv, start=5, attention_mask=torch.ones(2, 3))


def test_hidden_states_feed_the_fused_head_paths():
    # return_hidden=True gives the final normed states: with lm_head_weight they are the logits,
    # and rl's fused_linear_* scores equal the logits path (tied heads too), with gradients.
    from functools import partial

    from diffusion_kernels.rl import fused_linear_one_step_log_probs, one_step_log_probs

    for tied in (False, True):
        m = tiny_llada(seed=5)
        if tied:
            m = LLaDAModel(LLaDAConfig(**{**m.config.__dict__, "weight_tying": True}))
        x = torch.randint(0, 30, (2, 7))
        hidden = m(x, return_hidden=True)
        assert hidden.shape == (2, 7, m.config.d_model)
        torch.testing.assert_close(hidden @ m.lm_head_weight.T, m(x), atol=1e-5, rtol=1e-5)
        prompt, completion = x[:, :4], x[:, 4:]
        kw = dict(mask_id=m.mask_id, seed=3, prompt_mask_p=0.3)
        want = one_step_log_probs(m, prompt, completion, **kw)
        got = fused_linear_one_step_log_probs(partial(m, return_hidden=True), m.lm_head_weight, prompt, completion,
                                              **kw)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        got.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    with pytest.raises(TypeError, match="'return_hidden'"):
        m(x, return_hidden=None)
