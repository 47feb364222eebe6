import pytest

from toy_task import ToyTask
from xaiboard.benchmark.removal import RemovalEngine


@pytest.fixture
def toy_task() -> ToyTask:
    return ToyTask()


@pytest.fixture
def setup(toy_task):
    """The toy task, its model, 6 test samples and a removal engine: the metric tests' bench."""
    model = toy_task.model()
    batch = toy_task.samples("test", 6, seed=3)
    return toy_task, model, batch, RemovalEngine(toy_task, model)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use small tensors: one thread avoids oversubscription (measured: a GNNExplainer
    fit took 20 s with 2 threads under load vs 0.5 s with 1)."""
    import torch

    torch.set_num_threads(1)
