from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: builds a fresh virtualenv and installs packages (about 30 s or more); runs in the normal suite",
    )
