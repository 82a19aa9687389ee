"""Conformance of helix-authz with software nobody here wrote: an OAuth2
client library (requests-oauthlib) gets tokens, PyJWT verifies them from
the JWKS. Real Postgres and Redis, real helix-authz, TLS; nothing is
skipped."""

import pytest

from fixtures import postgres, redis  # noqa: F401 (shared fixtures)
from services import BIN, Authz


@pytest.fixture(scope="session")
def authz(tmp_path_factory, postgres, redis):
    for b in ("helix-authz", "helixctl"):
        if not (BIN / b).exists():
            pytest.fail(f"{BIN / b} is missing: run `make build`")
    a = Authz(tmp_path_factory.mktemp("authz"), postgres, redis)
    yield a
    a.stop()


@pytest.fixture(scope="session")
def client(authz):
    """A client that may infer on `simple` and read metadata."""
    return authz.helixctl("clients", "create", "--name", "conformance", "--scope", "models:simple:infer,models:read",
                          "--model", "simple", "--plan", "gold", "--audience", authz.audience)
