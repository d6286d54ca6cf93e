"""The one tolerance rule of the test suite (flash-attn's): compared with a float64 reference, our
error may be at most twice PyTorch's own error at the same precision, plus a small slack."""
import torch


def assert_within_torch_error(ours, torch_result, reference, *, atol=1e-6, rtol=0.0, what="result"):
    """Assert ``|ours - ref| <= 2 * max|torch_result - ref| + rounding + atol + rtol * |ref|``.

    ``reference`` is computed in float64; ``torch_result`` is PyTorch's own computation at the
    precision ``ours`` was computed in. ``rounding`` is the error of storing the reference in
    ``ours``' dtype (a bf16 output cannot be closer than that). Non-finite reference entries must
    be matched exactly: NaN where the reference has NaN, the same infinity elsewhere.
    """
    ours_d, torch_d, ref = ours.detach().cpu().double(), torch_result.detach().cpu().double(), reference.detach().cpu().double()
    assert ours_d.shape == ref.shape, f"{what}: shape {tuple(ours_d.shape)} != reference {tuple(ref.shape)}"
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(ours_d), nan), f"{what}: NaN pattern differs from the reference"
    inf = torch.isinf(ref)
    assert torch.equal(ours_d[inf], ref[inf]), f"{what}: infinities differ from the reference"
    fin = torch.isfinite(ref)
    if not fin.any():
        return
    assert torch.isfinite(ours_d[fin]).all(), f"{what}: non-finite where the reference is finite"
    torch_err = (torch_d - ref)[fin].abs().max().item() if torch.isfinite(torch_d[fin]).all() else float("inf")
    rounding = (ref[fin].to(ours.dtype).double() - ref[fin]).abs().max().item() if ours.dtype != torch.float64 else 0.0
    err = (ours_d - ref)[fin].abs()
    bound = 2 * torch_err + rounding + atol + rtol * ref[fin].abs()
    bad = err > bound
    assert not bad.any(), (f"{what}: {int(bad.sum())} elements beyond 2x PyTorch's error ({torch_err:.3g}) + slack: "
                           f"max error {err.max().item():.3g}")
