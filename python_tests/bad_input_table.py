"""Every case of the battery, by name (imported by pytest for the ids and by the workers to run them)."""
import diffusion_kernels as dk
from diffusion_kernels.testing import emulated

import bad_input_attention
import bad_input_confidence
import bad_input_losses
import bad_input_sampler
import bad_input_transfer


def cases() -> dict:
    table = []
    table += bad_input_confidence.cases(dk.masked_confidence, "masked_confidence")
    table += bad_input_confidence.cases(emulated.masked_confidence, "emu.masked_confidence", emulated=True)
    table += bad_input_transfer.cases(dk.select_transfer, "select_transfer")
    table += bad_input_transfer.cases(emulated.select_transfer, "emu.select_transfer", emulated=True)
    table += bad_input_attention.cases(dk.attention_with_kv_cache, "attention_with_kv_cache")
    table += bad_input_attention.cases(emulated.attention_with_kv_cache, "emu.attention_with_kv_cache", emulated=True)
    table += bad_input_losses.forward_mask_cases(dk.forward_mask, "forward_mask")
    table += bad_input_losses.forward_mask_cases(emulated.forward_mask, "emu.forward_mask", emulated=True)
    table += bad_input_losses.masked_ce_cases(dk.masked_cross_entropy, "masked_cross_entropy")
    table += bad_input_losses.masked_ce_cases(bad_input_losses.emulated_masked_ce, "emu.masked_ce_forward",
                                              emulated=True)
    table += bad_input_losses.loss_cases()
    table += bad_input_losses.likelihood_cases()
    table += bad_input_sampler.generate_cases()
    table += bad_input_sampler.schedule_cases()
    table += bad_input_sampler.model_cases()
    out = {}
    for case in table:
        assert case.name not in out, f"duplicate case name {case.name}"
        out[case.name] = case
    return out
