"""Launch files: YAML that lists nodes, their parameters and remappings, and arguments with defaults.

    arguments:
      rate: 30                                  # a default
      source: {default: 0, description: camera index or URL}
    include:
      - file: other.yaml                         # relative to this file, or a shipped one's name
        arguments: {rate: $(arg rate)}
        namespace: /robot2                       # its nodes' namespaces go under this (optional)
    nodes:
      - name: camera
        node: perception.nodes.test_camera:TestCamera   # MODULE:CLASS, or FILE.py:CLASS (relative to this file)
        namespace: /
        parameters: {rate: $(arg rate)}      # or params.yaml (relative to this file), or a list of both
        remappings: {image: camera/image}    # relative: it moves with the namespace
        env: {OMP_NUM_THREADS: "1"}
        respawn: true            # restart when it exits, waiting respawn_delay, doubling up to 30 s
        respawn_delay: 1.0
        required: false          # the run needs it: when it finishes (exit code 0) stop everything; when it
                                 # fails for good (no respawn, never came up, or a crash loop) stop
                                 # everything and exit non-zero

    security: {keystore: keys/}  # CURVE for every socket of the graph (`percept keys generate keys/`),
                                 # relative to this file; PERCEPT_KEYSTORE does the same for any run

`$(arg NAME)` and `$(env NAME)` (or `$(env NAME default)`) are substituted in strings; a value that is
only `$(arg NAME)` keeps the argument's type. Every error names the file, the line and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from perception.errors import InvalidNameError, LaunchError, ParameterError
from perception.installed import launch_files
from perception.runtime import names
from perception.runtime.params import FileValues, read_parameter_file

NODE_KEYS = {
    "name": "the node's name",
    "node": "MODULE:CLASS or FILE.py:CLASS",
    "namespace": "a namespace such as /robot",
    "parameters": "a map of parameter names to values, a parameter file, or a list of both",
    "remappings": "a map of names to names",
    "env": "a map of environment variables to strings",
    "respawn": "true or false",
    "respawn_delay": "seconds (a number)",
    "required": "true or false",
}
TOP_KEYS = {"arguments", "include", "nodes", "security"}
_SUBSTITUTION = re.compile(r"\$\((arg|env)\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s+([^)]*))?\)")


@dataclass
class NodeSpec:
    name: str
    target: str
    namespace: str = "/"
    parameters: dict[str, Any] = field(default_factory=dict)
    # Of those, the names that only a parameter file's pattern section (/**) gives: see FileValues.
    shared_parameters: frozenset[str] = frozenset()
    remappings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    respawn: bool = False
    respawn_delay: float = 1.0
    required: bool = False
    source: str = ""  # file:line, for messages

    @property
    def fqn(self) -> str:
        return names.join(self.namespace, self.name)


@dataclass
class LaunchDescription:
    nodes: list[NodeSpec]
    arguments: dict[str, Any]
    keystore: Path | None = None  # `security: {keystore: DIR}`, resolved against the file's folder


class _Located:
    """YAML data plus the line of every value, keyed by its path (("nodes", 0, "name"))."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines: dict[tuple[Any, ...], int] = {}
        try:
            loader = yaml.SafeLoader(text)  # reads the text at once: a control character fails here
        except yaml.YAMLError as exc:
            raise LaunchError(f"{path}: not valid YAML: {exc}") from None
        try:
            root = loader.get_single_node()
            self.data: Any = loader.construct_document(root) if root is not None else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise LaunchError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        finally:
            loader.dispose()
        if root is not None:
            self._index(root, self.data, ())

    def _index(self, node: yaml.Node, value: Any, at: tuple[Any, ...]) -> None:
        """Record the line of every value, walking the node tree beside the data built from it."""
        self.lines[at] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode) and isinstance(value, dict):
            if len(node.value) != len(value):  # the loader kept only the last of a repeated key
                seen: set[str] = set()
                for key_node, _ in node.value:
                    if key_node.value in seen:
                        raise LaunchError(
                            f"{self.path}:{key_node.start_mark.line + 1}: duplicate key {key_node.value!r}"
                        )
                    seen.add(key_node.value)
            for (key_node, value_node), key in zip(node.value, value, strict=False):
                self._index(value_node, value[key], (*at, key))
                self.lines[(*at, key)] = key_node.start_mark.line + 1  # errors point at the key
        elif isinstance(node, yaml.SequenceNode) and isinstance(value, list):
            for i, (item_node, item) in enumerate(zip(node.value, value, strict=False)):
                self._index(item_node, item, (*at, i))

    def fail(self, at: tuple[Any, ...], message: str) -> LaunchError:
        line = self.lines.get(at) or self.lines.get(at[:-1]) or self.lines.get(())
        key = "".join(
            f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(at)
        )
        return LaunchError(f"{self.path}:{line}: {key or 'top level'}: {message}")


def declared_arguments(path: str | Path) -> list[tuple[str, Any, str]]:
    """The arguments a launch file declares (not its includes'): name, default (None: required) and
    description, in the file's order."""
    doc = _Located(Path(path), Path(path).read_text())
    declared = doc.data.get("arguments") or {} if isinstance(doc.data, dict) else {}
    if not isinstance(declared, dict):
        raise doc.fail(("arguments",), "expected a map of argument names to defaults")
    return [(name, *_argument(doc, name, spec)) for name, spec in declared.items()]


ARGUMENT_KEYS = ("default", "description")


def _argument(doc: _Located, name: str, spec: Any) -> tuple[Any, str]:
    """An argument's default and description: `{default: X, description: TEXT}`, or the default alone.
    Another key is refused: it is most often the rest of a description with an unquoted comma, which
    a {...} map ends the value at ('description: the domain (-1, else 0)' left '(-1' and a key)."""
    if not isinstance(spec, dict):
        return spec, ""
    for key in spec:
        if key not in ARGUMENT_KEYS:
            raise doc.fail(
                ("arguments", name, key),
                "unknown key; expected default and description (in {...}, quote a description "
                "that has a comma or a ': ')",
            )
    return spec.get("default"), str(spec.get("description", ""))


def load(path: str | Path, arguments: dict[str, Any] | None = None) -> LaunchDescription:
    """Read, validate and substitute a launch file and its includes."""
    return _load(Path(path), dict(arguments or {}), depth=0, pushed="/")


def _load(path: Path, given: dict[str, Any], depth: int, pushed: str) -> LaunchDescription:
    """`pushed`: the namespace the including files put this one's nodes in (as ROS 2's
    PushRosNamespace does: a node's own namespace goes under it; absolute topic names stay absolute)."""
    if depth > 8:
        raise LaunchError(f"{path}: includes nested more than 8 deep (an include cycle?)")
    try:
        text = path.read_text()
    except OSError as exc:
        raise LaunchError(f"launch file {path}: cannot read: {exc.strerror}") from None
    doc = _Located(path, text)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.fail((), f"expected a map with keys {sorted(TOP_KEYS)}, found {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            raise doc.fail((key,), f"unknown key; expected one of {', '.join(sorted(TOP_KEYS))}")
    arguments = _arguments(doc, data.get("arguments") or {}, given)
    keystore = _keystore(doc, path, _substitute(doc, ("security",), data.get("security") or {}, arguments))
    nodes: list[NodeSpec] = []
    for i, include in enumerate(_list(doc, data, "include")):
        at: tuple[Any, ...] = ("include", i)
        if not isinstance(include, dict) or "file" not in include:
            raise doc.fail(at, "expected a map with 'file' (and optional 'arguments', 'namespace')")
        extra = set(include) - {"file", "arguments", "namespace"}
        if extra:
            raise doc.fail(
                (*at, sorted(extra)[0]), "unknown key; expected 'file', 'arguments' or 'namespace'"
            )
        try:
            inner = _under(
                pushed, str(_substitute(doc, (*at, "namespace"), include.get("namespace", "/"), arguments))
            )
        except InvalidNameError as exc:
            raise doc.fail((*at, "namespace"), str(exc)) from None
        included_args = _substitute(doc, (*at, "arguments"), include.get("arguments") or {}, arguments)
        if not isinstance(included_args, dict):
            raise doc.fail((*at, "arguments"), "expected a map of argument names to values")
        file = _substitute(doc, (*at, "file"), include["file"], arguments)
        included = _load(_included(doc, (*at, "file"), str(file)), included_args, depth + 1, inner)
        nodes += included.nodes
        keystore = keystore or included.keystore
    for i, raw in enumerate(_list(doc, data, "nodes")):
        nodes.append(_node(doc, ("nodes", i), _substitute(doc, ("nodes", i), raw, arguments), pushed))
    seen: dict[str, NodeSpec] = {}
    for spec in nodes:
        if spec.fqn in seen:
            raise LaunchError(
                f"{spec.source}: node {spec.fqn} is already defined at {seen[spec.fqn].source}; "
                "give one of them another name or namespace"
            )
        seen[spec.fqn] = spec
    return LaunchDescription(nodes=nodes, arguments=arguments, keystore=keystore)


def _included(doc: _Located, at: tuple[Any, ...], file: str) -> Path:
    """An included file relative to this one, or a launch file that ships by its name (`test_camera`,
    as `percept launch` finds it), so a user's file can build on ours wherever the suite is installed."""
    path = doc.path.parent / file
    if path.is_file():
        return path
    shipped = launch_files().get(file.removesuffix(".yaml")) if "/" not in file else None
    if shipped is not None:
        return shipped
    raise doc.fail(
        at, f"expected a launch file relative to this one or the name of one that ships, found no {path}"
    )


def _keystore(doc: _Located, path: Path, security: Any) -> Path | None:
    if not isinstance(security, dict) or set(security) - {"keystore"}:
        raise doc.fail(("security",), "expected a map with 'keystore' (a keystore directory)")
    keystore = security.get("keystore")
    if keystore in (None, ""):
        return None
    if not isinstance(keystore, str):
        raise doc.fail(("security", "keystore"), f"expected a directory, found {keystore!r}")
    return path.parent / keystore


def _list(doc: _Located, data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise doc.fail((key,), f"expected a list, found {type(value).__name__}")
    return value


def _arguments(doc: _Located, declared: Any, given: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(declared, dict):
        raise doc.fail(("arguments",), "expected a map of argument names to defaults")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        values[name] = _argument(doc, name, spec)[0]
    unknown = set(given) - set(values)
    if unknown:
        known = ", ".join(sorted(values)) or "none"
        raise LaunchError(
            f"{doc.path}: unknown argument {sorted(unknown)[0]!r} (arguments declared: {known})"
        )
    values.update(given)
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise LaunchError(f"{doc.path}: argument {missing[0]!r} has no default; pass {missing[0]}:=VALUE")
    return values


def _substitute(doc: _Located, at: tuple[Any, ...], value: Any, arguments: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(doc, (*at, k), v, arguments) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(doc, (*at, i), v, arguments) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$(" not in value:
        return value

    def lookup(match: re.Match[str]) -> Any:
        kind, name, default = match.group(1), match.group(2), match.group(3)
        if kind == "arg":
            if name not in arguments:
                known = ", ".join(sorted(arguments)) or "none"
                raise doc.fail(at, f"$(arg {name}) is not a declared argument (declared: {known})")
            return arguments[name]
        import os

        if name not in os.environ and default is None:
            raise doc.fail(at, f"$(env {name}) is not set and has no default")
        return os.environ.get(name, default)

    whole = _SUBSTITUTION.fullmatch(value.strip())
    if whole:
        return lookup(whole)
    return _SUBSTITUTION.sub(lambda m: str(lookup(m)), value)


def _beside(doc: _Located, at: tuple[Any, ...], target: str) -> str:
    """A FILE.py target relative to the launch file, as an include is (a node file kept beside its
    launch file must not depend on where `percept launch` runs); checked here, with the file's line."""
    module_ref, colon, class_name = target.partition(":")
    if not module_ref.endswith(".py"):
        return target
    path = doc.path.parent / module_ref
    if not path.is_file():
        raise doc.fail(at, f"expected a Python file relative to this launch file, found no {path}")
    return f"{path.resolve()}{colon}{class_name}"


def _parameters(doc: _Located, at: tuple[Any, ...], given: Any, node: str) -> FileValues:
    """A node's parameters: a map, a parameter file (relative to this file; the node's own section of a
    ROS 2 file, over its pattern sections), or a list of both, as a ROS 2 launch takes them (a later
    entry wins)."""
    values = FileValues()
    for i, entry in enumerate(given if isinstance(given, list) else [given]):
        where = (*at, i) if isinstance(given, list) else at
        if isinstance(entry, dict):
            values = values.then(entry)
        elif isinstance(entry, str) and entry:
            try:
                values = values.then(read_parameter_file(doc.path.parent / entry, node))
            except ParameterError as exc:
                raise doc.fail(where, str(exc)) from None
        else:
            raise doc.fail(where, f"expected {NODE_KEYS['parameters']}, found {entry!r}")
    return values


def _under(pushed: str, namespace: str) -> str:
    """A namespace put under the one the including files pushed."""
    own = names.namespace_of(namespace)
    return own if pushed == "/" else names.namespace_of(pushed + ("" if own == "/" else own))


def _node(doc: _Located, at: tuple[Any, ...], raw: Any, pushed: str) -> NodeSpec:
    if not isinstance(raw, dict):
        raise doc.fail(at, f"expected a map with keys {', '.join(NODE_KEYS)}, found {type(raw).__name__}")
    for key in raw:
        if key not in NODE_KEYS:
            raise doc.fail((*at, key), f"unknown key; expected one of {', '.join(NODE_KEYS)}")
    for key in ("node",):
        if key not in raw:
            raise doc.fail(at, f"missing '{key}' ({NODE_KEYS[key]})")
    target = raw["node"]
    if not isinstance(target, str) or not target:
        raise doc.fail((*at, "node"), f"expected {NODE_KEYS['node']}, found {target!r}")
    name = raw.get("name") or target.rpartition(":")[2].lower() or target.rsplit(".", 1)[-1]
    target = _beside(doc, (*at, "node"), target)
    checks: list[tuple[str, type | tuple[type, ...]]] = [
        ("name", str),
        ("namespace", str),
        ("parameters", (dict, str, list)),
        ("remappings", dict),
        ("env", dict),
        ("respawn", bool),
        ("respawn_delay", (int, float)),
        ("required", bool),
    ]
    for key, kind in checks:
        if key in raw and (
            not isinstance(raw[key], kind) or (kind == (int, float) and isinstance(raw[key], bool))
        ):
            raise doc.fail((*at, key), f"expected {NODE_KEYS[key]}, found {raw[key]!r}")
    try:
        names.validate("/" + name, "node")
        namespace = _under(pushed, raw.get("namespace", "/"))
    except InvalidNameError as exc:
        raise doc.fail(at, str(exc)) from None
    parameters = _parameters(
        doc, (*at, "parameters"), raw.get("parameters") or {}, names.join(namespace, name)
    )
    return NodeSpec(
        name=name,
        target=target,
        namespace=namespace,
        parameters=dict(parameters),
        shared_parameters=parameters.shared,
        remappings={str(k): str(v) for k, v in (raw.get("remappings") or {}).items()},
        env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
        respawn=bool(raw.get("respawn", False)),
        respawn_delay=float(raw.get("respawn_delay", 1.0)),
        required=bool(raw.get("required", False)),
        source=f"{doc.path}:{doc.lines.get(at, '?')}",
    )
