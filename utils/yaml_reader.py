"""The one way YAML is read here: PyYAML's safe loader, narrowed to the shapes our files have.

Refused, each as a ``YAMLShapeError`` (a ``yaml.YAMLError``, so callers' handling is unchanged)
with the line it is on:

- merge keys (``<<:``), and aliases (``*a``) whose expansion passes MAX_NODES nodes or
  MAX_DEPTH levels, or refers to itself: a few lines of aliases expand to billions of nodes
  ("billion laughs"), which every later walk (validation, a copy, an error message) would pay.
  Anchors and aliases themselves are accepted: ``yaml.safe_dump`` writes them for any object
  that appears twice, so files written by PyYAML (a user's script, a test) hold them;
- a key given twice in one mapping (PyYAML keeps the last silently: a layer defined twice);
- nesting deeper than MAX_DEPTH (the composer recurses: 10,000 levels is a RecursionError);
- integers of more than MAX_INT_DIGITS digits (Python refuses to convert over 4,300 digits,
  and no value here needs more than 20);
- text over MAX_BYTES (our largest file, a quantization.yml, is a few KB).
"""
import copy
from typing import Any

import yaml

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_INT_DIGITS = 30
MAX_NODES = 100_000   # nodes after alias expansion (our largest file has a few hundred)
MEMO_TEXTS = 8        # texts whose values loads() keeps (a step reads a solution file up to three times)

# text -> its value, for the last MEMO_TEXTS texts read: PyYAML's pure-Python parser is slow for a
# solution file (docs/benchmarks.md), and profile.py, a finetuning and a test of a finetuned checkpoint read the
# same text (a file again, or the copy a checkpoint carries) more than once. A value depends on
# the text alone, so a text seen before gives a copy of its value; errors are not kept (a text
# that failed is parsed again and fails again).
_values: dict[str | bytes, Any] = {}


class YAMLShapeError(yaml.YAMLError):
    """YAML that is well formed but of a shape this project does not read."""


def _where(node_or_event):
    mark = getattr(node_or_event, "start_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader without merge keys and duplicate keys, depth- and expansion-limited."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YAMLShapeError(f"nesting deeper than {MAX_DEPTH} levels{_where(event)}")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _expanded(node, {}, set())
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise YAMLShapeError(f"merge keys (<<) are not accepted{_where(key_node)}; write the keys out")
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:
                        continue   # an unhashable key: PyYAML refuses it itself
                    if duplicate:
                        raise YAMLShapeError(f"key {key_node.value[:80]!r} is given twice{_where(key_node)}; "
                                             f"keep one")
        return super().construct_mapping(node, deep)


def _expanded(node, sizes, open_nodes):
    """(nodes, depth) of ``node`` with every alias expanded; a YAMLShapeError past the limits or
    for a node that contains itself. Shared nodes are counted once per use, computed once."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise YAMLShapeError(f"an alias refers to a node that contains it{_where(node)}")
    open_nodes.add(key)
    count, depth = 1, 1
    children = ([v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode)
                else node.value if isinstance(node, yaml.SequenceNode) else ())
    for child in children:
        n, d = _expanded(child, sizes, open_nodes)
        count, depth = count + n, max(depth, d + 1)
        if count > MAX_NODES:
            raise YAMLShapeError(f"more than {MAX_NODES:,} values once aliases (*name) are expanded"
                                 f"{_where(node)}; write the file without them")
        if depth > MAX_DEPTH:
            raise YAMLShapeError(f"nesting deeper than {MAX_DEPTH} levels once aliases (*name) are expanded"
                                 f"{_where(node)}")
    open_nodes.discard(key)
    sizes[key] = (count, depth)
    return count, depth


def _construct_int(loader, node):
    digits = sum(c.isdigit() for c in node.value)
    if digits > MAX_INT_DIGITS:
        raise YAMLShapeError(f"an integer of {digits} digits{_where(node)}; at most {MAX_INT_DIGITS} are read")
    return yaml.SafeLoader.construct_yaml_int(loader, node)


SafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def loads(text: str | bytes) -> Any:
    """The value of the YAML ``text`` (str or bytes); a ``yaml.YAMLError`` when it is malformed
    or of a refused shape."""
    if len(text) > MAX_BYTES:
        raise YAMLShapeError(f"{len(text):,} bytes, above the {MAX_BYTES:,} a YAML file here may hold")
    if text in _values:
        return copy.deepcopy(_values[text])   # a copy: callers may change what they get
    value = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (SafeLoader subclass)
    if len(_values) >= MEMO_TEXTS:
        del _values[next(iter(_values))]   # the oldest
    _values[text] = copy.deepcopy(value)
    return value


def first_line(error: BaseException) -> str:
    """The first line of a YAML error, for a one-line message."""
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


class _Dumper(yaml.SafeDumper):
    """yaml.SafeDumper that writes a shared object out again instead of as an alias."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dumps(data: object, **options: Any) -> str:
    """``data`` as YAML text without anchors or aliases (block style, keys in their order)."""
    options = {"sort_keys": False, "default_flow_style": None, **options}
    return yaml.dump(data, Dumper=_Dumper, **options)
