"""Reading a YAML file a user wrote: strict (a key given twice is an error), and every
mistake one SettingsError line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from balsam_mp.errors import SettingsError, one_line


class _DuplicateKey(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_line:
                    raise _DuplicateKey(f"line {key_node.start_mark.line + 1}: key {key!r} "
                                        f"is given twice (first on line {first_line[key]})")
                first_line[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the base class reports it
                pass
        return super().construct_mapping(node, deep)


def read_yaml(file: Path) -> Any:
    """The parsed file, or a SettingsError naming the file and what is wrong with it."""
    try:
        return yaml.load(file.read_bytes().decode("utf-8"), Loader=_StrictLoader)
    except _DuplicateKey as exc:
        raise SettingsError(f"{file}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{file}: malformed YAML: {_one_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SettingsError(f"{file}: cannot read: {exc.strerror}") from None


def _one_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        context = f" ({exc.context})" if getattr(exc, "context", None) else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{context}"
    return one_line(exc)
