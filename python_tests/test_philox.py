"""The shared Philox header against the published Random123 known-answer vectors."""
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
NATIVE = Path(__file__).resolve().parent / "native"


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_philox_known_answers(tmp_path):
    exe = tmp_path / "philox_kat"
    subprocess.run(["g++", "-std=c++20", "-O1", f"-I{CSRC}", str(NATIVE / "kernels/philox_kat.cpp"), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
