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
  simple_string  INPUT0, INPUT1 STRING [16] of decimal integers -> OUTPUT0 =
                 sum, OUTPUT1 = difference, as decimal strings (Triton's),
                 max_batch_size 8
  mlp            input FP32 [256] -> Gemm 256x1024 -> Relu -> Gemm 1024x1024
                 -> Relu -> Gemm 1024x10 -> Softmax -> probabilities FP32 [10],
                 max_batch_size 256, dynamic batching, 2 CPU instances
  identity_all   IN_<T> [-1] -> OUT_<T> (Identity) for every Triton datatype
                 ONNX Runtime's CPU provider handles, max_batch_size 0
  simple_sequence
                 INPUT INT32 [1] -> OUTPUT = (INPUT + START) * READY;
                 sequence_batching direct, controls START, READY;
                 max_batch_size 8 (what Triton's sequence clients expect)
  simple_dyna_sequence
                 OUTPUT = (INPUT + START + END * CORRID) * READY; oldest,
                 controls START, END, READY, CORRID (UINT64) (clients' -d)
  simple_string_dyna_sequence
                 an accumulator with implicit state: OUTPUT = OUTPUT_STATE =
                 (INPUT + INPUT_STATE + END * int(CORRID)) * READY; oldest,
                 controls END, READY, CORRID (STRING), state INPUT_STATE ->
                 OUTPUT_STATE starting at zero (clients' -d)
  preprocess     IMAGE UINT8 [256] -> SCALED FP32 [256] = IMAGE / 255,
                 max_batch_size 256, dynamic batching
  mlp_ensemble   ensemble: IMAGE UINT8 [256] -> preprocess -> mlp ->
                 probabilities FP32 [10]; config.pbtxt and an empty 1/
  repeat_int32   backend "repeat", decoupled: IN INT32 [-1], DELAY UINT32
                 [-1], WAIT UINT32 [1] -> one response OUT, IDX per element
                 of IN (Triton's repeat example); config.pbtxt and an empty 1/

The config-only models (ensemble, repeat) are parsed with Triton's
ModelConfig proto too; the ensemble's steps are checked against the models
built here (names, types, dims) and run as a chain in ONNX Runtime.  The
sequence models run in ONNX Runtime with their control and state inputs
fed as Triton's sequence batcher feeds them.
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
                 doc="", graph_inputs=(), graph_outputs=(), extra_config=""):
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.nodes = nodes
        self.initializers = list(initializers)
        self.max_batch_size = max_batch_size
        self.instance_count = instance_count
        self.dynamic_batching = dynamic_batching
        self.doc = doc
        # Graph IO that config.input/output do not list: a sequence model's
        # control inputs and implicit state, which Triton feeds and takes
        # by the names in sequence_batching.
        self.graph_inputs = list(graph_inputs)
        self.graph_outputs = list(graph_outputs)
        # Config text appended as is (sequence_batching).
        self.extra_config = extra_config

    def onnx_model(self):
        batched = self.max_batch_size > 0
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [t.value_info(batched) for t in self.inputs + self.graph_inputs],
            [t.value_info(batched) for t in self.outputs + self.graph_outputs],
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
        return "\n".join(lines) + "\n" + self.extra_config


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
    # Triton's simple_string: the numbers travel as decimal strings.
    s, i32 = TensorProto.STRING, TensorProto.INT32
    return Model(
        "simple_string",
        inputs=[Tensor("INPUT0", s, [16]), Tensor("INPUT1", s, [16])],
        outputs=[Tensor("OUTPUT0", s, [16]), Tensor("OUTPUT1", s, [16])],
        nodes=[
            helper.make_node("Cast", ["INPUT0"], ["a"], name="parse0", to=i32),
            helper.make_node("Cast", ["INPUT1"], ["b"], name="parse1", to=i32),
            helper.make_node("Add", ["a", "b"], ["sum"], name="add"),
            helper.make_node("Sub", ["a", "b"], ["difference"], name="sub"),
            helper.make_node("Cast", ["sum"], ["OUTPUT0"], name="format0", to=s),
            helper.make_node("Cast", ["difference"], ["OUTPUT1"], name="format1", to=s),
        ],
        max_batch_size=8,
        doc="INPUT0, INPUT1: decimal INT32 strings; OUTPUT0 = their sum, "
            "OUTPUT1 = their difference, as decimal strings",
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


# Sequence models (Triton's sequence batcher).  The control inputs are graph
# inputs of shape [batch, 1] that config.input does not list: the batcher
# fills them (START, END, READY: int32 0/1; CORRID: the correlation id).


def control_input(name, kind, data_type=None):
    spec = f'data_type: {data_type}' if data_type else "int32_false_true: [ 0, 1 ]"
    return [
        "    {",
        f'      name: "{name}"',
        f"      control [ {{ kind: {kind} {spec} }} ]",
        "    }",
    ]


def sequence_batching(strategy, controls, states=()):
    lines = ["sequence_batching {", "  max_sequence_idle_microseconds: 5000000"]
    lines += [f"  {strategy}"]
    lines.append("  control_input [")
    for i, c in enumerate(controls):
        block = control_input(*c)
        if i < len(controls) - 1:
            block[-1] += ","
        lines += block
    lines.append("  ]")
    for input_name, output_name in states:
        lines += [
            "  state [",
            "    {",
            f'      input_name: "{input_name}"',
            f'      output_name: "{output_name}"',
            "      data_type: TYPE_INT32",
            "      dims: [ 1 ]",
            "      initial_state {",
            "        name: \"zero\"",
            "        data_type: TYPE_INT32",
            "        dims: [ 1 ]",
            "        zero_data: true",
            "      }",
            "    }",
            "  ]",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def simple_sequence():
    t = TensorProto.INT32
    return Model(
        "simple_sequence",
        inputs=[Tensor("INPUT", t, [1])],
        outputs=[Tensor("OUTPUT", t, [1])],
        graph_inputs=[Tensor("START", t, [1]), Tensor("READY", t, [1])],
        nodes=[
            helper.make_node("Add", ["INPUT", "START"], ["started"], name="add_start"),
            helper.make_node("Mul", ["started", "READY"], ["OUTPUT"], name="mask_ready"),
        ],
        max_batch_size=8,
        extra_config=sequence_batching("direct { }", [
            ("START", "CONTROL_SEQUENCE_START"),
            ("READY", "CONTROL_SEQUENCE_READY"),
        ]),
        doc="OUTPUT = (INPUT + START) * READY: what Triton's sequence example "
            "clients expect of simple_sequence (direct strategy)",
    )


def simple_dyna_sequence():
    t = TensorProto.INT32
    return Model(
        "simple_dyna_sequence",
        inputs=[Tensor("INPUT", t, [1])],
        outputs=[Tensor("OUTPUT", t, [1])],
        graph_inputs=[Tensor("START", t, [1]), Tensor("END", t, [1]), Tensor("READY", t, [1]),
                      Tensor("CORRID", TensorProto.UINT64, [1])],
        nodes=[
            helper.make_node("Cast", ["CORRID"], ["corrid"], name="corrid_int32", to=t),
            helper.make_node("Mul", ["END", "corrid"], ["end_corrid"], name="end_corrid"),
            helper.make_node("Add", ["INPUT", "START"], ["started"], name="add_start"),
            helper.make_node("Add", ["started", "end_corrid"], ["ended"], name="add_end"),
            helper.make_node("Mul", ["ended", "READY"], ["OUTPUT"], name="mask_ready"),
        ],
        max_batch_size=8,
        extra_config=sequence_batching("oldest { max_candidate_sequences: 8 }", [
            ("START", "CONTROL_SEQUENCE_START"),
            ("END", "CONTROL_SEQUENCE_END"),
            ("READY", "CONTROL_SEQUENCE_READY"),
            ("CORRID", "CONTROL_SEQUENCE_CORRID", "TYPE_UINT64"),
        ]),
        doc="OUTPUT = (INPUT + START + END * CORRID) * READY: Triton's dyna "
            "sequence example (oldest strategy, uint64 correlation ids)",
    )


def simple_string_dyna_sequence():
    t = TensorProto.INT32
    return Model(
        "simple_string_dyna_sequence",
        inputs=[Tensor("INPUT", t, [1])],
        outputs=[Tensor("OUTPUT", t, [1])],
        graph_inputs=[Tensor("INPUT_STATE", t, [1]), Tensor("END", t, [1]), Tensor("READY", t, [1]),
                      Tensor("CORRID", TensorProto.STRING, [1])],
        graph_outputs=[Tensor("OUTPUT_STATE", t, [1])],
        nodes=[
            helper.make_node("Cast", ["CORRID"], ["corrid"], name="parse_corrid", to=t),
            helper.make_node("Mul", ["END", "corrid"], ["end_corrid"], name="end_corrid"),
            helper.make_node("Add", ["INPUT", "INPUT_STATE"], ["accumulated"], name="accumulate"),
            helper.make_node("Add", ["accumulated", "end_corrid"], ["ended"], name="add_end"),
            helper.make_node("Mul", ["ended", "READY"], ["OUTPUT"], name="mask_ready"),
            helper.make_node("Identity", ["OUTPUT"], ["OUTPUT_STATE"], name="keep_state"),
        ],
        max_batch_size=8,
        extra_config=sequence_batching("oldest { max_candidate_sequences: 8 }", [
            ("END", "CONTROL_SEQUENCE_END"),
            ("READY", "CONTROL_SEQUENCE_READY"),
            ("CORRID", "CONTROL_SEQUENCE_CORRID", "TYPE_STRING"),
        ], states=[("INPUT_STATE", "OUTPUT_STATE")]),
        doc="an accumulator with implicit state: OUTPUT = OUTPUT_STATE = "
            "(INPUT + INPUT_STATE + END * int(CORRID)) * READY (oldest "
            "strategy, string correlation ids holding decimal integers)",
    )


def preprocess():
    return Model(
        "preprocess",
        inputs=[Tensor("IMAGE", TensorProto.UINT8, [MLP_SIZES[0]])],
        outputs=[Tensor("SCALED", TensorProto.FLOAT, [MLP_SIZES[0]])],
        nodes=[
            helper.make_node("Cast", ["IMAGE"], ["pixels"], name="to_float", to=TensorProto.FLOAT),
            helper.make_node("Div", ["pixels", "scale"], ["SCALED"], name="scale"),
        ],
        initializers=[numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale")],
        max_batch_size=256,
        dynamic_batching=([32, 64], 200),
        doc="SCALED = IMAGE / 255 (UINT8 -> FP32), the first step of mlp_ensemble",
    )


class ConfigModel:
    """A model that is config.pbtxt and an empty version folder: an
    ensemble, or a backend that needs no model file."""

    def __init__(self, name, config, doc=""):
        self.name = name
        self.config = config
        self.doc = doc

    def config_pbtxt(self):
        return self.config


def mlp_ensemble():
    return ConfigModel("mlp_ensemble", f"""name: "mlp_ensemble"
platform: "ensemble"
max_batch_size: 256
input [
  {{
    name: "IMAGE"
    data_type: TYPE_UINT8
    dims: [ {MLP_SIZES[0]} ]
  }}
]
output [
  {{
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ {MLP_SIZES[-1]} ]
  }}
]
ensemble_scheduling {{
  step [
    {{
      model_name: "preprocess"
      model_version: -1
      input_map {{ key: "IMAGE" value: "IMAGE" }}
      output_map {{ key: "SCALED" value: "scaled_image" }}
    }},
    {{
      model_name: "mlp"
      model_version: -1
      input_map {{ key: "input" value: "scaled_image" }}
      output_map {{ key: "probabilities" value: "probabilities" }}
    }}
  ]
}}
""", doc="IMAGE UINT8 -> preprocess -> mlp -> probabilities")


def repeat_int32():
    return ConfigModel("repeat_int32", """name: "repeat_int32"
backend: "repeat"
max_batch_size: 0
model_transaction_policy {
  decoupled: true
}
input [
  {
    name: "IN"
    data_type: TYPE_INT32
    dims: [ -1 ]
  },
  {
    name: "DELAY"
    data_type: TYPE_UINT32
    dims: [ -1 ]
  },
  {
    name: "WAIT"
    data_type: TYPE_UINT32
    dims: [ 1 ]
  }
]
output [
  {
    name: "OUT"
    data_type: TYPE_INT32
    dims: [ 1 ]
  },
  {
    name: "IDX"
    data_type: TYPE_UINT32
    dims: [ 1 ]
  }
]
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
""", doc="Triton's repeat backend: one response per IN element")


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
    rng = np.random.default_rng(4)
    a = rng.integers(-100000, 100000, (2, 16), dtype=np.int32)
    b = rng.integers(-100000, 100000, (2, 16), dtype=np.int32)
    a[0, :3] = [0, -1, np.iinfo(np.int32).max // 2]

    def text(x):
        return np.vectorize(str, otypes=[object])(x)

    o0, o1 = sess.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": text(a), "INPUT1": text(b)})
    assert o0.tolist() == text(a + b).tolist(), o0
    assert o1.tolist() == text(a - b).tolist(), o1
    # What Triton's string example clients send: "0".."15" and "1".
    x = np.array([[str(i) for i in range(16)]], dtype=object)
    one = np.full((1, 16), "1", dtype=object)
    o0, o1 = sess.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": x, "INPUT1": one})
    assert o0.tolist() == [[str(i + 1) for i in range(16)]]
    assert o1.tolist() == [[str(i - 1) for i in range(16)]]
    return "batch 2 ok, decimal strings"


def col(values, dtype):
    return np.array(values, dtype=dtype).reshape(-1, 1)


def check_simple_sequence(sess):
    # A batch of 4 slots as the direct batcher builds it: slot 0 starts a
    # sequence, slot 1 continues one, slot 2 is empty (READY 0), slot 3 both.
    i32 = np.int32
    got, = sess.run(["OUTPUT"], {"INPUT": col([0, 7, 55, 100], i32), "START": col([1, 0, 0, 1], i32),
                                 "READY": col([1, 1, 0, 1], i32)})
    assert got.dtype == np.int32 and got.tolist() == [[1], [7], [0], [101]], got
    # The clients' sequence: 0 -> 1 at START, then each value echoed.
    values = [0, 11, 7, 5, 3, 2, 0, 1]
    starts = [1] + [0] * 7
    got, = sess.run(["OUTPUT"], {"INPUT": col(values, i32), "START": col(starts, i32),
                                 "READY": col([1] * 8, i32)})
    assert got.ravel().tolist() == [1] + values[1:]
    return "direct slots ok"


def check_simple_dyna_sequence(sess):
    i32 = np.int32
    corrids = [1000, 1001, 2**40 + 5, 7]
    feeds = {"INPUT": col([0, 100, 3, -4], i32), "START": col([1, 1, 0, 0], i32),
             "END": col([0, 0, 0, 1], i32), "READY": col([1, 1, 1, 1], i32),
             "CORRID": col(corrids, np.uint64)}
    got, = sess.run(["OUTPUT"], feeds)
    want = (feeds["INPUT"] + feeds["START"] + feeds["END"] * np.array(corrids).astype(np.uint64)
            .astype(np.int32).reshape(-1, 1)) * feeds["READY"]
    assert got.dtype == np.int32 and np.array_equal(got, want), (got, want)
    assert got.ravel().tolist() == [1, 101, 3, 3]
    return "oldest batch ok (START, END * CORRID)"


def check_simple_string_dyna_sequence(sess):
    # The clients' -d sequence run step by step, the state fed back as the
    # batcher does (zero at the start).
    i32 = np.int32
    values = [20, -11, -7, -5, -3, -2, 0, -1]
    state, outs = np.zeros((1, 1), i32), []
    for n, v in enumerate(values):
        end = int(n == len(values) - 1)
        out, new_state = sess.run(["OUTPUT", "OUTPUT_STATE"], {
            "INPUT": col([v], i32), "INPUT_STATE": state, "END": col([end], i32),
            "READY": col([1], i32), "CORRID": col(["1002"], object)})
        assert np.array_equal(out, new_state)
        state = new_state
        outs.append(int(out[0, 0]))
    want, acc = [], 0
    for n, v in enumerate(values):
        acc += v + (1002 if n == len(values) - 1 else 0)
        want.append(acc)
    assert outs == want, (outs, want)
    # Two sequences in one batch keep apart.
    out, _ = sess.run(["OUTPUT", "OUTPUT_STATE"], {
        "INPUT": col([1, 2], i32), "INPUT_STATE": col([10, 20], i32), "END": col([0, 1], i32),
        "READY": col([1, 1], i32), "CORRID": col(["5", "-3"], object)})
    assert out.ravel().tolist() == [11, 19]
    return f"accumulator ok: {outs}"


def check_preprocess(sess):
    x = np.arange(3 * MLP_SIZES[0]).reshape(3, -1).astype(np.uint8)
    got, = sess.run(["SCALED"], {"IMAGE": x})
    assert got.dtype == np.float32 and np.array_equal(got, x.astype(np.float32) / np.float32(255))
    assert got.min() == 0 and got.max() == 1
    return "batch 3 ok"


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
    # A sequence model's graph-only IO is exactly its controls and states.
    sb = cfg.sequence_batching
    controls = {c.name: c.control for c in sb.control_input}
    states_in = {s.input_name: s for s in sb.state}
    states_out = {s.output_name: s for s in sb.state}
    assert sorted(set(controls) | set(states_in)) == sorted(t.name for t in m.graph_inputs), m.name
    assert sorted(states_out) == sorted(t.name for t in m.graph_outputs), m.name
    kind = model_config_pb2.ModelSequenceBatching.Control.Kind
    for t in m.graph_inputs:
        if t.name in controls:
            (c,) = controls[t.name]
            if kind.Name(c.kind) == "CONTROL_SEQUENCE_CORRID":
                assert dt.Name(c.data_type) == TRITON_TYPE[t.elem_type], t.name
            else:
                assert t.elem_type == TensorProto.INT32 and list(c.int32_false_true) == [0, 1], t.name
        else:
            s = states_in[t.name]
            assert dt.Name(s.data_type) == TRITON_TYPE[t.elem_type] and list(s.dims) == t.dims
            assert s.initial_state[0].zero_data
    return cfg


def onnx_io(models, name):
    """Config IO of an ONNX model built here: tensor name -> (type, dims)."""
    m = models[name]
    dt = model_config_pb2.DataType
    io = {}
    for t in m.inputs + m.outputs:
        io[t.name] = (dt.Value(TRITON_TYPE[t.elem_type]), t.dims)
    return m, io


def check_mlp_ensemble(cfg, built):
    """Every step names a model built here, maps tensors its model has with
    the same type and dims, and the chain run in ONNX Runtime equals mlp on
    IMAGE / 255."""
    assert cfg.platform == "ensemble" and not cfg.backend
    produced = {t.name: (t.data_type, list(t.dims)) for t in cfg.input}
    for i, step in enumerate(cfg.ensemble_scheduling.step):
        m, io = onnx_io({k: v[0] for k, v in built.items()}, step.model_name)
        assert step.model_version == -1 and m.max_batch_size == cfg.max_batch_size, i
        assert set(step.input_map) == {t.name for t in m.inputs}, i
        for model_name, ens_name in step.input_map.items():
            assert produced[ens_name] == (io[model_name][0], io[model_name][1]), (i, ens_name)
        assert set(step.output_map) <= {t.name for t in m.outputs}, i
        for model_name, ens_name in step.output_map.items():
            assert ens_name not in produced, (i, ens_name)
            produced[ens_name] = (io[model_name][0], io[model_name][1])
    for t in cfg.output:
        assert produced[t.name] == (t.data_type, list(t.dims)), t.name

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (8, MLP_SIZES[0]), dtype=np.uint8)
    tensors = {"IMAGE": image}
    for step in cfg.ensemble_scheduling.step:
        _, sess = built[step.model_name]
        feeds = {k: tensors[v] for k, v in step.input_map.items()}
        outs = sess.run(list(step.output_map), feeds)
        tensors.update({step.output_map[k]: o for k, o in zip(step.output_map, outs)})
    _, mlp_sess = built["mlp"]
    (want,) = mlp_sess.run(["probabilities"], {"input": image.astype(np.float32) / np.float32(255)})
    assert np.array_equal(tensors["probabilities"], want)
    return f"{len(cfg.ensemble_scheduling.step)} steps ok: preprocess -> mlp equals mlp(IMAGE / 255)"


def check_repeat_int32(cfg, built):
    assert cfg.backend == "repeat" and not cfg.platform
    assert cfg.model_transaction_policy.decoupled and cfg.max_batch_size == 0
    dt = model_config_pb2.DataType
    io = [(t.name, dt.Name(t.data_type), list(t.dims)) for t in list(cfg.input) + list(cfg.output)]
    assert io == [("IN", "TYPE_INT32", [-1]), ("DELAY", "TYPE_UINT32", [-1]), ("WAIT", "TYPE_UINT32", [1]),
                  ("OUT", "TYPE_INT32", [1]), ("IDX", "TYPE_UINT32", [1])], io
    return "decoupled repeat backend config ok"


CHECKS = {
    "simple": lambda s, m: check_simple(s),
    "simple_string": lambda s, m: check_simple_string(s),
    "mlp": check_mlp,
    "identity_all": check_identity_all,
    "simple_sequence": lambda s, m: check_simple_sequence(s),
    "simple_dyna_sequence": lambda s, m: check_simple_dyna_sequence(s),
    "simple_string_dyna_sequence": lambda s, m: check_simple_string_dyna_sequence(s),
    "preprocess": lambda s, m: check_preprocess(s),
    "mlp_ensemble": check_mlp_ensemble,
    "repeat_int32": check_repeat_int32,
}

MODELS = (simple, simple_string, mlp, identity_all, simple_sequence, simple_dyna_sequence,
          simple_string_dyna_sequence, preprocess, mlp_ensemble, repeat_int32)


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
    built = {}  # name -> (Model, ONNX Runtime session), for the ensemble check
    for build in MODELS:
        m = build()
        if isinstance(m, ConfigModel):
            config = m.config_pbtxt()
            cfg = text_format.Parse(config, model_config_pb2.ModelConfig())
            assert cfg.name == m.name
            summary = CHECKS[m.name](cfg, built)
            write_if_changed(os.path.join(outdir, m.name, "config.pbtxt"), config.encode())
            # Triton's version folder, empty: the model has no file.
            os.makedirs(os.path.join(outdir, m.name, "1"), exist_ok=True)
            print(f"{m.name}: config only; {summary}")
            continue
        model = m.onnx_model()
        data = model.SerializeToString()
        config = m.config_pbtxt()
        check_config(m, config)
        sess = session(data)
        summary = CHECKS[m.name](sess, model)
        built[m.name] = (m, sess)
        write_if_changed(os.path.join(outdir, m.name, "config.pbtxt"), config.encode())
        write_if_changed(os.path.join(outdir, m.name, "1", "model.onnx"), data)
        print(f"{m.name}: {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()[:16]}; "
              f"onnxruntime {ort.__version__}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
