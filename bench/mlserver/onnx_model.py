"""MLServer runtime for the benchmark baseline: runs a model.onnx with ONNX
Runtime's Python API, the same engine and session defaults helix-worker uses.

model-settings.json names it as `onnx_model.OnnxModel`; `parameters.uri` is
the model.onnx path and `parameters.extra.threads` the number of sessions runs
allowed at once (helix-worker's instance count for the model).
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self.settings)
        # Default SessionOptions: helix-worker's default too (ORT picks the
        # intra-op thread count).
        self._session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output_names = [o.name for o in self._session.get_outputs()]
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        # ONNX Runtime releases the GIL while it runs, so runs on a thread pool
        # overlap with the event loop decoding the next requests.
        self._pool = ThreadPoolExecutor(max_workers=int(extra.get("threads", 1)),
                                        thread_name_prefix=f"ort-{self.name}")
        return True

    async def unload(self) -> bool:
        self._pool.shutdown(wait=True)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for inp in payload.inputs:
            if inp.name not in self._input_names:
                raise InferenceError(f"model {self.name} has no input {inp.name!r}")
            feeds[inp.name] = NumpyCodec.decode_input(inp)
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(self._pool, self._session.run, self._output_names, feeds)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, np.asarray(out))
                     for name, out in zip(self._output_names, outputs)],
        )
