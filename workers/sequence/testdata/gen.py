"""Writes the tiny ONNX sequence models the sequence batcher's ONNX Runtime
tests run (the same semantics as scripts/make_models.py's sample models):

- seq_direct.onnx: OUTPUT = (INPUT + START) * READY (simple_sequence).
- seq_dyna.onnx: OUTPUT = (INPUT + START + END * CORRID) * READY, CORRID
  UINT64 (simple_dyna_sequence).
- seq_state.onnx: OUTPUT = OUTPUT_STATE = (INPUT + INPUT_STATE + END *
  int(CORRID)) * READY, CORRID a decimal string (simple_string_dyna_sequence).
- seq_nobatch.onnx: seq_dyna's graph without a batch dimension (shape [1]).

Run with onnx installed (the repository's .venv has it):

    .venv/bin/python workers/sequence/testdata/gen.py

The output is deterministic, so re-running it must leave git clean.
"""

import os

import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
I32 = TensorProto.INT32


def save(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="helixflow-testdata")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def direct():
    s = ["batch", 1]
    save(helper.make_graph([
        helper.make_node("Add", ["INPUT", "START"], ["started"]),
        helper.make_node("Mul", ["started", "READY"], ["OUTPUT"]),
    ], "seq_direct", [vi("INPUT", I32, s), vi("START", I32, s), vi("READY", I32, s)],
        [vi("OUTPUT", I32, s)]), "seq_direct.onnx")


def dyna(name, s):
    save(helper.make_graph([
        helper.make_node("Cast", ["CORRID"], ["corrid"], to=I32),
        helper.make_node("Mul", ["END", "corrid"], ["end_corrid"]),
        helper.make_node("Add", ["INPUT", "START"], ["started"]),
        helper.make_node("Add", ["started", "end_corrid"], ["ended"]),
        helper.make_node("Mul", ["ended", "READY"], ["OUTPUT"]),
    ], name, [vi("INPUT", I32, s), vi("START", I32, s), vi("END", I32, s), vi("READY", I32, s),
              vi("CORRID", TensorProto.UINT64, s)],
        [vi("OUTPUT", I32, s)]), name + ".onnx")


def state():
    s = ["batch", 1]
    save(helper.make_graph([
        helper.make_node("Cast", ["CORRID"], ["corrid"], to=I32),
        helper.make_node("Mul", ["END", "corrid"], ["end_corrid"]),
        helper.make_node("Add", ["INPUT", "INPUT_STATE"], ["accumulated"]),
        helper.make_node("Add", ["accumulated", "end_corrid"], ["ended"]),
        helper.make_node("Mul", ["ended", "READY"], ["OUTPUT"]),
        helper.make_node("Identity", ["OUTPUT"], ["OUTPUT_STATE"]),
    ], "seq_state", [vi("INPUT", I32, s), vi("INPUT_STATE", I32, s), vi("END", I32, s), vi("READY", I32, s),
                     vi("CORRID", TensorProto.STRING, s)],
        [vi("OUTPUT", I32, s), vi("OUTPUT_STATE", I32, s)]), "seq_state.onnx")


if __name__ == "__main__":
    direct()
    dyna("seq_dyna", ["batch", 1])
    dyna("seq_nobatch", [1])
    state()
