"""The mixture-of-experts feed-forward of LLaDA2 (sigmoid router with expert bias and grouped
top-k, shared experts) and of Qwen3-MoE/SDAR-MoE (softmax router), in plain PyTorch."""
from __future__ import annotations

import torch
from torch import nn

from .layers import SwiGLU

__all__ = ["MoE"]


class MoE(nn.Module):
    """``y = sum_k w_k expert_{e_k}(x) [+ shared(x)]`` per token.

    Router ``"sigmoid"`` (LLaDA2): scores ``sigmoid(x W^T)`` in float32; the experts are chosen by
    ``scores + expert_bias``, first the ``topk_group`` best of ``n_group`` groups (a group's
    value: the sum of its two best scores), then the ``top_k`` best experts inside them; the
    weights are the chosen *scores* (without the bias), normalised to sum 1 when ``top_k > 1``,
    times ``routed_scaling_factor``. Router ``"softmax"`` (Qwen3-MoE): weights are the top-k of
    the softmax, renormalised when ``norm_topk_prob``.

    Parameter names follow both checkpoints: ``gate.weight`` [experts, hidden], ``gate.expert_bias``
    (sigmoid router only), ``experts.{e}.{gate,up,down}_proj.weight``, ``shared_experts.*``.
    """

    def __init__(self, hidden: int, expert_hidden: int, num_experts: int, top_k: int, *, router: str = "sigmoid",
                 num_shared_experts: int = 0, n_group: int = 1, topk_group: int = 1,
                 routed_scaling_factor: float = 1.0, norm_topk_prob: bool = True):
        super().__init__()
        self.top_k, self.router, self.n_group, self.topk_group = top_k, router, n_group, topk_group
        self.routed_scaling_factor, self.norm_topk_prob = routed_scaling_factor, norm_topk_prob
        # an nn.Linear for its initialisation (that of every other projection); route() reads the weight
        self.gate = nn.Linear(hidden, num_experts, bias=False)
        if router == "sigmoid":
            self.gate.register_buffer("expert_bias", torch.zeros(num_experts))
        self.experts = nn.ModuleList(SwiGLU(hidden, expert_hidden) for _ in range(num_experts))
        if num_shared_experts:
            self.shared_experts = SwiGLU(hidden, expert_hidden * num_shared_experts)

    def route(self, x: torch.Tensor):
        """``(expert ids [N, top_k], float32 weights [N, top_k])`` of the tokens ``x [N, hidden]``."""
        logits = nn.functional.linear(x.float(), self.gate.weight.float())
        if self.router == "softmax":
            w, idx = logits.softmax(-1).topk(self.top_k, dim=-1)
            if self.norm_topk_prob:
                w = w / w.sum(-1, keepdim=True)
            return idx, w
        scores = logits.sigmoid()
        choice = scores + self.gate.expert_bias.float()
        if self.n_group > 1:
            grouped = choice.view(x.shape[0], self.n_group, -1)
            group_value = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
            keep = torch.zeros_like(group_value, dtype=torch.bool)
            keep.scatter_(1, group_value.topk(self.topk_group, dim=-1).indices, True)
            choice = choice.masked_fill(~keep.repeat_interleave(grouped.shape[-1], dim=1), -torch.inf)
        idx = choice.topk(self.top_k, dim=-1).indices
        w = scores.gather(1, idx)
        if self.top_k > 1:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return idx, w * self.routed_scaling_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        idx, w = self.route(flat)
        out = torch.zeros(flat.shape, dtype=torch.float32, device=x.device)
        # (token, slot) pairs sorted by expert: one host read of the counts for all experts
        order = idx.reshape(-1).argsort(stable=True)
        counts = torch.bincount(idx.reshape(-1), minlength=len(self.experts)).tolist()
        rows_all, w_all = order // self.top_k, w.reshape(-1)[order]
        first = 0
        for expert, n in zip(self.experts, counts):
            if n:
                rows = rows_all[first:first + n]
                out.index_add_(0, rows, expert(flat[rows]).float() * w_all[first:first + n, None])
                first += n
        y = out.to(x.dtype).view(x.shape)
        if hasattr(self, "shared_experts"):
            y = y + self.shared_experts(x)
        return y
