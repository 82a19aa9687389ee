"""MLServer runtime for the TorchScript benchmark baseline: runs a model.pt
with PyTorch's Python API (torch.jit.load, inference mode), the same
libtorch build helix-worker's pytorch backend loads (torch 2.11.0 from
scripts/requirements-torch.txt).

model-settings.json names it as `torch_model.TorchModel`; `parameters.uri` is
the model.pt path, `parameters.extra.threads` the number of forward() calls
allowed at once (helix-worker's instance count for the model) and
`parameters.extra.inputs` / `outputs` the tensor names in forward()'s
argument and result order (a TorchScript file does not carry them; Triton
and helix-worker take them from config.pbtxt).
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class TorchModel(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self.settings)
        self._module = torch.jit.load(path, map_location="cpu").eval()
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        self._input_names = list(extra["inputs"])
        self._output_names = list(extra["outputs"])
        # libtorch releases the GIL while forward() runs, so calls on a
        # thread pool overlap with the event loop decoding the next requests.
        self._pool = ThreadPoolExecutor(max_workers=int(extra.get("threads", 1)),
                                        thread_name_prefix=f"torch-{self.name}")
        return True

    async def unload(self) -> bool:
        self._pool.shutdown(wait=True)
        return True

    def _forward(self, args):
        with torch.inference_mode():
            out = self._module(*args)
        if isinstance(out, torch.Tensor):
            out = (out,)
        return [o.numpy() for o in out]

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for inp in payload.inputs:
            if inp.name not in self._input_names:
                raise InferenceError(f"model {self.name} has no input {inp.name!r}")
            feeds[inp.name] = torch.from_numpy(np.ascontiguousarray(NumpyCodec.decode_input(inp)))
        args = [feeds[n] for n in self._input_names]
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(self._pool, self._forward, args)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, out) for name, out in zip(self._output_names, outputs)],
        )
