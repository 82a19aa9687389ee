#!/usr/bin/env python3
"""Write HelixFlow's TensorFlow sample models into the model repository.

Usage: make_tf_models.py OUTDIR   (make models runs it after make_models.py)

  mlp_savedmodel  the mlp of make_models.py (the same weights, from the same
                  seeded RNG) as a TensorFlow SavedModel: input FP32 [256] ->
                  probabilities FP32 [10], signature serving_default, tag
                  serve; platform tensorflow_savedmodel, max_batch_size 256,
                  dynamic batching, 2 CPU instances

For each model it writes OUTDIR/<name>/config.pbtxt (committed) and
OUTDIR/<name>/1/model.savedmodel/ (generated, not committed), checks the
config with Triton's ModelConfig proto, and runs the SavedModel once in
TensorFlow against the ONNX model run in ONNX Runtime. A SavedModel whose
files did not change is left as it is (its mtime too, for poll mode).
"""

import filecmp
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_models  # noqa: E402

MLP_CONFIG = """name: "mlp_savedmodel"
platform: "tensorflow_savedmodel"
backend: "tensorflow"
max_batch_size: 256
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 256 ]
  }
]
output [
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ 10 ]
  }
]
instance_group [
  {
    count: 2
    kind: KIND_CPU
  }
]
dynamic_batching {
  preferred_batch_size: [ 32, 64 ]
  max_queue_delay_microseconds: 200
}
"""


class MLP(tf.Module):
    """softmax(relu(relu(x W1 + b1) W2 + b2) W3 + b3), weights as variables."""

    def __init__(self, weights):
        super().__init__()
        layers = len(make_models.MLP_SIZES) - 1
        self.w = [tf.Variable(weights[f"fc{i}.weight"], name=f"fc{i}_weight") for i in range(1, layers + 1)]
        self.b = [tf.Variable(weights[f"fc{i}.bias"], name=f"fc{i}_bias") for i in range(1, layers + 1)]

    @tf.function(input_signature=[tf.TensorSpec([None, make_models.MLP_SIZES[0]], tf.float32, name="input")])
    def serve(self, input):  # noqa: A002 (the signature's input is named "input", as mlp's)
        h = input
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            h = tf.matmul(h, w) + b
            if i < len(self.w) - 1:
                h = tf.nn.relu(h)
        return {"probabilities": tf.nn.softmax(h, axis=-1)}


def same_tree(a, b):
    """Whether folders a and b hold the same files with the same bytes, but
    fingerprint.pb, which differs on every save (it is not read to load)."""
    if not os.path.isdir(b):
        return False
    cmp = filecmp.dircmp(a, b, ignore=["fingerprint.pb"])
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def mlp_savedmodel(outdir):
    onnx_model = make_models.mlp().onnx_model()
    weights = {t.name: numpy_helper.to_array(t) for t in onnx_model.graph.initializer}
    module = MLP(weights)
    version_dir = os.path.join(outdir, "mlp_savedmodel", "1")
    os.makedirs(version_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=version_dir, prefix=".tmp-")
    try:
        path = os.path.join(tmp, "model.savedmodel")
        tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
        # The SavedModel as the worker loads it, against ONNX Runtime's mlp.
        serve = tf.saved_model.load(path).signatures["serving_default"]
        x = np.random.default_rng(2).standard_normal((64, make_models.MLP_SIZES[0])).astype(np.float32)
        got = serve(input=tf.constant(x))["probabilities"].numpy()
        (want,) = make_models.session(onnx_model.SerializeToString()).run(["probabilities"], {"input": x})
        diff = float(np.abs(got - want).max())
        assert got.shape == (64, 10) and diff < 1e-5, diff
        cfg = text_format.Parse(MLP_CONFIG, model_config_pb2.ModelConfig())
        assert cfg.platform == "tensorflow_savedmodel" and cfg.input[0].name == "input"
        make_models.write_if_changed(os.path.join(outdir, "mlp_savedmodel", "config.pbtxt"), MLP_CONFIG.encode())
        dest = os.path.join(version_dir, "model.savedmodel")
        if same_tree(path, dest):
            state = "unchanged"
        else:
            old = dest + ".old"
            shutil.rmtree(old, ignore_errors=True)
            if os.path.exists(dest):
                os.rename(dest, old)
            os.rename(path, dest)
            shutil.rmtree(old, ignore_errors=True)
            state = "written"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return f"{state}; tensorflow {tf.__version__}: batch 64 ok, max |tf-onnxruntime| {diff:.1e}"


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    print(f"mlp_savedmodel: {mlp_savedmodel(argv[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
