"""Reading what users hand over (sweep files, --config files, override values): bounded and unsurprising.

A file is read only when it is a regular file (not /dev/zero, a pipe or a directory) of at most
MAX_FILE_BYTES, and only as UTF-8. YAML goes through one loader that refuses what PyYAML accepts
silently: a key written twice in one mapping (PyYAML keeps the last), and aliases whose expansion
would be huge (an alias bomb of a few lines expands to billions of keys) or refer to themselves.
Every refusal is a ConfigError naming the file (or key) and what was expected.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from flosssweep.errors import ConfigError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: the largest shipped sweep file is under 4 KiB
MAX_NODES = 100_000  # scalars, lists and mappings after aliases are expanded
MERGE_TAG = "tag:yaml.org,2002:merge"


def read_text(path: str | os.PathLike, limit: int = MAX_FILE_BYTES) -> str:
    """The text of a regular UTF-8 file of at most `limit` bytes, or ConfigError naming it."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as err:
        raise ConfigError(str(path), f"a readable file ({err.strerror or err})", show_got=False) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(str(path), "a regular file (not a device, pipe or directory)", show_got=False)
    if info.st_size > limit:
        raise ConfigError(str(path), f"a file of at most {limit} bytes, it has {info.st_size}", show_got=False)
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)  # a file that grows while read is cut here, not read to the end
    except OSError as err:
        raise ConfigError(str(path), f"a readable file ({err.strerror or err})", show_got=False) from None
    if len(data) > limit:
        raise ConfigError(str(path), f"a file of at most {limit} bytes", show_got=False)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), f"UTF-8 text (byte {err.start} is not)", show_got=False) from None


class _Refused(yaml.YAMLError):
    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (merge keys `<<` may still
    supply keys that the mapping then overrides, as YAML intends)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: PyYAML's own check names it
                    continue
                if duplicate:
                    raise _Refused(f"each key once in a mapping, {key!r} appears twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes the document holds once every alias is expanded (shared nodes counted each time
    they are used), without expanding them; _Refused above `limit` or for a node inside itself."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise _Refused("aliases that do not refer to a node they are part of", node.start_mark)
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        open_nodes.discard(id(node))
        if total > limit:
            raise _Refused(f"at most {limit} values once aliases are expanded", node.start_mark)
        sizes[id(node)] = total
        return total

    return size(root)


def _load(text: str, limit: int) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, limit)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _problem(err: yaml.YAMLError, what: str = "") -> str:
    """`what`, where in the text, and PyYAML's complaint (for a _Refused one, what was expected)."""
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or ["unreadable"])[0]
    return f"{problem}{where}" if isinstance(err, _Refused) else f"{what}{where}: {problem}"


def load(text: str, where: str, limit: int = MAX_NODES) -> Any:
    """The YAML document in `text` (from `where`, a file name), or ConfigError naming it."""
    try:
        return _load(text, limit)
    except _Refused as err:
        raise ConfigError(where, _problem(err), show_got=False) from None
    except yaml.YAMLError as err:
        raise ConfigError(where, _problem(err, "valid YAML"), show_got=False) from None
    except RecursionError:
        raise ConfigError(where, "YAML nested at most a few hundred levels deep", show_got=False) from None


def load_file(path: str | os.PathLike) -> tuple[Any, str]:
    """(the YAML document, its text) of a file, bounded as `read_text` and `load` say."""
    text = read_text(path)
    return load(text, str(path)), text


def load_value(text: str, key: str) -> Any:
    """One value written on a command line (`key=text`), read as YAML; ConfigError naming the key."""
    try:
        return _load(text, MAX_NODES)
    except _Refused as err:
        raise ConfigError(key, _problem(err), show_got=False) from None
    except yaml.YAMLError as err:
        raise ConfigError(key, _problem(err, "a YAML value"), text) from None
    except RecursionError:
        raise ConfigError(key, "a value nested at most a few hundred levels deep", show_got=False) from None
