"""The torch range a built binary accepts: the wheel's metadata and the import-time check agree,
and an unsupported torch is one clear ImportError naming both versions."""
import subprocess
import sys

import pytest
import torch

import diffusion_kernels
from diffusion_kernels import _torch_compat


@pytest.mark.parametrize("built,running,ok", [
    ("2.13.0+cpu", "2.13.0+cpu", True),
    ("2.13.0+cpu", "2.14.1+cu130", True),      # one minor forward: CI runs the wheel there
    ("2.13.0+cpu", "2.13.1", True),
    ("2.13.0+cpu", "2.10.0", False),           # older: libtorch symbols differ
    ("2.13.0+cpu", "2.12.1+cu121", False),
    ("2.13.0+cpu", "2.15.0", False),           # two minors forward: untested
    ("2.13.0+cpu", "3.13.0", False),
    ("2.14.1+cu130", "2.15.0a0+git1234", True),
])
def test_supported_range(built, running, ok):
    assert _torch_compat.supported(built, running) is ok
    if ok:
        _torch_compat.check(built, running)
    else:
        with pytest.raises(ImportError) as err:
            _torch_compat.check(built, running)
        assert built in str(err.value) and running in str(err.value)


def test_requirement_matches_the_check():
    assert _torch_compat.requirement("2.13.0+cpu") == "torch>=2.13,<2.15"


def test_override_lets_an_expert_try(monkeypatch):
    monkeypatch.setenv(_torch_compat.OVERRIDE, "1")
    _torch_compat.check("2.13.0", "2.10.0")


def test_this_build_records_the_torch_it_was_built_with():
    from diffusion_kernels._build_config import BUILT_TORCH

    assert BUILT_TORCH == diffusion_kernels.build_info()["torch_version"]
    assert _torch_compat.supported(BUILT_TORCH, torch.__version__)


def test_import_under_an_unsupported_torch_is_one_clear_error():
    # Pretend the running torch is older than the build: the import must stop before loading _C.
    code = ("import torch; torch.__version__ = '2.10.0'\n"
            "try:\n    import diffusion_kernels\nexcept ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR") and "2.10.0" in out.stdout and "built against torch" in out.stdout, out.stdout
