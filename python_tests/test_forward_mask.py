"""forward_mask on every backend (CPU kernel, CUDA kernel under the emulator, CUDA) against the
Philox reference, bit for bit, plus its statistics and argument checks."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from diffusion_kernels._philox import philox4x32_10, philox_uniform

MASK_ID = 126336


def test_python_philox_known_answers():
    """The Python mirror against the Random123 vectors the C++ header is tested with."""
    t = lambda *v: [torch.tensor(x) for x in v]  # noqa: E731
    cases = [
        (t(0, 0, 0, 0), 0, 0, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        (t(*[0xFFFFFFFF] * 4), 0xFFFFFFFF, 0xFFFFFFFF, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (t(0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), 0xA4093822, 0x299F31D0,
         [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for ctr, k0, k1, want in cases:
        assert [int(w) for w in philox4x32_10(ctr, k0, k1)] == want


def assert_same(got, want):
    for g, w, name in zip(got, want, ("x_t", "masked", "p_mask")):
        assert torch.equal(g.cpu(), w.cpu()), f"{name} differs from the reference"


def on_device(kwargs, device):
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("kwargs", [
    {}, {"antithetic": True}, {"eps": 1e-7}, {"eps": 0.25, "seed": -3, "offset": 2**40},
    {"t": 0.5}, {"t": torch.tensor([0.0, 0.999, 0.3, 1.0, 0.5])},
    {"prompt_lengths": torch.tensor([0, 1, 37, 301, 300])}, {"prompt_lengths": 4, "antithetic": True},
], ids=str)
def test_matches_reference_bitwise(backend, kwargs):
    x0 = torch.randint(0, 1000, (5, 301))
    seed = kwargs.pop("seed", 11)
    got = backend.forward_mask(x0.to(backend.device), MASK_ID, seed=seed, **on_device(kwargs, backend.device))
    assert_same(got, reference.forward_mask(x0, MASK_ID, seed=seed, **kwargs))


def test_large_batch_matches_reference(backend):
    """Rows past the first thread block's, and long rows (the emulator runs a smaller case)."""
    b, l = (3, 700) if backend.emulated else (7, 1000)
    x0 = torch.randint(0, 1000, (b, l))
    for kw in ({}, {"antithetic": True}, {"prompt_lengths": torch.arange(b) * (l // b)},
               {"t": torch.linspace(0, 1, b)}):
        got = backend.forward_mask(x0.to(backend.device), MASK_ID, seed=8, offset=1, **on_device(kw, backend.device))
        assert_same(got, reference.forward_mask(x0, MASK_ID, seed=8, offset=1, **kw))


def test_non_contiguous_input():
    x0 = torch.randint(0, 1000, (301, 5)).t()
    assert_same(dk.forward_mask(x0, MASK_ID, seed=2), reference.forward_mask(x0.contiguous(), MASK_ID, seed=2))


def test_semantics():
    x0 = torch.randint(0, 1000, (64, 512))
    pl = torch.randint(0, 512, (64,))
    x_t, masked, p = dk.forward_mask(x0, MASK_ID, seed=5, prompt_lengths=pl)
    assert torch.equal(x_t, torch.where(masked, MASK_ID, x0))
    assert not masked[torch.arange(512)[None, :] < pl[:, None]].any(), "prompt positions must stay clean"
    assert (p >= 1e-3).all() and (p < 1).all() and torch.equal(p, p[:, :1].expand_as(p))
    # Masking rate per row follows p (binomial; 6 sigma).
    x_t, masked, p = dk.forward_mask(x0, MASK_ID, seed=6)
    rate = masked.float().mean(1)
    sigma = (p[:, 0] * (1 - p[:, 0]) / 512).sqrt()
    assert ((rate - p[:, 0]).abs() <= 6 * sigma + 1e-3).all()
    # t ~ U(0, 1): 4096 rows of t have mean 1/2 and are spread over the interval.
    _, _, p = dk.forward_mask(torch.zeros(4096, 1, dtype=torch.long), MASK_ID, seed=7)
    t = (p[:, 0] - 1e-3) / (1 - 1e-3)
    assert abs(t.mean().item() - 0.5) < 0.03 and t.min() < 0.01 and t.max() > 0.99


def test_antithetic_times_are_stratified():
    b = 16
    _, _, p = dk.forward_mask(torch.zeros(b, 3, dtype=torch.long), MASK_ID, seed=9, antithetic=True)
    t = (p[:, 0].double() - 1e-3) / (1 - 1e-3)
    cells = torch.floor(t * b).long()
    assert sorted(cells.tolist()) == list(range(b)) and torch.equal(cells, torch.arange(b))


def test_reproducible_and_keyed():
    x0 = torch.randint(0, 1000, (4, 200))
    a = dk.forward_mask(x0, MASK_ID, seed=1, offset=0)
    assert_same(dk.forward_mask(x0, MASK_ID, seed=1, offset=0), a)
    assert not torch.equal(dk.forward_mask(x0, MASK_ID, seed=2)[1], a[1])
    assert not torch.equal(dk.forward_mask(x0, MASK_ID, seed=1, offset=1)[1], a[1])


def test_draws_are_the_documented_philox_stream():
    x0 = torch.zeros(3, 7, dtype=torch.long)
    _, masked, p = dk.forward_mask(x0, MASK_ID, seed=42, offset=5)
    t = philox_uniform(42, 5, torch.arange(3), 2**33)
    assert torch.equal(p[:, 0], (1 - 1e-3) * t + 1e-3)
    u = philox_uniform(42, 5, torch.arange(3)[:, None], torch.arange(7)[None, :])
    assert torch.equal(masked, u < p)


def test_empty(backend):
    for shape in [(0, 5), (3, 0)]:
        x_t, masked, p = backend.forward_mask(torch.zeros(shape, dtype=torch.long, device=backend.device), MASK_ID)
        assert x_t.shape == masked.shape == p.shape == shape


def test_meta_tensors_shape_check():
    x_t, masked, p = dk.forward_mask(torch.zeros(2, 3, dtype=torch.long, device="meta"), MASK_ID,
                                     prompt_lengths=torch.tensor([1, 2], device="meta"))
    assert x_t.shape == masked.shape == p.shape == (2, 3) and p.device.type == "meta"


def test_option_tensors_on_another_device_are_named():
    """A meta (or other non-CPU) t / prompt_lengths with CPU tokens: an error naming it, not a
    failure inside the copy."""
    x0 = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="'t'.*device"):
        dk.forward_mask(x0, MASK_ID, t=torch.rand(2, device="meta"))
    with pytest.raises(ValueError, match="'prompt_lengths'.*device"):
        dk.forward_mask(x0, MASK_ID, prompt_lengths=torch.ones(2, dtype=torch.long, device="meta"))


class TestBadInputs:
    def call(self, backend, x0=None, mask_id=MASK_ID, **kwargs):
        x0 = torch.zeros(2, 3, dtype=torch.long) if x0 is None else x0
        return backend.forward_mask(x0.to(backend.device), mask_id, **on_device(kwargs, backend.device))

    def test_x0(self, backend):
        with pytest.raises(ValueError, match="'x0'.*int64"):
            self.call(backend, torch.zeros(2, 3, dtype=torch.int32))
        with pytest.raises(ValueError, match="'x0'.*int64"):
            self.call(backend, torch.zeros(2, 3))
        with pytest.raises(ValueError, match="'x0'.*\\[batch, seq\\]"):
            self.call(backend, torch.zeros(6, dtype=torch.long))

    @pytest.mark.parametrize("eps", [0.0, 1.0, 1.5, -0.1, float("nan")])
    def test_eps_outside_open_unit_interval(self, backend, eps):
        """eps = 0 would allow p_mask = 0, which the losses divide by."""
        with pytest.raises(ValueError, match="'eps'.*\\(0, 1\\)"):
            self.call(backend, eps=eps)
        with pytest.raises(TypeError, match="'eps'"):
            self.call(backend, eps="0.1")

    def test_t(self, backend):
        with pytest.raises(ValueError, match="'t'.*one entry per row"):
            self.call(backend, t=torch.rand(3))
        with pytest.raises(ValueError, match="'antithetic'.*'t'"):
            self.call(backend, t=0.5, antithetic=True)
        for t in (1.5, -0.5, float("nan")):
            with pytest.raises(ValueError, match="'t'.*\\[0, 1\\]"):
                self.call(backend, t=t)
        with pytest.raises(TypeError, match="'t'"):
            self.call(backend, t=torch.tensor([True, False]))

    def test_t_tensor_range_checked_on_cpu(self):
        with pytest.raises(ValueError, match="'t'.*\\[0, 1\\]"):
            dk.forward_mask(torch.zeros(2, 3, dtype=torch.long), MASK_ID, t=torch.tensor([0.5, float("nan")]))

    def test_prompt_lengths(self, backend):
        with pytest.raises(ValueError, match="'prompt_lengths'.*one entry per row"):
            self.call(backend, prompt_lengths=torch.tensor([1, 2, 3]))
        with pytest.raises(TypeError, match="'prompt_lengths'.*integer"):
            self.call(backend, prompt_lengths=torch.tensor([1.0, 2.0]))
        with pytest.raises(TypeError, match="'prompt_lengths'.*int"):
            self.call(backend, prompt_lengths=1.5)
        for bad in (4, -1):
            with pytest.raises(ValueError, match="'prompt_lengths'.*\\[0, 3\\]"):
                self.call(backend, prompt_lengths=bad)

    def test_prompt_lengths_tensor_range_checked_on_cpu(self):
        for bad in ([0, 4], [-1, 0]):
            with pytest.raises(ValueError, match="'prompt_lengths'.*\\[0, 3\\]"):
                dk.forward_mask(torch.zeros(2, 3, dtype=torch.long), MASK_ID, prompt_lengths=torch.tensor(bad))

    def test_seed_offset_mask_id(self, backend):
        with pytest.raises(ValueError, match="'seed'.*int64 range"):
            self.call(backend, seed=2**64)
        with pytest.raises(TypeError, match="'seed'.*int"):
            self.call(backend, seed=1.0)
        with pytest.raises(TypeError, match="'offset'.*int"):
            self.call(backend, offset=0.5)
        with pytest.raises(TypeError, match="'mask_id'.*int"):
            self.call(backend, mask_id=3.0)
        with pytest.raises(TypeError, match="'antithetic'.*bool"):
            self.call(backend, antithetic=1)

    def test_options_are_keyword_only(self):
        with pytest.raises(TypeError):
            dk.forward_mask(torch.zeros(2, 3, dtype=torch.long), MASK_ID, 1e-3)


def test_opcheck():
    x0 = torch.randint(0, 100, (3, 17))
    op = torch.ops.diffusion_kernels.forward_mask.default
    torch.library.opcheck(op, (x0, MASK_ID, 1e-3, None, torch.tensor([0, 2, 17]), 3, 4, True))
    torch.library.opcheck(op, (x0, MASK_ID, 1e-3, torch.rand(3), None, 3, 4, False))


def test_torch_compile_fullgraph_matches_eager():
    x0 = torch.randint(0, 100, (3, 17))
    f = lambda x: dk.forward_mask(x, MASK_ID, seed=3, prompt_lengths=torch.tensor([0, 2, 5]))  # noqa: E731
    assert_same(torch.compile(f, fullgraph=True)(x0), f(x0))
