from collections.abc import Iterator

import pytest

from tests.localplane.harness import RunningPlane, fast_config


@pytest.fixture(scope="module")
def plane() -> Iterator[RunningPlane]:
    running = RunningPlane(fast_config())
    yield running
    running.stop()
