"""api/openapi.yaml is a valid OpenAPI 3.1 document: the file every other
test in this folder checks the server's answers against."""

from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.readers import read_from_filename

from people import SPEC_PATH, spec_operations


def test_spec_is_valid_openapi_31():
    doc, _ = read_from_filename(str(SPEC_PATH))
    assert doc["openapi"].startswith("3.1.")
    errors = [e.message for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []


def test_every_api_operation_answers_errors_in_one_shape():
    """Every /api/v1 operation documents its error answers with the
    webapi error body (a client reads one error shape everywhere)."""
    doc, _ = read_from_filename(str(SPEC_PATH))
    for path, method in spec_operations():
        if not path.startswith("/api/v1/"):
            continue
        responses = doc["paths"][path][method]["responses"]
        assert "default" in responses, f"{method.upper()} {path}: no default (error) response"
        for status, resp in responses.items():
            if status.startswith(("4", "5")) or status == "default":
                ref = resp.get("$ref") or resp["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[-1] in {"Error", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
                                                  "Conflict", "TooLarge", "UnsupportedType", "TooManyRequests",
                                                  "Unavailable"}, f"{method.upper()} {path} {status}: {ref}"
