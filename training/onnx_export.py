"""Export the calibrated scikit-learn model to ONNX so serving needs neither sklearn nor scipy.

Contract (CONTRACTS.md): input ``input`` float32 ``[None, 6]`` of normalized features; output
``probabilities`` float32 ``[None, 2]``; no ZipMap. Parity with scikit-learn must hold to 1e-5.

Why the graph computes in float64 inside a float32 shell:

* scikit-learn casts the input to float32 for trees, but computes linear models, the forest's
  average and the Platt sigmoid in float64. A float32 ONNX graph rounds every one of those
  steps; with the large coefficients a nearly separable loan book produces, that rounding reaches
  ~1e-6 and grows with the coefficients. So the graph is converted with a float64 input: the
  float32 ``input`` is cast to float64 (exact), every step then matches scikit-learn's arithmetic,
  and only the final probabilities are rounded to float32.
* Tree thresholds: scikit-learn compares ``(float32) x <= (float64) threshold``. skl2onnx's
  float64 tree converter stores thresholds chosen so that the same comparison holds for every
  float32 ``x`` (``skl2onnx.common.tree_ensemble.sklearn_threshold``), so no branch flips.
* Only ``probabilities`` is an output. skl2onnx also computes a ``label`` (ArgMax and friends);
  ONNX Runtime runs every node of a graph whatever outputs are requested, and those nodes cost
  ~3.5 us of a ~14 us single-request call (measured on the logistic model), so they are dropped.
  Serving applies the manifest's threshold to P(default) itself.
* ``TreeEnsembleClassifier`` (ai.onnx.ml opset 3) emits float32 scores whatever its input type,
  while the calibrator's nodes downstream are float64; skl2onnx does not reconcile the two for a
  calibrated forest, so a ``Cast`` to float64 is inserted after each tree ensemble.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from training.schema import FEATURES

ONNX_INPUT = "input"
ONNX_PROBABILITIES = "probabilities"
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
PARITY_TOLERANCE = 1e-5

_INNER_INPUT = "input_float64"
_INNER_PROBABILITIES = "probabilities_float64"
_TREE_ENSEMBLE_OPS = {"TreeEnsembleClassifier": 1, "TreeEnsembleRegressor": 0}
"""Tree-ensemble op type -> index of its float32-only score output."""


class OnnxParityError(RuntimeError):
    """The exported graph does not reproduce scikit-learn's probabilities."""


def convert_to_onnx(model: Any, metadata: dict[str, str] | None = None) -> Any:
    """Convert a fitted binary classifier to the contract's ONNX graph (``onnx.ModelProto``)."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    proto = convert_sklearn(
        model,
        name="loan_default",
        initial_types=[(_INNER_INPUT, DoubleTensorType([None, len(FEATURES)]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    graph = proto.graph
    _rename_value(graph, ONNX_PROBABILITIES, _INNER_PROBABILITIES)

    nodes = [
        helper.make_node(
            "Cast", [ONNX_INPUT], [_INNER_INPUT], to=TensorProto.DOUBLE, name="cast_input"
        )
    ]
    for node in graph.node:
        nodes.append(node)
        score_index = _TREE_ENSEMBLE_OPS.get(node.op_type)
        if score_index is not None and node.domain == "ai.onnx.ml":
            scores = node.output[score_index]
            node.output[score_index] = f"{scores}_float32"
            nodes.append(
                helper.make_node(
                    "Cast",
                    [f"{scores}_float32"],
                    [scores],
                    to=TensorProto.DOUBLE,
                    name=f"cast_{scores}_to_float64",
                )
            )
    nodes.append(
        helper.make_node(
            "Cast",
            [_INNER_PROBABILITIES],
            [ONNX_PROBABILITIES],
            to=TensorProto.FLOAT,
            name="cast_probabilities",
        )
    )
    del graph.node[:]
    graph.node.extend(_nodes_feeding(nodes, ONNX_PROBABILITIES))
    consumed = {name for node in graph.node for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in consumed]
    for tensor in unused:  # constants only the dropped label branch read
        graph.initializer.remove(tensor)

    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, len(FEATURES)])
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(ONNX_PROBABILITIES, TensorProto.FLOAT, [None, 2])
    )

    proto.doc_string = (
        "P(default) of a loan. Input: float32 [n, 6] features normalized as (x - mean) / std "
        f"with stats.json, in this order: {', '.join(FEATURES)}. "
        "Output 'probabilities' column 1 = P(default)."
    )
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _nodes_feeding(nodes: list[Any], output: str) -> list[Any]:
    """The nodes ``output`` depends on, in their original (topological) order."""
    needed = {output}
    kept = []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    return kept[::-1]


def _rename_value(graph: Any, old: str, new: str) -> None:
    """Rename a value everywhere it is produced or consumed."""
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new


def onnx_probabilities(
    model_bytes: bytes, normalized_features: npt.NDArray[np.floating[Any]]
) -> npt.NDArray[np.float32]:
    """P(default) from the ONNX graph with ONNX Runtime, as serving computes it."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    batch = np.ascontiguousarray(normalized_features, dtype=np.float32)
    (probabilities,) = session.run([ONNX_PROBABILITIES], {ONNX_INPUT: batch})
    return np.asarray(probabilities[:, 1], dtype=np.float32)


def max_parity_gap(
    model: Any, model_bytes: bytes, normalized_features: npt.NDArray[np.floating[Any]]
) -> float:
    """Largest |ONNX - scikit-learn| P(default), both fed the same float32 rows."""
    batch = np.ascontiguousarray(normalized_features, dtype=np.float32)
    expected = model.predict_proba(batch)[:, 1]
    actual = onnx_probabilities(model_bytes, batch)
    return float(np.max(np.abs(actual.astype(np.float64) - expected)))


def verify_parity(
    model: Any, model_bytes: bytes, normalized_features: npt.NDArray[np.floating[Any]]
) -> float:
    """Refuse to ship an ONNX graph that disagrees with the pickle; return the gap found."""
    gap = max_parity_gap(model, model_bytes, normalized_features)
    if not gap <= PARITY_TOLERANCE:
        raise OnnxParityError(
            f"ONNX and scikit-learn probabilities differ by up to {gap:.3g} "
            f"(tolerance {PARITY_TOLERANCE:g}); model.onnx was not written"
        )
    return gap
