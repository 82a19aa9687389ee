#!/usr/bin/env python3
"""Write HelixFlow's TorchScript sample models (Triton's pytorch_libtorch).

Usage: make_torch_models.py OUTDIR      (`make models` runs it after make_models.py)

Models:
  mlp_torch  the network of make_models.py's mlp, same weights: input FP32
             [256] -> Linear 256x1024 -> ReLU -> Linear 1024x1024 -> ReLU ->
             Linear 1024x10 -> softmax -> probabilities FP32 [10]; the same
             config as mlp (max_batch_size 256, dynamic batching, 2 CPU
             instances) on the pytorch backend

For each model the script writes OUTDIR/<name>/config.pbtxt and
OUTDIR/<name>/1/model.pt (torch.jit.script, saved with fixed zip timestamps so
that a rerun writes the same bytes), loads the file back and checks it
against make_models.py's ONNX model run in ONNX Runtime. A TorchScript file
carries no reliable IO names or types, so the config declares them; the
input is named as forward()'s argument, which is how the backend binds it.
"""

import hashlib
import io
import os
import sys
import zipfile

import numpy as np
import torch
from google.protobuf import text_format
from onnx import numpy_helper
from tritonclient.grpc import model_config_pb2

import make_models as mm


class MLP(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        layers = []
        for i in range(1, len(mm.MLP_SIZES)):
            fc = torch.nn.Linear(mm.MLP_SIZES[i - 1], mm.MLP_SIZES[i])
            with torch.no_grad():
                # ONNX Gemm holds W as [in, out]; Linear as [out, in].
                fc.weight.copy_(torch.from_numpy(weights[f"fc{i}.weight"].T.copy()))
                fc.bias.copy_(torch.from_numpy(weights[f"fc{i}.bias"].copy()))
            layers.append(fc)
        self.fc1, self.fc2, self.fc3 = layers

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(input))
        h = torch.relu(self.fc2(h))
        return torch.softmax(self.fc3(h), dim=-1)


def torchscript_bytes(module):
    """torch.jit.save's zip, rewritten with fixed timestamps."""
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), src.read(info.filename))
    return out.getvalue()


def mlp_torch():
    onnx_mlp = mm.mlp()
    weights = {t.name: numpy_helper.to_array(t) for t in onnx_mlp.initializers}
    config = (onnx_mlp.config_pbtxt()
              .replace('name: "mlp"', 'name: "mlp_torch"')
              .replace('platform: "onnxruntime_onnx"', 'platform: "pytorch_libtorch"')
              .replace('backend: "onnxruntime"', 'backend: "pytorch"'))
    assert "mlp_torch" in config and "pytorch_libtorch" in config
    return MLP(weights), config, onnx_mlp


def check_mlp_torch(data, onnx_mlp):
    module = torch.jit.load(io.BytesIO(data))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, mm.MLP_SIZES[0])).astype(np.float32)
    with torch.inference_mode():
        p = module(torch.from_numpy(x)).numpy()
    (want,) = mm.session(onnx_mlp.onnx_model().SerializeToString()).run(["probabilities"], {"input": x})
    assert p.shape == (64, 10) and p.dtype == np.float32
    diff = float(np.abs(p - want).max())
    assert diff < 1e-5, diff
    return f"batch 64 ok, max |torch-onnxruntime| {diff:.1e}"


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    outdir = argv[1]
    torch.manual_seed(0)
    module, config, onnx_mlp = mlp_torch()
    cfg = text_format.Parse(config, model_config_pb2.ModelConfig())
    assert cfg.platform == "pytorch_libtorch" and cfg.backend == "pytorch"
    data = torchscript_bytes(module)
    summary = check_mlp_torch(data, onnx_mlp)
    mm.write_if_changed(os.path.join(outdir, cfg.name, "config.pbtxt"), config.encode())
    mm.write_if_changed(os.path.join(outdir, cfg.name, "1", "model.pt"), data)
    print(f"{cfg.name}: {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()[:16]}; "
          f"torch {torch.__version__}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
