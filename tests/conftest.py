"""Shared test settings: pinned threads (CPU results depend on them) and seeds."""

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
