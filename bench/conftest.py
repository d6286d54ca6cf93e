import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    # The machine has 2 cores; pin torch so runs compare like with like.
    torch.set_num_threads(2)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what pytest-benchmark's machine_info lacks and bench/summarize.py reports: the torch
    that ran, its thread count and how the extension was built (CUDA archs, emulator)."""
    import diffusion_kernels

    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["diffusion_kernels"] = diffusion_kernels.build_info()
