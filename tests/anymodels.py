"""Real ONNX models built by the tests (onnx.helper), for `rtml-profile profile`."""

from __future__ import annotations

import numpy as np

VOCAB, D, CLASSES = 1000, 64, 10


def transformer(path, opset: int = 17, external: bool = False, seq="seq"):
    """A small transformer-style graph: int64 token ids [batch, seq] -> Gather (embedding) -> one attention head
    (MatMul, Softmax) -> residual Add -> LayerNormalization -> outputs `hidden` [batch, seq, D] and `logits`
    [batch, CLASSES] (mean over the sequence, then MatMul)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {
        "emb": rng.standard_normal((VOCAB, D)),
        "wq": rng.standard_normal((D, D)) / np.sqrt(D),
        "wk": rng.standard_normal((D, D)) / np.sqrt(D),
        "wv": rng.standard_normal((D, D)) / np.sqrt(D),
        "gamma": np.ones(D),
        "beta": np.zeros(D),
        "wout": rng.standard_normal((D, CLASSES)) / np.sqrt(D),
        "scale": np.array(1 / np.sqrt(D)),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    n = helper.make_node
    nodes = [
        n("Gather", ["emb", "ids"], ["x"], name="embed"),
        n("MatMul", ["x", "wq"], ["q"], name="q"),
        n("MatMul", ["x", "wk"], ["k"], name="k"),
        n("MatMul", ["x", "wv"], ["v"], name="v"),
        n("Transpose", ["k"], ["kt"], perm=[0, 2, 1], name="kt"),
        n("MatMul", ["q", "kt"], ["s0"], name="scores"),
        n("Mul", ["s0", "scale"], ["s"], name="scaled"),
        n("Softmax", ["s"], ["p"], axis=-1, name="softmax"),
        n("MatMul", ["p", "v"], ["att"], name="attend"),
        n("Add", ["x", "att"], ["res"], name="residual"),
        n("LayerNormalization", ["res", "gamma", "beta"], ["hidden"], axis=-1, epsilon=1e-5, name="norm"),
        n("ReduceMean", ["hidden", "axis1"], ["pooled"], keepdims=0, name="pool")  # axes became an input in 18
        if opset >= 18
        else n("ReduceMean", ["hidden"], ["pooled"], axes=[1], keepdims=0, name="pool"),
        n("MatMul", ["pooled", "wout"], ["logits"], name="head"),
    ]
    g = helper.make_graph(
        nodes,
        "tiny-transformer",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", seq])],
        [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", seq, D]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES]),
        ],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=f"{path.name}.data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def two_inputs(path):
    """Two float inputs with a named dimension they share: a [batch, n, 4] @ b [batch, 4, n] -> y, and a + 1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    one = numpy_helper.from_array(np.array(1, np.float32), "one")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"]), helper.make_node("Add", ["a", "one"], ["z"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "n", 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4, "n"]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n", "n"]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "n", 4]),
        ],
        [one],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path
