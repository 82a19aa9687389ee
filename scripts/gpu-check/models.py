#!/usr/bin/env python3
"""The networks the cuda backend is tested with, built from onnx.helper and a
seeded numpy RNG (the same bytes on every run).

Usage:
  models.py testdata DIR   tiny versions for the Go tests (committed under
                           workers/backend/cuda/testdata)
  models.py full DIR       the full-size networks for `make gpu-check`

Each network is written as DIR/<name>.onnx; in full mode also DIR/<name>.json
(its kind and sizes, which scripts/gpu-check/gpu_check.py uses to build the
same network in PyTorch, with the weights it reads from the ONNX file).

Networks:
  mlp_*      Gemm-Relu layers and a Softmax (the sample model's layout)
  cnn_*      Conv(+BatchNormalization)-Relu, MaxPool, a 1x1 Conv, AveragePool,
             a strided Conv, GlobalAveragePool, Flatten, Gemm, Softmax
  encoder_*  a BERT-style transformer encoder: Cast, Gather embeddings, Slice
             of a position table, LayerNormalization, fused QKV MatMul sliced
             into heads (Reshape to a shape computed with Shape, Gather,
             Unsqueeze and Concat), Transpose, batched MatMul, Softmax, GELU
             (from Erf, or the Gelu operator at opset 20), residual Adds,
             Squeeze, Tanh pooler and a classifier Gemm with transB
  simple_int INT32 Add and Sub (the sample `simple` model's layout)
  ops_tiny   the operators and attributes the networks leave out (grouped and
             dilated Conv, lone BatchNormalization, pools with padding and
             ceil_mode, Softmax over a middle axis, Slice with negative steps,
             Concat, negative Gather indices, Gemm with transB/alpha/beta,
             batched MatMul, Pow, Exp, Sqrt, Neg, Cast to float16)
  unsupported a graph with operators outside the cuda backend's set
"""

import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8
PRODUCER = "helixflow scripts/gpu-check/models.py"


class Net:
    def __init__(self, name, kind, sizes, opset, seed):
        self.name, self.kind, self.sizes, self.opset = name, kind, sizes, opset
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.counter = 0

    def weight(self, name, shape, std=None, dtype=np.float32):
        if std is None:
            std = 1.0 / math.sqrt(shape[0]) if len(shape) > 1 else 0.02
        w = (self.rng.standard_normal(shape) * std).astype(dtype)
        self.inits.append(numpy_helper.from_array(w, name))
        return name

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name=None, outputs=1, **attrs):
        self.counter += 1
        name = name or f"{op.lower()}_{self.counter}"
        outs = [name] if outputs == 1 else [f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def model(self):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              ir_version=IR_VERSION, producer_name=PRODUCER, producer_version="1")
        onnx.checker.check_model(m, full_check=True)
        return m


def mlp(name, sizes, seed=1):
    n = Net(name, "mlp", {"sizes": sizes}, 17, seed)
    n.inputs.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]]))
    x = "input"
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        std = (2.0 if last else math.sqrt(2.0)) / math.sqrt(sizes[i])
        w = n.weight(f"fc{i + 1}.weight", (sizes[i], sizes[i + 1]), std)
        b = n.weight(f"fc{i + 1}.bias", (sizes[i + 1],), 0.01)
        x = n.node("Gemm", [x, w, b], name=f"fc{i + 1}")
        if not last:
            x = n.node("Relu", [x], name=f"relu{i + 1}")
    n.nodes.append(helper.make_node("Softmax", [x], ["probabilities"], name="softmax", axis=-1))
    n.outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", sizes[-1]]))
    return n


def cnn(name, image, channels, classes, seed=2):
    c1, c2, c3 = channels
    n = Net(name, "cnn", {"image": image, "channels": channels, "classes": classes}, 17, seed)
    n.inputs.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, image, image]))

    def conv_bn_relu(x, prefix, cin, cout, k, stride, pad, bn=True, bias=True):
        w = n.weight(f"{prefix}.weight", (cout, cin, k, k), math.sqrt(2.0 / (cin * k * k)))
        ins = [x, w]
        if bias:
            ins.append(n.weight(f"{prefix}.bias", (cout,), 0.05))
        y = n.node("Conv", ins, name=prefix, kernel_shape=[k, k], strides=[stride, stride],
                   pads=[pad] * 4)
        if bn:
            scale = n.const(f"{prefix}.bn.weight", (1 + 0.1 * n.rng.standard_normal(cout)).astype(np.float32))
            shift = n.const(f"{prefix}.bn.bias", (0.1 * n.rng.standard_normal(cout)).astype(np.float32))
            mean = n.const(f"{prefix}.bn.running_mean", (0.1 * n.rng.standard_normal(cout)).astype(np.float32))
            var = n.const(f"{prefix}.bn.running_var", n.rng.uniform(0.5, 1.5, cout).astype(np.float32))
            y = n.node("BatchNormalization", [y, scale, shift, mean, var], name=f"{prefix}.bn", epsilon=1e-5)
        return n.node("Relu", [y], name=f"{prefix}.relu")

    x = conv_bn_relu("image", "conv1", 3, c1, 3, 1, 1, bias=False)
    x = n.node("MaxPool", [x], name="pool1", kernel_shape=[2, 2], strides=[2, 2])
    x = conv_bn_relu(x, "conv2", c1, c2, 3, 1, 1)
    x = conv_bn_relu(x, "conv3", c2, c2, 1, 1, 0, bn=False)
    x = n.node("AveragePool", [x], name="pool2", kernel_shape=[2, 2], strides=[2, 2])
    x = conv_bn_relu(x, "conv4", c2, c3, 3, 2, 1)
    x = n.node("GlobalAveragePool", [x], name="gap")
    x = n.node("Flatten", [x], name="flatten", axis=1)
    w = n.weight("fc.weight", (c3, classes), 2.0 / math.sqrt(c3))
    b = n.weight("fc.bias", (classes,), 0.01)
    x = n.node("Gemm", [x, w, b], name="fc")
    n.nodes.append(helper.make_node("Softmax", [x], ["probabilities"], name="softmax", axis=1))
    n.outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes]))
    return n


def encoder(name, vocab, seq, dim, heads, ffn, layers, classes, gelu_op=False, seed=3):
    opset = 20 if gelu_op else 17
    sizes = {"vocab": vocab, "seq": seq, "dim": dim, "heads": heads, "ffn": ffn,
             "layers": layers, "classes": classes, "gelu_op": gelu_op}
    n = Net(name, "encoder", sizes, opset, seed)
    dh = dim // heads
    n.inputs.append(helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq]))

    def layer_norm(x, prefix):
        g = n.const(f"{prefix}.weight", (1 + 0.1 * n.rng.standard_normal(dim)).astype(np.float32))
        b = n.const(f"{prefix}.bias", (0.1 * n.rng.standard_normal(dim)).astype(np.float32))
        return n.node("LayerNormalization", [x, g, b], name=prefix, axis=-1, epsilon=1e-5)

    def linear(x, prefix, fin, fout):
        w = n.weight(f"{prefix}.weight", (fin, fout))
        b = n.weight(f"{prefix}.bias", (fout,), 0.02)
        return n.node("Add", [n.node("MatMul", [x, w], name=f"{prefix}.matmul"), b], name=f"{prefix}.add")

    ids = n.node("Cast", ["input_ids"], name="ids_int32", to=TensorProto.INT32)
    tok = n.node("Gather", [n.weight("embeddings.token", (vocab, dim), 1.0), ids], name="token_embedding", axis=0)
    pos_table = n.weight("embeddings.position", (2 * seq, dim), 0.5)
    pos = n.node("Slice", [pos_table, n.const("pos.starts", np.array([0], np.int64)),
                           n.const("pos.ends", np.array([seq], np.int64)),
                           n.const("pos.axes", np.array([0], np.int64))], name="position_slice")
    x = layer_norm(n.node("Add", [tok, pos], name="embed_add"), "embeddings.norm")

    # [batch, seq, heads, dh] computed from the input's shape, as exporters do.
    batch = n.node("Gather", [n.node("Shape", [x], name="shape_x"), n.const("zero", np.array(0, np.int64))],
                   name="batch_dim", axis=0)
    batch1 = n.node("Unsqueeze", [batch, n.const("axes0", np.array([0], np.int64))], name="batch_dim1")
    heads_shape = n.node("Concat", [batch1, n.const("seq_heads_dh", np.array([seq, heads, dh], np.int64))],
                         name="heads_shape", axis=0)
    merged_shape = n.const("merged_shape", np.array([0, seq, dim], np.int64))
    scale = n.const("attn_scale", np.array(math.sqrt(dh), np.float32))

    for l in range(layers):
        p = f"layer{l}"
        qkv = linear(x, f"{p}.qkv", dim, 3 * dim)
        parts = []
        for i, label in enumerate("qkv"):
            s = n.node("Slice", [qkv, n.const(f"{p}.{label}.start", np.array([i * dim], np.int64)),
                                 n.const(f"{p}.{label}.end", np.array([(i + 1) * dim], np.int64)),
                                 n.const(f"{p}.{label}.axes", np.array([2], np.int64))], name=f"{p}.{label}")
            parts.append(n.node("Reshape", [s, heads_shape], name=f"{p}.{label}.heads"))
        q = n.node("Transpose", [parts[0]], name=f"{p}.q.t", perm=[0, 2, 1, 3])
        k = n.node("Transpose", [parts[1]], name=f"{p}.k.t", perm=[0, 2, 3, 1])
        v = n.node("Transpose", [parts[2]], name=f"{p}.v.t", perm=[0, 2, 1, 3])
        scores = n.node("Div", [n.node("MatMul", [q, k], name=f"{p}.scores"), scale], name=f"{p}.scaled")
        probs = n.node("Softmax", [scores], name=f"{p}.softmax", axis=-1)
        ctx = n.node("MatMul", [probs, v], name=f"{p}.context")
        ctx = n.node("Transpose", [ctx], name=f"{p}.context.t", perm=[0, 2, 1, 3])
        ctx = n.node("Reshape", [ctx, merged_shape], name=f"{p}.context.merge")
        attn = linear(ctx, f"{p}.out", dim, dim)
        x = layer_norm(n.node("Add", [x, attn], name=f"{p}.residual1"), f"{p}.norm1")
        h = linear(x, f"{p}.ffn1", dim, ffn)
        if gelu_op:
            h = n.node("Gelu", [h], name=f"{p}.gelu")
        else:
            sqrt2 = n.const(f"{p}.sqrt2", np.array(math.sqrt(2), np.float32))
            one = n.const(f"{p}.one", np.array(1, np.float32))
            half = n.const(f"{p}.half", np.array(0.5, np.float32))
            e = n.node("Erf", [n.node("Div", [h, sqrt2], name=f"{p}.gelu.div")], name=f"{p}.gelu.erf")
            h = n.node("Mul", [n.node("Mul", [h, half], name=f"{p}.gelu.half"),
                               n.node("Add", [e, one], name=f"{p}.gelu.add")], name=f"{p}.gelu")
        h = linear(h, f"{p}.ffn2", ffn, dim)
        x = layer_norm(n.node("Add", [x, h], name=f"{p}.residual2"), f"{p}.norm2")

    cls = n.node("Gather", [x, n.const("cls_index", np.array([0], np.int64))], name="cls", axis=1)
    cls = n.node("Squeeze", [cls, n.const("axes1", np.array([1], np.int64))], name="cls.squeeze")
    pooled = n.node("Gemm", [cls, n.weight("pooler.weight", (dim, dim)), n.weight("pooler.bias", (dim,), 0.02)],
                    name="pooler")
    n.nodes.append(helper.make_node("Tanh", [pooled], ["embedding"], name="pooler.tanh"))
    wc = n.weight("classifier.weight", (classes, dim), 2.0 / math.sqrt(dim))
    n.nodes.append(helper.make_node("Gemm", ["embedding", wc, n.weight("classifier.bias", (classes,), 0.02)],
                                    ["logits"], name="classifier", transB=1))
    n.outputs += [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim]),
                  helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])]
    return n


def ops(name):
    """One tiny graph over the operators and attributes the networks above
    leave out, in three branches with four outputs."""
    n = Net(name, "ops", {}, 17, 7)
    n.inputs += [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 6, 6]),
                 helper.make_tensor_value_info("idx", TensorProto.INT32, ["batch", 3])]
    f32 = lambda a: np.asarray(a, np.float32)
    # A: grouped dilated Conv, Sigmoid, a lone BatchNormalization, MaxPool
    # with padding and ceil_mode, AveragePool counting the padding, Softmax
    # over a middle axis.
    a = n.node("Conv", ["x", n.weight("a.w", (4, 2, 3, 3), 0.3)], name="a.conv", group=2,
               dilations=[2, 2], pads=[2, 2, 2, 2])
    a = n.node("Sigmoid", [a], name="a.sigmoid")
    bn = [n.const(f"a.bn.{k}", f32(v)) for k, v in
          (("scale", [1.5, 0.5, 1, 2]), ("bias", [0.1, -0.2, 0, 0.3]), ("mean", [0.5, 0.4, 0.6, 0.5]), ("var", [0.1, 0.2, 0.05, 1]))]
    a = n.node("BatchNormalization", [a] + bn, name="a.bn")
    a = n.node("MaxPool", [a], name="a.maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    a = n.node("AveragePool", [a], name="a.avgpool", kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1)
    a = n.node("Reshape", [a, n.const("a.shape", np.array([0, 4, 16], np.int64))], name="a.reshape")
    n.nodes.append(helper.make_node("Softmax", [a], ["out_a"], name="a.softmax", axis=1))
    # B: Transpose, Slice with steps 2 and -2, Concat, Neg, Unsqueeze,
    # Squeeze, Exp, Sqrt, Pow.
    t = n.node("Transpose", ["x"], name="b.t", perm=[0, 2, 3, 1])
    s = n.node("Slice", [t, n.const("b.starts", np.array([1, 5], np.int64)), n.const("b.ends", np.array([6, -7], np.int64)),
                         n.const("b.axes", np.array([1, 2], np.int64)), n.const("b.steps", np.array([2, -2], np.int64))], name="b.slice")
    c = n.node("Concat", [s, n.node("Neg", [s], name="b.neg")], name="b.concat", axis=3)
    c = n.node("Squeeze", [n.node("Unsqueeze", [c, n.const("b.ax", np.array([1], np.int64))], name="b.unsq"),
                           n.const("b.ax2", np.array([1], np.int64))], name="b.sq")
    e = n.node("Exp", [n.node("Mul", [c, n.const("b.tenth", f32(0.1))], name="b.scale")], name="b.exp")
    p = n.node("Pow", [n.node("Sqrt", [e], name="b.sqrt"), n.const("b.two", f32(2))], name="b.pow")
    n.nodes.append(helper.make_node("Reshape", [p, n.const("b.flat", np.array([0, -1], np.int64))], ["out_b"], name="b.out"))
    # C: Gather with negative int32 indices, LayerNormalization without
    # bias, Flatten, Gemm with transB, alpha and beta, Cast to float16.
    neg = n.node("Sub", ["idx", n.const("c.ten", np.array(10, np.int32))], name="c.neg_idx")
    g = n.node("Gather", [n.weight("c.table", (10, 5), 1.0), neg], name="c.gather", axis=0)
    ln = n.node("LayerNormalization", [g, n.const("c.scale", f32([1, 2, 0.5, 1, 1.5]))], name="c.ln", axis=-1, epsilon=1e-3)
    fl = n.node("Flatten", [ln], name="c.flatten", axis=1)
    h = n.node("Gemm", [fl, n.weight("c.w", (7, 15)), n.weight("c.b", (7,), 0.5)], name="c.gemm", transB=1, alpha=0.5, beta=2.0)
    n.nodes.append(helper.make_node("Cast", [h], ["out_c"], name="c.cast", to=TensorProto.FLOAT16))
    # D: batched MatMul of a transposed activation with itself, Tanh.
    gt = n.node("Transpose", [g], name="d.t", perm=[0, 2, 1])
    mm = n.node("MatMul", [gt, g], name="d.matmul")
    n.nodes.append(helper.make_node("Tanh", [n.node("Div", [mm, n.const("d.three", f32(3))], name="d.div")], ["out_d"], name="d.tanh"))
    n.outputs += [helper.make_tensor_value_info("out_a", TensorProto.FLOAT, ["batch", 4, 16]),
                  helper.make_tensor_value_info("out_b", TensorProto.FLOAT, ["batch", 72]),
                  helper.make_tensor_value_info("out_c", TensorProto.FLOAT16, ["batch", 7]),
                  helper.make_tensor_value_info("out_d", TensorProto.FLOAT, ["batch", 5, 5])]
    return n


def simple_int(name):
    n = Net(name, "simple", {}, 17, 4)
    for x in ("INPUT0", "INPUT1"):
        n.inputs.append(helper.make_tensor_value_info(x, TensorProto.INT32, ["batch", 16]))
    n.nodes += [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
                helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub")]
    for x in ("OUTPUT0", "OUTPUT1"):
        n.outputs.append(helper.make_tensor_value_info(x, TensorProto.INT32, ["batch", 16]))
    return n


def unsupported(name):
    n = Net(name, "none", {}, 17, 5)
    n.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]))
    a = n.node("Floor", ["x"], name="floor")
    b = n.node("HardSwish", [a], name="hardswish")
    n.nodes.append(helper.make_node("Relu", [b], ["y"], name="relu"))
    n.outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]))
    return n


def testdata_nets():
    return [
        mlp("mlp_tiny", [16, 32, 32, 8]),
        cnn("cnn_tiny", 8, [4, 8, 8], 5),
        encoder("encoder_tiny", vocab=50, seq=8, dim=16, heads=2, ffn=32, layers=1, classes=3),
        encoder("encoder_tiny_gelu", vocab=50, seq=8, dim=16, heads=2, ffn=32, layers=2, classes=3,
                gelu_op=True, seed=6),
        simple_int("simple_int"),
        ops("ops_tiny"),
        unsupported("unsupported"),
    ]


def full_nets():
    return [
        cnn("cnn", 32, [32, 64, 128], 10),
        encoder("encoder", vocab=1000, seq=128, dim=256, heads=4, ffn=1024, layers=2, classes=2,
                gelu_op=True),
    ]


def write(net, outdir, extras):
    m = net.model()
    base = os.path.join(outdir, net.name)
    with open(base + ".onnx", "wb") as f:
        f.write(m.SerializeToString())
    if extras and net.kind != "none":
        with open(base + ".json", "w") as f:
            json.dump({"kind": net.kind, "opset": net.opset, "sizes": net.sizes}, f, indent=1, sort_keys=True)
            f.write("\n")
    print(f"{base}.onnx: {len(m.graph.node)} nodes, opset {net.opset}")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("testdata", "full"):
        sys.exit(__doc__)
    outdir = sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    for net in testdata_nets() if sys.argv[1] == "testdata" else full_nets():
        write(net, outdir, extras=sys.argv[1] == "full")


if __name__ == "__main__":
    main()
