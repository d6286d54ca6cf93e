"""csrc/simt/ptx.h (mma.sync / ldmatrix / cp.async wrappers) on the SIMT emulator.

Builds the standalone driver python_tests/native/simt/ptx_test/ptx_test.cpp with g++ into a temporary directory
and runs it: fragment layouts pinned to the PTX ISA text, emulated mma against float math,
ldmatrix against direct loads, cp.async group semantics and poison, misuse reports, and bitwise
identical results under the forward / reverse / random fiber orders. The nvcc compile-only check
(.ci/nvcc_ptx_check.sh) runs too when nvcc is available.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CSRC = REPO / "csrc"
DRIVER_SRC = REPO / "python_tests" / "native" / "simt" / "ptx_test" / "ptx_test.cpp"
NVCC_CHECK = REPO / ".ci" / "nvcc_ptx_check.sh"


def _cuda_include():
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(Path(os.environ["CUDA_HOME"]) / "include")
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        candidates.append(real.parent.parent / "include")
        # /usr/local/bin/nvcc may be a wrapper script that execs the real one
        try:
            text = real.read_text(errors="ignore")[:4096]
            m = re.search(r"(/\S+)/bin/nvcc", text)
            if m:
                candidates.append(Path(m.group(1)) / "include")
        except OSError:
            pass
    candidates += [Path("/usr/local/cuda/include"), *sorted(Path("/usr/local").glob("cuda-*/include"), reverse=True)]
    for c in candidates:
        if (c / "cuda_bf16.h").exists() and (c / "vector_types.h").exists():
            return c
    return None


def _nvcc():
    if os.environ.get("CUDA_HOME") and (Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc").exists():
        return str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
    return shutil.which("nvcc")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    return _build(tmp_path_factory, "ptx_test", ["-O2"])


def _build(tmp_path_factory, name, extra_flags):
    if not (CSRC / "simt" / "simt.h").exists():
        pytest.skip("csrc/simt/simt.h is not present")
    cxx = os.environ.get("CXX", "g++")
    if not shutil.which(cxx):
        pytest.skip(f"{cxx} not found")
    inc = _cuda_include()
    if inc is None:
        pytest.skip("CUDA headers (cuda_bf16.h) not found; set CUDA_HOME")
    out = tmp_path_factory.mktemp(name) / "ptx_test"
    cmd = [cxx, "-std=c++20", *extra_flags, "-pthread", "-I", str(CSRC), "-I", str(inc), str(DRIVER_SRC), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"build failed: {' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    return out


def _run(driver, *args, order="forward", seed=None, timeout=300):
    env = dict(os.environ)
    env["SIMT_ORDER"] = order
    if seed is not None:
        env["SIMT_SEED"] = str(seed)
    else:
        env.pop("SIMT_SEED", None)
    return subprocess.run([str(driver), *args], capture_output=True, text=True, env=env, timeout=timeout)


def _hash(res):
    m = re.search(r"^HASH ([0-9a-f]{16})$", res.stdout, re.M)
    assert m, res.stdout
    return m.group(1)


@pytest.fixture(scope="module")
def forward_run(driver):
    res = _run(driver, "all", order="forward")
    return res


TESTS = ["layout", "mma", "gemm", "cp_async", "pipeline", "pack"]


@pytest.mark.parametrize("name", TESTS)
def test_driver_forward(forward_run, name):
    res = forward_run
    assert re.search(rf"^PASS {name} \(", res.stdout, re.M), f"{name} did not pass\n{res.stdout}\n{res.stderr}"


def test_driver_exit_code(forward_run):
    assert forward_run.returncode == 0, f"{forward_run.stdout}\n{forward_run.stderr}"


@pytest.mark.parametrize(
    "order,seed", [("reverse", None), ("random", 1), ("random", 2), ("random", 3)], ids=["reverse", "rand1", "rand2", "rand3"]
)
def test_orders_bitwise_identical(driver, forward_run, order, seed):
    res = _run(driver, "all", order=order, seed=seed)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert _hash(res) == _hash(forward_run), "outputs differ between fiber orders"


MISUSE = [
    (0, "not 16-byte aligned"),  # ldmatrix row address
    (1, "must be 16-byte aligned"),  # cp.async destination
    (2, "already has a cp.async in flight"),  # buffer reused before its wait
    (3, "lane 3 row address"),  # ldmatrix_x1, a lane whose address is used
    (5, "do not exist"),  # mma.sync from a 16-thread block
]


@pytest.mark.parametrize(
    "what,message", MISUSE, ids=["ldmatrix_align", "cp_async_align", "cp_async_reuse", "x1_align", "mma_partial_warp"]
)
def test_misuse_is_reported(driver, what, message):
    res = _run(driver, "misuse", str(what))
    assert res.returncode != 0, f"misuse {what} was not reported\n{res.stdout}\n{res.stderr}"
    assert message in res.stderr, res.stderr
    assert "ptx_test_kernels.cuh" in res.stderr, "the report should name the kernel line"


def test_ignored_lane_addresses_are_not_checked(driver):
    # ldmatrix .x1 reads only lanes 0-7's addresses; a misaligned one on lane 20 is fine.
    res = _run(driver, "misuse", "4")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"


def test_nvcc_compile_check():
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found")
    if not (CSRC / "simt" / "simt.h").exists():
        pytest.skip("csrc/simt/simt.h is not present")
    res = subprocess.run(["bash", str(NVCC_CHECK)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "nvcc_ptx_check: PASS" in res.stdout


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DK_SANITIZER_TESTS") != "1", reason="set DK_SANITIZER_TESTS=1 (about 50 s)")
def test_driver_under_asan_ubsan(tmp_path_factory):
    """The whole driver under AddressSanitizer + UBSan (about 40 s to build here)."""
    exe = _build(tmp_path_factory, "ptx_test_asan", ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
    res = _run(exe, "all", timeout=600)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "ERROR: AddressSanitizer" not in res.stderr and "runtime error" not in res.stderr, res.stderr
