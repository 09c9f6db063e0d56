"""Balsam/Django-style querysets over the API's models: `Job.objects.filter(state="READY")`.

Lookups: `field=value` (a list, tuple or set means `in`, as in Balsam), `field__in=`,
`__ne`, `__lt/__lte/__gt/__gte`, `__contains` (text), Balsam's `last_update_before=` /
`last_update_after=`, and `tags={"key": "value"}` (or Balsam's `["key:value"]`). Every
field and value is checked before any SQL runs: a typo is a ValidationError naming it.
"""

from __future__ import annotations

import datetime as dt
import operator
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import PurePath
from typing import Any, Generic, TypeVar

import peewee

from balsam_mp.api.record import Record
from balsam_mp.api.site import connect, database_error
from balsam_mp.api.tagfilter import check_utf8, tag_filter
from balsam_mp.db import bulk
from balsam_mp.errors import ValidationError
from balsam_mp.schemas import plain

T = TypeVar("T", bound=Record)

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "ne": operator.ne, "lt": operator.lt, "lte": operator.le,
    "gt": operator.gt, "gte": operator.ge,
}
_ALIASES = {"before": "lt", "after": "gt"}  # Balsam's last_update_before / _after


class NegativeIndexing(ValidationError, ValueError):
    """As in Django, querysets take no negative slices (a negative index is supported)."""


def guarded(call: Callable[[], Any]) -> Any:
    """Run a database call; a database error reaches the user as a BalsamError."""
    try:
        return call()
    except (peewee.PeeweeException, sqlite3.Error) as exc:
        raise database_error(exc) from None


class QuerySet(Generic[T]):
    """A lazy, chainable query; evaluation opens the site database if needed."""

    def __init__(self, model: type[T], where: tuple = (), order: tuple = (),
                 window: slice | None = None) -> None:
        self.model = model
        self._where = where
        self._order = order
        self._window = window

    def _clone(self, **changes: Any) -> QuerySet[T]:
        args = {"where": self._where, "order": self._order, "window": self._window, **changes}
        return type(self)(self.model, **args)

    def _unsliced(self, what: str) -> None:
        if self._window is not None:
            raise ValidationError(f"cannot {what} a queryset once a slice has been taken")

    def filter(self, **lookups: Any) -> QuerySet[T]:
        self._unsliced("filter")
        expressions = tuple(self._expression(key, value) for key, value in lookups.items())
        return self._clone(where=self._where + expressions)

    def all(self) -> QuerySet[T]:
        return self._clone()

    def order_by(self, *names: str) -> QuerySet[T]:
        order = []
        for name in names:
            if not isinstance(name, str):
                raise ValidationError(f"order_by: {name!r} is not a field name")
            column, kind = self._column(name.lstrip("-"))
            if kind == "tags":
                raise ValidationError(f"order_by: cannot order by {name.lstrip('-')!r}")
            order.append(column.desc() if name.startswith("-") else column.asc())
        return self._clone(order=tuple(order))

    def _query(self, *columns: Any) -> peewee.ModelSelect:
        query = self.model._select(*columns)
        if self._where:
            query = query.where(*self._where)
        query = query.order_by(*(self._order or self.model._default_order
                                 or (self.model._table.id.asc(),)))
        if self._window is not None:
            start = self._window.start or 0
            if self._window.stop is not None:
                query = query.limit(max(0, self._window.stop - start))
            query = query.offset(start)
        return query

    def __iter__(self) -> Iterator[T]:
        rows = guarded(lambda: list(self._query().dicts()))
        return iter([self.model._from_row(row) for row in rows])

    def __len__(self) -> int:
        return self.count()

    def __bool__(self) -> bool:
        return self.exists()

    def __repr__(self) -> str:
        return f"<{self.model.__name__} QuerySet>"

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            if index.step not in (None, 1):
                raise ValidationError("querysets take slices without a step")
            for bound in (index.start, index.stop):
                if bound is not None and (not isinstance(bound, int) or bound < 0):
                    raise NegativeIndexing("negative slicing is not supported")
            if self._window is not None:
                raise ValidationError("cannot slice a queryset twice")
            return self._clone(window=index)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValidationError(f"queryset index {index!r} is not an integer")
        if index < 0:  # counted from the end, like a list
            index += self.count()
            if index < 0:
                raise IndexError("queryset index out of range")
        base = self if self._window is None else self._clone(window=None)
        offset = (self._window.start or 0) if self._window is not None else 0
        if self._window is not None and self._window.stop is not None \
                and offset + index >= self._window.stop:
            raise IndexError("queryset index out of range")
        rows = list(base._clone(window=slice(offset + index, offset + index + 1)))
        if not rows:
            raise IndexError("queryset index out of range")
        return rows[0]

    def count(self) -> int:
        return guarded(lambda: self._query(self.model._table.id).count())

    def exists(self) -> bool:
        return self.count() > 0 if self._window is not None else guarded(
            lambda: self._query(self.model._table.id).exists())

    def first(self) -> T | None:
        rows = list(self[0:1]) if self._window is None else list(self)[:1]
        return rows[0] if rows else None

    def get(self, **lookups: Any) -> T:
        rows = list(self.filter(**lookups)[0:2])
        if not rows:
            raise self.model.DoesNotExist(
                f"no {self.model.__name__} matches {lookups or 'the query'}")
        if len(rows) > 1:
            raise self.model.MultipleObjectsReturned(
                f"more than one {self.model.__name__} matches {lookups or 'the query'}")
        return rows[0]

    def _ids(self) -> list[int]:
        return [row[0] for row in guarded(lambda: list(self._query(self.model._table.id)
                                                       .tuples()))]

    def update(self, **fields: Any) -> list[T]:
        """Write `fields` on every object of the query (see the model's rules)."""
        self._unsliced("update")
        return self.model._update(self, fields)

    def delete(self) -> int:
        """Delete every object of the query (see the model's rules); returns how many."""
        self._unsliced("delete")
        return self.model._delete(self)

    def _column(self, name: str) -> tuple[Any, str]:
        found = self.model._filters.get(name)
        if found is None:
            known = ", ".join(sorted(self.model._filters))
            raise ValidationError(f"{self.model.__name__} has no field {name!r} "
                                  f"to filter or order by (fields: {known})")
        return found

    def _expression(self, key: str, value: Any) -> peewee.Expression:
        name, _, op = key.partition("__")
        if not op and name.endswith(("_before", "_after")) and name not in self.model._filters:
            name, _, op = name.rpartition("_")
            op = _ALIASES[op]
        column, kind = self._column(name)
        special = self.model._lookup(name, op, value)
        if special is not None:
            return special
        if kind == "tags":
            if op:
                raise ValidationError(f"unknown lookup {key!r} ({name} takes {name}={{...}})")
            return tag_filter(name, column, value)
        if value is None and op in ("", "ne"):  # Django: field=None is IS NULL
            return column.is_null(op == "")
        if not op and isinstance(value, (list, tuple, set, frozenset)):
            op = "in"  # Balsam: state=["READY", "FAILED"]
        if not op:
            return column == self._value(key, kind, value)
        if op == "in":
            if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
                raise ValidationError(f"{key}: takes a list of values, not {value!r}")
            return column.in_([self._value(key, kind, v) for v in value])
        if op == "contains":
            if kind not in ("text", "path"):
                raise ValidationError(f"unknown lookup {key!r} (contains is for text fields)")
            text = self._value(key, kind, value)
            connect()  # the SQL differs by engine
            # LIKE would ignore case (Run1 != run1): instr on SQLite, strpos on PostgreSQL
            return peewee.Function(bulk.dialect().INSTR, (column, text)) > 0
        if op in _OPERATORS:
            return _OPERATORS[op](column, self._value(key, kind, value))
        raise ValidationError(f"unknown lookup {key!r} on {self.model.__name__} (lookups: "
                              "in, ne, lt, lte, gt, gte, contains)")

    def _value(self, key: str, kind: str, value: Any) -> Any:
        where = f"{self.model.__name__}.objects.filter({key}=...)"
        value = plain(value)  # JobState.failed -> "FAILED"
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"{where}: {value!r} is not an integer")
            if not -2**63 <= value < 2**63:
                raise ValidationError(f"{where}: {value} is beyond the database's integers")
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValidationError(f"{where}: {value!r} is not a number")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValidationError(f"{where}: {value!r} is not True or False")
            return value
        if kind == "time":
            if not isinstance(value, dt.datetime):
                raise ValidationError(f"{where}: {value!r} is not a datetime")
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        if kind == "path" and isinstance(value, PurePath):
            value = os.fspath(value)
        if not isinstance(value, str) or "\0" in value:
            raise ValidationError(f"{where}: {value!r} is not a string")
        check_utf8(where, value)
        choices = self.model._choices.get(kind)
        if choices is not None and value not in choices:
            raise ValidationError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        return value


class Manager(Generic[T]):
    """`Model.objects`: where querysets start."""

    def __init__(self, model: type[T]) -> None:
        self.model_class = model

    @property
    def model(self) -> type[peewee.Model]:
        """The peewee table (its `_meta.database.atomic()` opens a transaction)."""
        connect()
        return self.model_class._table

    def all(self) -> QuerySet[T]:
        return QuerySet(self.model_class)

    def filter(self, **lookups: Any) -> QuerySet[T]:
        return self.all().filter(**lookups)

    def get(self, **lookups: Any) -> T:
        return self.all().get(**lookups)

    def count(self) -> int:
        return self.all().count()

    def exists(self) -> bool:
        return self.all().exists()

    def first(self) -> T | None:
        return self.all().first()

    def order_by(self, *names: str) -> QuerySet[T]:
        return self.all().order_by(*names)
