"""What every online-RL test shares."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):  # tests/conftest.py's, for every test here
    yield
