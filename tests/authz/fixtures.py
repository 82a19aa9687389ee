"""The session-wide Postgres and Redis fixtures tests/authz and
tests/accounts share (each conftest imports them)."""

import pytest

from services import Postgres, Redis


@pytest.fixture(scope="session")
def postgres():
    pg = Postgres()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def redis(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop()
