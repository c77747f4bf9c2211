from collections.abc import Iterator

import pytest

from tests.router.harness import Loop


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()
