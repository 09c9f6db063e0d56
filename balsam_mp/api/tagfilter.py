"""Filters on text a user types: tags={"k": "v"} (any key), and UTF-8 checks."""

from __future__ import annotations

import functools
import operator
from typing import Any

import peewee

from balsam_mp.api.jobspec import tag_text
from balsam_mp.api.site import connect
from balsam_mp.db import bulk
from balsam_mp.errors import ValidationError


def check_utf8(where: str, text: str) -> None:
    """A str the database cannot store (lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{where}: {text!r} is not valid UTF-8") from None


def tag_filter(name: str, column: Any, value: Any) -> peewee.Expression:
    """{"k": "v"} or Balsam's ["k:v", ...]: every pair must match."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        pairs = {}
        for entry in value:
            key, sep, wanted = entry.partition(":") if isinstance(entry, str) else ("", "", "")
            if not sep:
                raise ValidationError(f"{name}=: {entry!r} is not 'key:value'")
            pairs[key] = wanted
        value = pairs
    if not isinstance(value, dict):
        raise ValidationError(f"{name}= takes a mapping of key: value strings, not {value!r}")
    value = {tag_text(f"{name}=", k): tag_text(f"{name}=", v) for k, v in value.items()}
    connect()  # the SQL differs by engine
    # json_each, not a JSON path: any key matches, quotes and dots included
    head, tail = bulk.dialect().JSON_PAIR
    clauses = [peewee.NodeList((peewee.SQL(head), column, peewee.SQL(tail, (k, v))), glue="")
               for k, v in value.items()]
    return functools.reduce(operator.and_, clauses) if clauses else peewee.SQL("1 = 1")
