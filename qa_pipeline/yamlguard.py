"""Bounds for YAML from files a user hands us (configs, rule packs).

PyYAML composes nested collections recursively (a file of 100,000 ``[`` ends in a
``RecursionError`` traceback after seconds) and shares aliased nodes, so a "billion laughs"
file of a few hundred bytes (nine anchors, each a list of nine aliases of the previous one)
loads as a small shared graph that every later walk (``${ENV}`` substitution, validation)
expands into hundreds of millions of values: the process hangs and grows. The loaders of
:mod:`qa_pipeline.config` and :mod:`qa_pipeline.yamlsrc` mix :class:`BoundedComposer`
in, which refuses, while composing and before anything is built:

* nesting deeper than :data:`MAX_DEPTH` collections;
* a document larger than :data:`MAX_NODES` nodes once aliases are expanded (each use of an
  alias counts its whole subtree; a document without aliases counts its nodes).

Both are ``yaml.composer.ComposerError`` with the line, reported by the loaders as their
usual one-line config error.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

#: collections nested deeper than this are refused (the default pack nests 6 deep)
MAX_DEPTH = 64
#: nodes of a document with every alias expanded (each file of the default pack has a few hundred)
MAX_NODES = 500_000


class BoundedComposer:
    """Mix into a ``yaml.SafeLoader`` subclass (before it): bounded depth and size."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels: refused", mark
                )
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()  # type: ignore[misc]
        if node is not None:
            size = expanded_size(node)
            if size > MAX_NODES:
                raise ComposerError(
                    None,
                    None,
                    f"more than {MAX_NODES:,} values once aliases are expanded "
                    "(an alias bomb?): refused",
                    node.start_mark,
                )
        return node


def expanded_size(root: yaml.Node) -> int:
    """Nodes under ``root`` (itself included), an aliased node counted at every use. Linear
    in the composed graph (each distinct node is measured once); stops early past
    :data:`MAX_NODES`; a node that contains itself (a recursive alias) counts as too large."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_NODES + 1  # until measured: a node inside itself is refused
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_NODES:
                    break
        sizes[id(node)] = total
        return total

    return size(root)  # recursion is bounded by MAX_DEPTH (compose_node)
