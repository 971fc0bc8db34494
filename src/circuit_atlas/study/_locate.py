"""Map a validation error's location (``("models", 0, "schedule")``) back to a line of the file.

YAML keeps positions in its node tree, so the line is exact. TOML's parser (``tomllib``) keeps
none, so the TOML locator scans the text: it follows ``[table]`` / ``[[array]]`` headers (the
i-th ``[[models]]`` for index i), then looks for ``key =`` inside the current section. Location
parts that are not keys of the file (pydantic's union tags such as ``"pythia"``) are skipped, so a
missing key resolves to the line of its parent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["locate_line"]

Loc = Sequence[int | str]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _key_pattern(key: str) -> re.Pattern[str]:
    quoted = re.escape(key)
    return re.compile(rf"(^|[{{,\s.])(\"{quoted}\"|'{quoted}'|{quoted})\s*=")


def _toml_line(text: str, loc: Loc) -> int | None:
    lines = text.splitlines()
    headers = []  # (line index, is_array, dotted name)
    for i, line in enumerate(lines):
        match = _HEADER.match(line)
        if match and "=" not in match.group(2):
            name = ".".join(part.strip().strip("\"'") for part in match.group(2).split("."))
            headers.append((i, match.group(1) == "[[", name))

    def section_end(start: int, prefix: str) -> int:
        for i, _is_array, name in headers:
            if i > start and not name.startswith(prefix + "."):
                return i
        return len(lines)

    start, end, prefix, found = 0, len(lines), "", None
    # Keys before the first header belong to the root table.
    root_end = headers[0][0] if headers else len(lines)
    end = root_end
    parts = list(loc)
    k = 0
    while k < len(parts):
        part = parts[k]
        if not isinstance(part, str):
            k += 1
            continue
        dotted = f"{prefix}.{part}" if prefix else part
        arrays = [(i, n) for i, is_array, n in headers if is_array and n == dotted]
        tables = [i for i, is_array, n in headers if not is_array and n == dotted]
        if arrays:
            index = parts[k + 1] if k + 1 < len(parts) and isinstance(parts[k + 1], int) else 0
            line = arrays[min(index, len(arrays) - 1)][0]
            start, prefix, found = line, dotted, line
            end = section_end(line, dotted)
            k += 2 if k + 1 < len(parts) and isinstance(parts[k + 1], int) else 1
            continue
        if tables:
            start, prefix, found = tables[0], dotted, tables[0]
            end = section_end(tables[0], dotted)
            k += 1
            continue
        pattern = _key_pattern(part)
        for i in range(start, end):
            if pattern.search(lines[i].split("#", 1)[0]):
                start, found = i, i
                end = i + 1 if "[" not in lines[i] and "{" not in lines[i] else _bracket_end(
                    lines, i
                )
                break
        k += 1
    return None if found is None else found + 1


def _bracket_end(lines: list[str], start: int) -> int:
    depth = 0
    for i in range(start, len(lines)):
        text = lines[i].split("#", 1)[0]
        depth += text.count("[") + text.count("{") - text.count("]") - text.count("}")
        if depth <= 0:
            return i + 1
    return len(lines)


def _yaml_line(text: str, loc: Loc) -> int | None:
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
    return line


def locate_line(text: str, loc: Loc, *, fmt: str) -> int | None:
    """Return the 1-based line of ``text`` that holds the value at ``loc``, or None.

    Args:
        text: The configuration file's text.
        loc: A pydantic error location: keys (str) and list indices (int).
        fmt: ``toml`` or ``yaml``.

    Returns:
        The line of the deepest part of ``loc`` found in the file (the parent's line for a
        missing key), or None when not even the first part is there.
    """
    return _yaml_line(text, loc) if fmt == "yaml" else _toml_line(text, loc)
