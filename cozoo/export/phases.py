"""One ONNX graph from the step graphs of a strided model's phases: ``phase = state.step mod P`` selects
the phase's graph by a chain of ``If`` nodes. Every phase graph has the same inputs and outputs; weights
(and any other constant) the phases share are stored once, at the top level, where the branches read them.
"""

from __future__ import annotations

import hashlib

import onnx
from onnx import helper

from cozoo.export.step import ExportError
from cozoo.runtime.metadata import STEP_NAME


def merge_phases(phases: list[onnx.ModelProto]) -> onnx.ModelProto:
    """A model that runs ``phases[state.step % len(phases)]``; one phase is returned as it is."""
    if len(phases) == 1:
        return phases[0]
    first = phases[0].graph
    for index, phase in enumerate(phases[1:], 1):
        if _signature(phase.graph) != _signature(first):
            raise ExportError(f"phase {index}'s graph has other inputs or outputs than phase 0's")
        if any(a.type == onnx.AttributeProto.GRAPH for n in phase.graph.node for a in n.attribute):
            raise ExportError("a phase graph holds subgraphs; merging those is not supported")
    shared: dict[bytes, onnx.TensorProto] = {}  # content -> top-level initializer
    used_names: set[str] = {i.name for i in first.input}
    branches = []
    for index, phase in enumerate(phases):
        renamed: dict[str, str] = {}
        for tensor in phase.graph.initializer:
            key = _content_key(tensor)
            if key not in shared:
                top = onnx.TensorProto()
                top.CopyFrom(tensor)
                top.name = _unique(tensor.name, used_names)
                shared[key] = top
            renamed[tensor.name] = shared[key].name
        branches.append(_branch(phase.graph, f"p{index}/", renamed))
    outputs = [o.name for o in first.output]
    nodes = [
        helper.make_node("Constant", [], ["phase/count"], value=helper.make_tensor("", onnx.TensorProto.INT64,
                                                                                    [], [len(phases)])),
        helper.make_node("Mod", [STEP_NAME, "phase/count"], ["phase"]),
        helper.make_node("Constant", [], ["phase/zero"], value=helper.make_tensor("", onnx.TensorProto.INT64,
                                                                                   [], [0])),
        helper.make_node("Equal", ["phase", "phase/zero"], ["phase/is0"]),
    ]
    nodes.append(_chain(branches, 0, outputs, list(first.output)))
    graph = helper.make_graph(nodes, "cozoo_step", list(first.input), list(first.output),
                              initializer=list(shared.values()))
    model = helper.make_model(graph, opset_imports=list(phases[0].opset_import),
                              producer_name=phases[0].producer_name,
                              producer_version=phases[0].producer_version)
    model.ir_version = phases[0].ir_version
    return model


def _signature(graph: onnx.GraphProto) -> tuple:
    return ([(i.name, i.type.SerializeToString()) for i in graph.input],
            [(o.name, o.type.SerializeToString()) for o in graph.output])


def _content_key(tensor: onnx.TensorProto) -> bytes:
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.name = ""
    return hashlib.sha256(copy.SerializeToString()).digest()


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate in used:
        candidate, n = f"{name}__{n}", n + 1
    used.add(candidate)
    return candidate


def _branch(graph: onnx.GraphProto, prefix: str, initializers: dict[str, str]) -> onnx.GraphProto:
    """The phase's nodes as a subgraph without inputs: its values renamed under ``prefix``, initializers
    read from the top level, graph inputs read from the outer scope; each output through an Identity."""
    inputs = {i.name for i in graph.input}

    def name(value: str) -> str:
        if value == "" or value in inputs:
            return value
        return initializers.get(value, prefix + value)

    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        copy.input[:] = [name(v) for v in node.input]
        copy.output[:] = [name(v) for v in node.output]
        nodes.append(copy)
    outputs = []
    for output in graph.output:
        out = onnx.ValueInfoProto()
        out.CopyFrom(output)
        out.name = f"{prefix}out/{output.name}"
        nodes.append(helper.make_node("Identity", [name(output.name)], [out.name]))
        outputs.append(out)
    return helper.make_graph(nodes, prefix.rstrip("/"), [], outputs)


def _chain(branches: list[onnx.GraphProto], index: int, outputs: list[str],
           infos: list[onnx.ValueInfoProto]) -> onnx.NodeProto:
    """``If phase == index: branches[index] else: (the chain from index + 1)``, writing ``outputs``."""
    if index == len(branches) - 2:
        otherwise = branches[index + 1]
    else:
        inner = [f"c{index + 1}/{o}" for o in outputs]
        inner_infos = []
        for info, new in zip(infos, inner, strict=True):
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(info)
            copy.name = new
            inner_infos.append(copy)
        otherwise = helper.make_graph(
            [helper.make_node("Constant", [], [f"c{index + 1}/index"],
                              value=helper.make_tensor("", onnx.TensorProto.INT64, [], [index + 1])),
             helper.make_node("Equal", ["phase", f"c{index + 1}/index"], [f"c{index + 1}/is"]),
             _chain(branches, index + 1, inner, inner_infos)],
            f"chain{index + 1}", [], inner_infos)
    condition = f"c{index}/is" if index else "phase/is0"
    return helper.make_node("If", [condition], outputs, then_branch=branches[index], else_branch=otherwise)
