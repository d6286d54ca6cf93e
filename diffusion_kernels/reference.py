"""Pure-PyTorch references of every op: short, obviously correct, and the executable spec the
native kernels are tested against."""
import torch

__all__ = ["masked_confidence", "select_transfer"]


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


def select_transfer(confidence, *, k=None, threshold=None, eps=None, factor=None, alg_temp=None,
                    seed=0, offset=0, x=None, x0=None):
    """Reference of :func:`diffusion_kernels.select_transfer`: one row at a time, in float64.

    Candidates are the finite confidences. Rows are ranked by (confidence descending, index
    ascending), so every tie goes to the lowest index; -0.0 ties with +0.0.
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
        elif eps is None:
            tau = torch.tensor(threshold, dtype=torch.float32).item()
            chosen = torch.cat([order[:1], idx[row[idx] >= tau]])
        else:
            if idx.numel() == 0:
                continue
            rowmax = row[idx].max()
            bound = torch.minimum(torch.tensor(threshold, dtype=torch.float32),
                                  rowmax - torch.tensor(eps, dtype=torch.float32))
            chosen = idx[row[idx] >= bound]
        mask[b, chosen] = True
    mask = mask.to(confidence.device)
    if x is not None:
        x.copy_(torch.where(mask, x0, x))
    return mask
