"""Per-step transfer counts: LLaDA's integer schedule and Dream's float32 linear schedule, against
the research code's loops (LLaDA's get_num_transfer_tokens, Dream's timestep linspace) and the
sequences they produce."""
import pytest
import torch

from diffusion_kernels import schedules


def llada_loop(mask_index, steps):
    """LLaDA's get_num_transfer_tokens, as written in generate.py (per-row Python loop)."""
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    out = torch.zeros(mask_num.size(0), steps, dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        out[i, : remainder[i]] += 1
    return out


def test_llada_example():
    assert schedules.llada_num_transfer_tokens(torch.tensor([32]), 5).tolist() == [[7, 7, 6, 6, 6]]


@pytest.mark.parametrize("steps", [1, 3, 5, 32, 40])
def test_llada_matches_loop(steps):
    mask_index = torch.rand(6, 33) < torch.linspace(0, 1, 6)[:, None]
    got = schedules.llada_num_transfer_tokens(mask_index, steps)
    assert torch.equal(got, llada_loop(mask_index, steps))
    assert torch.equal(got.sum(1), mask_index.sum(1))
    assert torch.equal(schedules.llada_num_transfer_tokens(mask_index.sum(1).int(), steps), got)


def dream_loop(n_masked, steps, eps=1e-3):
    """Dream's sample loop as far as counts go: the count comes from the current masks."""
    timesteps = torch.linspace(1, eps, steps + 1)
    counts, n = [], n_masked
    for i in range(steps):
        num_mask_token = torch.tensor(n) / 1  # float32, like mask_index.sum() / batch
        t, s = timesteps[i], timesteps[i + 1]
        c = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
        counts.append(c)
        n -= c
    return counts


@pytest.mark.parametrize("n, steps, head, tail", [(512, 512, [0, 1], [1, 2]), (256, 128, [1, 2], [2, 3]),
                                                  (128, 32, [3, 4], [4, 5])])
def test_dream_documented_sequences(n, steps, head, tail):
    """Dream's schedule: the float32 linspace + truncation under-shoots first and
    catches up at the last step."""
    counts, left = [], torch.tensor([n])
    for i in range(steps):
        c = schedules.dream_num_transfer_tokens(left, i, steps)
        counts.append(int(c))
        left = left - c
    assert counts == dream_loop(n, steps)
    assert counts[:2] == head and counts[-2:] == tail and sum(counts) == n


def test_dream_batched_and_arguments():
    n = torch.tensor([512.0, 100.0, 0.0])
    got = schedules.dream_num_transfer_tokens(n, 3, 10)
    ts = torch.linspace(1, 1e-3, 11)
    want = [int(torch.tensor(v) * (1 - ts[4] / ts[3])) for v in n.tolist()]
    assert got.tolist() == want and got.dtype == torch.int64
    with pytest.raises(ValueError, match="'step' must be in"):
        schedules.dream_num_transfer_tokens(n, 10, 10)
    with pytest.raises(ValueError, match="'steps' must be an int >= 1"):
        schedules.llada_num_transfer_tokens(torch.tensor([3]), 0)


@pytest.mark.parametrize("mask_index", [torch.tensor([3.5, 2.0]), torch.ones(2, 4), torch.tensor([-3, 2]),
                                        torch.ones(1, 2, 3, dtype=torch.bool), [[True, False]]])
def test_llada_rejects_bad_counts_naming_mask_index(mask_index):
    with pytest.raises((TypeError, ValueError), match="'mask_index'"):
        schedules.llada_num_transfer_tokens(mask_index, 3)


@pytest.mark.parametrize("eps", [0.0, -0.5, 1.0, 1.5, float("nan")])
def test_dream_eps_must_be_in_the_open_unit_interval(eps):
    with pytest.raises(ValueError, match="'eps' must be a number in \\(0, 1\\)"):
        schedules.dream_num_transfer_tokens(torch.tensor([7]), 1, 4, eps)


@pytest.mark.parametrize("args,name", [((torch.tensor([-2, 3]), 1, 4), "'num_masked'"),
                                       ((torch.tensor([float("nan"), 3.0]), 1, 4), "'num_masked'"),
                                       (([3, 2], 1, 4), "'num_masked'"), ((torch.tensor([3]), 1.0, 4), "'step'"),
                                       ((torch.tensor([3]), -1, 4), "'step'"), ((torch.tensor([3]), 0, 0), "'steps'"),
                                       ((torch.tensor([3]), 1, 4.0), "'steps'")])
def test_dream_rejects_bad_arguments_naming_them(args, name):
    with pytest.raises((TypeError, ValueError), match=name):
        schedules.dream_num_transfer_tokens(*args)


def test_empty_batch():
    assert schedules.llada_num_transfer_tokens(torch.zeros(0, 4, dtype=torch.bool), 3).shape == (0, 3)
