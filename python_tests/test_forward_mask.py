"""forward_mask (CPU kernel) against the Philox reference, bit for bit, plus its statistics."""
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
        assert torch.equal(g, w), f"{name} differs from the reference"


@pytest.mark.parametrize("kwargs", [
    {}, {"antithetic": True}, {"eps": 0.0}, {"eps": 0.25, "seed": -3, "offset": 2**40},
    {"t": 0.5}, {"t": torch.tensor([0.0, 0.999, 0.3, 1.0, 0.5])},
    {"prompt_lengths": torch.tensor([0, 1, 37, 301, 300])}, {"prompt_lengths": 4, "antithetic": True},
], ids=str)
def test_matches_reference_bitwise(kwargs):
    x0 = torch.randint(0, 1000, (5, 301))
    seed = kwargs.pop("seed", 11)
    assert_same(dk.forward_mask(x0, MASK_ID, seed=seed, **kwargs), reference.forward_mask(x0, MASK_ID, seed=seed, **kwargs))


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


def test_empty():
    for shape in [(0, 5), (3, 0)]:
        x_t, masked, p = dk.forward_mask(torch.zeros(shape, dtype=torch.long), MASK_ID)
        assert x_t.shape == masked.shape == p.shape == shape


class TestBadInputs:
    def test_x0(self):
        with pytest.raises(ValueError, match="'x0'.*int64"):
            dk.forward_mask(torch.zeros(2, 3, dtype=torch.int32), MASK_ID)
        with pytest.raises(ValueError, match="'x0'.*\\[batch, seq\\]"):
            dk.forward_mask(torch.zeros(6, dtype=torch.long), MASK_ID)

    def test_eps(self):
        with pytest.raises(ValueError, match="'eps'.*\\[0, 1\\]"):
            dk.forward_mask(torch.zeros(2, 3, dtype=torch.long), MASK_ID, eps=1.5)
        with pytest.raises(ValueError, match="'eps'"):
            dk.forward_mask(torch.zeros(2, 3, dtype=torch.long), MASK_ID, eps=float("nan"))

    def test_t_and_prompt_lengths(self):
        x0 = torch.zeros(2, 3, dtype=torch.long)
        with pytest.raises(ValueError, match="'t'.*one entry per row"):
            dk.forward_mask(x0, MASK_ID, t=torch.rand(3))
        with pytest.raises(ValueError, match="'antithetic'.*'t'"):
            dk.forward_mask(x0, MASK_ID, t=0.5, antithetic=True)
        with pytest.raises(ValueError, match="'prompt_lengths'.*one entry per row"):
            dk.forward_mask(x0, MASK_ID, prompt_lengths=torch.tensor([1, 2, 3]))
        with pytest.raises(ValueError, match="'prompt_lengths'.*integers"):
            dk.forward_mask(x0, MASK_ID, prompt_lengths=torch.tensor([1.0, 2.0]))

    def test_seed_range(self):
        with pytest.raises(ValueError, match="'seed'.*int64 range"):
            dk.forward_mask(torch.zeros(2, 3, dtype=torch.long), MASK_ID, seed=2**64)


def test_opcheck():
    x0 = torch.randint(0, 100, (3, 17))
    op = torch.ops.diffusion_kernels.forward_mask.default
    torch.library.opcheck(op, (x0, MASK_ID, 1e-3, None, torch.tensor([0, 2, 17]), 3, 4, True))
    torch.library.opcheck(op, (x0, MASK_ID, 1e-3, torch.rand(3), None, 3, 4, False))


def test_torch_compile_fullgraph_matches_eager():
    x0 = torch.randint(0, 100, (3, 17))
    f = lambda x: dk.forward_mask(x, MASK_ID, seed=3, prompt_lengths=torch.tensor([0, 2, 5]))  # noqa: E731
    assert_same(torch.compile(f, fullgraph=True)(x0), f(x0))
