"""tritonclient through the HelixFlow gateway, as a Triton user would call it.

Run by e2e/tritonclient_test.go against a running stack; not standalone.
Every check runs, each prints "ok: <check>" or "FAIL: <check>: <why>", and
the exit status is 1 if any failed.

Arguments: --url host:port (Envoy's TLS listener, gRPC and HTTPS) and
--ca-file (the CA of its certificate). Tokens come from the environment,
not the command line: HELIX_TOKEN_ALL (models:infer models:read, models *),
HELIX_TOKEN_INFER (models:infer, models *), HELIX_TOKEN_MLP
(models:mlp:infer), HELIX_TOKEN_FREE (models:infer models:read on the free
plan: 5 requests per second per model). HELIX_CLIENT_ALL is the id of the
first client, used to forge x-helix-client.
"""

import argparse
import os
import queue
import sys
import traceback

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "simple"

failures = []


def check(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failures.append(name)
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        print(f"FAIL: {name}: {detail}", flush=True)
        return
    print(f"ok: {name}", flush=True)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def bearer(token):
    return {"authorization": "Bearer " + token}


def simple_inputs(mod, **kw):
    """INPUT0 = 0..15, INPUT1 = 3s, as the protocol module's InferInput;
    kw goes to set_data_from_numpy (HTTP: binary_data)."""
    in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
    in1 = np.full((1, 16), 3, dtype=np.int32)
    inputs = [mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(in0, **kw)
    inputs[1].set_data_from_numpy(in1, **kw)
    return inputs, in0, in1


def check_outputs(result, in0, in1):
    out0, out1 = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    expect(out0 is not None and out1 is not None, "outputs missing")
    expect(np.array_equal(out0, in0 + in1), f"OUTPUT0 = {out0}, want {in0 + in1}")
    expect(np.array_equal(out1, in0 - in1), f"OUTPUT1 = {out1}, want {in0 - in1}")


def expect_grpc_error(fn, want):
    """fn must raise InferenceServerException with gRPC status want."""
    try:
        fn()
    except InferenceServerException as e:
        expect(e.status() == "StatusCode." + want, f"status {e.status()} ({e.message()}), want {want}")
        return
    raise AssertionError(f"succeeded, want {want}")


def expect_http_error(fn, want):
    try:
        fn()
    except InferenceServerException as e:
        expect(e.status() == str(want), f"status {e.status()} ({e.message()}), want {want}")
        return
    raise AssertionError(f"succeeded, want HTTP {want}")


def over_plan(call, limited_status):
    """12 calls back to back on a 5/s plan: a one-second window admits 5,
    two admit at most 10, so at least 2 must be refused as over the limit,
    and nothing may fail otherwise."""
    got = []
    for _ in range(12):
        try:
            call()
            got.append("OK")
        except InferenceServerException as e:
            got.append(e.status())
    limited = got.count(limited_status)
    expect(limited >= 2 and limited + got.count("OK") == len(got), f"answers {got}")


def grpc_checks(url, ca, tok_all, tok_infer, tok_mlp, tok_free, client_all):
    c = grpcclient.InferenceServerClient(url=url, ssl=True, root_certificates=ca)

    def infer():
        inputs, in0, in1 = simple_inputs(grpcclient)
        r = c.infer(MODEL, inputs, headers=bearer(tok_all), client_timeout=10)
        check_outputs(r, in0, in1)
        expect(r.get_response().model_name == MODEL, f"model_name {r.get_response().model_name}")

    def metadata():
        md = c.get_model_metadata(MODEL, headers=bearer(tok_all), as_json=True, client_timeout=10)
        expect(md["name"] == MODEL, f"name {md['name']}")
        got = {i["name"]: (i["datatype"], [int(d) for d in i["shape"]]) for i in md["inputs"]}
        expect(got == {"INPUT0": ("INT32", [-1, 16]), "INPUT1": ("INT32", [-1, 16])}, f"inputs {got}")

    def config():
        cfg = c.get_model_config(MODEL, headers=bearer(tok_all), as_json=True, client_timeout=10)["config"]
        expect(cfg["name"] == MODEL and int(cfg["max_batch_size"]) == 8, f"config {cfg}")

    def stream(token, want_error=None, model=None):
        results = queue.Queue()
        headers = bearer(token)
        if model:
            # Names the stream's model: helix-authz then needs only its
            # scope, and Envoy routes the stream to its pool.
            headers["helix-model"] = model
        c.start_stream(callback=lambda result, error: results.put((result, error)), headers=headers)
        try:
            n = 1 if want_error else 3
            inputs, in0, in1 = simple_inputs(grpcclient)
            for i in range(n):
                try:
                    c.async_stream_infer(MODEL, inputs, request_id=f"r{i}")
                except InferenceServerException:
                    # A denied stream can end before the first send; the
                    # denial then reaches the callback, checked below.
                    if not want_error:
                        raise
            got = []
            for _ in range(n):
                result, error = results.get(timeout=10)
                if want_error:
                    expect(error is not None, "stream succeeded, want " + want_error)
                    expect(error.status() == "StatusCode." + want_error,
                           f"stream status {error.status()} ({error.message()}), want {want_error}")
                    return
                expect(error is None, f"stream error {error}")
                check_outputs(result, in0, in1)
                got.append(result.get_response().id)
            expect(sorted(got) == [f"r{i}" for i in range(n)], f"request ids {got}")
        finally:
            c.stop_stream()

    forged = {"x-helix-model": "mlp", "x-helix-client": client_all, "x-helix-plan": "standard"}

    check("gRPC infer simple", infer)
    check("gRPC model metadata", metadata)
    check("gRPC model config", config)
    check("gRPC ModelStreamInfer with models:infer on *", lambda: stream(tok_infer))
    check("gRPC ModelStreamInfer without models:infer is PERMISSION_DENIED",
          lambda: stream(tok_mlp, want_error="PERMISSION_DENIED"))
    check("gRPC ModelStreamInfer naming its model (helix-model header)", lambda: stream(tok_infer, model=MODEL))
    check("gRPC ModelStreamInfer naming a model outside the scope is PERMISSION_DENIED",
          lambda: stream(tok_mlp, want_error="PERMISSION_DENIED", model=MODEL))
    check("gRPC infer without a token is UNAUTHENTICATED",
          lambda: expect_grpc_error(lambda: c.infer(MODEL, simple_inputs(grpcclient)[0], client_timeout=10),
                                    "UNAUTHENTICATED"))
    check("gRPC infer with the wrong scope is PERMISSION_DENIED",
          lambda: expect_grpc_error(
              lambda: c.infer(MODEL, simple_inputs(grpcclient)[0], headers=bearer(tok_mlp), client_timeout=10),
              "PERMISSION_DENIED"))
    check("gRPC metadata without models:read is PERMISSION_DENIED",
          lambda: expect_grpc_error(
              lambda: c.get_model_metadata(MODEL, headers=bearer(tok_infer), client_timeout=10),
              "PERMISSION_DENIED"))
    check("gRPC forged x-helix-model/x-helix-client for an out-of-scope model have no effect",
          lambda: expect_grpc_error(
              lambda: c.infer(MODEL, simple_inputs(grpcclient)[0], headers={**bearer(tok_mlp), **forged},
                              client_timeout=10),
              "PERMISSION_DENIED"))
    check("gRPC forged x-helix-model without a token is UNAUTHENTICATED",
          lambda: expect_grpc_error(
              lambda: c.infer(MODEL, simple_inputs(grpcclient)[0], headers=forged, client_timeout=10),
              "UNAUTHENTICATED"))
    check("gRPC beyond the free plan is RESOURCE_EXHAUSTED",
          lambda: over_plan(lambda: c.infer(MODEL, simple_inputs(grpcclient)[0], headers=bearer(tok_free),
                                            client_timeout=10), "StatusCode.RESOURCE_EXHAUSTED"))
    c.close()


def http_checks(url, ca, tok_all, tok_infer, tok_mlp, tok_free, client_all):
    c = httpclient.InferenceServerClient(url=url, ssl=True, ssl_options={"ca_certs": ca},
                                         connection_timeout=10, network_timeout=10)

    def infer(binary):
        inputs, in0, in1 = simple_inputs(httpclient, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
        r = c.infer(MODEL, inputs, outputs=outputs, headers=bearer(tok_all))
        check_outputs(r, in0, in1)
        expect(r.get_response()["model_name"] == MODEL, f"model_name {r.get_response()}")

    def metadata():
        md = c.get_model_metadata(MODEL, headers=bearer(tok_all))
        expect(md["name"] == MODEL, f"name {md['name']}")
        got = {i["name"]: (i["datatype"], i["shape"]) for i in md["inputs"]}
        expect(got == {"INPUT0": ("INT32", [-1, 16]), "INPUT1": ("INT32", [-1, 16])}, f"inputs {got}")

    def config():
        cfg = c.get_model_config(MODEL, headers=bearer(tok_all))
        expect(cfg["name"] == MODEL and int(cfg["max_batch_size"]) == 8, f"config {cfg}")

    forged = {"x-helix-model": "mlp", "x-helix-client": client_all, "x-helix-plan": "standard"}

    check("HTTPS infer simple (binary tensors)", lambda: infer(True))
    check("HTTPS infer simple (JSON tensors)", lambda: infer(False))
    check("HTTPS model metadata", metadata)
    check("HTTPS model config", config)
    check("HTTPS infer without a token is 401",
          lambda: expect_http_error(lambda: c.infer(MODEL, simple_inputs(httpclient)[0]), 401))
    check("HTTPS infer with the wrong scope is 403",
          lambda: expect_http_error(lambda: c.infer(MODEL, simple_inputs(httpclient)[0], headers=bearer(tok_mlp)), 403))
    check("HTTPS metadata without models:read is 403",
          lambda: expect_http_error(lambda: c.get_model_metadata(MODEL, headers=bearer(tok_infer)), 403))
    check("HTTPS forged x-helix-model/x-helix-client for an out-of-scope model have no effect",
          lambda: expect_http_error(
              lambda: c.infer(MODEL, simple_inputs(httpclient)[0], headers={**bearer(tok_mlp), **forged}), 403))
    check("HTTPS forged x-helix-model without a token is 401",
          lambda: expect_http_error(lambda: c.infer(MODEL, simple_inputs(httpclient)[0], headers=forged), 401))
    check("HTTPS beyond the free plan is 429",
          lambda: over_plan(lambda: c.infer(MODEL, simple_inputs(httpclient)[0], headers=bearer(tok_free)), "429"))
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca-file", required=True)
    a = ap.parse_args()
    env = {k: os.environ.get(k, "") for k in ("HELIX_TOKEN_ALL", "HELIX_TOKEN_INFER", "HELIX_TOKEN_MLP",
                                              "HELIX_TOKEN_FREE", "HELIX_CLIENT_ALL")}
    missing = [k for k, v in env.items() if not v]
    if missing:
        print("FAIL: missing environment: " + ", ".join(missing), flush=True)
        return 2
    args = (a.url, a.ca_file, env["HELIX_TOKEN_ALL"], env["HELIX_TOKEN_INFER"], env["HELIX_TOKEN_MLP"],
            env["HELIX_TOKEN_FREE"], env["HELIX_CLIENT_ALL"])
    grpc_checks(*args)
    http_checks(*args)
    if failures:
        print(f"{len(failures)} check(s) failed", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
