import pytest

from toy_task import ToyTask


@pytest.fixture
def toy_task() -> ToyTask:
    return ToyTask()
