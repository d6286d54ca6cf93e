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


def add_gumbel_noise(logits, temperature):
    """LLaDA's add_gumbel_noise: float64 copy, float64 uniform noise, exp(l) / (-log u)^T."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    gumbel_noise = (-torch.log(noise)) ** temperature
    return logits.exp() / gumbel_noise


def llada_sample_confidence(logits, x, mask_id, temperature):
    """LLaDA's proposal step with low-confidence remasking: Gumbel noise in float64, argmax, then
    the untempered softmax of the logits gathered at the proposal, masked to [MASK] positions."""
    logits_with_noise = add_gumbel_noise(logits, temperature=temperature)
    x0 = torch.argmax(logits_with_noise, dim=-1)
    p = F.softmax(logits, dim=-1)
    x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
    mask_index = x == mask_id
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, -np.inf)
    return x0, confidence


def _top_p_logits(logits, top_p):
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    sorted_indices_to_remove = cumulative_probs > top_p
    sorted_indices_to_remove[..., 1:] = sorted_indices_to_remove[..., :-1].clone()
    sorted_indices_to_remove[..., 0] = 0
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, sorted_indices, sorted_indices_to_remove)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def dream_sample_tokens(logits, x, mask_id, temperature, top_p=0.95):
    """Dream's sample_tokens with alg='entropy' on the masked rows (gathered first, as Dream does):
    temperature, top-p by a full sort, softmax, Categorical sample, then sum p log(p + 1e-10)."""
    mask_index = x == mask_id
    mask_logits = logits[mask_index]
    if temperature > 0:
        mask_logits = mask_logits / temperature
    if top_p is not None and top_p < 1:
        mask_logits = _top_p_logits(mask_logits, top_p)
    probs = torch.softmax(mask_logits, dim=-1)
    if temperature > 0:
        x0 = torch.distributions.Categorical(probs=probs).sample()
    else:
        x0 = probs.argmax(-1)
    confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    full_confidence = torch.full(x.shape, float("-inf"), dtype=logits.dtype)
    full_confidence[mask_index] = confidence.to(logits.dtype)
    x0_full = x.clone()
    x0_full[mask_index] = x0
    return x0_full, full_confidence
