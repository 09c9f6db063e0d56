"""What a job is made of (JobSpec) and the checks on its fields that need no site."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from balsam_mp.api.paths import shown
from balsam_mp.errors import ValidationError
from balsam_mp.schemas import plain


@dataclass
class JobSpec:
    app: str
    workdir: str
    transfers: dict[str, str]
    tags: dict[str, str]
    parameters: dict[str, Any]


def tag_text(what: str, value: Any) -> str:
    """A tag key or value as Balsam's client stores it: numbers and booleans become
    their str (1 -> "1", True -> "True"); anything else but a str is refused."""
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{what}: {value!r} is not a number a tag can hold")
    if isinstance(value, (bool, int, float)):
        return str(value)
    if not isinstance(value, str):
        raise ValidationError(f"{what}: {value!r}: tag keys and values must be strings "
                              "(numbers and booleans become their string)")
    if "\0" in value:
        raise ValidationError(f"{what}: {shown(value)} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what}: {shown(value)} is not valid UTF-8") from None
    return value


def check_tags(what: str, tags: Any) -> dict[str, str]:
    """Tags as stored: str -> str (see tag_text). Two keys that become the same
    string (1 and "1") are refused."""
    if not isinstance(tags, dict):
        raise ValidationError(f"{what}: must be a mapping of key: value, "
                              f"got {type(tags).__name__}")
    out: dict[str, str] = {}
    for key, value in tags.items():
        text = tag_text(what, key)
        if text in out:
            raise ValidationError(f"{what}: key {key!r} is given twice (as {text!r})")
        out[text] = tag_text(f"{what}: {text!r}", value)
    return out


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
