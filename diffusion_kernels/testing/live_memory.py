"""The peak of the bytes held by tensors that torch ops allocate while a region runs, forward and
backward: exact for tensors (no allocator caches, page granularity or library scratch, which
the resident set also counts), for tests and benchmarks of what a function keeps alive."""
from typing import Optional

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["LiveTensorPeak"]


class LiveTensorPeak(TorchDispatchMode):
    """``with LiveTensorPeak() as m: ...`` then ``m.peak``: the largest total size of the live
    storages that ops under the mode allocated, checked after every op. Views and in-place results
    of existing storages (``weight.t()``) are not new; storages made before the region do not
    count. ``last_dim``: count only tensors whose last dimension has that size (e.g. the
    vocabulary: logits, log-softmaxes and their gradients).

    Examples:
        >>> import torch
        >>> from diffusion_kernels.testing.live_memory import LiveTensorPeak
        >>> with LiveTensorPeak() as m:
        ...     a = torch.ones(1000)          # 4000 bytes
        ...     del a
        ...     b = torch.ones(500)           # 2000 bytes, after a was freed
        >>> m.peak
        4000
    """

    def __init__(self, last_dim: Optional[int] = None):
        super().__init__()
        self.last_dim, self.live, self.peak = last_dim, {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or (self.last_dim is not None
                                                   and (t.dim() == 0 or t.shape[-1] != self.last_dim)):
                continue
            s = t.untyped_storage()
            if s.data_ptr() in inputs:
                continue
            old = self.live.get(s.data_ptr())
            if old is None or old[0].expired():
                self.live[s.data_ptr()] = (StorageWeakRef(s), s.nbytes())
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out
