"""YAML loaded safely: only plain data, with bounded depth and bounded alias expansion.

``yaml.safe_load`` builds no arbitrary objects, but it still lets a few hundred bytes
expand into billions of nodes through anchors and aliases (the "billion laughs"), recurse
until the interpreter's stack runs out on deeply nested input, build self-referencing
structures (``&a [*a]``), and yield values tether cannot store (``.inf``, ``!!binary``,
timestamps, integers of thousands of digits).

:func:`load_yaml` composes the document with a loader that counts the *expanded* size as
it goes — an alias costs the full size of the node it repeats — and gives up as soon as
the depth, the node count or the character count passes its bound, so an attack fails in
about the time it takes to read its text. Dates become ISO strings; every other value must
be plain data (:mod:`tether.plaindata`)."""

from __future__ import annotations

import datetime
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_CHARS = 1_000_000


class YamlTooLarge(ValueError):
    """The document nests too deeply or expands past its bounds."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str, *, max_depth: int, max_nodes: int, max_chars: int) -> None:
        super().__init__(stream)
        self._max_depth, self._max_nodes, self._max_chars = max_depth, max_nodes, max_chars
        self._depth = 0
        self._nodes = 0
        self._chars = 0
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) → expanded (nodes, chars)
        self._open: set[str] = set()  # anchors of the nodes being composed

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise YamlTooLarge(f"the alias *{event.anchor} refers to a node that contains it")
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._add(*self._size(target))
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > self._max_depth:
            raise YamlTooLarge(f"the document nests deeper than {self._max_depth} levels")
        anchor = getattr(self.peek_event(), "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        if isinstance(node, ScalarNode):
            self._add(1, len(node.value))
        else:
            self._add(1, 0)
        return node

    def _add(self, nodes: int, chars: int) -> None:
        self._nodes += nodes
        self._chars += chars
        if self._nodes > self._max_nodes:
            raise YamlTooLarge(f"the document expands to more than {self._max_nodes} values")
        if self._chars > self._max_chars:
            raise YamlTooLarge(f"the document expands to more than {self._max_chars} characters")

    def _size(self, root: Node) -> tuple[int, int]:
        """The expanded size of an anchored node (memoized; a cycle is refused)."""
        done = self._sizes
        open_: set[int] = set()
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            key = id(node)
            if key in done:
                continue
            kids = _children(node)
            if children_done:
                nodes, chars = 1, len(node.value) if isinstance(node, ScalarNode) else 0
                for kid in kids:
                    n, c = done[id(kid)]
                    nodes, chars = nodes + n, chars + c
                done[key] = (min(nodes, self._max_nodes + 1), min(chars, self._max_chars + 1))
                open_.discard(key)
                continue
            if key in open_:
                raise YamlTooLarge("an alias refers to the node that contains it")
            open_.add(key)
            stack.append((node, True))
            for kid in kids:
                if id(kid) in open_:
                    raise YamlTooLarge("an alias refers to the node that contains it")
                stack.append((kid, False))
        return done[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml(
    text: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    max_chars: int = MAX_CHARS,
) -> Any:
    """Load one YAML document as plain data. Raises :class:`yaml.YAMLError` for bad syntax
    and :class:`YamlTooLarge` / :class:`ValueError` for a document outside the bounds or
    holding values that are not plain data."""
    loader = _BoundedLoader(text, max_depth=max_depth, max_nodes=max_nodes, max_chars=max_chars)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return _plain(data, max_depth)


def _plain(value: Any, max_depth: int) -> Any:
    from tether.plaindata import plain_problem

    value = _dates_to_text(value)
    problem = plain_problem(value, max_depth=max_depth + 1)
    if problem is not None:
        raise ValueError(problem)
    return value


def _dates_to_text(value: Any) -> Any:
    # Depth is bounded by the loader, so recursion here is bounded too.
    if isinstance(value, datetime.date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, list):
        return [_dates_to_text(v) for v in value]
    if isinstance(value, dict):
        return {_dates_to_text(k): _dates_to_text(v) for k, v in value.items()}
    return value
