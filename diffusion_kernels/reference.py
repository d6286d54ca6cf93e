"""Pure-PyTorch references of every op: short, obviously correct, and the executable spec the
native kernels are tested against."""
import torch

from . import _philox

__all__ = ["masked_confidence", "select_transfer", "attention_with_kv_cache", "attention_block_mask", "forward_mask",
           "masked_cross_entropy", "masked_diffusion_loss", "RANDOM_CONFIDENCE_COLUMN"]

# The Philox column of the `random` confidence draw: above every vocabulary id, so it never
# reuses a Gumbel draw of the same row (csrc/kernels/sampling.cuh).
RANDOM_CONFIDENCE_COLUMN = 2**33
CONFIDENCE_KINDS = ("prob", "margin", "neg_entropy", "random")


def _per_row(value, batch, dtype, device):
    """A scalar or a [batch] tensor as a [batch] tensor on device."""
    if isinstance(value, torch.Tensor):
        value = value.to(device=device, dtype=dtype)
        return value.reshape(-1).expand(batch) if value.numel() == 1 else value
    return torch.full((batch,), value, dtype=dtype, device=device)


def masked_confidence(logits: torch.Tensor, x: torch.Tensor, mask_id: int, *, temperature=0.0,
                      top_p=1.0, top_k=0, confidence="prob", confidence_from="sampling",
                      block_start=0, block_end=None, suppress_ids=None, seed=0, offset=0,
                      return_lse=False, positions="masked", prev_token_penalty=0.0):
    """Reference of :func:`diffusion_kernels.masked_confidence` (see its docstring for the
    semantics). Everything is computed in float32 (float64 for float64 logits, which the tests use
    as the high-precision reference) with a full sort of the vocabulary; the Gumbel noise comes from
    the Python mirror of the kernels' Philox stream, in float64.

    2-D logits are the flat layout ``[batch * seq, vocab]``. ``prev_token_penalty`` (lambda, rounded
    to float32) lowers the logit of ``x[b, l - 1]`` at every position ``l >= 1`` of row ``b`` before
    anything else, where lambda > 0 and that token is in ``[0, vocab)``.
    """
    if logits.dim() == 2:
        logits = logits.reshape(x.shape[0], x.shape[1], logits.shape[-1])
    B, L, V = logits.shape
    dev = logits.device
    work = logits.to(torch.promote_types(logits.dtype, torch.float32)).clone()  # never write the logits
    if not isinstance(prev_token_penalty, torch.Tensor):  # rounded as the op rounds a number: beyond float32 is inf
        prev_token_penalty = torch.tensor(float(prev_token_penalty), dtype=torch.float64).float()
    lam = _per_row(prev_token_penalty, B, torch.float32, dev).to(work.dtype)
    if L > 1:
        prev = x[:, :-1]
        on = (lam[:, None] > 0) & (prev >= 0) & (prev < V)
        idx = prev.clamp(0, V - 1)[..., None]
        cur = work[:, 1:].gather(-1, idx)
        work[:, 1:].scatter_(-1, idx, torch.where(on[..., None], cur - lam[:, None, None], cur))
    if suppress_ids is not None and len(suppress_ids) > 0:
        work[..., torch.as_tensor(suppress_ids, dtype=torch.long, device=dev)] = float("-inf")
    dt = work.dtype
    # The kernels cap T at 2**126 so that 1/T stays a normal float32: inf samples ~uniformly.
    T = _per_row(temperature, B, dt, dev).clamp(max=2.0**126)[:, None, None]
    p = _per_row(top_p, B, dt, dev)[:, None]
    k = _per_row(top_k, B, torch.int64, dev)[:, None]
    bs = _per_row(block_start, B, torch.int64, dev)[:, None]
    be = _per_row(L if block_end is None else block_end, B, torch.int64, dev)[:, None]
    pos = torch.arange(L, device=dev)[None, :]
    active = ((x == mask_id) | (positions == "all")) & (pos >= bs) & (pos < be)

    sampled = (T > 0) & torch.isfinite(1 / T.float())  # 1/T overflowing float32: the argmax limit
    z = torch.where(sampled, work / torch.where(sampled, T, 1), work)
    m = z.amax(-1, keepdim=True)
    e = torch.exp(z - m)
    zs = z.sort(-1, descending=True).values
    cum = torch.exp(zs - m).cumsum(-1)
    # top-p: the first value (descending) whose cumulative mass exceeds p keeps itself and all
    # values above it; ties with it are kept too.
    cross = cum > p[..., None] * cum[..., -1:]
    first = cross.int().argmax(-1, keepdim=True)
    tau_p = torch.where((p[..., None] < 1) & cross.any(-1, keepdim=True), zs.gather(-1, first), float("-inf"))
    use_k = (k > 0) & (k < V)
    tau_k = torch.where(use_k[..., None], zs.gather(-1, (k.clamp(1, V) - 1)[..., None].expand(B, L, 1)), float("-inf"))
    kept = z >= torch.maximum(tau_p, tau_k)
    q = torch.where(kept, e, 0)
    q = q / q.sum(-1, keepdim=True)

    rows = (torch.arange(B, device=dev)[:, None] * L + torch.arange(L, device=dev)[None, :])[..., None]
    greedy_x0 = work.argmax(-1)
    if bool(sampled.any()):
        g = _philox.philox_gumbel(int(seed), int(offset), rows, torch.arange(V, device=dev)[None, None, :])
        score = torch.where(kept, z.double() + g, float("-inf"))
        x0 = torch.where(sampled[..., 0], score.argmax(-1), greedy_x0)
    else:
        x0 = greedy_x0

    if confidence == "random":
        conf = _philox.philox_uniform(int(seed), int(offset), rows[..., 0], RANDOM_CONFIDENCE_COLUMN).to(dt)
    else:
        dist = q if confidence_from == "sampling" else torch.softmax(work, -1)
        if confidence == "prob":
            conf = dist.gather(-1, x0[..., None])[..., 0]
        elif confidence == "margin":
            top2 = dist.topk(min(2, V), -1).values
            conf = top2[..., 0] - (top2[..., 1] if V > 1 else 0)
        elif confidence == "neg_entropy":
            conf = torch.xlogy(dist, dist).sum(-1)
        else:
            raise ValueError(f"unknown confidence kind {confidence!r}")

    # Rows that are not all finite: torch.argmax's index, confidence NaN (the greedy policy).
    has_nan = torch.isnan(work).any(-1)
    raw_max = torch.where(torch.isnan(work), float("-inf"), work).amax(-1)
    bad = has_nan | torch.isinf(raw_max)
    x0 = torch.where(has_nan | (raw_max == float("inf")), greedy_x0, x0)
    x0 = torch.where(raw_max == float("-inf"), 0, x0)
    conf = torch.where(bad, float("nan"), conf)

    x0 = torch.where(active, x0, x)
    conf = torch.where(active, conf, float("-inf")).to(torch.float32 if dt != torch.float64 else dt)
    if not return_lse:
        return x0, conf
    lse = torch.where(active, torch.logsumexp(work, -1), float("-inf"))
    return x0, conf, lse.to(conf.dtype)


def select_transfer(confidence, *, k=None, threshold=None, eps=None, factor=None, alg_temp=None,
                    seed=0, offset=0, x=None, x0=None, strict=False):
    """Reference of :func:`diffusion_kernels.select_transfer`: one row at a time, in float64.

    Candidates are the finite confidences. Rows are ranked by (confidence descending, index
    ascending), so every tie goes to the lowest index; -0.0 ties with +0.0. A threshold (a number
    or one float32 entry per row) is compared in float32, with ``>`` when ``strict``; comparisons
    with a NaN entry are false.
    """
    from ._philox import philox_uniform

    conf = confidence.to(torch.float32)
    batch, seq = conf.shape
    mask = torch.zeros(batch, seq, dtype=torch.bool)
    for b in range(batch):
        row = conf[b]
        cand = torch.isfinite(row)
        if k is not None:
            kb = int(k[b]) if isinstance(k, torch.Tensor) and k.dim() > 0 else int(k)
            score = row.double()
            if alg_temp:
                u = philox_uniform(seed, offset, torch.tensor(b), torch.arange(seq)).double()
                score = (score / alg_temp - torch.log(-torch.log(u))).float().double()
            n = max(0, min(kb, int(cand.sum())))
        else:
            score = row.double()
        idx = torch.nonzero(cand).flatten()
        order = idx[torch.sort(score[idx], descending=True, stable=True).indices]
        if k is not None:
            chosen = order[:n]
        elif factor is not None:
            n = 0
            for r, i in enumerate(order.tolist()):
                if r > 0 and not (r + 2) * (1.0 - score[i].item()) < factor:
                    break
                n = r + 1
            chosen = order[:n]
        else:
            tau = torch.as_tensor(threshold).to(torch.float32).cpu().reshape(-1)
            tau = tau[0] if tau.numel() == 1 else tau[b]
            if eps is None:
                passes = row[idx] > tau if strict else row[idx] >= tau
                chosen = torch.cat([order[:1], idx[passes]])
            else:
                if idx.numel() == 0:
                    continue
                rowmax = row[idx].max()
                bound = torch.minimum(tau, rowmax - torch.tensor(eps, dtype=torch.float32))
                chosen = idx[row[idx] >= bound]
        mask[b, chosen] = True
    mask = mask.to(confidence.device)
    if x is not None:
        x.copy_(torch.where(mask, x0, x))
    return mask


def attention_block_mask(starts, q_len: int, cache_len: int, causal_block_size: int, noisy_length=None,
                         first_query: int = 0):
    """Which keys each query sees under the block rules of :func:`attention_with_kv_cache`: a bool
    ``[batch, q_len, cache_len]`` tensor on ``starts``' device (True = visible; key validity is
    not included). Query ``i`` of row ``r`` sits at position ``p = starts[r] + i`` (queries
    ``first_query .. first_query + q_len`` of the call: one chunk of them).

    Block-causal (``noisy_length`` None): key ``j`` is visible iff ``j // b <= p // b``.
    Training layout ``x_t (+) x_0`` (``noisy_length = L``): a position ``x`` is noisy if ``x < L``
    (block ``x // b``), clean otherwise (block ``(x - L) // b``); a noisy query of block ``n`` sees
    the noisy keys of block ``n`` and the clean keys of blocks ``< n``; a clean query of block
    ``n`` sees the clean keys of blocks ``<= n``.
    """
    b = causal_block_size
    starts = torch.as_tensor(starts).to(torch.int64).reshape(-1, 1, 1)
    # Positions past the cache end see what the cache end sees; clamping keeps p in int64.
    p = starts.clamp(max=cache_len) + torch.arange(first_query, first_query + q_len, device=starts.device)[None, :, None]
    j = torch.arange(cache_len, device=starts.device)[None, None, :]
    if noisy_length is None:
        return torch.div(j, b, rounding_mode="floor") <= torch.div(p, b, rounding_mode="floor")
    L = noisy_length
    q_noisy, k_noisy = p < L, j < L
    qb = torch.div(torch.where(q_noisy, p, p - L), b, rounding_mode="floor")
    kb = torch.div(torch.where(k_noisy, j, j - L), b, rounding_mode="floor")
    noisy_sees = (k_noisy & (kb == qb)) | (~k_noisy & (kb < qb))
    return torch.where(q_noisy, noisy_sees, ~k_noisy & (kb <= qb))


def attention_with_kv_cache(q, k_cache, v_cache, k_new=None, v_new=None, write_start=0,
                            key_padding_mask=None, key_lengths=None, scale=None, return_lse=False,
                            upcast=True, *, causal_block_size=None, noisy_length=None, store_kv=True):
    """Reference of :func:`diffusion_kernels.attention_with_kv_cache`.

    Writes ``k_new``/``v_new`` into the caches in place at rows ``[write_start, write_start +
    Lnew)`` of each batch row (with ``store_kv=False`` into copies: the caches stay unchanged and
    the new rows are attended where the write would have put them), then attends every query over
    the keys of the updated cache that are valid (``key_padding_mask`` True and index <
    ``key_lengths``) and, with ``causal_block_size``, visible by :func:`attention_block_mask`.
    A query with no such key gets 0 and an lse of -inf.

    ``upcast=True`` computes in float32 (float64 for float64 inputs: the tests' ground truth);
    ``upcast=False`` computes in the inputs' dtype with the softmax probabilities rounded to it
    before P @ V, which is PyTorch's own low-precision error the tests compare against.
    """
    b, lq, hq, d = q.shape
    lc, hkv = k_cache.shape[1], k_cache.shape[2]
    starts = torch.as_tensor(write_start).expand(b).tolist()
    if k_new is not None:
        if not store_kv:
            k_cache, v_cache = k_cache.clone(), v_cache.clone()
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
    valid = valid[:, None, None, :]  # [b, 1, 1, lc] -> [b, 1, lq, lc] with a block rule
    if causal_block_size is not None:
        valid = valid & attention_block_mask(torch.tensor(starts, device=q.device), lq, lc, causal_block_size,
                                             noisy_length)[:, None]
    dt = torch.promote_types(q.dtype, torch.float32) if upcast else q.dtype
    group = hq // hkv
    k = k_cache.to(dt).repeat_interleave(group, dim=2)
    v = v_cache.to(dt).repeat_interleave(group, dim=2)
    scale = d ** -0.5 if scale is None else scale
    scores = torch.einsum("bqhd,bkhd->bhqk", q.to(dt) * scale, k)
    scores = scores.masked_fill(~valid, float("-inf"))
    lse = torch.logsumexp(scores.float() if not upcast else scores, dim=-1)
    p = torch.softmax(scores, dim=-1)
    p = torch.where(valid.any(-1, keepdim=True), p, torch.zeros_like(p))  # no valid key: 0, not NaN
    out = torch.einsum("bhqk,bkhd->bqhd", p.to(dt), v).to(q.dtype)
    if return_lse:
        return out, lse.to(torch.float32) if lse.dtype != torch.float64 else lse
    return out


def forward_mask(x0: torch.Tensor, mask_id: int, eps: float = 1e-3, t=None, seed: int = 0, offset: int = 0,
                 prompt_lengths=None, antithetic: bool = False):
    """Reference of :func:`diffusion_kernels.forward_mask`: LLaDA's ``forward_process`` with the
    Philox draws of the kernels (bitwise the same result)."""
    from ._philox import philox_uniform

    b, l = x0.shape
    rows = torch.arange(b, device=x0.device)
    if t is None:
        t = philox_uniform(seed, offset, rows, 2**33)
        if antithetic:
            t = (t / b + torch.arange(b, device=x0.device) / b) % 1
    t = torch.as_tensor(t, dtype=torch.float32, device=x0.device).expand(b)
    p = (1 - eps) * t + eps
    u = philox_uniform(seed, offset, rows[:, None], torch.arange(l, device=x0.device)[None, :])
    masked = u < p[:, None]
    if prompt_lengths is not None:
        pl = torch.as_tensor(prompt_lengths, device=x0.device).to(torch.int64).expand(b)
        masked &= torch.arange(l, device=x0.device)[None, :] >= pl[:, None]
    x_t = torch.where(masked, mask_id, x0)
    return x_t, masked, p[:, None].expand(b, l).contiguous()


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor):
    """Reference of :func:`diffusion_kernels.masked_cross_entropy` (float32, or float64 for
    float64 logits; rows not masked give 0)."""
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    lse = torch.logsumexp(x, dim=-1)
    safe_t = torch.where(masked, targets, 0)
    ce = torch.nn.functional.cross_entropy(x, safe_t, reduction="none")
    zero = torch.zeros((), dtype=x.dtype)
    return torch.where(masked, ce, zero), torch.where(masked, lse, zero)


def masked_diffusion_loss(logits, targets, masked, p_mask, normalize="pretrain", reduction="mean",
                          prompt_lengths=None):
    """Reference of :func:`diffusion_kernels.masked_diffusion_loss`, written as LLaDA's
    GUIDELINES.md (gather masked rows, ``F.cross_entropy(..., reduction='none') / p_mask``)."""
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    p = torch.as_tensor(p_mask, device=logits.device)
    if p.dim() == 1 and masked.dim() == 2 and p.shape[0] == masked.shape[0]:
        p = p[:, None]
    p = torch.broadcast_to(p, masked.shape).to(x.dtype)
    token_loss = torch.nn.functional.cross_entropy(x[masked], targets[masked], reduction="none") / p[masked]
    if reduction == "none":
        out = torch.zeros(masked.shape, dtype=x.dtype, device=x.device)
        out[masked] = token_loss
        return out
    if reduction == "sum":
        return token_loss.sum()
    if normalize == "pretrain":
        return token_loss.sum() / masked.numel()
    if normalize == "sft":
        b, l = masked.shape
        pl = torch.as_tensor(prompt_lengths, device=x.device).to(torch.int64).expand(b)
        answer_lengths = (l - pl)[:, None].repeat(1, l)
        return torch.sum(token_loss / answer_lengths[masked]) / b
    if normalize == "masked_tokens":
        return token_loss.sum() / max(int(masked.sum()), 1)
    raise ValueError(normalize)
