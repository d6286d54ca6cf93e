import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    # The machine has 2 cores; pin torch so runs compare like with like.
    torch.set_num_threads(2)
