"""Runs last (conftest orders it): every operation of api/openapi.yaml was
answered by the server during this run, so the spec describes nothing the
tests never saw. Run alone or with -k it fails, naming what was not
exercised in that selection."""

from people import spec_operations


def test_every_operation_of_the_spec_was_exercised(spec):
    missing = [f"{m.upper()} {p}" for p, m in spec_operations() if (p, m) not in spec.exercised]
    assert not missing, "operations of api/openapi.yaml no test exercised:\n  " + "\n  ".join(missing)
    assert not spec.failures, "answers outside the spec:\n" + "\n".join(spec.failures)
