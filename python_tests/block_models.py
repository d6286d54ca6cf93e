"""A tiny block-diffusion LM implementing protocol D' (docs/block_diffusion.md) with an explicit
boolean-mask attention in float64, for the block-decoding tests: the cached path writes and reads
a K/V cache, the uncached path recomputes the sequence, both with the block-causal rule
``key j visible to query p iff j // block_size <= p // block_size`` (and the key mask)."""
from types import SimpleNamespace

import torch

VOCAB = 24
MASK = VOCAB - 1
EOS = 3


class _Cache:
    def __init__(self, layers, batch, length, dim):
        self.k = [torch.zeros(batch, length, dim, dtype=torch.float64) for _ in range(layers)]
        self.v = [torch.zeros(batch, length, dim, dtype=torch.float64) for _ in range(layers)]


class TinyBlockLM(torch.nn.Module):
    """``model(x, *, attention_mask=None, kv_cache=None, start=0, store_kv=True) -> logits``."""

    def __init__(self, block_size=4, layers=2, dim=32, heads=2, max_len=64, seed=0, vocab=VOCAB):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(block_size=block_size, mask_token_id=vocab - 1, vocab_size=vocab)
        self.dim, self.heads = dim, heads
        r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
        self.emb, self.pos = r(vocab, dim), r(max_len, dim) * 0.5
        self.layers = [dict(q=r(dim, dim) / dim ** .5, k=r(dim, dim) / dim ** .5, v=r(dim, dim) / dim ** .5,
                            o=r(dim, dim) / dim ** .5, w1=r(dim, 2 * dim) / dim ** .5,
                            w2=r(2 * dim, dim) / (2 * dim) ** .5) for _ in range(layers)]
        self.head = r(vocab, dim) * 1.5 / dim ** .5
        self.head[vocab - 1] = 0  # never proposes [MASK] (in practice)
        self.calls = []           # (start, length, store_kv, cached) of every call
        # the sampler's ops take float32 logits (computed in float64, so every path agrees)
        self.logits_dtype = torch.float32
        # the training layout's attention: "dense" (explicit mask, in attention_dtype) or "op"
        # (attention_with_kv_cache's causal_block_size + noisy_length, float32)
        self.attention, self.attention_dtype = "dense", torch.float64

    def init_cache(self, batch, length):
        return _Cache(len(self.layers), batch, length, self.dim)

    def parameters_list(self):
        return [self.emb, self.pos, self.head] + [t for w in self.layers for t in w.values()]

    def forward(self, x, *, attention_mask=None, kv_cache=None, start=0, store_kv=True, noisy_length=None,
                visibility=None, return_hidden=False):
        """``noisy_length=L``: the training layout x_t ⊕ x_0 of ``2L`` tokens at positions ``i mod L``;
        ``visibility``: an explicit ``[n, n]`` bool mask instead of the rule (uncached only);
        ``return_hidden``: the final hidden states instead of the logits."""
        B, n = x.shape
        self.calls.append((start, n, store_kv, kv_cache is not None))
        b, H = self.config.block_size, self.heads
        qpos = torch.arange(start, start + n)
        if noisy_length is not None:
            qpos = qpos % noisy_length
        h = self.emb[x] + self.pos[qpos]
        for i, w in enumerate(self.layers):
            a = h / h.norm(dim=-1, keepdim=True) * self.dim ** .5
            q, k, v = a @ w["q"], a @ w["k"], a @ w["v"]
            if kv_cache is None:
                K, V = k, v
            else:
                K, V = kv_cache.k[i].clone(), kv_cache.v[i].clone()
                K[:, start:start + n], V[:, start:start + n] = k, v
                if store_kv:
                    kv_cache.k[i][:, start:start + n], kv_cache.v[i][:, start:start + n] = k, v
            kpos = torch.arange(K.shape[1])
            if visibility is not None:
                vis = visibility[None].expand(B, n, n)
            elif noisy_length is not None:
                blk, clean = (torch.arange(n) % noisy_length) // b, torch.arange(n) >= noisy_length
                same_half_ok = (blk[None, :] <= blk[:, None]) & clean[:, None]            # clean sees clean <= n
                noisy_ok = ~clean[:, None] & ((~clean[None, :] & (blk[None, :] == blk[:, None]))
                                              | (clean[None, :] & (blk[None, :] < blk[:, None])))
                vis = ((same_half_ok & clean[None, :]) | noisy_ok)[None].expand(B, n, n)
            else:
                vis = (kpos[None, :] // b <= qpos[:, None] // b)[None].expand(B, n, K.shape[1])
            if attention_mask is not None:
                vis = vis & attention_mask[:, None, :K.shape[1]].bool()
            if self.attention == "op" and noisy_length is not None and visibility is None:
                h = h + _op_training_attention(q, k, v, H, b, noisy_length) @ w["o"]
            else:
                split = lambda t: t.view(B, t.shape[1], H, -1).transpose(1, 2).to(self.attention_dtype)  # noqa: E731
                s = split(q) @ split(K).transpose(-1, -2) / (self.dim // H) ** .5
                s = s.masked_fill(~vis[:, None], float("-inf"))
                p = torch.softmax(s, -1).nan_to_num(0.0)  # a query with no visible key reads nothing
                h = h + (p @ split(V)).transpose(1, 2).reshape(B, n, -1).double() @ w["o"]
            h = h + torch.nn.functional.gelu(h @ w["w1"]) @ w["w2"]
        if return_hidden:
            return h
        return (h @ self.head.T).to(self.logits_dtype)


def _op_training_attention(q, k, v, heads, block, noisy_length):
    """The x_t ⊕ x_0 attention through the package's op (contract B), float32; k/v go in as the
    new rows of a scratch cache so that the op's autograd reaches them."""
    from diffusion_kernels import attention_with_kv_cache
    B, n, _ = q.shape
    split = lambda t: t.float().view(B, n, heads, -1)  # noqa: E731
    k32, v32 = split(k), split(v)
    o = attention_with_kv_cache(split(q), torch.empty_like(k32.detach()), torch.empty_like(v32.detach()), k32, v32,
                                cache_seqlens=0, causal_block_size=block, noisy_length=noisy_length)
    return o.reshape(B, n, -1).double()


class EOSAt(torch.nn.Module):
    """Wraps a D' model: the logits predicting absolute ``position`` in ``rows`` favour EOS."""

    def __init__(self, inner, rows, position, eos=EOS):
        super().__init__()
        self.inner, self.rows, self.position, self.eos = inner, rows, position, eos
        self.config = inner.config

    def init_cache(self, batch, length):
        return self.inner.init_cache(batch, length)

    def forward(self, x, **kw):
        out = self.inner(x, **kw).clone()
        start = kw.get("start", 0) if kw.get("kv_cache") is not None else 0
        i = self.position - start
        if 0 <= i < x.shape[1]:
            out[self.rows, i, self.eos] += 100.0
        return out


def one_thread():
    """A fixture body: these models are tiny, so torch's thread pool only costs; restore after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
