"""Which tensors of an ONNX model keep their data in external files (a protobuf walk, no ``onnx``).

ONNX lets an initializer live in a separate file (``data_location = EXTERNAL``) that onnxruntime
opens by a path relative to the model - a file the manifest does not list and serving never
hashed: editing it changes every answer with no checksum noticing. The image carries only
onnxruntime (no ``onnx`` package), so this reads just enough of the protobuf wire format to find
such tensors: initializers, sparse initializers, and tensors and subgraphs inside node attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

# Field numbers from onnx.proto3 (stable since ONNX IR version 3).
_MODEL_GRAPH: Final = 7
_GRAPH_NODE: Final = 1
_GRAPH_INITIALIZER: Final = 5
_GRAPH_SPARSE_INITIALIZER: Final = 15
_NODE_ATTRIBUTE: Final = 5
_ATTRIBUTE_TENSOR: Final = 5
_ATTRIBUTE_GRAPH: Final = 6
_ATTRIBUTE_TENSORS: Final = 10
_ATTRIBUTE_GRAPHS: Final = 11
_ATTRIBUTE_SPARSE_TENSOR: Final = 22
_ATTRIBUTE_SPARSE_TENSORS: Final = 23
_SPARSE_VALUES: Final = 1
_SPARSE_INDICES: Final = 2
_TENSOR_NAME: Final = 8
_TENSOR_EXTERNAL_DATA: Final = 13
_TENSOR_DATA_LOCATION: Final = 14
_EXTERNAL: Final = 1
_MAX_DEPTH: Final = 32


class MalformedModel(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise MalformedModel("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field; length-delimited values as bytes."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
            yield field, wire_type, value
        elif wire_type == 1:
            position += 8
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise MalformedModel("truncated field")
            yield field, wire_type, data[position : position + length]
            position += length
        elif wire_type == 5:
            position += 4
        else:
            raise MalformedModel(f"unsupported wire type {wire_type}")
    if position != len(data):
        raise MalformedModel("truncated fixed-size field")


def _external_in_tensor(tensor: bytes) -> Iterator[str]:
    name = ""
    external = False
    for field, _, value in _fields(tensor):
        if field == _TENSOR_NAME and isinstance(value, bytes):
            name = value.decode("utf-8", "replace")
        elif field == _TENSOR_EXTERNAL_DATA or (
            field == _TENSOR_DATA_LOCATION and value == _EXTERNAL
        ):
            external = True
    if external:
        yield name or "(unnamed tensor)"


def _external_in_sparse(sparse: bytes) -> Iterator[str]:
    for field, _, value in _fields(sparse):
        if field in (_SPARSE_VALUES, _SPARSE_INDICES) and isinstance(value, bytes):
            yield from _external_in_tensor(value)


def _external_in_graph(graph: bytes, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise MalformedModel("subgraphs nested too deeply")
    for field, _, value in _fields(graph):
        if not isinstance(value, bytes):
            continue
        if field == _GRAPH_INITIALIZER:
            yield from _external_in_tensor(value)
        elif field == _GRAPH_SPARSE_INITIALIZER:
            yield from _external_in_sparse(value)
        elif field == _GRAPH_NODE:
            for node_field, _, attribute in _fields(value):
                if node_field == _NODE_ATTRIBUTE and isinstance(attribute, bytes):
                    yield from _external_in_attribute(attribute, depth)


def _external_in_attribute(attribute: bytes, depth: int) -> Iterator[str]:
    for field, _, value in _fields(attribute):
        if not isinstance(value, bytes):
            continue
        if field in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
            yield from _external_in_tensor(value)
        elif field in (_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS):
            yield from _external_in_sparse(value)
        elif field in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
            yield from _external_in_graph(value, depth + 1)


def external_data_tensors(model: bytes) -> list[str]:
    """Names of the tensors whose data lives outside ``model`` (empty for a self-contained one);
    raises ``MalformedModel`` when the bytes are not a protobuf message."""
    found: list[str] = []
    for field, _, value in _fields(model):
        if field == _MODEL_GRAPH and isinstance(value, bytes):
            found.extend(_external_in_graph(value, 0))
    return found
