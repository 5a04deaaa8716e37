"""Residual blocks a sub-network may skip, and the chains (stages) they form.

A *residual block* is an addition ``x + f(x)`` whose branch ``f`` reads only ``x`` and
is used only by that addition: dropping the branch leaves a valid, shallower network.
Consecutive blocks form a chain (a stage) whose depth is elastic as a prefix, as in
Once-for-All.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from onefit.convert.rules import is_elementwise_module
from onefit.convert.tracing import node_shape

ADDITIONS: set[Any] = {operator.add, torch.add, "add"}


@dataclass
class Block:
    """A skippable residual block: ``add = x + branch``."""

    add: str
    skip: str
    branch: list[str]
    owner: str  # the innermost module holding the addition, for names and the report


def _branch(add: fx.Node, skip: fx.Node, branch: fx.Node) -> list[fx.Node] | None:
    """The nodes computing ``branch`` from ``skip`` alone, if private to ``add``."""
    seen: set[fx.Node] = set()
    stack = [branch]
    while stack:
        node = stack.pop()
        if node is skip or node in seen or node.op == "get_attr":
            continue
        if node.op == "placeholder":
            return None
        seen.add(node)
        stack.extend(node.all_input_nodes)
    if not any(n.op == "call_module" for n in seen):
        return None
    if any(user not in seen and user is not add for n in seen for user in n.users):
        return None
    return [n for n in add.graph.nodes if n in seen]


def find_blocks(gm: fx.GraphModule) -> tuple[list[Block], dict[str, str]]:
    """The skippable residual blocks of ``gm`` (shapes from ``ShapeProp``) and why others aren't."""
    blocks: list[Block] = []
    rejected: dict[str, str] = {}
    for node in gm.graph.nodes:
        target = node.target
        if node.op not in ("call_function", "call_method") or target not in ADDITIONS:
            continue
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if len(args) != 2 or node.kwargs or len(node.args) != 2:
            rejected[node.name] = "not an addition of two tensors"
            continue
        if node_shape(args[0]) != node_shape(node) or node_shape(args[1]) != node_shape(node):
            rejected[node.name] = "shapes differ (downsampling or broadcasting)"
            continue
        for skip, branch in ((args[0], args[1]), (args[1], args[0])):
            nodes = _branch(node, skip, branch)
            if nodes is not None:
                blocks.append(Block(node.name, skip.name, [n.name for n in nodes], _owner(node)))
                break
        else:
            rejected[node.name] = "its branch reads more than the skipped input"
    # Nested blocks: only the innermost are skippable (prefix depth needs flat chains).
    inner = {b.add for b in blocks}
    flat = []
    for block in blocks:
        nested = inner.intersection(block.branch)
        if nested:
            rejected[block.add] = f"contains another residual block ({sorted(nested)[0]})"
        else:
            flat.append(block)
    return flat, rejected


def _owner(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    names = [str(v[0]) if isinstance(v, tuple) else str(k) for k, v in stack.items()]
    return names[-1] if names else node.name


def find_chains(gm: fx.GraphModule, blocks: list[Block]) -> list[list[int]]:
    """Runs of blocks where each block's input is the previous block's output.

    Between the two, only single-input element-wise ops may stand (ResNet's ReLU after
    the addition).
    """
    nodes = {n.name: n for n in gm.graph.nodes}
    chains: list[list[int]] = []
    for index, block in enumerate(blocks):
        if chains and _follows(nodes[blocks[chains[-1][-1]].add], nodes[block.skip], gm):
            chains[-1].append(index)
        else:
            chains.append([index])
    return chains


def _follows(add: fx.Node, skip: fx.Node, gm: fx.GraphModule) -> bool:
    node = add
    while node is not skip:
        users = list(node.users)
        if len(users) != 1:
            return False
        node = users[0]
        # Every step, the next block's input included, must be element-wise: a strided
        # conv between two runs of blocks starts a new chain.
        module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        if module is None or not is_elementwise_module(module):
            return False
    return True
