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
