"""int8 weights inside an exported ONNX graph, one scale per output unit.

``quantise_graph(model)`` rewrites, in place, every constant matrix that a MatMul, a Gemm
or a Gather (the embedding) reads:

- product weights are stored (K, N) int8 with a float32 scale per output column, read
  through ``DequantizeLinear(axis=1)`` by a MatMul (a Gemm becomes MatMul + Add):
  onnxruntime fuses the pair into its 8-bit weight kernel;
- a gathered table gathers int8 rows and their scales and multiplies;
- a matrix both gathered and multiplied (tied input and output embeddings) is stored once,
  in the product's layout; the lookup reads its transpose, which onnxruntime computes once
  when it loads the graph (the file holds one copy).

The values are ``rnnlab.export.quant.quantise_rows`` of the float constants, so when the
PyTorch model was already rounded to int8 per row the graph holds the same numbers.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .quant import quantise_rows

_AXIS_LAST = "rnnlab_axis_last"
_ONE = "rnnlab_one"


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _float_matrix(init: TensorProto | None) -> np.ndarray | None:
    if init is None or init.data_type != TensorProto.FLOAT or len(init.dims) != 2:
        return None
    return numpy_helper.to_array(init)


def _product_weight(node, inits) -> tuple[str, bool] | None:
    """(constant name, stored transposed) when node is a plain product by a constant."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
        return None
    if _float_matrix(inits.get(node.input[1])) is None:
        return None
    a = _attrs(node)
    if node.op_type == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) != 1.0
                                   or a.get("beta", 1.0) != 1.0):
        return None
    return node.input[1], bool(a.get("transB", 0))


def _gathered(node, inits) -> str | None:
    if node.op_type == "Gather" and _attrs(node).get("axis", 0) == 0 \
            and _float_matrix(inits.get(node.input[0])) is not None:
        return node.input[0]
    return None


def quantise_graph(model: onnx.ModelProto) -> list[dict]:
    """Store the graph's constant matrices as int8 with per-output-unit scales, in place;
    returns what was stored (tensor, shape, per row/column, largest step)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    transposed = {p[0] for n in graph.node if (p := _product_weight(n, inits)) and p[1]}
    made: dict[str, tuple[str, str, int]] = {}
    new_inits, front, nodes, done = [], [], [], []

    def stored(name: str, layout: str) -> tuple[str, str, int]:
        """layout "rows": (V, E) per row; "cols": (K, N) per column."""
        key = f"{name}:{layout}"
        if key not in made:
            w = _float_matrix(inits[name])
            if name in transposed:
                w = np.ascontiguousarray(w.T)
            axis = 0 if layout == "rows" else 1
            q, scale = quantise_rows(w, axis)
            qn, sn = f"{name}_int8_{axis}", f"{name}_scale_{axis}"
            new_inits.extend([numpy_helper.from_array(q, qn), numpy_helper.from_array(scale, sn)])
            made[key] = (qn, sn, axis)
            done.append({"tensor": name, "transposed": name in transposed,
                         "shape": list(w.shape), "per": "row" if axis == 0 else "column",
                         "max_step": float(scale.max())})
        return made[key]

    for node in graph.node:
        name, out = _gathered(node, inits), node.output[0]
        if name is not None:
            qn, sn, axis = stored(name, "cols" if name in transposed else "rows")
            idx, base = node.input[1], out
            if axis == 1:          # the (E, V) output matrix: its transpose, made once
                rows = f"{qn}_rows"            # when the session loads (constant folding),
                if rows not in made:           # and a copy of the scales, made likewise
                    front += [helper.make_node("Transpose", [qn], [rows], perm=[1, 0]),
                              helper.make_node("Mul", [sn, _ONE], [f"{sn}_rows"])]
                    made[rows] = (rows, f"{sn}_rows", 0)    # (the 8-bit kernel wants its
                qn, sn = made[rows][:2]                     # scales to itself)
            nodes += [helper.make_node("Gather", [qn, idx], [f"{base}_q"]),
                      helper.make_node("Gather", [sn, idx], [f"{base}_s"]),
                      helper.make_node("Cast", [f"{base}_q"], [f"{base}_f"],
                                       to=TensorProto.FLOAT),
                      helper.make_node("Unsqueeze", [f"{base}_s", _AXIS_LAST], [f"{base}_s1"]),
                      helper.make_node("Mul", [f"{base}_f", f"{base}_s1"], [out])]
            continue
        product = _product_weight(node, inits)
        if product is not None:
            qn, sn, _ = stored(product[0], "cols")
            dq = f"{product[0]}_dequantised"
            if dq not in made:
                front.append(helper.make_node("DequantizeLinear", [qn, sn], [dq], axis=1))
                made[dq] = (dq, dq, 1)
            if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
                nodes += [helper.make_node("MatMul", [node.input[0], dq], [f"{out}_mm"]),
                          helper.make_node("Add", [f"{out}_mm", node.input[2]], [out])]
            else:
                nodes.append(helper.make_node("MatMul", [node.input[0], dq], [out]))
            continue
        nodes.append(node)
    _keep_products_apart(nodes, {n.output[0] for n in front if n.op_type == "DequantizeLinear"})
    used = {i for n in front + nodes for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    keep.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), _AXIS_LAST))
    keep.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), _ONE))
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    del graph.node[:]
    graph.node.extend(front + nodes)
    onnx.checker.check_model(model)
    return done


def _keep_products_apart(nodes: list, dequantised: set[str]) -> None:
    """An Add of an int8 product's result becomes a Sum (the same operation): onnxruntime
    would otherwise fuse MatMul + Add into a Gemm first, which has no 8-bit weight kernel
    and dequantises the whole matrix at every step (15x slower, measured)."""
    products = {n.output[0] for n in nodes if n.op_type == "MatMul" and n.input[1] in dequantised}
    for n in nodes:
        if n.op_type == "Add" and products.intersection(n.input):
            n.op_type = "Sum"


def weight_bytes(graph: onnx.ModelProto) -> dict:
    """Bytes of the graph's constants, and of what one step reads: everything except the
    gathered tables, of which a step reads one row (or column) per sequence."""
    total = per_step = 0
    nodes = graph.graph.node
    gathered = {n.input[0]: _attrs(n).get("axis", 0) for n in nodes if n.op_type == "Gather"}
    for n in nodes:                  # a table a product also reads is read whole
        if n.op_type != "Gather":
            for name in n.input:
                gathered.pop(name, None)
    for init in graph.graph.initializer:
        a = numpy_helper.to_array(init)
        total += a.nbytes
        axis = gathered.get(init.name)
        per_step += a.nbytes if axis is None or a.ndim == 0 else a.nbytes // a.shape[axis]
    return {"weight_bytes": total, "weight_bytes_per_step": per_step}
