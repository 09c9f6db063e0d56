"""What a job is made of (JobSpec) and the checks on its fields that need no site."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from balsam_mp.api.paths import shown
from balsam_mp.errors import ValidationError


@dataclass
class JobSpec:
    app: str
    workdir: str
    transfers: dict[str, str]
    tags: dict[str, str]
    parameters: dict[str, Any]


def check_tags(what: str, tags: Any) -> dict[str, str]:
    if not isinstance(tags, dict):
        raise ValidationError(f"{what}: must be a mapping of key: value, "
                              f"got {type(tags).__name__}")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(f"{what}: {key!r}: {value!r}: keys and values must be "
                                  "strings")
        for text in (key, value):
            if "\0" in text:
                raise ValidationError(f"{what}: {shown(text)} contains a NUL byte")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError(f"{what}: {shown(text)} is not valid UTF-8") from None
    return tags


def check_json(what: str, value: Any) -> None:
    """Plain JSON only: what comes back from the database is what went in."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{what}: key {key!r} must be a string")
            check_json(f"{what}.{key}", inner)
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            check_json(f"{what}[{n}]", inner)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{what}: {value!r} is not a JSON number")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValidationError(f"{what}: {type(value).__name__} is not JSON "
                              "(use strings, numbers, booleans, lists and dicts)")
    if isinstance(value, str):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{what}: {shown(value)} is not valid UTF-8") from None
