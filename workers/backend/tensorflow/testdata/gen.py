#!/usr/bin/env python3
"""Write the SavedModels the tensorflow backend's Go tests load.

Usage: .venv/bin/python workers/backend/tensorflow/testdata/gen.py

Each model is a folder as Triton's model.savedmodel is (saved_model.pb and
variables/), written with the tensorflow-cpu that make deps installs:

  types       one input IN_<T> [batch, n] and output OUT_<T> per dtype this
              backend serves: OUT = IN + 1 (BOOL: not IN; STRING: IN + "!")
  add_sub     a, b FP32 [batch, 4] -> sum = a + b, diff = a - b, with a
              variable (the SavedModel's variables/ are loaded too)
  other_sig   add_sub's function under the signature "predict" only (no
              serving_default)
"""

import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

# KServe datatype -> TensorFlow dtype, every one the backend serves.
TYPES = {
    "BOOL": tf.bool, "UINT8": tf.uint8, "UINT16": tf.uint16, "UINT32": tf.uint32,
    "UINT64": tf.uint64, "INT8": tf.int8, "INT16": tf.int16, "INT32": tf.int32,
    "INT64": tf.int64, "FP16": tf.float16, "BF16": tf.bfloat16, "FP32": tf.float32,
    "FP64": tf.float64, "BYTES": tf.string,
}


def bump(x):
    """What the types model computes per dtype, in TensorFlow ops."""
    if x.dtype == tf.bool:
        return tf.logical_not(x)
    if x.dtype == tf.string:
        return tf.strings.join([x, tf.fill(tf.shape(x), "!")])
    return x + tf.ones_like(x)


def types_model():
    specs = [tf.TensorSpec([None, None], dt, name=f"IN_{k}") for k, dt in TYPES.items()]

    class Types(tf.Module):
        @tf.function(input_signature=specs)
        def serve(self, *args):
            return {f"OUT_{k}": bump(x) for k, x in zip(TYPES, args)}

    m = Types()
    # Keyword arguments name the signature's inputs.
    fn = m.serve.get_concrete_function()
    return m, {"serving_default": fn}


class AddSub(tf.Module):
    def __init__(self):
        super().__init__()
        self.zero = tf.Variable(tf.zeros([4]), name="zero")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="a"),
                                  tf.TensorSpec([None, 4], tf.float32, name="b")])
    def serve(self, a, b):
        return {"sum": a + b + self.zero, "diff": a - b}


def save(outdir, name, module, signatures):
    path = os.path.join(outdir, name)
    shutil.rmtree(path, ignore_errors=True)
    tf.saved_model.save(module, path, signatures=signatures)
    print(f"{name}: written")


def main(argv):
    outdir = os.path.dirname(os.path.abspath(__file__))
    m, sigs = types_model()
    save(outdir, "types", m, sigs)
    a = AddSub()
    save(outdir, "add_sub", a, {"serving_default": a.serve})
    a2 = AddSub()
    save(outdir, "other_sig", a2, {"predict": a2.serve})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
