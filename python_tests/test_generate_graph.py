"""generate(cuda_graph=True): the decode step on static buffers (decoding/graph.py).

On the CPU the step runs eagerly on the same buffers a CUDA graph would replay, so here: the same
tokens, order, NFE and log-probabilities as cuda_graph=False for every option the step takes; one
step function per step shape; no host read inside the step (run on the meta device, where any
read raises); the step reads nothing but its static buffers (a dispatch mode records every tensor
it touches); the options that cannot be captured are refused by name. The capture itself needs
CUDA (the tests marked ``cuda``)."""
import importlib.util
import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from diffusion_kernels import generate
from diffusion_kernels.decoding import ModelForward, Proposal, ReMDM, Threshold, TopK
from diffusion_kernels.decoding.graph import StaticDecodeStep, StepGraph
from diffusion_kernels.decoding.proposal import _ID_TENSORS
from diffusion_kernels.models import LLaDAConfig, LLaDAModel

from generate_models import MASK, tiny_llada

GEN, BLOCK, STEPS = 16, 8, 8


@pytest.fixture(scope="module")
def model():
    return tiny_llada()


@pytest.fixture(scope="module")
def prompt():
    return torch.randint(0, MASK, (3, 5), generator=torch.Generator().manual_seed(1))


def _padding():
    mask = torch.ones(3, 5, dtype=torch.long)
    mask[1, :2] = 0
    mask[2, :1] = 0
    return mask


def _same(a, b):
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.order, b.order)
    assert a.nfe == b.nfe
    if a.trajectory is not None:
        assert torch.equal(a.trajectory.log_prob, b.trajectory.log_prob)


CASES = {
    "vanilla": dict(),
    "dual": dict(cache="dual"),
    "prefix": dict(cache="prefix"),
    "dual-threshold": dict(cache="dual", threshold=0.3),
    "prefix-factor": dict(cache="prefix", factor=1.0),
    "dual-sampled": dict(cache="dual", temperature=0.8, seed=3),
    "prefix-dream": dict(cache="prefix", schedule="dream", temperature=0.5, top_p=0.9),
    "dual-alg-temp": dict(cache="dual", alg_temp=0.5, seed=2),
    "dual-cfg": dict(cache="dual", cfg_scale=1.5),
    "dual-shift": dict(cache="dual", shift_logits=True),
    "prefix-shift": dict(cache="prefix", shift_logits=True),
    "dual-padding": dict(cache="dual", attention_mask="padded"),
    "prefix-padding": dict(cache="prefix", attention_mask="padded"),
    "vanilla-padding": dict(attention_mask="padded"),
    "dual-eos-eot": dict(cache="dual", eos_id=3, eot_id=4, confidence_eos_eot_inf=True, suppress_eos=True),
    "sdar": dict(schedule="sdar"),
    "dual-trajectory": dict(cache="dual", temperature=0.7, return_trajectory=True),
    "prefix-trajectory-greedy": dict(cache="prefix", eos_id=3, suppress_eos=True, return_trajectory=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_tokens_as_the_eager_loop(model, prompt, name):
    kw = dict(CASES[name])
    if kw.get("attention_mask") == "padded":
        kw["attention_mask"] = _padding()
    eager = generate(model, prompt, GEN, BLOCK, STEPS, mask_id=MASK, return_dict=True, progress=False, **kw)
    static = generate(model, prompt, GEN, BLOCK, STEPS, mask_id=MASK, return_dict=True, progress=False,
                      cuda_graph=True, **kw)
    _same(eager, static)


@pytest.mark.parametrize("rows, length, kw", [(2, 1, dict(cache="prefix", shift_logits=True)),
                                              (2, 0, dict(cache="dual", shift_logits=True)),
                                              (0, 3, dict(cache="dual", threshold=0.5))])
def test_edge_prompts_and_batches(model, rows, length, kw):
    """A one-token prompt with Dream's shift runs the whole sequence but decodes from position 1."""
    p = torch.randint(0, MASK, (rows, length), generator=torch.Generator().manual_seed(2))
    _same(generate(model, p, GEN, BLOCK, STEPS, mask_id=MASK, return_dict=True, progress=False, **kw),
          generate(model, p, GEN, BLOCK, STEPS, mask_id=MASK, return_dict=True, progress=False, cuda_graph=True, **kw))


def test_callback_sees_the_same_steps(model, prompt):
    seen = {False: [], True: []}
    for graph in (False, True):
        generate(model, prompt, GEN, BLOCK, STEPS, mask_id=MASK, cache="dual", threshold=0.3, progress=False,
                 cuda_graph=graph, callback=lambda s, g=graph: seen[g].append((s.step, s.block, s.x.clone(),
                                                                                s.transferred.clone())))
    assert len(seen[True]) == len(seen[False]) > 0
    for a, b in zip(seen[False], seen[True]):
        assert a[:2] == b[:2] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])


@pytest.mark.parametrize("cache, shapes", [(None, 1), ("dual", 2), ("prefix", 4)])
def test_one_step_function_per_shape(model, prompt, monkeypatch, cache, shapes):
    """3 blocks: the whole sequence (every step without a cache, each block's first step with
    one), plus the block (dual: one shape for all blocks) or the block to the end (prefix: one each)."""
    built = []
    make = StaticDecodeStep._step_fn
    monkeypatch.setattr(StaticDecodeStep, "_step_fn", lambda self, *a: built.append(a[:2]) or make(self, *a))
    out = generate(model, prompt, 24, 8, 12, mask_id=MASK, cache=cache, progress=False, return_dict=True,
                   cuda_graph=True)
    assert out.nfe == 12
    assert len(built) == shapes == len(set(built))


def _loop_step(model, x, cache, proposal=Proposal(), **kw):
    """A StaticDecodeStep after one step of each shape (block [8, 16) of x)."""
    fwd = ModelForward(model, x, mask_id=MASK, cache=cache, **kw)
    step = StaticDecodeStep(fwd, torch.full_like(x, -1), proposal, mask_id=MASK, seed=1,
                            log_prob=torch.zeros(x.shape, device=x.device), capture=False)
    k = torch.full((x.shape[0],), 2, dtype=torch.int64, device=x.device)
    for i in range(2 if cache else 1):
        step(i, 8, 16, nfe=i, rule=TopK(k))
    return step, fwd


class _Reads(TorchDispatchMode):
    """Records the storages every op reads that no earlier op of the region made."""

    def __init__(self):
        super().__init__()
        self.read, self.made = set(), set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.made:
                self.read.add(t.untyped_storage().data_ptr())
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.made.add(t.untyped_storage().data_ptr())
        return out


@pytest.mark.parametrize("cache", [None, "dual", "prefix"])
def test_the_step_reads_only_static_buffers(model, cache):
    """What a captured graph replays: every tensor the step reads must live at an address fixed
    before the first step (buffers refilled in place, never replaced)."""
    x = torch.full((2, 24), MASK)
    x[:, :8] = torch.randint(0, MASK, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        step, fwd = _loop_step(model, x, cache, Proposal(temperature=0.5, suppress_ids=(3,)), cfg_scale=1.0)
        before = {name: t.data_ptr() for name, t in step.static_buffers().items()}
        static = [x, step.order, step.log_prob, step.positions, fwd.prompt_index, *step.static_buffers().values(),
                  *model.parameters()] + ([] if fwd.kv is None else [*fwd.kv.k, *fwd.kv.v])
        allowed = {t.untyped_storage().data_ptr() for t in static}
        assert step.graphs
        for graph in step.graphs.values():
            mode = _Reads()
            with mode:
                graph.fn()
            allowed |= {t.untyped_storage().data_ptr() for t in _ID_TENSORS.values()}  # made once, kept
            assert mode.read <= allowed, "the step read a tensor made outside its static buffers"
        step(2, 8, 16, nfe=2, rule=TopK(torch.tensor([1, 1])))
        assert {name: t.data_ptr() for name, t in step.static_buffers().items()} == before


def _meta_model():
    cfg = LLaDAConfig(vocab_size=38, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden_size=48,
                      mask_token_id=MASK)
    with torch.device("meta"):
        return LLaDAModel(cfg)


@pytest.mark.parametrize("kw", [dict(cache="dual"), dict(cache="prefix", shift_logits=True), dict(cache=None),
                                dict(cache="dual", cfg_scale=2.0, padded=True)])
@pytest.mark.parametrize("rule", ["topk", "threshold"])
def test_no_host_read_inside_the_step(kw, rule):
    """On the meta device any read of a value (.item(), bool(), .tolist(), nonzero) raises, as
    it would synchronise a GPU; the CPU-only checks of the model and the ops are skipped, as on
    CUDA. The model itself reads its mask outside a static step (the detector works)."""
    kw = dict(kw)
    padded = kw.pop("padded", False)
    model = _meta_model()
    with torch.inference_mode():
        x = torch.full((2, 24), MASK, dtype=torch.int64, device="meta")
        mask = torch.ones(2, 24, dtype=torch.bool, device="meta") if padded else None
        fwd = ModelForward(model, x, mask_id=MASK, attention_mask=mask, **kw)
        step = StaticDecodeStep(fwd, torch.full_like(x, -1), Proposal(temperature=0.7, suppress_ids=(3,)),
                                mask_id=MASK, seed=5, log_prob=torch.zeros(2, 24, device="meta"), capture=False)
        the_rule = TopK(torch.ones(2, dtype=torch.int64, device="meta")) if rule == "topk" else Threshold(0.9)
        for i in range(3):
            moved, q0 = step(i, 8, 16, nfe=i, rule=the_rule)
        assert moved.device.type == "meta"
        if padded:
            with pytest.raises(RuntimeError, match="meta"):
                model(x, attention_mask=mask)


def test_step_graph_runs_eagerly_without_capture():
    calls = []
    buf = torch.zeros(2)
    graph = StepGraph(lambda: calls.append(1) or buf.add_(1), capture=False)
    for _ in range(3):
        out = graph()
    assert len(calls) == 3 and out.tolist() == [3.0, 3.0] and graph.graph is None and graph.replays == 0


class _OwnThreshold(Threshold):
    """A user's adaptive rule: its select() may read anything, so it is not captured."""


class _NoTensorStart(torch.nn.Module):
    """A cache-capable model that does not declare accepts_tensor_start."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def init_cache(self, batch, length):
        return self.inner.init_cache(batch, length)

    def forward(self, x, attention_mask=None, kv_cache=None, start=0):
        return self.inner(x, attention_mask=attention_mask, kv_cache=kv_cache, start=start)


@pytest.mark.parametrize("kw, named", [
    (dict(remask_committed=ReMDM("cap", eta=0.1)), "remask_committed"),
    (dict(remasking="origin"), "remasking='origin'"),
    (dict(schedule="sdar", threshold=0.9), "schedule='sdar'"),
    (dict(rule=_OwnThreshold(0.9)), "rule=_OwnThreshold"),
    (dict(cache="dual", wrap=True), "accepts_tensor_start"),
])
def test_options_that_cannot_be_captured_are_refused(model, prompt, kw, named):
    kw = dict(kw)
    m = _NoTensorStart(model) if kw.pop("wrap", False) else model
    with pytest.raises(ValueError, match="cuda_graph") as e:
        generate(m, prompt, GEN, BLOCK, STEPS, mask_id=MASK, progress=False, cuda_graph=True, **kw)
    assert named in str(e.value)
    generate(m, prompt, GEN, BLOCK, STEPS, mask_id=MASK, progress=False, **kw)  # fine without graphs


def test_cuda_graph_must_be_a_bool(model, prompt):
    with pytest.raises(TypeError, match="'cuda_graph'"):
        generate(model, prompt, GEN, BLOCK, STEPS, mask_id=MASK, progress=False, cuda_graph="yes")


def test_llada_tensor_start_equals_int_start(model):
    x = torch.randint(0, MASK, (2, 24), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        kv_a, kv_b = model.init_cache(2, 24), model.init_cache(2, 24)
        model(x, kv_cache=kv_a), model(x, kv_cache=kv_b)
        a = model(x[:, 8:16], kv_cache=kv_a, start=8)
        b = model(x[:, 8:16], kv_cache=kv_b, start=torch.tensor([8]))
        assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(kv_a.k, kv_b.k))
        with pytest.raises(ValueError, match="'start'"):
            model(x[:, 8:16], kv_cache=kv_b, start=torch.tensor([20]))
        with pytest.raises(ValueError, match="'start'"):
            model(x[:, 8:16], kv_cache=kv_b, start=torch.tensor([8.0]))


def test_bench_graphs_runs_a_tiny_shape(tmp_path):
    """bench/bench_graphs.py (the GPU benchmark) at a tiny shape on the CPU, so it cannot rot."""
    path = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "bench_graphs.py")
    spec = importlib.util.spec_from_file_location("bench_graphs", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--tiny", "--device", "cpu", "--json", str(tmp_path / "graphs.json")])
    assert {r["mode"] for r in rows} == {"vanilla", "dual", "dual+threshold"}
    assert all(r["same_tokens"] for r in rows)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("kw", [dict(), dict(cache="dual"), dict(cache="prefix"), dict(cache="dual", threshold=0.3),
                                dict(cache="dual", temperature=0.8, seed=3, attention_mask="padded")])
def test_cuda_graph_replays_and_gives_the_eager_tokens(prompt, monkeypatch, kw):
    kw = dict(kw)
    if kw.get("attention_mask") == "padded":
        kw["attention_mask"] = _padding().cuda()
    model = tiny_llada(d_model=256, dtype=torch.bfloat16).cuda()  # head_dim 64, as the CUDA attention needs
    p = prompt.cuda()
    made = []
    init = StepGraph.__init__
    monkeypatch.setattr(StepGraph, "__init__", lambda self, *a, **k: made.append(self) or init(self, *a, **k))
    eager = generate(model, p, 24, 8, 12, mask_id=MASK, return_dict=True, progress=False, **kw)
    static = generate(model, p, 24, 8, 12, mask_id=MASK, return_dict=True, progress=False, cuda_graph=True, **kw)
    _same(eager, static)
    assert made and all(g.capture for g in made)
    assert sum(g.replays for g in made) > 0


def test_doctests():
    import doctest

    from diffusion_kernels.decoding import graph

    result = doctest.testmod(graph, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
