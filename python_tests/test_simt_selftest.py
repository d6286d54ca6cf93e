"""Self-test of the SIMT emulator (csrc/simt/simt.h), the layer that runs CUDA kernel source on CPU.

Builds the standalone driver python_tests/native/simt/selftest/ with g++ into a temporary directory, then:
  * every correct kernel passes under SIMT_ORDER forward / reverse / random (seeds 1-3), and its
    outputs are bitwise identical across the orders;
  * every deliberately broken kernel is caught by the mechanism it is meant to exercise
    (simt::KernelError with a specific message, the order matrix, the 0xFF shared-memory poison);
    the defects only a sanitizer build can see (ASan, TSan) are reported as such;
  * the header refuses the wrong include order and pre-C++20 builds.
The sanitizer legs and the nvcc compile check live in .ci/simt_selftest.sh.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CSRC = REPO / "csrc"
SELFTEST = REPO / "python_tests" / "native" / "simt" / "selftest"
UNITS = ("main", "correct_cases", "broken_cases")
ORDERS = [("forward", None), ("reverse", None), ("random", 1), ("random", 2), ("random", 3)]
ORDER_IDS = ["forward", "reverse", "random1", "random2", "random3"]


def _case_names(kind):
    """Case names from the driver's tables, so parametrisation needs no build at collection."""
    source = SELFTEST / ("correct_cases.cpp" if kind == "Correct" else "broken_cases.cpp")
    return re.findall(r'\{"(\w+)", Kind::' + kind, source.read_text())


CORRECT = _case_names("Correct")
BROKEN = _case_names("Broken")


def _cuda_include():
    """CUDA's host headers: $CUDA_HOME, $CUDA_PATH, next to nvcc (possibly a wrapper script)."""
    cands = [Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        cands.append(real.parent.parent / "include")
        try:
            m = re.search(r"(/\S+)/bin/nvcc", real.read_text(errors="ignore")[:4096])
            if m:
                cands.append(Path(m.group(1)) / "include")
        except OSError:
            pass
    cands += [Path("/usr/local/cuda/include"), *sorted(Path("/usr/local").glob("cuda-*/include"), reverse=True)]
    return next((c for c in cands if (c / "vector_types.h").exists() and (c / "cuda_bf16.h").exists()), None)


def _compiler():
    cxx = os.environ.get("CXX", "g++")
    if not shutil.which(cxx):
        pytest.skip(f"{cxx} not found: the SIMT emulator self-test needs a C++20 compiler")
    inc = _cuda_include()
    if inc is None:
        pytest.skip("CUDA headers (vector_types.h, cuda_bf16.h) not found: set CUDA_HOME")
    return cxx, inc


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    cxx, inc = _compiler()
    out = tmp_path_factory.mktemp("simt_selftest") / "selftest"
    flags = ["-std=c++20", "-O1", "-pthread", "-I", str(CSRC), "-I", str(inc)]
    procs = []
    for unit in UNITS:  # the translation units in parallel: most of this test's time is the build
        cmd = [cxx, *flags, "-c", str(SELFTEST / f"{unit}.cpp"), "-o", f"{out}.{unit}.o"]
        procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for cmd, p in procs:
        log, _ = p.communicate()
        assert p.returncode == 0, f"build failed: {' '.join(cmd)}\n{log}"
    link = [cxx, "-pthread", *[f"{out}.{u}.o" for u in UNITS], "-o", str(out)]
    res = subprocess.run(link, capture_output=True, text=True)
    assert res.returncode == 0, f"link failed: {' '.join(link)}\n{res.stdout}{res.stderr}"
    return out


def _run(driver, *args, order=None, seed=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMT_")}
    if order:
        env["SIMT_ORDER"] = order
    if seed is not None:
        env["SIMT_SEED"] = str(seed)
    return subprocess.run([str(driver), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def expectations(driver):
    res = _run(driver, "list")
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    return {name: (kind, expect) for name, kind, expect in rows}


def test_case_tables_match_the_driver(expectations):
    assert sorted(expectations) == sorted(CORRECT + BROKEN)


@pytest.mark.parametrize("order,seed", ORDERS, ids=ORDER_IDS)
@pytest.mark.parametrize("case", CORRECT)
def test_correct_kernel(driver, case, order, seed):
    res = _run(driver, case, order=order, seed=seed)
    assert res.returncode == 0 and res.stdout.startswith("PASS"), res.stdout + res.stderr


@pytest.mark.parametrize("case", CORRECT)
def test_outputs_bitwise_identical_across_orders(driver, case):
    res = _run(driver, "matrix", case)
    assert res.returncode == 0 and "bitwise identical" in res.stdout, res.stdout + res.stderr


def _is_sanitizer_only(expect):
    return expect.startswith("asan:") or expect == "tsan"


@pytest.mark.parametrize("order,seed", ORDERS[:3], ids=ORDER_IDS[:3])
@pytest.mark.parametrize("case", BROKEN)
def test_broken_kernel_is_caught(driver, expectations, case, order, seed):
    _, expect = expectations[case]
    res = _run(driver, case, order=order, seed=seed)
    out = res.stdout + res.stderr
    if _is_sanitizer_only(expect):
        # The plain build must say so instead of claiming success.
        assert res.returncode == 2 and out.startswith("NEEDS"), out
        pytest.skip(f"caught only by a sanitizer build ({expect}): .ci/simt_selftest.sh asan|tsan")
    if expect == "order-matrix" and order != "forward":
        pytest.skip("the order matrix runs every order itself")
    assert res.returncode == 0 and out.startswith(f"CAUGHT {case} by {expect}"), out
    if expect.startswith("KernelError:"):
        needles = expect.split(":", 1)[1].split("|")
        assert any(n in out for n in needles), out
        # Errors name the block (and thread, file:line), except launch-configuration errors,
        # which happen before any block runs.
        launch_time = "invalid launch configuration" in out or "dynamic shared memory exceed" in out
        assert launch_time or re.search(r"in block \(\d+,\d+,\d+\)", out), out


def _compile_snippet(tmp_path, code, std="c++20"):
    cxx, inc = _compiler()
    src = tmp_path / "snippet.cpp"
    src.write_text(code)
    cmd = [cxx, f"-std={std}", "-fsyntax-only", "-I", str(CSRC), "-I", str(inc), str(src)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_wrong_include_order_is_an_error(tmp_path):
    res = _compile_snippet(tmp_path, '#include <cuda_fp16.h>\n#include "simt/simt.h"\n')
    assert res.returncode != 0 and "must be included before any CUDA header" in res.stderr, res.stderr


def test_cpp17_is_an_error(tmp_path):
    res = _compile_snippet(tmp_path, '#include "simt/simt.h"\n', std="c++17")
    assert res.returncode != 0 and "needs C++20" in res.stderr, res.stderr
