"""Battery cases of generate, the schedules and the LLaDA model and its checkpoint loader."""
import copy
import json
import os
import tempfile

import torch

import diffusion_kernels as dk
from diffusion_kernels import schedules
from diffusion_kernels.models import LLaDAConfig, LLaDAModel
from bad_input_case import Call, Case, Check, Raises, Same
from bad_input_tensors import INF, NAN, meta, randint
from generate_models import MASK, VOCAB, llada_generate, tiny_llada

B, LP, GEN, BLOCK, STEPS = 2, 3, 4, 2, 4
FILE_ERRORS = (TypeError, ValueError, RuntimeError, OSError)


def _add(out, prefix, timeout=8.0):
    def add(desc, build, expect):
        out.append(Case(f"{prefix}-{desc}", build, expect, timeout=timeout))
    return add


class ConstantLogits(torch.nn.Module):
    """A model whose logits are all one value (NaN, +inf...) everywhere."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x, attention_mask=None):
        return torch.full(x.shape + (VOCAB,), self.value)


def prompt():
    return randint(0, 30, B, LP, seed=21)


def model():
    return tiny_llada(seed=0, n_layers=1)


# -- generate --------------------------------------------------------------------------------

def reference_generate(m, prompt_ids, gen_length=GEN, block_length=BLOCK, steps=STEPS, *, mask_id, cfg_scale=0.0,
                       attention_mask=None):
    """The independent LLaDA loop of generate_models (temperature 0, low confidence)."""
    am = None if attention_mask is None else attention_mask.to(torch.int64)
    return llada_generate(m, prompt_ids, steps, gen_length, block_length, mask_id, cfg_scale=cfg_scale,
                          attention_mask=am)


def finished(result, call):
    """Documented meaning of any generate call that returns: [B, gen_length] ids, none of them [MASK]."""
    gen = call.args[2] if len(call.args) > 2 else GEN
    assert isinstance(result, torch.Tensor) and result.shape == (B, gen), f"result {result}"
    assert not (result == call.kwargs["mask_id"]).any(), f"[MASK] left in the result: {result.tolist()}"


def generate_cases():
    out = []
    add = _add(out, "generate")

    def call(m=None, p=None, args=(GEN, BLOCK, STEPS), **kw):
        kw.setdefault("mask_id", MASK)
        return lambda: Call(dk.generate, ((model if m is None else m)(), prompt() if p is None else p()) + args,
                            copy.deepcopy(kw))

    def raises(desc, names, **kw):
        add(desc, call(**kw), Raises(*names))

    def same(desc, **kw):
        add(desc, call(**kw), Same(reference_generate))

    same("basic")
    same("one-block", args=(GEN, GEN, 2))
    same("cfg", cfg_scale=1.0)
    same("attention_mask-left-pad", attention_mask=torch.tensor([[0, 1, 1], [1, 1, 1]], dtype=torch.bool))
    same("attention_mask-int-01", attention_mask=torch.tensor([[0, 1, 1], [1, 1, 1]]))
    for cache in ("prefix", "dual"):
        add(f"cache-{cache}", call(cache=cache), Check(finished))
    for rule in (dict(threshold=0.5), dict(factor=1.0)):
        rid = "+".join(f"{k}={v}" for k, v in rule.items())
        add(f"{rid}", call(**rule), Check(finished))
        # no position ever becomes a candidate: must return (or refuse), never spin
        for value, vid in ((NAN, "nan"), (INF, "posinf"), (-INF, "neginf")):
            add(f"{rid}-model-{vid}-logits", call(m=lambda v=value: ConstantLogits(v), **rule),
                Check(finished, or_raises=("model", "logits")))
        add(f"{rid}-cfg_scale-nan", call(cfg_scale=NAN, **rule), Check(finished, or_raises=("cfg_scale",)))
    for value, vid in ((NAN, "nan"), (INF, "posinf")):
        add(f"fixed-model-{vid}-logits", call(m=lambda v=value: ConstantLogits(v)),
            Check(finished, or_raises=("model", "logits")))
    add("fixed-cfg_scale-nan", call(cfg_scale=NAN), Check(finished, or_raises=("cfg_scale",)))
    raises("cfg_scale-inf", ["cfg_scale"], cfg_scale=INF)
    raises("cfg_scale-negative", ["cfg_scale"], cfg_scale=-1.0)
    # prompt ids
    raises("prompt_ids-float", ["prompt_ids"], p=lambda: prompt().float())
    raises("prompt_ids-rank1", ["prompt_ids"], p=lambda: prompt()[0])
    raises("prompt_ids-list", ["prompt_ids"], p=lambda: prompt().tolist())
    raises("prompt_ids-beyond-vocab", ["prompt_ids"], p=lambda: prompt().index_fill(1, torch.tensor([1]), VOCAB + 4))
    raises("prompt_ids-negative", ["prompt_ids"], p=lambda: prompt().index_fill(1, torch.tensor([0]), -1))
    raises("prompt_ids-meta", ["prompt_ids", "model"], p=lambda: meta(prompt()))
    # lengths
    raises("gen_length-zero", ["gen_length"], args=(0, BLOCK, STEPS))
    raises("gen_length-negative", ["gen_length"], args=(-4, BLOCK, STEPS))
    raises("gen_length-float", ["gen_length"], args=(4.0, BLOCK, STEPS))
    raises("block_length-not-dividing", ["block_length", "gen_length"], args=(GEN, 3, STEPS))
    raises("block_length-zero", ["block_length"], args=(GEN, 0, STEPS))
    raises("steps-zero", ["steps"], args=(GEN, BLOCK, 0))
    raises("steps-float", ["steps"], args=(GEN, BLOCK, 4.0))
    raises("steps-not-multiple", ["steps"], args=(GEN, BLOCK, 3))
    # ids and options
    raises("mask_id-float", ["mask_id"], mask_id=37.0)
    raises("mask_id-beyond-vocab", ["mask_id"], mask_id=VOCAB + 1)
    raises("mask_id-negative", ["mask_id"], mask_id=-1)
    raises("temperature-negative", ["temperature"], temperature=-0.5)
    raises("temperature-nan", ["temperature"], temperature=NAN)
    raises("top_p-above-1", ["top_p"], temperature=1.0, top_p=2.0)
    raises("top_k-negative", ["top_k"], temperature=1.0, top_k=-1)
    raises("remasking-unknown", ["remasking"], remasking="lowest")
    raises("confidence-unknown", ["confidence"], confidence="max")
    raises("confidence_from-unknown", ["confidence_from"], confidence_from="model")
    raises("schedule-unknown", ["schedule"], schedule="cosine")
    raises("cache-unknown", ["cache"], cache="full")
    raises("cache-model-without-init_cache", ["cache"], m=lambda: ConstantLogits(0.0), cache="dual")
    raises("threshold-and-factor", ["threshold", "factor"], threshold=0.5, factor=1.0)
    raises("threshold-nan", ["threshold"], threshold=NAN)
    raises("threshold-str", ["threshold"], threshold="0.5")
    raises("factor-nan", ["factor"], factor=NAN)
    raises("schedule_eps-zero", ["schedule_eps"], schedule="dream", args=(GEN, GEN, 2), schedule_eps=0.0)
    raises("schedule_eps-negative", ["schedule_eps"], schedule="dream", args=(GEN, GEN, 2), schedule_eps=-0.5)
    raises("schedule_eps-above-1", ["schedule_eps"], schedule="dream", args=(GEN, GEN, 2), schedule_eps=1.5)
    raises("alg_temp-negative", ["alg_temp"], alg_temp=-1.0)
    raises("alg_temp-with-threshold", ["alg_temp"], alg_temp=0.5, threshold=0.5)
    raises("eos_id-beyond-vocab", ["eos_id"], eos_id=VOCAB + 2, suppress_eos=True)
    raises("eos_id-float", ["eos_id"], eos_id=2.0, suppress_eos=True)
    raises("eos_id-negative", ["eos_id"], eos_id=-3, stop_at_eos=True)
    raises("suppress_eos-without-eos_id", ["eos_id"], suppress_eos=True)
    raises("eot_id-beyond-vocab", ["eot_id"], eos_id=1, eot_id=VOCAB, confidence_eos_eot_inf=True)
    raises("seed-float", ["seed"], seed=1.5, temperature=1.0)
    raises("seed-str", ["seed"], seed="1", temperature=1.0)
    raises("callback-not-callable", ["callback"], callback=3)
    # the attention mask
    raises("attention_mask-longer", ["attention_mask"], attention_mask=torch.ones(B, LP + 1, dtype=torch.bool))
    raises("attention_mask-whole-sequence", ["attention_mask"], attention_mask=torch.ones(B, LP + GEN, dtype=torch.bool))
    raises("attention_mask-batch3", ["attention_mask"], attention_mask=torch.ones(B + 1, LP, dtype=torch.bool))
    raises("attention_mask-1d", ["attention_mask"], attention_mask=torch.ones(LP, dtype=torch.bool))
    raises("attention_mask-float-fraction", ["attention_mask"], attention_mask=torch.full((B, LP), 0.5))
    raises("attention_mask-list", ["attention_mask"], attention_mask=[[1, 1, 1], [1, 1, 1]])
    raises("attention_mask-meta", ["attention_mask"], attention_mask=torch.ones(B, LP, dtype=torch.bool, device="meta"))
    raises("attention_mask-cache-longer", ["attention_mask"], cache="dual",
           attention_mask=torch.ones(B, LP + 1, dtype=torch.bool))
    return out


# -- schedules -------------------------------------------------------------------------------

def llada_counts(result, call):
    """n[b, s] = M_b // steps + (s < M_b % steps)."""
    mask_index, steps = call.args
    m = mask_index.sum(1) if mask_index.dim() == 2 else mask_index
    want = torch.tensor([[int(mb) // steps + (s < int(mb) % steps) for s in range(steps)] for mb in m.tolist()],
                        dtype=torch.int64).reshape(len(m), steps)
    assert torch.equal(result, want), f"{result.tolist()} vs {want.tolist()}"


def dream_count(result, call):
    """trunc(N (1 - s / t)) with t, s from float32 linspace(1, eps, steps + 1); all of N at the end."""
    n, step, steps = call.args[:3]
    eps = call.args[3] if len(call.args) > 3 else call.kwargs.get("eps", 1e-3)
    ts = torch.linspace(1, eps, steps + 1)
    nf = n.to(torch.float32)
    want = nf.to(torch.int64) if step == steps - 1 else (nf * (1 - ts[step + 1] / ts[step])).to(torch.int64)
    assert torch.equal(result, want), f"{result.tolist()} vs {want.tolist()}"


def schedule_cases():
    out = []
    add = _add(out, "schedules")
    mask = lambda: torch.tensor([[True, False, True, True], [False, False, False, False]])  # noqa: E731

    def llada(desc, expect, m=None, steps=3):
        add(f"llada-{desc}", lambda: Call(schedules.llada_num_transfer_tokens, (mask() if m is None else m(), steps)),
            expect)

    def dream(desc, expect, n=None, *rest, **kw):
        add(f"dream-{desc}", lambda: Call(schedules.dream_num_transfer_tokens,
                                          (torch.tensor([7, 0]) if n is None else n(),) + (rest or (1, 4)), dict(kw)),
            expect)

    llada("bool-mask", Check(llada_counts))
    llada("counts", Check(llada_counts), m=lambda: torch.tensor([7, 0, 3]))
    llada("empty-batch", Check(llada_counts), m=lambda: torch.zeros(0, 4, dtype=torch.bool))
    llada("one-step", Check(llada_counts), steps=1)
    llada("steps-zero", Raises("steps"), steps=0)
    llada("steps-float", Raises("steps"), steps=3.0)
    llada("steps-bool", Raises("steps"), steps=True)
    llada("float-counts", Raises("mask_index"), m=lambda: torch.tensor([3.5, 2.0]))
    llada("float-mask", Raises("mask_index"), m=lambda: mask().float())
    llada("negative-counts", Raises("mask_index"), m=lambda: torch.tensor([-3, 2]))
    llada("rank3", Raises("mask_index"), m=lambda: mask()[None])
    llada("list", Raises("mask_index"), m=lambda: [[True, False]])
    dream("basic", Check(dream_count))
    dream("last-step", Check(dream_count), None, 3, 4)
    dream("float-mean-count", Check(dream_count), lambda: torch.tensor([3.5, 3.5]))
    dream("eps-given", Check(dream_count), None, 1, 4, 0.1)
    dream("step-negative", Raises("step"), None, -1, 4)
    dream("step-equal-steps", Raises("step"), None, 4, 4)
    dream("step-float", Raises("step"), None, 1.0, 4)
    dream("steps-zero", Raises("steps", "step"), None, 0, 0)
    dream("steps-float", Raises("steps"), None, 1, 4.0)
    for eps in (0.0, -0.5, 1.0, 1.5, NAN):
        dream(f"eps-{eps}", Raises("eps"), None, 1, 4, eps)
    dream("num_masked-negative", Raises("num_masked"), lambda: torch.tensor([-2, 3]))
    dream("num_masked-nan", Raises("num_masked"), lambda: torch.tensor([NAN, 3.0]))
    dream("num_masked-list", Raises("num_masked"), lambda: [3, 2])
    return out


# -- the model and its loader ----------------------------------------------------------------

_TMP = []


def _tmpdir():
    if not _TMP:
        _TMP.append(tempfile.TemporaryDirectory(prefix="dk_battery_"))
    return tempfile.mkdtemp(dir=_TMP[0].name)


def checkpoint(edit_config=None, edit_dir=None):
    """A saved tiny LLaDA checkpoint directory, then edited."""
    d = _tmpdir()
    model().save_pretrained(d)
    path = os.path.join(d, "config.json")
    if edit_config is not None:
        with open(path) as f:
            cfg = json.load(f)
        cfg = edit_config(cfg)
        with open(path, "w") as f:
            f.write(cfg if isinstance(cfg, str) else json.dumps(cfg))
    if edit_dir is not None:
        edit_dir(d)
    return d


def _without(*keys):
    def edit(cfg):
        for k in keys:
            cfg.pop(k, None)
        return cfg
    return edit


def _truncate(d, n=None):
    path = os.path.join(d, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2 if n is None else n)


def _drop_tensor(d, key="model.transformer.ln_f.weight", reshape=False):
    from safetensors.torch import load_file, save_file

    path = os.path.join(d, "model.safetensors")
    state = load_file(path)
    if reshape:
        state[key] = state[key][:-1].contiguous()
    else:
        del state[key]
    save_file(state, path)


def loads_same_model(result, call):
    x = randint(0, 30, 2, 5, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(result(x), model()(x), rtol=0, atol=0)


def model_from_config(**kw):
    return LLaDAModel(LLaDAConfig(**kw))


def model_cases():
    out = []
    # A worker's first meta-device model imports torch._refs (seconds on a loaded machine).
    add = _add(out, "models", timeout=40.0)
    load = LLaDAModel.from_pretrained

    def loader(desc, expect, **kw):
        add(f"from_pretrained-{desc}", lambda: Call(load, (checkpoint(**kw),)), expect)

    loader("roundtrip", Check(loads_same_model))
    loader("invalid-json", Raises("config.json", types=FILE_ERRORS), edit_config=lambda c: "{not json")
    loader("config-a-list", Raises("config.json", types=FILE_ERRORS), edit_config=lambda c: [c])
    loader("config-empty-file", Raises("config.json", types=FILE_ERRORS), edit_config=lambda c: "")
    for key in ("n_heads", "mask_token_id", "d_model", "n_layers"):
        loader(f"config-without-{key}", Raises(key, types=FILE_ERRORS), edit_config=_without(key))
    loader("config-without-vocab", Raises("vocab_size", "embedding_size", types=FILE_ERRORS),
           edit_config=_without("vocab_size", "embedding_size"))
    loader("config-n_heads-not-dividing", Raises("n_heads", types=FILE_ERRORS),
           edit_config=lambda c: {**c, "n_heads": 5})
    loader("config-n_heads-str", Raises("n_heads", types=FILE_ERRORS), edit_config=lambda c: {**c, "n_heads": "4"})
    loader("config-n_kv_heads-not-dividing", Raises("n_kv_heads", types=FILE_ERRORS),
           edit_config=lambda c: {**c, "n_kv_heads": 3})
    loader("no-config", Raises("config.json", types=FILE_ERRORS),
           edit_dir=lambda d: os.remove(os.path.join(d, "config.json")))
    loader("no-safetensors", Raises("safetensors", types=FILE_ERRORS),
           edit_dir=lambda d: os.remove(os.path.join(d, "model.safetensors")))
    loader("empty-safetensors", Raises("model.safetensors", types=FILE_ERRORS), edit_dir=lambda d: _truncate(d, 0))
    loader("truncated-safetensors", Raises("model.safetensors", types=FILE_ERRORS), edit_dir=_truncate)
    loader("garbage-safetensors", Raises("model.safetensors", types=FILE_ERRORS),
           edit_dir=lambda d: open(os.path.join(d, "model.safetensors"), "wb").write(b"\x08" + b"\0" * 7 + b"{{{{{{{{"))
    loader("missing-tensor", Raises("transformer.ln_f.weight", types=FILE_ERRORS), edit_dir=_drop_tensor)
    loader("wrong-shape-tensor", Raises("transformer.ln_f.weight", types=FILE_ERRORS),
           edit_dir=lambda d: _drop_tensor(d, reshape=True))
    add("from_pretrained-no-directory", lambda: Call(load, (os.path.join(_tmpdir(), "absent"),)),
        Raises("absent", types=FILE_ERRORS))

    def config(desc, names, **kw):
        add(f"LLaDAModel-{desc}", lambda: Call(model_from_config, (), dict(kw)), Raises(*names))

    config("n_heads-not-dividing-d_model", ["n_heads", "d_model"], d_model=30, n_heads=4)
    config("n_kv_heads-not-dividing", ["n_kv_heads"], n_heads=4, n_kv_heads=3)
    config("vocab-zero", ["vocab_size"], vocab_size=0)
    config("mask_token_id-beyond-vocab", ["mask_token_id"], vocab_size=64, mask_token_id=64)
    config("odd-head_dim", ["d_model", "n_heads"], d_model=12, n_heads=4)

    def forward(desc, names, x=None, **kw):
        add(f"LLaDAModel.forward-{desc}", lambda: Call(model(), (randint(0, 30, 2, 5, seed=3) if x is None else x(),),
                                                       copy.deepcopy(kw)), Raises(*names))

    forward("x-beyond-vocab", ["x"], x=lambda: torch.tensor([[1, VOCAB + 3]]))
    forward("x-negative", ["x"], x=lambda: torch.tensor([[1, -2]]))
    forward("x-float", ["x"], x=lambda: torch.tensor([[1.0, 2.0]]))
    forward("x-rank1", ["x"], x=lambda: torch.tensor([1, 2]))
    forward("attention_mask-shape", ["attention_mask"], attention_mask=torch.ones(2, 4))
    forward("attention_mask-batch", ["attention_mask"], attention_mask=torch.ones(3, 5))
    add("LLaDAModel.forward-cache-start-beyond", lambda: (lambda m: Call(
        m, (randint(0, 30, 2, 3, seed=3),), dict(kv_cache=m.init_cache(2, 8), start=6)))(model()), Raises("start"))
    add("LLaDAModel.forward-cache-start-negative", lambda: (lambda m: Call(
        m, (randint(0, 30, 2, 3, seed=3),), dict(kv_cache=m.init_cache(2, 8), start=-1)))(model()), Raises("start"))
    add("LLaDAModel.forward-cache-batch", lambda: (lambda m: Call(
        m, (randint(0, 30, 2, 3, seed=3),), dict(kv_cache=m.init_cache(3, 8), start=0)))(model()),
        Raises("kv_cache", "k_cache"))
    return out
