"""The bad-input battery (issue 19): every public function called with malformed and edge-case
arguments, each case in a worker subprocess with a timeout (python_tests/bad_input_pool.py).

A case passes when the call raises a TypeError/ValueError/RuntimeError naming the argument and
leaves every input unchanged, or returns what the reference (or the documented meaning) says;
a hang or a crash fails it. Cases listed in KNOWN_FAILING are strict xfails: once fixed they
XPASS, which fails the suite until the entry is removed. `python python_tests/bad_input_report.py`
prints the observed behaviour of each failing case.
"""
import pytest

from diffusion_kernels.testing import emulated

import bad_input_table
from bad_input_pool import Pool

CASES = bad_input_table.cases()

# case name -> what is wrong today (issue 19).
KNOWN_FAILING: dict = {}


def _param(name):
    marks = []
    if name in KNOWN_FAILING:
        marks.append(pytest.mark.xfail(strict=True, reason=f"issue 19: {KNOWN_FAILING[name]}"))
    if CASES[name].emulated and not emulated.AVAILABLE:
        marks.append(pytest.mark.skip(reason="diffusion_kernels._simt not built (DK_BUILD_EMULATOR=1)"))
    return pytest.param(name, marks=marks, id=name)


def test_known_failing_names_exist():
    assert not set(KNOWN_FAILING) - set(CASES), "KNOWN_FAILING names a case that does not exist"


@pytest.fixture(scope="module")
def pool(request):
    """One pool for the module, started on the selected cases only (all of them run at once)."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")
                and not item.get_closest_marker("skip")]
    p = Pool(CASES, selected, n=2)
    yield p


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_case(pool, name):
    answer = pool.result(name)
    assert answer["outcome"] == "pass", f"{answer['outcome']}: {answer['detail']}"
