"""The research code's way of doing each step, rewritten from the published algorithms
(LLaDA, Fast-dLLM and Dream's generate loops) as the baselines the benchmarks compare against."""
import numpy as np
import torch
import torch.nn.functional as F


def llada_greedy_confidence(logits, x, mask_id):
    """LLaDA / Fast-dLLM at temperature 0 with low-confidence remasking (Fast-dLLM's
    get_transfer_index): add_gumbel_noise returns the logits themselves at T = 0, so the argmax
    reads them as they are; the softmax over the whole vocabulary is of a float64 copy; gather,
    then mask to [MASK] positions."""
    x0 = torch.argmax(logits, dim=-1)
    p = F.softmax(logits.to(torch.float64), dim=-1)
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
        # validate_args=False: bf16 probabilities over a 126k vocabulary miss the simplex check's
        # 1e-6 tolerance on CUDA (Dream's own runs validate nothing more than this does)
        x0 = torch.distributions.Categorical(probs=probs, validate_args=False).sample()
    else:
        x0 = probs.argmax(-1)
    confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    full_confidence = torch.full(x.shape, float("-inf"), dtype=logits.dtype, device=logits.device)
    full_confidence[mask_index] = confidence.to(logits.dtype)
    x0_full = x.clone()
    x0_full[mask_index] = x0
    return x0_full, full_confidence
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
