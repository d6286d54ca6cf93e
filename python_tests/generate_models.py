"""Tiny random models for the sampler tests, and an independent re-implementation of LLaDA's
``generate()`` loop written from its published algorithm (block schedule, low-confidence remasking)."""
import torch

from diffusion_kernels.models import LLaDAConfig, LLaDAModel

MASK = 37
VOCAB = 38


def tiny_llada(seed=0, n_kv_heads=2, vocab=VOCAB, d_model=32, n_layers=2, dtype=torch.float32):
    """A LLaDAModel whose weights are large enough that its argmax varies with the input
    (the default init makes every masked position predict the same token)."""
    g = torch.Generator().manual_seed(seed)
    cfg = LLaDAConfig(vocab_size=vocab, d_model=d_model, n_layers=n_layers, n_heads=4, n_kv_heads=n_kv_heads,
                      mlp_hidden_size=48, mask_token_id=vocab - 1)
    m = LLaDAModel(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / p.shape[1] ** 0.5 if "wte" not in name else 1.0))
            else:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
        # A zero logit for [MASK] is never the argmax in practice (as in trained models, which
        # never propose [MASK]); LLaDA's loop would let a committed [MASK] compete again in later
        # blocks, ours keeps it in its block.
        m.transformer["ff_out"].weight[cfg.mask_token_id] = 0
    return m.to(dtype).eval()


class HFLike(torch.nn.Module):
    """A Hugging Face style wrapper: returns an object with ``.logits``."""

    class Out:
        def __init__(self, logits):
            self.logits = logits

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return self.Out(self.inner(input_ids, attention_mask=attention_mask))


def llada_generate(model, prompt, steps, gen_length, block_length, mask_id, cfg_scale=0.0, attention_mask=None,
                   eos_eot=None):
    """LLaDA's loop at temperature 0 with low_confidence remasking, per the digest: full
    sequence every step, per-row ``torch.topk`` of the softmax probability of the argmax at the
    masked positions of the current block, LLaDA's integer schedule per block. ``eos_eot``:
    LLaDA's ``confidence_eos_eot_inf`` with these (EOS, EoT) ids: after the argmax, both logits
    are set to -inf before the confidence softmax (the temperature-0 aliasing of its code)."""
    B, Lp = prompt.shape
    x = torch.full((B, Lp + gen_length), mask_id, dtype=torch.long)
    x[:, :Lp] = prompt.clone()
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, torch.ones((B, gen_length), dtype=attention_mask.dtype)], dim=-1)
    prompt_index = x != mask_id
    num_blocks = gen_length // block_length
    steps = steps // num_blocks
    for nb in range(num_blocks):
        lo, hi = Lp + nb * block_length, Lp + (nb + 1) * block_length
        block_mask_index = x[:, lo:hi] == mask_id
        mask_num = block_mask_index.sum(dim=1, keepdim=True)
        ntt = torch.zeros(B, steps, dtype=torch.int64) + mask_num // steps
        for i in range(B):
            ntt[i, : int(mask_num[i] % steps)] += 1
        for i in range(steps):
            mask_index = x == mask_id
            with torch.no_grad():
                if cfg_scale > 0:
                    un_x = x.clone()
                    un_x[prompt_index] = mask_id
                    am = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
                    logits, un_logits = torch.chunk(model(torch.cat([x, un_x]), attention_mask=am), 2, dim=0)
                    logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
                else:
                    logits = model(x, attention_mask=attention_mask)
            x0 = torch.argmax(logits, dim=-1)
            if eos_eot is not None:
                logits[:, :, eos_eot[0]] = logits[:, :, eos_eot[1]] = -torch.inf
            p = torch.softmax(logits, dim=-1)
            x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
            x0_p[:, hi:] = -float("inf")
            x0 = torch.where(mask_index, x0, x)
            conf = torch.where(mask_index, x0_p, torch.tensor(-float("inf")))
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(B):
                # torch.topk with ties broken toward the lowest index (topk leaves the order of
                # ties unspecified; the package's documented rule is lowest index first). Ties
                # are real with confidence_eos_eot_inf: every EOS/EoT proposal has confidence 0.
                sel = torch.sort(conf[j], descending=True, stable=True).indices[: int(ntt[j, i])]
                transfer[j, sel] = True
            x[transfer] = x0[transfer]
    return x[:, Lp:]


def dream_generate(model, prompt, steps, gen_length, mask_id, alg="entropy", eps=1e-3):
    """Dream's diffusion_generate at temperature 0 with alg_temp 0, per the digest (§4): one
    block, per step ``number_transfer_tokens = int(N * (1 - s / t))`` from
    ``linspace(1, eps, steps + 1)`` (N = the batch-mean mask count; everything at the last step),
    confidence of the softmax (``maskgit_plus``: p(x0); ``topk_margin``: p1 - p2; ``entropy``:
    sum p log p, without Dream's +1e-10 inside the log, the package's documented deviation), top-k
    over the masked positions (ties toward the lowest index, as the package documents)."""
    B, Lp = prompt.shape
    x = torch.full((B, Lp + gen_length), mask_id, dtype=torch.long)
    x[:, :Lp] = prompt.clone()
    timesteps = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        mask_index = x == mask_id
        with torch.no_grad():
            logits = model(x).float()
        probs = torch.softmax(logits, dim=-1)
        conf, x0 = probs.max(dim=-1)
        if alg == "topk_margin":
            top2 = probs.topk(2, dim=-1).values
            conf = top2[..., 0] - top2[..., 1]
        elif alg == "entropy":
            conf = torch.special.xlogy(probs, probs).sum(-1)
        num_mask = mask_index.sum() / B
        t, s = timesteps[i], timesteps[i + 1]
        n = int(num_mask * (1 - s / t)) if i < steps - 1 else int(num_mask)
        full = torch.where(mask_index, conf, torch.tensor(-torch.inf))
        if n > 0:
            for j in range(B):
                sel = torch.sort(full[j], descending=True, stable=True).indices[:n]
                x[j, sel] = x0[j, sel]
    return x[:, Lp:]
