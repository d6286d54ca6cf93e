"""Gradients of ``attention_with_kv_cache`` for q, k and v (the new rows).

The op itself has no backward kernel (it is an inference op: a flash backward would be a kernel of
its own). When a gradient is asked for, the forward still runs the op (the cache write included)
and the backward recomputes the attention in PyTorch from q, the updated caches and k/v
(``reference.attention_with_kv_cache`` in float32): exact gradients, at the memory cost of the
``[batch, heads, q_len, cache_len]`` scores of the unfused way.

The caches are written in place, so they cannot themselves require grad (an in-place write into a
leaf that requires grad is an error in PyTorch too): new keys/values reach the cache through
k/v, which is where their gradients go. Rows of the cache that were not written are
constants of the call. Writing into the caches again before the backward would change what it
recomputes; that is detected and refused.
"""
import torch

from .. import reference


def needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class AttentionWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k_new, v_new, k_cache, v_cache, write_start, starts, key_padding_mask, key_lengths, scale,
                write_status, op):
        out, lse = op(q, k_cache, v_cache, k_new, v_new, write_start, starts, key_padding_mask, key_lengths, scale,
                      True, write_status)
        ctx.save_for_backward(q, k_new, v_new, starts, key_padding_mask, key_lengths)
        # The caches are not saved tensors (they are mutated by design): their versions are checked.
        ctx.caches = (k_cache, v_cache, k_cache._version, v_cache._version)
        ctx.write_start, ctx.scale = write_start, scale
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k_new, v_new, starts, key_padding_mask, key_lengths = ctx.saved_tensors
        k_cache, v_cache, k_version, v_version = ctx.caches
        if k_cache._version != k_version or v_cache._version != v_version:
            raise RuntimeError("diffusion_kernels: attention_with_kv_cache backward: 'k_cache'/'v_cache' were "
                               "modified after the forward; the backward recomputes from them, so keep them "
                               "unchanged until backward")
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        with torch.enable_grad():
            qd = q.detach().requires_grad_(need_q)
            kd = None if k_new is None else k_new.detach().requires_grad_(need_k)
            vd = None if v_new is None else v_new.detach().requires_grad_(need_v)
            # Clones: the reference writes k_new/v_new into them (a differentiable in-place copy).
            out, lse = reference.attention_with_kv_cache(
                qd, k_cache.detach().clone(), v_cache.detach().clone(), kd, vd,
                starts if starts is not None else ctx.write_start, key_padding_mask, key_lengths, ctx.scale,
                return_lse=True)
            outputs, grads = [out], [grad_out]
            if grad_lse is not None:
                outputs.append(lse)
                grads.append(grad_lse)
            inputs = [t for t in (qd, kd, vd) if t is not None and t.requires_grad]
            found = iter(torch.autograd.grad(outputs, inputs, grads, allow_unused=True))
        grad_q = next(found) if need_q else None
        grad_k = next(found) if kd is not None and need_k else None
        grad_v = next(found) if vd is not None and need_v else None
        return grad_q, grad_k, grad_v, None, None, None, None, None, None, None, None, None
