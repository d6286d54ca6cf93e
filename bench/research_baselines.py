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
