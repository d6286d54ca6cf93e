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


def fast_dllm_dual_cache_attention(q, k_cache, v_cache, k_new, v_new, start):
    """Fast-dLLM's dual-cache attention step (modeling_llada.py): scatter the block's fresh K/V
    into the full-length cache in place, then SDPA of the block's queries over every key, no
    mask. Layout [batch, seq, heads, head_dim] viewed as SDPA's [batch, heads, seq, head_dim]."""
    end = start + k_new.shape[1]
    k_cache[:, start:end] = k_new
    v_cache[:, start:end] = v_new
    return F.scaled_dot_product_attention(q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2)).transpose(1, 2)


def full_recompute_attention(q_all, k_all, v_all):
    """No cache: every position's query attends over every key (the step a cache avoids)."""
    return F.scaled_dot_product_attention(q_all.transpose(1, 2), k_all.transpose(1, 2), v_all.transpose(1, 2)).transpose(1, 2)
