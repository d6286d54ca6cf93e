"""SGLang adapter (diffusion_kernels.integrations.sglang) against a fake SGLang built from its
documented interface and against the transcription of its stock algorithms (engine_stock.py):
identical input_ids, done flags and per-request states, step by step, in sync and FDFO mode."""
import copy
import sys

import pytest
import torch

import engine_fakes as fakes
import engine_stock as stock

MASK = 23
VOCAB = 24  # the mask id is a real column of the logits, as in LLaDA2 / SDAR


@pytest.fixture
def sglang(monkeypatch):
    monkeypatch.delenv("DK_SGLANG_OVERRIDE", raising=False)
    algo = fakes.install_sglang(monkeypatch)
    from diffusion_kernels.integrations import sglang as dk_sglang
    dk_sglang.register()
    return algo


def random_block(g, batch, block, prompt_rows=True):
    """Rows: all masked, fully decoded, a prompt prefix then masks, scattered masks."""
    ids = torch.randint(0, MASK, (batch, block), generator=g)
    for r in range(batch):
        kind = r % 4
        if kind == 0:
            ids[r] = MASK
        elif kind == 2 and prompt_rows:
            ids[r, int(torch.randint(1, block, (1,), generator=g)):] = MASK
        elif kind == 3:
            ids[r][torch.rand(block, generator=g) < 0.6] = MASK
    return ids


def literal_prompt_mask(ids, g):
    """SGLang's dllm_prompt_mask: a prompt prefix that may hold the mask id literally."""
    lengths = torch.randint(0, ids.shape[1] // 2, (ids.shape[0],), generator=g)
    prompt = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    ids[prompt & (torch.rand(ids.shape, generator=g) < 0.3)] = MASK
    return prompt


def make(algo, name, config, block, fdfo=False):
    return algo.algo_name_to_cls[name](fakes.DllmConfig(name, dict(config), block, MASK, fdfo))


def test_import_never_loads_an_engine():
    """No engine import at module level in the adapters, and the package does not import them."""
    import ast
    from pathlib import Path

    import diffusion_kernels
    root = Path(diffusion_kernels.__file__).parent
    engines = ("sglang", "vllm", "dllm_plugin", "dinfer")
    for path in [root / "__init__.py", *sorted((root / "integrations").glob("*.py"))]:
        for node in ast.parse(path.read_text()).body:  # top level only; functions import lazily
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not [n for n in names if n.split(".")[0] in engines], (path.name, names)
            if isinstance(node, ast.ImportFrom) and path.name == "__init__.py" and path.parent == root:
                loaded = [node.module or ""] + [a.name for a in node.names]
                assert not [n for n in loaded if "integrations" in n], "import diffusion_kernels must not load adapters"


def test_missing_sglang_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sglang", None)
    from diffusion_kernels.integrations import sglang as dk_sglang
    with pytest.raises(ImportError, match="pip install 'sglang"):
        dk_sglang.register()


def test_register_adds_our_names_and_override_is_opt_in(monkeypatch, sglang):
    from diffusion_kernels.integrations import sglang as dk_sglang
    table = sglang.algo_name_to_cls
    ours = dk_sglang.algorithm_classes()
    assert table["DKLowConfidence"] is ours["DKLowConfidence"]
    assert table["DKJointThreshold"] is ours["DKJointThreshold"]
    assert issubclass(ours["DKLowConfidence"], fakes.FakeDllmAlgorithm)
    assert table["LowConfidence"].__module__ == "engine_fakes"  # stock untouched without the opt-in
    monkeypatch.setenv("DK_SGLANG_OVERRIDE", "JointThreshold")
    dk_sglang.register()
    assert table["JointThreshold"] is ours["DKJointThreshold"] and table["LowConfidence"].__module__ == "engine_fakes"
    monkeypatch.setenv("DK_SGLANG_OVERRIDE", "1")
    dk_sglang.register()
    assert table["LowConfidence"] is ours["DKLowConfidence"]
    monkeypatch.setenv("DK_SGLANG_OVERRIDE", "Dream")
    with pytest.raises(ValueError, match="DK_SGLANG_OVERRIDE"):
        dk_sglang.register()


def lockstep(algo, name, config, ids, model, *, prompt=None, fdfo=False, steps=None):
    """Run the stock algorithm and ours on the same logits, step by step; assert equal ids, done
    flags and states after every step. Returns the number of steps taken."""
    block = ids.shape[1]
    stock_alg, our_alg = make(algo, name, config, block, fdfo), make(algo, "DK" + name, config, block, fdfo)
    a, b = fakes.forward_batch(ids, prompt), fakes.forward_batch(ids, prompt)
    sa, sb = stock_alg.init_step_state(a), our_alg.init_step_state(b)
    assert sa == sb
    assert stock_alg.max_steps(block) == our_alg.max_steps(block)
    for step in range(steps or stock_alg.max_steps(block)):
        logits = model(a)
        da = stock_alg.step(a, logits.clone(), sa)
        db = our_alg.step(b, logits.clone(), sb)
        assert db == da, f"done flags differ at step {step}"
        assert torch.equal(b.input_ids, a.input_ids), f"input_ids differ at step {step}"
        assert sb == sa, f"states differ at step {step}"
        if all(da):
            return step + 1
    return steps


@pytest.mark.parametrize("threshold", [0.95, 0.5, 0.2])
@pytest.mark.parametrize("seed", range(2))
def test_low_confidence_matches_stock(sglang, seed, threshold):
    g = torch.Generator().manual_seed(seed)
    ids = random_block(g, 8, 8)
    prompt = literal_prompt_mask(ids, g) if seed == 1 else None
    lockstep(sglang, "LowConfidence", {"threshold": threshold}, ids, fakes.ToyModel(8, VOCAB, seed), prompt=prompt)


@pytest.mark.parametrize("config", [
    {"max_post_edit_steps": 4},
    {"threshold": 0.8, "edit_threshold": 0.3, "max_post_edit_steps": 3},
    {"threshold": 0.6, "edit_threshold": 0.1, "max_post_edit_steps": 0, "penalty_lambda": 1.5},
    {"threshold": 0.95, "edit_threshold": 0.0, "max_post_edit_steps": 5, "penalty_lambda": 0.75},
    {"threshold": 1.0, "edit_threshold": 2.0, "max_post_edit_steps": 2, "penalty_lambda": -1.0},  # fallback only
])
@pytest.mark.parametrize("seed", range(2))
def test_joint_threshold_matches_stock(sglang, seed, config):
    g = torch.Generator().manual_seed(seed + 10)
    ids = random_block(g, 8, 8)
    prompt = literal_prompt_mask(ids, g) if seed == 1 else None
    lockstep(sglang, "JointThreshold", config, ids, fakes.ToyModel(8, VOCAB, seed, scale=1.0), prompt=prompt)


def test_joint_threshold_edits_and_finishes(sglang):
    """The lockstep runs above do edit and finish by both routes (no change, budget)."""
    g = torch.Generator().manual_seed(3)
    ids = random_block(g, 16, 8)
    model = fakes.ToyModel(8, VOCAB, 3, scale=1.0)
    alg = make(sglang, "DKJointThreshold", {"threshold": 0.7, "edit_threshold": 0.05, "max_post_edit_steps": 2}, 8)
    batch = fakes.forward_batch(ids)
    states = alg.init_step_state(batch)
    edits = 0
    for _ in range(40):
        before = batch.input_ids.clone()
        done = alg.step(batch, model(batch), states)
        edits += int(((before != MASK) & (before != batch.input_ids)).sum())
        if all(done):
            break
    assert all(done) and edits > 0
    assert {s["post_edit_steps"] for s in states} - {0}  # some rows spent post-edit steps


def test_strict_threshold_at_exactly_one_half(sglang):
    """Two tied maxima give p = 0.5 exactly: not above 0.5, so the fallback (lowest index) runs."""
    logits = torch.full((4, VOCAB), -float("inf"))
    logits[:, 3] = logits[:, 4] = 1.0
    logits[2, 5] = 2.0  # position 2 sure of token 5
    for name in ("LowConfidence", "JointThreshold"):
        ids = torch.tensor([[7, MASK, MASK, MASK]])
        lockstep(sglang, name, {"threshold": 0.5}, ids, lambda fb: logits, steps=4)


def test_fdfo_rounds_carry_state(sglang):
    """First-done-first-out: one step per round, finished rows leave and new ones join with fresh
    state; the carried dicts stay interchangeable with the stock class's."""
    g = torch.Generator().manual_seed(5)
    model = fakes.ToyModel(8, VOCAB, 5, scale=1.0)
    config = {"threshold": 0.7, "edit_threshold": 0.2, "max_post_edit_steps": 2, "penalty_lambda": 0.5}
    ours = make(sglang, "DKJointThreshold", config, 8, fdfo=True)
    ref = make(sglang, "JointThreshold", config, 8, fdfo=True)
    rows = random_block(g, 4, 8)
    carried_a = carried_b = None
    for _ in range(12):
        a, b = fakes.forward_batch(rows), fakes.forward_batch(rows)
        done_a, carried_a = ref.run(model, a, copy.deepcopy(carried_a))
        done_b, carried_b = ours.run(model, b, copy.deepcopy(carried_b))
        assert done_a == done_b and carried_a == carried_b and torch.equal(a.input_ids, b.input_ids)
        rows = a.input_ids.view(4, 8).clone()
        fresh = random_block(g, 4, 8)
        for r, d in enumerate(done_a):
            if d:  # the request leaves; a new one takes its slot
                rows[r] = fresh[r]


def test_sync_run_reaches_the_same_tokens(sglang):
    g = torch.Generator().manual_seed(7)
    ids = random_block(g, 8, 8)
    model = fakes.ToyModel(8, VOCAB, 7, scale=1.0)
    for name in ("LowConfidence", "JointThreshold"):
        a, b = fakes.forward_batch(ids), fakes.forward_batch(ids)
        steps_a, _ = make(sglang, name, {"max_post_edit_steps": 2}, 8).run(model, a)
        steps_b, _ = make(sglang, "DK" + name, {"max_post_edit_steps": 2}, 8).run(model, b)
        assert steps_a == steps_b and torch.equal(a.input_ids, b.input_ids)


def test_input_ids_edited_in_place_and_logits_untouched(sglang):
    g = torch.Generator().manual_seed(8)
    ids = random_block(g, 4, 8)
    batch = fakes.forward_batch(ids)
    storage = batch.input_ids.data_ptr()
    logits = fakes.ToyModel(8, VOCAB, 8)(batch)
    kept = logits.clone()
    for name, cfg in (("DKLowConfidence", {}), ("DKJointThreshold", {"penalty_lambda": 2.0})):
        alg = make(sglang, name, cfg, 8)
        alg.step(batch, logits, alg.init_step_state(batch))
        assert batch.input_ids.data_ptr() == storage
    assert torch.equal(logits, kept)


def test_logits_output_object_is_accepted(sglang):
    """Newer SGLang passes the output object; its dense full_logits are used."""
    g = torch.Generator().manual_seed(9)
    ids = random_block(g, 4, 8)
    model = fakes.ToyModel(8, VOCAB, 9)
    a, b = fakes.forward_batch(ids), fakes.forward_batch(ids)
    alg = make(sglang, "DKLowConfidence", {}, 8)
    assert alg.step(a, model(a), None) == alg.step(b, type("Out", (), {"full_logits": model(b)})(), None)
    assert torch.equal(a.input_ids, b.input_ids)


def test_real_sglang_if_installed():
    pytest.importorskip("sglang.srt.dllm.algorithm.low_confidence")
    from types import SimpleNamespace

    from sglang.srt.dllm.algorithm.joint_threshold import JointThreshold
    from sglang.srt.dllm.algorithm.low_confidence import LowConfidence

    from diffusion_kernels.integrations import sglang as dk_sglang
    dk_sglang.register()
    ours = dk_sglang.algorithm_classes()
    g = torch.Generator().manual_seed(11)
    for stock_cls, name, cfg in ((LowConfidence, "DKLowConfidence", {"threshold": 0.5}),
                                 (JointThreshold, "DKJointThreshold", {"threshold": 0.6, "edit_threshold": 0.2})):
        config = SimpleNamespace(algorithm=name, algorithm_config=cfg, block_size=8, mask_id=MASK,
                                 first_done_first_out_mode=False, max_running_requests=8)
        ref, mine = stock_cls(config), ours[name](config)
        ids = random_block(g, 8, 8)
        a, b = fakes.forward_batch(ids), fakes.forward_batch(ids)
        sa, sb = ref.init_step_state(a), mine.init_step_state(b)
        model = fakes.ToyModel(8, VOCAB, 11, scale=1.0)
        for _ in range(ref.max_steps(8)):
            logits = model(a)
            assert ref.step(a, logits.clone(), sa) == mine.step(b, logits.clone(), sb)
            assert torch.equal(a.input_ids, b.input_ids)


def test_entry_points_are_declared():
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path
    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    points = meta["project"]["entry-points"]
    import importlib
    for group, target in (("sglang.srt.plugins", "diffusion_kernels.integrations.sglang:register"),
                          ("vllm.general_plugins", "diffusion_kernels.integrations.vllm:register")):
        assert points[group]["diffusion_kernels"] == target
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
