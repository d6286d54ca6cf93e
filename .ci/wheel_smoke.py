"""Smoke test of an installed wheel: the import comes from site-packages, the op runs and
agrees with the reference."""
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference

assert "site-packages" in dk.__file__, dk.__file__
info = dk.build_info()
print(info)
# The import-time torch check needs the build's record inside the wheel.
from diffusion_kernels._build_config import BUILT_TORCH
assert BUILT_TORCH == info["torch_version"], (BUILT_TORCH, info)
logits = torch.randn(2, 5, 1003, dtype=torch.bfloat16)
x = torch.tensor([[7, 1, 7, 2, 7], [7, 7, 7, 7, 7]])
x0, conf = dk.masked_confidence(logits, x, 7)
ref_x0, ref_conf = reference.masked_confidence(logits, x, 7)
assert torch.equal(x0, ref_x0)
torch.testing.assert_close(conf, ref_conf, rtol=1e-5, atol=1e-7)
print("wheel smoke test: ok")

# The embedded demo model ships as package data and decodes correctly from the installed wheel.
import os
import subprocess
import sys

from diffusion_kernels import demo

assert os.path.isfile(demo.WEIGHTS), demo.WEIGHTS
out = subprocess.run([sys.executable, "-m", "diffusion_kernels", "demo", "503912748160293847561029"],
                     capture_output=True, text=True)
print(out.stdout[-300:])
assert out.returncode == 0 and "000111222334455667788999" in out.stdout and "correct" in out.stdout, out.stdout + out.stderr
print("wheel demo: ok")
