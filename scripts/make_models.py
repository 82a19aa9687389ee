#!/usr/bin/env python3
"""Write HelixFlow's sample Triton model repository.

Usage: make_models.py OUTDIR

Every model is built here from onnx.helper and a seeded numpy RNG, so the
output is the same bytes on every run.  For each model the script writes
OUTDIR/<name>/config.pbtxt (Triton's protobuf text format) and
OUTDIR/<name>/1/model.onnx, checks the model with onnx.checker and the config
with Triton's ModelConfig proto (from tritonclient), runs the model once in
ONNX Runtime (CPU) against a numpy reference, and prints one line.

This script is the source of truth: the config.pbtxt files committed under
models/ are its output; the .onnx files are generated and not committed.

Models:
  simple         INPUT0, INPUT1 INT32 [16] -> OUTPUT0 = INPUT0 + INPUT1,
                 OUTPUT1 = INPUT0 - INPUT1 (Triton's classic), max_batch_size 8
  simple_string  INPUT0 STRING [16] -> OUTPUT0 = INPUT0,
                 OUTPUT1 = INPUT0 in reverse order, max_batch_size 8
  mlp            input FP32 [256] -> Gemm 256x1024 -> Relu -> Gemm 1024x1024
                 -> Relu -> Gemm 1024x10 -> Softmax -> probabilities FP32 [10],
                 max_batch_size 256, dynamic batching, 2 CPU instances
  identity_all   IN_<T> [-1] -> OUT_<T> (Identity) for every Triton datatype
                 ONNX Runtime's CPU provider handles, max_batch_size 0
"""

import hashlib
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

# ONNX Runtime 1.30 (the library the worker loads) reads these.
OPSET = 17
IR_VERSION = 8
PRODUCER = "helixflow scripts/make_models.py"
PRODUCER_VERSION = "1"

# Triton config type name -> (ONNX element type, numpy dtype used for checks).
# BF16 has no numpy dtype: it is carried as uint16 bit patterns.
DATATYPES = [
    ("BOOL", TensorProto.BOOL, np.bool_),
    ("INT8", TensorProto.INT8, np.int8),
    ("INT16", TensorProto.INT16, np.int16),
    ("INT32", TensorProto.INT32, np.int32),
    ("INT64", TensorProto.INT64, np.int64),
    ("UINT8", TensorProto.UINT8, np.uint8),
    ("UINT16", TensorProto.UINT16, np.uint16),
    ("UINT32", TensorProto.UINT32, np.uint32),
    ("UINT64", TensorProto.UINT64, np.uint64),
    ("FP16", TensorProto.FLOAT16, np.float16),
    ("FP32", TensorProto.FLOAT, np.float32),
    ("FP64", TensorProto.DOUBLE, np.float64),
    ("BF16", TensorProto.BFLOAT16, None),
    ("BYTES", TensorProto.STRING, object),
]

# Triton's config names for the ONNX element types used here.
TRITON_TYPE = {
    TensorProto.BOOL: "TYPE_BOOL",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32",
    TensorProto.UINT64: "TYPE_UINT64",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.BFLOAT16: "TYPE_BF16",
    TensorProto.STRING: "TYPE_STRING",
}


# --------------------------------------------------------------------------
# Model description shared by the ONNX graph and config.pbtxt.


class Tensor:
    """One model input or output: name, ONNX element type, dims without the
    batch dimension (-1 for a variable one), as Triton's config states them."""

    def __init__(self, name, elem_type, dims):
        self.name = name
        self.elem_type = elem_type
        self.dims = list(dims)

    def value_info(self, batched):
        shape = []
        if batched:
            shape.append("batch")
        for i, d in enumerate(self.dims):
            shape.append(f"{self.name}_dim{i}" if d < 0 else d)
        return helper.make_tensor_value_info(self.name, self.elem_type, shape)


class Model:
    def __init__(self, name, inputs, outputs, nodes, initializers=(),
                 max_batch_size=0, instance_count=1, dynamic_batching=None,
                 doc=""):
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.nodes = nodes
        self.initializers = list(initializers)
        self.max_batch_size = max_batch_size
        self.instance_count = instance_count
        self.dynamic_batching = dynamic_batching
        self.doc = doc

    def onnx_model(self):
        batched = self.max_batch_size > 0
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [t.value_info(batched) for t in self.inputs],
            [t.value_info(batched) for t in self.outputs],
            initializer=self.initializers,
            doc_string=self.doc,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name=PRODUCER,
            producer_version=PRODUCER_VERSION,
        )
        onnx.checker.check_model(model, full_check=True)
        return model

    def config_pbtxt(self):
        lines = [
            f'name: "{self.name}"',
            'platform: "onnxruntime_onnx"',
            'backend: "onnxruntime"',
            f"max_batch_size: {self.max_batch_size}",
        ]
        for section, tensors in (("input", self.inputs), ("output", self.outputs)):
            lines.append(f"{section} [")
            for i, t in enumerate(tensors):
                lines += [
                    "  {",
                    f'    name: "{t.name}"',
                    f"    data_type: {TRITON_TYPE[t.elem_type]}",
                    "    dims: [ " + ", ".join(str(d) for d in t.dims) + " ]",
                    "  }" + ("," if i < len(tensors) - 1 else ""),
                ]
            lines.append("]")
        lines += [
            "instance_group [",
            "  {",
            f"    count: {self.instance_count}",
            "    kind: KIND_CPU",
            "  }",
            "]",
        ]
        if self.dynamic_batching is not None:
            preferred, delay_us = self.dynamic_batching
            lines += [
                "dynamic_batching {",
                "  preferred_batch_size: [ " + ", ".join(str(b) for b in preferred) + " ]",
                f"  max_queue_delay_microseconds: {delay_us}",
                "}",
            ]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# The models.


def simple():
    t = TensorProto.INT32
    return Model(
        "simple",
        inputs=[Tensor("INPUT0", t, [16]), Tensor("INPUT1", t, [16])],
        outputs=[Tensor("OUTPUT0", t, [16]), Tensor("OUTPUT1", t, [16])],
        nodes=[
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub"),
        ],
        max_batch_size=8,
        doc="OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1 (INT32)",
    )


def simple_string():
    t = TensorProto.STRING
    reverse = numpy_helper.from_array(np.arange(15, -1, -1, dtype=np.int64), "reverse_indices")
    return Model(
        "simple_string",
        inputs=[Tensor("INPUT0", t, [16])],
        outputs=[Tensor("OUTPUT0", t, [16]), Tensor("OUTPUT1", t, [16])],
        nodes=[
            helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"], name="copy"),
            helper.make_node("Gather", ["INPUT0", "reverse_indices"], ["OUTPUT1"],
                             name="reverse", axis=1),
        ],
        initializers=[reverse],
        max_batch_size=8,
        doc="OUTPUT0 = INPUT0, OUTPUT1 = INPUT0 with its 16 strings in reverse order",
    )


MLP_SIZES = [256, 1024, 1024, 10]


def mlp():
    rng = np.random.default_rng(20240611)
    nodes, inits = [], []
    prev = "input"
    layers = len(MLP_SIZES) - 1
    for i in range(layers):
        fan_in, fan_out = MLP_SIZES[i], MLP_SIZES[i + 1]
        last = i == layers - 1
        # He init keeps activations near unit scale through the ReLUs; the
        # last layer is scaled so logits have std ~2: softmax is neither
        # one-hot nor uniform.
        std = (2.0 if last else np.sqrt(2.0)) / np.sqrt(fan_in)
        w = (rng.standard_normal((fan_in, fan_out)) * std).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i + 1}.weight"),
                  numpy_helper.from_array(b, f"fc{i + 1}.bias")]
        out = "logits" if last else f"fc{i + 1}"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{i + 1}.weight", f"fc{i + 1}.bias"],
                                      [out], name=f"fc{i + 1}"))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i + 1}"], name=f"relu{i + 1}"))
            prev = f"relu{i + 1}"
        else:
            prev = out
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], name="softmax", axis=-1))
    return Model(
        "mlp",
        inputs=[Tensor("input", TensorProto.FLOAT, [MLP_SIZES[0]])],
        outputs=[Tensor("probabilities", TensorProto.FLOAT, [MLP_SIZES[-1]])],
        nodes=nodes,
        initializers=inits,
        max_batch_size=256,
        instance_count=2,
        dynamic_batching=([32, 64], 200),
        doc="softmax(relu(relu(x W1 + b1) W2 + b2) W3 + b3), 256-1024-1024-10",
    )


def identity_all():
    inputs, outputs, nodes = [], [], []
    for tname, elem, _ in DATATYPES:
        inputs.append(Tensor(f"IN_{tname}", elem, [-1]))
        outputs.append(Tensor(f"OUT_{tname}", elem, [-1]))
        nodes.append(helper.make_node("Identity", [f"IN_{tname}"], [f"OUT_{tname}"],
                                      name=f"identity_{tname.lower()}"))
    return Model(
        "identity_all",
        inputs=inputs,
        outputs=outputs,
        nodes=nodes,
        max_batch_size=0,
        doc="OUT_<T> = IN_<T> for each datatype",
    )


# --------------------------------------------------------------------------
# Checks in ONNX Runtime: each model runs once against a numpy reference.


def session(model_bytes):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def check_simple(sess):
    rng = np.random.default_rng(1)
    a = rng.integers(-1000, 1000, (3, 16), dtype=np.int32)
    b = rng.integers(-1000, 1000, (3, 16), dtype=np.int32)
    o0, o1 = sess.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": a, "INPUT1": b})
    assert o0.dtype == np.int32 and np.array_equal(o0, a + b)
    assert o1.dtype == np.int32 and np.array_equal(o1, a - b)
    return "batch 3 ok"


def check_simple_string(sess):
    x = np.array([[f"s{r}-{i}" for i in range(16)] for r in range(2)], dtype=object)
    x[0, 0] = ""
    x[1, 5] = "héllo wörld"
    o0, o1 = sess.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": x})
    assert o0.tolist() == x.tolist()
    assert o1.tolist() == x[:, ::-1].tolist()
    return "batch 2 ok"


def check_mlp(sess, model):
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, MLP_SIZES[0])).astype(np.float32)
    (p,) = sess.run(["probabilities"], {"input": x})
    h = x.astype(np.float64)
    for i in range(1, len(MLP_SIZES)):
        h = h @ weights[f"fc{i}.weight"] + weights[f"fc{i}.bias"]
        if i < len(MLP_SIZES) - 1:
            h = np.maximum(h, 0)
    h = np.exp(h - h.max(axis=1, keepdims=True))
    ref = h / h.sum(axis=1, keepdims=True)
    assert p.shape == (64, 10) and p.dtype == np.float32
    assert np.allclose(p, ref, atol=1e-5), float(np.abs(p - ref).max())
    top = p.max(axis=1)
    classes = len(set(p.argmax(axis=1).tolist()))
    assert 0.2 < top.mean() < 0.95 and classes >= 5, (top.mean(), classes)
    return (f"batch 64 ok, max |ort-numpy| {np.abs(p - ref).max():.1e}, "
            f"top-1 prob mean {top.mean():.2f}, {classes}/10 classes seen")


def to_bf16_bits(f32):
    bits = np.asarray(f32, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def identity_all_feeds():
    rng = np.random.default_rng(3)
    feeds = {}
    for n, (tname, elem, dtype) in enumerate(DATATYPES):
        length = n % 5  # lengths 0..4: empty tensors too
        if tname == "BYTES":
            x = np.array([f"v{i}\x00é" for i in range(length)], dtype=object)
        elif tname == "BOOL":
            x = rng.integers(0, 2, length).astype(np.bool_)
        elif tname == "BF16":
            x = to_bf16_bits(rng.standard_normal(length))
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            x = np.array([info.min, info.max, 0, 1, 7][:length], dtype=dtype)
        else:
            x = (rng.standard_normal(length) * 100).astype(dtype)
        feeds[tname] = x
    return feeds


def check_identity_all(sess, model):
    # ONNX Runtime's Python API has no numpy type for bfloat16 and cannot put
    # strings in an OrtValue, so one run checks every output but OUT_BF16 (the
    # BF16 input goes in as an OrtValue), and a second run of the same graph
    # less its BYTES node binds OUT_BF16 to a uint16 buffer.
    feeds = identity_all_feeds()
    bf16 = TensorProto.BFLOAT16
    ort_feeds = {}
    for tname, x in feeds.items():
        ort_feeds[f"IN_{tname}"] = (ort.OrtValue.ortvalue_from_numpy_with_onnx_type(x, onnx_element_type=bf16)
                                    if tname == "BF16" else x)
    names = [o.name for o in sess.get_outputs() if o.name != "OUT_BF16"]
    for name, got in zip(names, sess.run(names, ort_feeds)):
        want = feeds[name[len("OUT_"):]]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        if want.dtype == object:
            assert got.tolist() == want.tolist(), name
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want), name

    no_bytes = onnx.ModelProto()
    no_bytes.CopyFrom(model)
    g = no_bytes.graph
    for field in (g.input, g.output, g.node):
        keep = [x for x in field if not (x.name.endswith("_BYTES") or x.name == "identity_bytes")]
        del field[:]
        field.extend(keep)
    sess2 = session(no_bytes.SerializeToString())
    binding = sess2.io_binding()
    for tname, x in feeds.items():
        if tname == "BF16":
            binding.bind_ortvalue_input("IN_BF16", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                x, onnx_element_type=bf16))
        elif tname != "BYTES":
            binding.bind_cpu_input(f"IN_{tname}", x)
    out = np.full_like(feeds["BF16"], 0xFFFF)
    binding.bind_ortvalue_output("OUT_BF16", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
        out, onnx_element_type=bf16))
    sess2.run_with_iobinding(binding)
    assert np.array_equal(out, feeds["BF16"]), (out, feeds["BF16"])
    return f"{len(DATATYPES)} datatypes ok: " + " ".join(t for t, _, _ in DATATYPES)


def check_config(m, text):
    """Parse config.pbtxt with Triton's ModelConfig proto (from tritonclient)
    and check it states what the ONNX graph has."""
    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert cfg.name == m.name and cfg.max_batch_size == m.max_batch_size
    dt = model_config_pb2.DataType
    for got, want in ((cfg.input, m.inputs), (cfg.output, m.outputs)):
        assert [(t.name, dt.Name(t.data_type), list(t.dims)) for t in got] == \
            [(t.name, TRITON_TYPE[t.elem_type], t.dims) for t in want]


CHECKS = {
    "simple": lambda s, m: check_simple(s),
    "simple_string": lambda s, m: check_simple_string(s),
    "mlp": check_mlp,
    "identity_all": check_identity_all,
}


# --------------------------------------------------------------------------


def write_if_changed(path, data):
    """Write atomically; leave an identical file (and its mtime) alone."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    outdir = argv[1]
    for build in (simple, simple_string, mlp, identity_all):
        m = build()
        model = m.onnx_model()
        data = model.SerializeToString()
        config = m.config_pbtxt()
        check_config(m, config)
        summary = CHECKS[m.name](session(data), model)
        write_if_changed(os.path.join(outdir, m.name, "config.pbtxt"), config.encode())
        write_if_changed(os.path.join(outdir, m.name, "1", "model.onnx"), data)
        print(f"{m.name}: {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()[:16]}; "
              f"onnxruntime {ort.__version__}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
