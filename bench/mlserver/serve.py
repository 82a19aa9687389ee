"""Start stock MLServer (`mlserver start FOLDER`) with one addition to its gRPC
server: Triton's ModelConfig RPC, which MLServer lacks and perf_analyzer calls
once, before it sends any load, to learn the model's max_batch_size and
inputs. The answers are ModelConfigResponse messages serialized ahead of time
(by bench_worker.py, from each model's config.pbtxt), so nothing here parses
Triton protos and MLServer's own `inference.*` messages do not clash with
them. Inference, batching and everything else stay MLServer's.

    python serve.py --triton-configs CONFIGS.json FOLDER

CONFIGS.json maps a model name to its base64 ModelConfigResponse.
"""

import argparse
import base64
import json
import sys

import grpc
from mlserver.cli.main import main as mlserver_main
from mlserver.grpc import dataplane_pb2
from mlserver.grpc.server import GRPCServer

MODEL_CONFIG_METHOD = "/inference.GRPCInferenceService/ModelConfig"


class TritonModelConfig(grpc.GenericRpcHandler):
    """Answers ModelConfig from the pre-serialized responses."""

    def __init__(self, responses: dict[str, bytes]):
        self._responses = responses

    def service(self, handler_call_details):
        if handler_call_details.method != MODEL_CONFIG_METHOD:
            return None
        # ModelConfigRequest is {string name = 1; string version = 2;}, the
        # same wire layout as MLServer's ModelMetadataRequest.
        return grpc.unary_unary_rpc_method_handler(
            self._model_config,
            request_deserializer=dataplane_pb2.ModelMetadataRequest.FromString,
        )

    async def _model_config(self, request, context) -> bytes:
        response = self._responses.get(request.name)
        if response is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        return response


def add_model_config(responses: dict[str, bytes]) -> None:
    create = GRPCServer._create_server

    def create_server(self):
        server = create(self)
        # Looked up only for methods MLServer's own servicers do not register.
        server.add_generic_rpc_handlers((TritonModelConfig(responses),))
        return server

    GRPCServer._create_server = create_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triton-configs", required=True, help="JSON file: model name -> base64 ModelConfigResponse")
    parser.add_argument("folder", help="MLServer folder (settings.json and one folder per model)")
    args = parser.parse_args()
    with open(args.triton_configs) as f:
        responses = {name: base64.b64decode(b64) for name, b64 in json.load(f).items()}
    add_model_config(responses)
    sys.argv = ["mlserver", "start", args.folder]
    mlserver_main()


if __name__ == "__main__":
    main()
