"""The people's side of helix-authz (issue 14) against real processes:
Postgres, Redis, helix-authz with TLS and mailpit, whose mails the tests
read the links from. Every answer of the API is checked against
api/openapi.yaml (people.SpecChecker), and the last test checks that every
operation of the spec was exercised.

A missing mailpit fails the run, as a missing binary does in tests/authz;
`make deps` (run by `make test`) installs it."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "authz"))
from fixtures import postgres, redis  # noqa: E402,F401 (shared fixtures)
from services import BIN, Authz, Mailpit, mailpit_binary  # noqa: E402

from people import SpecChecker  # noqa: E402

# Short enough to wait out in a test, long enough for a loaded machine to
# mail the link and the test to read it (the expired-link tests).
SHORT_LINK_LIFETIME = "3s"


def people_flags(mailpit):
    """The flags that turn the people's API on: mail to mailpit over
    loopback (plain SMTP is allowed to loopback only), loopback trusted as
    a proxy so that each test client's X-Forwarded-For is its source
    address (throttles are per source)."""
    return [f"--smtp-address={mailpit.smtp_address}", "--smtp-tls=none", "--mail-from=noreply@example.test",
            "--trusted-proxies=127.0.0.1/32"]


@pytest.fixture(scope="session")
def mailpit(tmp_path_factory):
    binary = mailpit_binary()
    if binary is None:
        pytest.fail("mailpit (.tools/mailpit/mailpit or $HELIX_MAILPIT_BIN) is missing: run `make deps`", pytrace=False)
    m = Mailpit(binary, tmp_path_factory.mktemp("mailpit"))
    yield m
    m.stop()


@pytest.fixture(scope="session")
def authz(tmp_path_factory, postgres, redis, mailpit):
    for b in ("helix-authz", "helixctl"):
        if not (BIN / b).exists():
            pytest.fail(f"{BIN / b} is missing: run `make build`")
    a = Authz(tmp_path_factory.mktemp("authz"), postgres, redis, people_flags(mailpit))
    yield a
    a.stop()


@pytest.fixture(scope="session")
def authz2(tmp_path_factory, postgres, redis, mailpit, authz):
    """A second replica on the same database. helix-authz sends at most one
    sign-up or reset mail per address per minute, per replica: a test that
    signs up and then asks for a reset link asks this one."""
    a = Authz(tmp_path_factory.mktemp("authz2"), postgres, redis, people_flags(mailpit), replica_of=authz)
    yield a
    a.stop()


@pytest.fixture(scope="session")
def authz_short(tmp_path_factory, postgres, redis, mailpit, authz):
    """A replica on the same database whose mailed links expire after
    SHORT_LINK_LIFETIME."""
    a = Authz(tmp_path_factory.mktemp("authz-short"), postgres, redis,
              people_flags(mailpit) + [f"--email-verify-lifetime={SHORT_LINK_LIFETIME}",
                                       f"--password-reset-lifetime={SHORT_LINK_LIFETIME}"], replica_of=authz)
    yield a
    a.stop()


# One checker for the whole run: the last test reads which operations
# were exercised.
SPEC = SpecChecker()


@pytest.fixture(scope="session")
def spec():
    return SPEC


def pytest_collection_modifyitems(session, config, items):
    # The coverage check of the spec runs after everything else.
    items.sort(key=lambda i: i.nodeid.endswith("test_every_operation_of_the_spec_was_exercised"))
