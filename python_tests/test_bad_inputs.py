"""The bad-input battery (issue 19): every public function called with malformed and edge-case
arguments, each case in a worker subprocess with a timeout (python_tests/bad_input_pool.py).

A case passes when the call raises a TypeError/ValueError/RuntimeError naming the argument and
leaves every input unchanged, or returns what the reference (or the documented meaning) says;
a hang or a crash fails it. Cases listed in KNOWN_FAILING are strict xfails: once fixed they
XPASS, which fails the suite until the entry is removed. /work/notes/battery_failures.md holds
the observed behaviour of each.
"""
import pytest

from diffusion_kernels.testing import emulated

import bad_input_table
from bad_input_pool import Pool

CASES = bad_input_table.cases()

# case name -> what is wrong today (issue 19).
KNOWN_FAILING = {
    'attention_with_kv_cache-cache_seqlens-tensor-meta': "message does not name 'cache_seqlens' or 'write_start' or 'write_starts': NotImplementedError: Cannot copy out",
    'attention_with_kv_cache-return_softmax_lse-True': "well-formed call raised RuntimeError: view size is not compatible with input tensor's size and stride (at leas",
    'attention_with_kv_cache-gqa-lse-129-queries': "well-formed call raised RuntimeError: view size is not compatible with input tensor's size and stride (at leas",
    'attention_with_kv_cache-gqa-lse-bf16-40-queries': "well-formed call raised RuntimeError: view size is not compatible with input tensor's size and stride (at leas",
    'attention_with_kv_cache-gqa-lse-129-queries-autograd': "well-formed call raised RuntimeError: view size is not compatible with input tensor's size and stride (at leas",
    'emu.attention_with_kv_cache-k_cache-meta': "message does not name 'k_cache' or 'q': NotImplementedError: dk_emulated::attention_with_kv_cache: attempted t",
    'emu.attention_with_kv_cache-v_cache-meta': "message does not name 'v_cache' or 'q': NotImplementedError: dk_emulated::attention_with_kv_cache: attempted t",
    'emu.attention_with_kv_cache-k-meta': "message does not name 'k' or 'k_new' or 'q': NotImplementedError: dk_emulated::attention_with_kv_cache: attemp",
    'emu.attention_with_kv_cache-v-meta': "message does not name 'v' or 'v_new' or 'q': NotImplementedError: dk_emulated::attention_with_kv_cache: attemp",
    'emu.attention_with_kv_cache-q-meta': "message does not name 'q' or 'k_cache': NotImplementedError: dk_emulated::attention_with_kv_cache: attempted t",
    'emu.attention_with_kv_cache-cache_seqlens-tensor-meta': "message does not name 'cache_seqlens' or 'write_start' or 'write_starts': NotImplementedError: Cannot copy out",
    'emu.attention_with_kv_cache-key_padding_mask-meta': "message does not name 'key_padding_mask': NotImplementedError: dk_emulated::attention_with_kv_cache: attempted",
    'emu.attention_with_kv_cache-key_lengths-meta': "message does not name 'key_lengths': NotImplementedError: dk_emulated::attention_with_kv_cache: attempted to r",
    'emu.forward_mask-t-meta': "message does not name 't': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'emu.forward_mask-prompt_lengths-meta': "message does not name 'prompt_lengths': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'emu.masked_ce_forward-targets-meta': "message does not name 'targets' or 'logits': NotImplementedError: dk_emulated::masked_ce_forward: attempted to",
    'emu.masked_ce_forward-masked-meta': "message does not name 'masked' or 'logits': NotImplementedError: dk_emulated::masked_ce_forward: attempted to",
    'emu.masked_ce_forward-logits-meta': "message does not name 'targets' or 'logits' or 'masked': NotImplementedError: dk_emulated::masked_ce_forward:",
    'emu.masked_confidence-temperature-huge': 'wrong result: result[0] differs at [[0, 2], [0, 3], [0, 4], [1, 0]]: got [0, 2, 1, 6], want [6, 1, 3, 5]',
    'emu.masked_confidence-temperature-tensor-inf': 'wrong result: result[0] differs at [[0, 2], [0, 3], [0, 4]]: got [0, 2, 1], want [6, 1, 3]',
    'emu.masked_confidence-top_p-tensor-negative': 'wrong result: result[0] differs at [[0, 2], [1, 2]]: got [6, 0], want [0, 1]',
    'forward_mask-t-meta': "message does not name 't': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'forward_mask-prompt_lengths-meta': "message does not name 'prompt_lengths': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'fused_linear_masked_diffusion_loss-p_mask-meta': "message does not name 'p_mask': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'fused_linear_masked_diffusion_loss-sft-prompt_lengths-meta': "message does not name 'prompt_lengths': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'masked_confidence-temperature-huge': 'wrong result: result[0] differs at [[0, 2], [0, 3], [0, 4], [1, 0]]: got [0, 2, 1, 6], want [6, 1, 3, 5]',
    'masked_confidence-temperature-tensor-inf': 'wrong result: result[0] differs at [[0, 2], [0, 3], [0, 4]]: got [0, 2, 1], want [6, 1, 3]',
    'masked_cross_entropy-huge-logits': 'wrong result: result[0]: NaN pattern differs: [nan, 0.0, nan, nan, 0.0, nan, nan, 0.0, nan, 6.546598983192258e',
    'masked_diffusion_loss-p_mask-meta': "message does not name 'p_mask': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'masked_diffusion_loss-sft-prompt_lengths-meta': "message does not name 'prompt_lengths': NotImplementedError: Cannot copy out of meta tensor; no data!",
    'monte_carlo_log_likelihood-model-not-callable': "message does not name 'model': TypeError: 'int' object is not callable",
}


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
