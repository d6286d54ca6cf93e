"""Pure-PyTorch transcriptions of the serving engines' stock decoding steps, written from their
documented semantics (shared/research/engines.md and the engines' docstrings), not copied. The
adapter tests compare ours with these; bench/bench_engines.py times them as "the stock step".

Each keeps the engine's own way of computing (full-vocabulary softmax + argmax + gather in the
logits' dtype, per-row Python loops where the engine loops, Python floats where it uses them), so
both its decisions and its cost are the engine's.

One choice is ours: SGLang's JointThreshold takes its mask-to-token fallback with ``torch.topk(k=1)``,
whose pick among exactly tied values torch does not specify (the CPU kernel does not return the
lowest index); here, as in SGLang's LowConfidence (``argmax``) and in our ops, the lowest index.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F


# --- SGLang ---------------------------------------------------------------------------------------

def sglang_low_confidence_step(input_ids: torch.Tensor, full_logits: torch.Tensor, batch_size: int, block: int,
                               mask_id: int, threshold: float, prompt_mask: Optional[torch.Tensor] = None) -> List[bool]:
    """SGLang ``LowConfidence.step``: ``input_ids`` flat ``[B * block]`` updated in place; returns
    the done flags (rows without a mask at entry). ``prompt_mask`` ``[B, block]``: positions never
    decoded (SGLang's ``dllm_prompt_mask``)."""
    ids = input_ids.view(batch_size, block)
    logits = full_logits.view(batch_size, block, -1)
    masked = ids == mask_id
    if prompt_mask is not None:
        masked = masked & ~prompt_mask
    done = ~masked.any(dim=1)
    token = logits.argmax(dim=-1)
    prob = torch.gather(torch.softmax(logits, dim=-1), -1, token[..., None])[..., 0]
    conf = torch.where(masked, prob, torch.tensor(-math.inf, dtype=prob.dtype))
    chosen = conf > threshold
    best = conf.argmax(dim=1)
    fallback = torch.zeros_like(chosen)
    fallback[torch.arange(batch_size), best] = True
    chosen = torch.where(chosen.any(dim=1, keepdim=True), chosen, fallback)
    token = torch.where(masked, token, ids)
    input_ids.copy_(torch.where(chosen, token, ids).reshape(-1))
    return done.tolist()


def sglang_joint_threshold_init(input_ids: torch.Tensor, batch_size: int, block: int, mask_id: int,
                                prompt_mask: Optional[torch.Tensor] = None) -> list:
    """SGLang ``JointThreshold.init_step_state``: one dict per request."""
    fixed = input_ids.view(batch_size, block) != mask_id
    if prompt_mask is not None:
        fixed = fixed | prompt_mask
    return [{"post_edit_steps": 0, "finished": False, "prompt_mask": row} for row in fixed.tolist()]


def sglang_joint_threshold_step(input_ids: torch.Tensor, full_logits: torch.Tensor, states: list, batch_size: int,
                                block: int, mask_id: int, threshold: float = 0.5, edit_threshold: float = 0.0,
                                max_post_edit_steps: int = 16, penalty_lambda: float = 0.0) -> List[bool]:
    """SGLang ``JointThreshold.step``, request by request: ``input_ids`` flat, updated in place;
    ``full_logits`` is modified in place by the penalty, as the engine does; ``states`` updated.
    Returns done flags (requests finished at an earlier step)."""
    prompt = torch.tensor([s["prompt_mask"] for s in states], dtype=torch.bool, device=input_ids.device)
    done = []
    for r in range(batch_size):
        state = states[r]
        done.append(bool(state["finished"]))
        if state["finished"]:
            continue
        ids = input_ids[r * block:(r + 1) * block]
        logits = full_logits[r * block:(r + 1) * block]
        if penalty_lambda > 0:
            rows = torch.arange(1, block, device=ids.device)
            logits[rows, ids[:-1]] -= penalty_lambda
        token = logits.argmax(dim=-1)
        prob = torch.gather(F.softmax(logits, dim=-1), -1, token[:, None])[:, 0]
        masked = (ids == mask_id) & ~prompt[r]
        m2t = torch.zeros_like(masked)
        if masked.any():
            conf = torch.where(masked, prob, torch.tensor(-math.inf, dtype=prob.dtype))
            m2t = conf > threshold
            if not m2t.any():
                m2t[conf.argmax()] = True
        else:
            state["post_edit_steps"] += 1
            if state["post_edit_steps"] > max_post_edit_steps:
                state["finished"] = True
                continue
        t2t = (prob > edit_threshold) & (ids != token) & ~masked & ~prompt[r]
        change = m2t | t2t
        if not change.any():
            state["finished"] = True
            continue
        ids[change] = token[change]
    return done


# --- vLLM dllm-plugin -----------------------------------------------------------------------------

def vllm_llada2_schedule(block: int, steps: int) -> List[int]:
    """The default policy's per-step transfer counts: ``block // steps``, the remainder to the
    first steps."""
    if steps <= 0:
        raise ValueError("denoise_steps must be positive")
    return [block // steps + (1 if s < block % steps else 0) for s in range(steps)]


def vllm_llada2_default_apply(input_draft: Sequence[int], logits, config: dict, *, draft_size: int,
                              default_threshold: float = 0.9, default_mask_id: int = 156895,
                              default_steps: Optional[int] = None):
    """``Llada2DefaultRemaskingPolicy.apply`` of vllm-project/dllm-plugin, in Python floats:
    returns ``(committed_token_ids, next_input_block)`` tuples."""
    threshold = float(config.get("commit_confidence_threshold", default_threshold))
    extra = max(0, int(config.get("grammar_extra_transfer", 0)))
    mask_id = int(config.get("mask_token_id", default_mask_id))
    steps = int(config.get("denoise_steps", draft_size if default_steps is None else default_steps))
    step = int(config.get("denoise_step_index", 0))
    rows = [[float(v) for v in row] for row in (logits.tolist() if hasattr(logits, "tolist") else logits)]
    masked = [t == mask_id for t in input_draft]
    if not any(masked):
        return tuple(input_draft), (mask_id,) * draft_size
    tokens, probs = [], []
    for row in rows:
        top = max(row)
        first = row.index(top)
        total = sum(math.exp(v - top) for v in row)
        tokens.append(first)
        probs.append(math.exp(row[first] - top) / total)
    conf = [p if m else -math.inf for p, m in zip(probs, masked)]
    high = [m and c > threshold for m, c in zip(masked, conf)]
    if "num_transfer" in config:
        want = int(config["num_transfer"]) + extra
        if want < 0:
            raise ValueError("num_transfer must be non-negative")
    else:
        schedule = vllm_llada2_schedule(draft_size, steps)
        want = schedule[max(0, min(step, len(schedule) - 1))] + extra
    if sum(high) >= want:
        picked = [i for i in range(draft_size) if high[i]]
    else:
        order = sorted((i for i in range(draft_size) if masked[i]), key=lambda i: (-conf[i], i))
        picked = order[:min(want, sum(masked))]
    nxt = list(input_draft)
    for i in picked:
        nxt[i] = tokens[i]
    if mask_id in nxt:
        return (), tuple(nxt)
    return tuple(nxt), (mask_id,) * draft_size


# --- dInfer ---------------------------------------------------------------------------------------

def dinfer_threshold_decode(logits: torch.Tensor, block_start: int, block_end: int, x: torch.Tensor, mask_id: int,
                            threshold: float, use_float64: bool = False) -> None:
    """dInfer ``ThresholdParallelDecoder.decode`` at temperature 0: commit masked positions with
    ``conf >= min(rowmax - 1e-5, threshold)`` (bound clamped below at -1000), a position whose
    argmax is the mask id excluded; ``x`` updated in place."""
    cur = x[:, block_start:block_end]
    masked = cur == mask_id
    token = logits.argmax(dim=-1)
    p = F.softmax(logits.to(torch.float64 if use_float64 else torch.float32), dim=-1)
    prob = torch.gather(p, -1, token[..., None])[..., 0]
    masked = masked & (token != mask_id)
    token = torch.where(masked, token, cur)
    conf = torch.where(masked, prob, torch.tensor(-math.inf, dtype=prob.dtype))
    bound = (conf.max(dim=1).values - 1e-5).clamp(-1000, threshold)[:, None]
    chosen = (conf >= bound) & masked
    x[:, block_start:block_end] = torch.where(chosen, token, cur)


def dinfer_hierarchy_decode(logits: torch.Tensor, block_start: int, block_end: int, x: torch.Tensor, mask_id: int,
                            threshold: Optional[float], low_threshold: Optional[float]) -> None:
    """dInfer ``HierarchyDecoder.decode`` at temperature 0, row by row (dInfer itself takes batch 1):
    in every contiguous run of masked positions, the positions equal to the run's maximum
    confidence (if ``> low_threshold``), plus every ``conf > threshold``, plus the row's first
    maximum; only masked positions are written."""
    cur = x[:, block_start:block_end]
    token = logits.argmax(dim=-1)
    prob = F.log_softmax(logits, dim=-1).gather(-1, token[..., None])[..., 0].exp()
    lowest = torch.finfo(prob.dtype).min
    for r in range(cur.shape[0]):
        masked = cur[r] == mask_id
        conf = torch.where(masked, prob[r], torch.tensor(lowest, dtype=prob.dtype))
        chosen = torch.zeros_like(masked)
        i, n = 0, masked.shape[0]
        while i < n:
            if not masked[i]:
                i += 1
                continue
            j = i
            while j < n and masked[j]:
                j += 1
            run_max = conf[i:j].max()
            chosen[i:j] = conf[i:j] == run_max
            i = j
        if low_threshold is not None:
            chosen &= conf > low_threshold
        if threshold is not None:
            chosen |= conf > threshold
        chosen[conf.argmax()] = True
        chosen &= masked
        cur[r][chosen] = token[r][chosen]


def dinfer_fixed_counts(block_x: torch.Tensor, mask_id: int, steps: int) -> torch.Tensor:
    """dInfer ``FixedParallelDecoder.block_init``'s counts: ``M // steps`` per step, the remainder
    to the first steps."""
    total = (block_x == mask_id).sum(dim=1)
    base, rem = total // steps, total % steps
    return base[:, None] + (torch.arange(steps)[None, :] < rem[:, None]).long()


def dinfer_fixed_decode(logits: torch.Tensor, block_start: int, block_end: int, x: torch.Tensor, mask_id: int,
                        counts: torch.Tensor) -> None:
    """dInfer ``FixedParallelDecoder.decode`` at temperature 0: per row the ``counts[b]`` most
    confident masked positions (float64 softmax; ties: lowest index)."""
    cur = x[:, block_start:block_end]
    masked = cur == mask_id
    token = logits.argmax(dim=-1)
    prob = torch.gather(F.softmax(logits.to(torch.float64), dim=-1), -1, token[..., None])[..., 0]
    token = torch.where(masked, token, cur)
    conf = torch.where(masked, prob, torch.tensor(-math.inf, dtype=torch.float64))
    for r in range(cur.shape[0]):
        k = int(counts[r])
        order = sorted(range(conf.shape[1]), key=lambda i: (-float(conf[r, i]), i))[:k]
        for i in order:
            cur[r, i] = token[r, i]
