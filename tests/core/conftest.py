from __future__ import annotations

import pytest

from .fakes import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
