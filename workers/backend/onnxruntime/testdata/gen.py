"""Writes the tiny ONNX models the onnxruntime backend tests run.

Run from anywhere with onnx==1.23.2 and numpy installed:

    python3 workers/backend/onnxruntime/testdata/gen.py

The output is deterministic, so re-running it must leave git clean.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def save(graph, name, opset=17, ir_version=8):
    # Opset 17 with IR 8 is read by every ORT since 1.13.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="helixflow-testdata")
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))


def simple():
    """Triton's `simple`: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""
    shape = ["batch", 16]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [
            helper.make_tensor_value_info("INPUT0", TensorProto.INT32, shape),
            helper.make_tensor_value_info("INPUT1", TensorProto.INT32, shape),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", TensorProto.INT32, shape),
            helper.make_tensor_value_info("OUTPUT1", TensorProto.INT32, shape),
        ],
    )
    save(graph, "simple.onnx")


IDENTITY_TYPES = {
    "bool": TensorProto.BOOL,
    "int8": TensorProto.INT8,
    "int16": TensorProto.INT16,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "uint8": TensorProto.UINT8,
    "uint16": TensorProto.UINT16,
    "uint32": TensorProto.UINT32,
    "uint64": TensorProto.UINT64,
    "fp16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16,
    "fp32": TensorProto.FLOAT,
    "fp64": TensorProto.DOUBLE,
    "bytes": TensorProto.STRING,
}


def identity(suffix, elem_type):
    shape = ["batch", 3]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT"], ["OUTPUT"])],
        "identity_" + suffix,
        [helper.make_tensor_value_info("INPUT", elem_type, shape)],
        [helper.make_tensor_value_info("OUTPUT", elem_type, shape)],
    )
    save(graph, "identity_" + suffix + ".onnx")


def reduce_sum():
    """Output shape differs from the input's: [batch, n] -> [batch]."""
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["INPUT", "axes"], ["OUTPUT"], keepdims=0)],
        "reduce_sum",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch"])],
        initializer=[axes],
    )
    save(graph, "reduce_sum.onnx")


def fp16_reshape():
    """An FP16 output whose first dim is not the batch: [batch, 4] -> [2*batch, 2]."""
    shape = numpy_helper.from_array(np.array([-1, 2], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["INPUT", "shape"], ["OUTPUT"])],
        "fp16_reshape",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT16, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT16, ["rows", 2])],
        initializer=[shape],
    )
    save(graph, "fp16_reshape.onnx")


def fp32_reshape():
    """An FP32 output whose first dim is not the batch: [batch, 4] -> [2*batch, 2].
    Its shape cannot be guessed from the batch size, so ORT must allocate it."""
    shape = numpy_helper.from_array(np.array([-1, 2], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["INPUT", "shape"], ["OUTPUT"])],
        "fp32_reshape",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["rows", 2])],
        initializer=[shape],
    )
    save(graph, "fp32_reshape.onnx")


def fp16_free_dims():
    """An FP16 output with a free dimension other than the batch."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT"], ["OUTPUT"])],
        "fp16_free_dims",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT16, ["batch", "n"])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT16, ["batch", "n"])],
    )
    save(graph, "fp16_free_dims.onnx")


def float8_output():
    """A model whose element type (FLOAT8E4M3FN) has no KServe datatype."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT"], ["OUTPUT"])],
        "float8_output",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT8E4M3FN, [2])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT8E4M3FN, [2])],
    )
    # Float8 needs opset 19 (IR 9).
    save(graph, "float8_output.onnx", opset=19, ir_version=9)


def sequence_output():
    """A model whose output is a sequence, not a tensor."""
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["INPUT"], ["OUTPUT"])],
        "sequence_output",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, [2])],
        [helper.make_tensor_sequence_value_info("OUTPUT", TensorProto.FLOAT, [2])],
    )
    save(graph, "sequence_output.onnx")


def slow():
    """A long chain of MatMuls, to cancel a run midway. The weight is made at
    load time so the file stays tiny."""
    width, layers = 256, 600
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["wshape"],
            ["w"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0 / width]),
        )
    ]
    prev = "INPUT"
    for i in range(layers):
        out = "OUTPUT" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, "w"], [out]))
        prev = out
    wshape = numpy_helper.from_array(np.array([width, width], dtype=np.int64), "wshape")
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", width])],
        initializer=[wshape],
    )
    save(graph, "slow.onnx")


def scalar_output():
    """A model with a scalar (rank 0) output."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["INPUT"], ["SUM"], keepdims=0)],
        "scalar_output",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("SUM", TensorProto.FLOAT, [])],
    )
    save(graph, "scalar_output.onnx")


def mlp():
    """A small MLP (Gemm-Relu-Gemm) for the per-call overhead benchmark."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 128)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(128).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((128, 10)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "b2")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["INPUT", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["OUTPUT"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", 10])],
        initializer=[w1, b1, w2, b2],
    )
    save(graph, "mlp.onnx")


def main():
    simple()
    for suffix, elem_type in IDENTITY_TYPES.items():
        identity(suffix, elem_type)
    reduce_sum()
    fp16_reshape()
    fp32_reshape()
    fp16_free_dims()
    float8_output()
    sequence_output()
    scalar_output()
    mlp()
    slow()


if __name__ == "__main__":
    main()
