"""Pure-PyTorch references of every op: short, obviously correct, and the executable spec the
native kernels are tested against."""
import torch

__all__ = ["masked_confidence", "attention_with_kv_cache"]


def masked_confidence(logits: torch.Tensor, x: torch.Tensor, mask_id: int):
    """Reference of :func:`diffusion_kernels.masked_confidence` (greedy form).

    argmax and softmax in float32 over the vocabulary (float64 for float64 logits, which the tests
    use as the high-precision reference); torch.argmax returns the first maximal index, and its
    NaN/inf behaviour is the policy the kernels reproduce.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    masked = x == mask_id
    argmax = logits.argmax(dim=-1)
    prob = torch.softmax(logits, dim=-1).gather(-1, argmax.unsqueeze(-1)).squeeze(-1)
    x0 = torch.where(masked, argmax, x)
    confidence = torch.where(masked, prob, torch.full_like(prob, float("-inf")))
    return x0, confidence


def attention_with_kv_cache(q, k_cache, v_cache, k_new=None, v_new=None, write_start=0,
                            key_padding_mask=None, key_lengths=None, scale=None, return_lse=False,
                            upcast=True):
    """Reference of :func:`diffusion_kernels.attention_with_kv_cache`.

    Writes ``k_new``/``v_new`` into the caches in place at rows ``[write_start, write_start +
    Lnew)`` of each batch row, then attends every query over the keys of the updated cache that
    are valid (``key_padding_mask`` True and index < ``key_lengths``), non-causally. A query with
    no valid key gets 0 and an lse of -inf.

    ``upcast=True`` computes in float32 (float64 for float64 inputs: the tests' ground truth);
    ``upcast=False`` computes in the inputs' dtype with the softmax probabilities rounded to it
    before P @ V, which is PyTorch's own low-precision error the tests compare against.
    """
    b, lq, hq, d = q.shape
    lc, hkv = k_cache.shape[1], k_cache.shape[2]
    if k_new is not None:
        starts = torch.as_tensor(write_start).expand(b).tolist()
        for i, s in enumerate(starts):
            if s < 0 or s + k_new.shape[1] > lc:
                raise ValueError(f"write range [{s}, {s + k_new.shape[1]}) of batch row {i} is outside the cache")
            k_cache[i, s:s + k_new.shape[1]] = k_new[i]
            v_cache[i, s:s + v_new.shape[1]] = v_new[i]
    valid = torch.ones(b, lc, dtype=torch.bool, device=q.device)
    if key_padding_mask is not None:
        valid &= key_padding_mask.to(torch.bool)
    if key_lengths is not None:
        valid &= torch.arange(lc, device=q.device)[None, :] < key_lengths.to(q.device)[:, None]
    dt = torch.promote_types(q.dtype, torch.float32) if upcast else q.dtype
    group = hq // hkv
    k = k_cache.to(dt).repeat_interleave(group, dim=2)
    v = v_cache.to(dt).repeat_interleave(group, dim=2)
    scale = d ** -0.5 if scale is None else scale
    scores = torch.einsum("bqhd,bkhd->bhqk", q.to(dt) * scale, k)
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores.float() if not upcast else scores, dim=-1)
    p = torch.softmax(scores, dim=-1)
    p = torch.where(valid.any(-1)[:, None, None, None], p, torch.zeros_like(p))  # no valid key: 0, not NaN
    out = torch.einsum("bhqk,bkhd->bqhd", p.to(dt), v).to(q.dtype)
    if return_lse:
        return out, lse.to(torch.float32) if lse.dtype != torch.float64 else lse
    return out
