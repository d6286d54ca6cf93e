"""Inputs and the reference check of attention_with_kv_cache, for test_attention.py."""
from dataclasses import dataclass

import torch

from diffusion_kernels import reference
from tolerance import assert_within_torch_error


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
    block: int = 0        # causal_block_size (0: off)
    noisy: int = 0        # noisy_length of the x_t (+) x_0 training layout (0: off)
    store_kv: bool = True

    def id(self):
        ws = self.write_start if isinstance(self.write_start, int) else "rows"
        rule = (f"-blk{self.block}" if self.block else "") + (f"-noisy{self.noisy}" if self.noisy else "")
        return (f"b{self.batch}q{self.q_len}h{self.heads_q}/{self.heads_kv}d{self.head_dim}"
                f"c{self.cache_len}n{self.new_len}w{ws}-{self.mask}{rule}" + ("" if self.store_kv else "-nostore"))


def make_inputs(case: Case, dtype, device="cpu", generator=None):
    """Keyword arguments of one call (made on CPU first so every device gets the same values)."""
    g = generator
    b, lq, hq, hkv, d, lc = case.batch, case.q_len, case.heads_q, case.heads_kv, case.head_dim, case.cache_len
    q = torch.randn(b, lq, hq, d, generator=g).to(dtype)
    k_cache = torch.randn(b, lc, hkv, d, generator=g).to(dtype)
    v_cache = torch.randn(b, lc, hkv, d, generator=g).to(dtype)
    k = v = None
    if case.new_len:
        k = torch.randn(b, case.new_len, hkv, d, generator=g).to(dtype)
        v = torch.randn(b, case.new_len, hkv, d, generator=g).to(dtype)
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
    args = dict(q=q, k_cache=k_cache, v_cache=v_cache, k=k, v=v, cache_seqlens=ws,
                key_padding_mask=mask, key_lengths=lengths)
    if case.block:
        args["causal_block_size"] = case.block
    if case.noisy:
        args["noisy_length"] = case.noisy
    if not case.store_kv:
        args["store_kv"] = False
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


def reference_attention(args, softmax_scale=None, dtype=None, upcast=True):
    """The reference (which keeps the original argument names) on CPU copies of args."""
    a = clone_args({k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}, dtype)
    return reference.attention_with_kv_cache(a["q"], a["k_cache"], a["v_cache"], a["k"], a["v"], a["cache_seqlens"],
                                             a["key_padding_mask"], a["key_lengths"], softmax_scale, return_lse=True,
                                             upcast=upcast, causal_block_size=a.get("causal_block_size"),
                                             noisy_length=a.get("noisy_length"), store_kv=a.get("store_kv", True))


def expected_caches(args):
    """The caches after the call: the write applied to copies."""
    k, v = args["k_cache"].clone(), args["v_cache"].clone()
    if args["k"] is not None and args.get("store_kv", True):
        n = args["k"].shape[1]
        starts = torch.as_tensor(args["cache_seqlens"]).expand(k.shape[0]).tolist()
        for i, s in enumerate(starts):
            k[i, s:s + n] = args["k"][i]
            v[i, s:s + n] = args["v"][i]
    return k, v


def check_call(op, args, softmax_scale=None):
    """Runs op on copies of args: the caches after the call bitwise, out and lse against the float64
    reference by the suite's tolerance rule (2x PyTorch's own error), rows without a valid key 0
    with lse -inf. Returns (out, lse, k_cache, v_cache)."""
    dtype = args["q"].dtype
    mine = clone_args(args)
    out, lse = op(**mine, softmax_scale=softmax_scale, return_softmax_lse=True)
    want_k, want_v = expected_caches(args)
    assert torch.equal(mine["k_cache"].cpu(), want_k.cpu()), "k_cache differs from the expected write"
    assert torch.equal(mine["v_cache"].cpu(), want_v.cpu()), "v_cache differs from the expected write"
    out, lse = out.cpu(), lse.cpu()
    ref_out, ref_lse = reference_attention(args, softmax_scale, torch.float64)
    pt_out, pt_lse = reference_attention(args, softmax_scale, upcast=False)
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert_within_torch_error(out, pt_out, ref_out, what=f"out ({dtype})")
    assert_within_torch_error(lse, pt_lse, ref_lse, atol=1e-5, what=f"lse ({dtype})")
    assert (out[torch.isneginf(ref_lse).permute(0, 2, 1)] == 0).all(), "rows without a valid key must be 0"
    return out, lse, mine["k_cache"], mine["v_cache"]


def dense_block_mask(starts, q_len, cache_len, block, noisy=None):
    """The block rules written out position by position (independent of reference.py)."""
    mask = torch.zeros(len(starts), q_len, cache_len, dtype=torch.bool)
    for r, s in enumerate(starts):
        for i in range(q_len):
            p = s + i
            for j in range(cache_len):
                if noisy is None:
                    mask[r, i, j] = j // block <= p // block
                elif p < noisy:  # noisy query: its own noisy block, the clean blocks before it
                    mask[r, i, j] = (j < noisy and j // block == p // block) or (
                        j >= noisy and (j - noisy) // block < p // block)
                else:            # clean query: the clean blocks up to its own
                    mask[r, i, j] = j >= noisy and (j - noisy) // block <= (p - noisy) // block
    return mask


def sdpa_with_mask(q, k, v, mask):
    """PyTorch's SDPA with an explicit boolean [batch, q_len, keys] mask, GQA by repeating K/V."""
    g = q.shape[2] // k.shape[2]
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k.repeat_interleave(g, 2), v.repeat_interleave(g, 2)))
    return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask[:, None]).transpose(1, 2)


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
    # Block rules: the current block over the exact cache (per-row starts, left padding), a prompt
    # prefilled block-causally, several blocks in flight from an unaligned start (D2F), attending
    # without storing (SDAR), the x_t (+) x_0 training layout (GQA, keys past the layout).
    Case(2, 32, 4, 2, 64, 160, 32, [64, 96], "left_pad", block=32),
    Case(1, 50, 2, 2, 64, 50, 50, 0, block=16),
    Case(2, 40, 4, 1, 64, 150, 40, [40, 8], "lengths", block=16),
    Case(2, 16, 4, 2, 64, 100, 16, [32, 48], "random", block=16, store_kv=False),
    Case(1, 96, 2, 2, 64, 96, 96, 0, block=16, noisy=48),
    Case(2, 48, 4, 2, 32, 56, 48, 0, "both", block=8, noisy=24),
]

# The emulator runs every warp-level mma one lane at a time: small shapes, still off the 64-row /
# 64-key tiles, GQA and MQA, writes at the start, middle and end, per-row starts, every mask.
EMULATED_CASES = [
    Case(1, 32, 4, 4, 128, 256, 32, 96),                          # dual cache, LLaDA block
    Case(2, 33, 2, 1, 64, 200, 33, [0, 167], "random"),           # GQA, per-row starts, 2 row tiles
    Case(1, 7, 4, 1, 128, 256, 7, 249, "lengths"),                # MQA, write at the end
    Case(2, 70, 2, 2, 64, 70, 70, 0),                             # no cache, rows past a tile
    Case(2, 16, 2, 2, 64, 150, 0, 0, "left_pad"),                 # read only, left padding
    Case(1, 5, 2, 2, 128, 100, 5, 95, "both"),                    # mask and lengths
    # Block rules (see CASES): current block, blocks in flight unaligned, no store, training layout.
    Case(2, 40, 2, 1, 64, 200, 40, [64, 130], "left_pad", block=32),
    Case(1, 16, 2, 2, 128, 140, 16, 70, "random", block=16, store_kv=False),
    Case(1, 96, 2, 2, 64, 96, 96, 0, block=16, noisy=48),
]

# A real GPU: the CPU cases its kernels support plus model-sized ones.
CUDA_CASES = [c for c in CASES if c.head_dim in (64, 128)] + [
    Case(1, 32, 32, 32, 128, 1024, 32, 512),                      # LLaDA-8B dual-cache step
    Case(4, 32, 32, 8, 128, 2048, 32, [0, 32, 1000, 2016], "left_pad"),
    Case(2, 300, 8, 2, 64, 4096, 300, 3796, "both"),
    Case(2, 32, 16, 4, 128, 2048, 32, [1024, 992], "left_pad", block=32),  # LLaDA2-like current block
    Case(1, 1024, 8, 8, 64, 1024, 1024, 0, block=32, noisy=512),           # training layout
]
