"""Inputs and checks for attention_with_kv_cache, shared by the CPU, emulated and CUDA tests."""
from dataclasses import dataclass

import torch

from diffusion_kernels import reference


@dataclass
class Case:
    batch: int
    q_len: int
    heads_q: int
    heads_kv: int
    head_dim: int
    cache_len: int
    new_len: int          # 0: no write
    write_start: object   # int, or a list (one start per batch row) passed as a tensor
    mask: str = "none"    # none | random | lengths | both | left_pad

    def id(self):
        ws = self.write_start if isinstance(self.write_start, int) else "rows"
        return (f"b{self.batch}q{self.q_len}h{self.heads_q}/{self.heads_kv}d{self.head_dim}"
                f"c{self.cache_len}n{self.new_len}w{ws}-{self.mask}")


def make_inputs(case: Case, dtype, device="cpu", generator=None):
    """Tensors for one call (on CPU first so every device gets the same values)."""
    g = generator
    b, lq, hq, hkv, d, lc = case.batch, case.q_len, case.heads_q, case.heads_kv, case.head_dim, case.cache_len
    q = torch.randn(b, lq, hq, d, generator=g).to(dtype)
    k_cache = torch.randn(b, lc, hkv, d, generator=g).to(dtype)
    v_cache = torch.randn(b, lc, hkv, d, generator=g).to(dtype)
    k_new = v_new = None
    if case.new_len:
        k_new = torch.randn(b, case.new_len, hkv, d, generator=g).to(dtype)
        v_new = torch.randn(b, case.new_len, hkv, d, generator=g).to(dtype)
    ws = case.write_start if isinstance(case.write_start, int) else torch.tensor(case.write_start)
    mask = lengths = None
    if case.mask in ("random", "both"):
        mask = torch.rand(b, lc, generator=g) < 0.7
    if case.mask in ("lengths", "both"):
        lengths = torch.randint(0, lc + 1, (b,), generator=g)
        lengths[0] = lc
    if case.mask == "left_pad":
        pad = torch.randint(0, max(1, lc // 2), (b,), generator=g)
        pad[0] = 0
        mask = torch.arange(lc)[None, :] >= pad[:, None]
    args = dict(q=q, k_cache=k_cache, v_cache=v_cache, k_new=k_new, v_new=v_new, write_start=ws,
                key_padding_mask=mask, key_lengths=lengths)
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}


def clone_args(args, dtype=None):
    out = {}
    for k, v in args.items():
        if isinstance(v, torch.Tensor):
            v = v.clone()
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
        out[k] = v
    return out


def expected_caches(args):
    """The caches after the call: the write applied to copies."""
    k, v = args["k_cache"].clone(), args["v_cache"].clone()
    if args["k_new"] is not None:
        n = args["k_new"].shape[1]
        starts = torch.as_tensor(args["write_start"]).expand(k.shape[0]).tolist()
        for i, s in enumerate(starts):
            k[i, s:s + n] = args["k_new"][i]
            v[i, s:s + n] = args["v_new"][i]
    return k, v


def check_call(op, args, scale=None):
    """Runs op on copies of args and checks it against the float64 reference with flash-attn's rule:
    max error <= 2 x PyTorch's own error at the same precision + twice the output's rounding.
    Also checks the caches after the call bitwise. Returns (out, lse, k_cache, v_cache)."""
    dtype = args["q"].dtype
    mine = clone_args(args)
    out, lse = op(**mine, scale=scale, return_lse=True)
    want_k, want_v = expected_caches(args)
    assert torch.equal(mine["k_cache"].cpu(), want_k.cpu()), "k_cache differs from the expected write"
    assert torch.equal(mine["v_cache"].cpu(), want_v.cpu()), "v_cache differs from the expected write"
    out, lse = out.cpu(), lse.cpu()
    cpu_args = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}

    ref_out, ref_lse = reference.attention_with_kv_cache(**clone_args(cpu_args, torch.float64), scale=scale,
                                                         return_lse=True)
    pt_out, pt_lse = reference.attention_with_kv_cache(**clone_args(cpu_args), scale=scale, return_lse=True,
                                                       upcast=False)
    assert out.shape == ref_out.shape and out.dtype == dtype
    assert lse.shape == ref_lse.shape and lse.dtype == torch.float32
    assert torch.isfinite(out).all(), "non-finite output"
    pt_err = (pt_out.double() - ref_out).abs().max().item() if out.numel() else 0.0
    rounding = (ref_out.to(dtype).double() - ref_out).abs().max().item() if out.numel() else 0.0
    err = (out.double() - ref_out).abs().max().item() if out.numel() else 0.0
    assert err <= 2 * pt_err + 2 * rounding + 1e-6, f"max error {err:.3g} vs PyTorch's {pt_err:.3g} in {dtype}"

    empty = torch.isneginf(ref_lse)
    assert torch.equal(torch.isneginf(lse), empty), "lse -inf pattern differs"
    assert (out[empty.permute(0, 2, 1)] == 0).all(), "rows without a valid key must be 0"
    if (~empty).any():
        lse_pt_err = (pt_lse.double() - ref_lse)[~empty].abs().max().item()
        lse_err = (lse.double() - ref_lse)[~empty].abs().max().item()
        assert lse_err <= 2 * lse_pt_err + 1e-5, f"lse error {lse_err:.3g} vs PyTorch's {lse_pt_err:.3g}"
    return out, lse, mine["k_cache"], mine["v_cache"]


# Shapes: q_len not a tile multiple, caches up to 4096, batch up to 4, GQA/MQA, odd head dims,
# writes at the start, middle and end of the cache, per-row starts, masks of every kind.
CASES = [
    Case(1, 32, 4, 4, 128, 1024, 32, 512),                       # dual cache, LLaDA block
    Case(2, 33, 6, 2, 64, 257, 33, 100, "random"),               # GQA, ragged everything
    Case(4, 7, 4, 1, 128, 4096, 7, [4089, 0, 1000, 17], "lengths"),  # MQA, per-row starts
    Case(3, 65, 2, 2, 40, 65, 65, 0),                            # no cache, odd head_dim
    Case(1, 1, 8, 8, 64, 300, 0, 0, "both"),                     # read only, one query
    Case(2, 130, 8, 4, 96, 200, 70, [130, 0], "left_pad"),       # several query blocks
    Case(1, 5, 16, 16, 128, 700, 5, 695),                        # more heads than a task's group
    Case(2, 40, 4, 2, 256, 129, 40, 89, "both"),                 # head_dim 256
]
