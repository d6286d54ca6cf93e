"""The research code's way of doing each step, rewritten from the published algorithms
(shared/research/dllm_algorithms.md) as the baselines the benchmarks compare against."""
import numpy as np
import torch
import torch.nn.functional as F


def llada_greedy_confidence(logits, x, mask_id):
    """LLaDA / Fast-dLLM at temperature 0 with low-confidence remasking: float64 copy of the
    logits, softmax over the whole vocabulary, argmax, gather, then mask to [MASK] positions."""
    logits64 = logits.to(torch.float64)
    x0 = torch.argmax(logits64, dim=-1)
    p = F.softmax(logits64, dim=-1)
    x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
    mask_index = x == mask_id
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, -np.inf)
    return x0, confidence


def llada_topk_transfer(confidence, num_transfer_tokens, x, x0):
    """LLaDA generate.py (low-confidence / random remasking): a per-row topk with the step's
    count (a tensor element, so each call syncs), scatter into a mask, then the masked write."""
    transfer_index = torch.zeros_like(x0, dtype=torch.bool, device=x0.device)
    for j in range(confidence.shape[0]):
        _, select_index = torch.topk(confidence[j], k=num_transfer_tokens[j])
        transfer_index[j, select_index] = True
    x[transfer_index] = x0[transfer_index]
    return transfer_index


def fast_dllm_threshold_transfer(confidence, threshold, x, x0):
    """Fast-dLLM get_transfer_index with a threshold: topk over every masked position, then an
    element-by-element Python loop dropping those under the threshold (the first one stays)."""
    mask_index = torch.isfinite(confidence)
    num_transfer_tokens = mask_index.sum(dim=1, keepdim=True)
    transfer_index = torch.zeros_like(x0, dtype=torch.bool, device=x0.device)
    for j in range(confidence.shape[0]):
        _, select_index = torch.topk(confidence[j], k=num_transfer_tokens[j])
        transfer_index[j, select_index] = True
        for k in range(1, num_transfer_tokens[j]):
            if confidence[j, select_index[k]] < threshold:
                transfer_index[j, select_index[k]] = False
    x[transfer_index] = x0[transfer_index]
    return transfer_index


def fast_dllm_factor_transfer(confidence, factor, x, x0):
    """Fast-dLLM get_transfer_index_dynamic (factor-based), off-by-one included."""
    mask_index = torch.isfinite(confidence)
    num_transfer_tokens = mask_index.sum(dim=1, keepdim=True)
    transfer_index = torch.zeros_like(x0, dtype=torch.bool, device=x0.device)
    for j in range(confidence.shape[0]):
        ns = list(range(1, num_transfer_tokens[j] + 1))
        threshs = [1 - factor / (n + 1) for n in ns]
        threshs[0] = -1
        sorted_conf = torch.sort(confidence[j][mask_index[j]], dim=-1, descending=True)[0]
        top_i = 0
        for top_i in range(len(threshs)):
            if sorted_conf[top_i] < threshs[top_i]:
                break
        if top_i == 0 or top_i == len(threshs) - 1:
            top_i += 1
        _, select_index = torch.topk(confidence[j], k=top_i)
        transfer_index[j, select_index] = True
    x[transfer_index] = x0[transfer_index]
    return transfer_index
