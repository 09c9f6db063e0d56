"""Django-style managers over the peewee models: `Model.objects.filter(state="active")`.

Lookups: `field=value`, `field__in=[...]`, `field__ne|lt|lte|gt|gte=value`, `job_id=`
(any foreign key by its `_id` name), and `tags={"key": "value"}` (all pairs must match).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import peewee

from balsam_mp.db import bulk
from balsam_mp.errors import NotFound, ValidationError

M = TypeVar("M", bound=peewee.Model)

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "ne": operator.ne, "lt": operator.lt, "lte": operator.le,
    "gt": operator.gt, "gte": operator.ge,
}


class QuerySet(Generic[M]):
    """A lazy, chainable query; evaluation opens the site database if needed."""

    def __init__(self, model: type[M], connect: Callable[[], object],
                 where: tuple = (), order: tuple = (), window: slice | None = None) -> None:
        self._model = model
        self._connect = connect
        self._where = where
        self._order = order
        self._window = window

    def _clone(self, **changes: Any) -> QuerySet[M]:
        args = {"where": self._where, "order": self._order, "window": self._window, **changes}
        return QuerySet(self._model, self._connect, **args)

    def filter(self, **lookups: Any) -> QuerySet[M]:
        expressions = tuple(self._expression(key, value) for key, value in lookups.items())
        return self._clone(where=self._where + expressions)

    def order_by(self, *names: str) -> QuerySet[M]:
        order = []
        for name in names:
            field = self._field(name.lstrip("-"))
            order.append(field.desc() if name.startswith("-") else field.asc())
        return self._clone(order=tuple(order))

    def _query(self) -> peewee.ModelSelect:
        self._connect()
        query = self._model.select()
        if self._where:
            query = query.where(*self._where)
        query = query.order_by(*(self._order or (self._model._meta.primary_key.asc(),)))
        if self._window is not None:
            start = self._window.start or 0
            if self._window.stop is not None:
                query = query.limit(max(0, self._window.stop - start))
            query = query.offset(start)
        return query

    def __iter__(self) -> Iterator[M]:
        return iter(list(self._query()))

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            if index.step not in (None, 1) or (index.start or 0) < 0 or (
                index.stop is not None and index.stop < 0
            ):
                raise ValidationError("querysets take non-negative slices without a step")
            return self._clone(window=index)
        rows = list(self._clone(window=slice(index, index + 1)))
        if not rows:
            raise IndexError(index)
        return rows[0]

    def count(self) -> int:
        return self._query().count()

    def first(self) -> M | None:
        rows = list(self[0:1])
        return rows[0] if rows else None

    def get(self, **lookups: Any) -> M:
        rows = list(self.filter(**lookups)[0:2])
        if len(rows) != 1:
            found = "no" if not rows else "more than one"
            raise NotFound(f"{found} {self._model.__name__} matches {lookups or 'the query'}")
        return rows[0]

    def _field(self, name: str) -> peewee.Field:
        fields = self._model._meta.fields
        if name in fields:
            return fields[name]
        if name.endswith("_id") and isinstance(fields.get(name[:-3]), peewee.ForeignKeyField):
            return fields[name[:-3]]
        raise ValidationError(f"{self._model.__name__} has no field {name!r}")

    def _expression(self, key: str, value: Any) -> peewee.Expression:
        name, _, op = key.partition("__")
        field = self._field(name)
        if name == "tags" and not op:
            if not isinstance(value, dict):
                raise ValidationError("tags= takes a mapping of key: value")
            self._connect()  # the SQL differs by engine
            # json_each, not a JSON path: a key may hold '"', '.' or '[' (a path cannot)
            head, tail = bulk.dialect().JSON_PAIR
            clauses = [peewee.NodeList((peewee.SQL(head), field, peewee.SQL(tail, (k, v))))
                       for k, v in value.items()]
            return functools.reduce(operator.and_, clauses) if clauses else peewee.SQL("1 = 1")
        if not op:
            return field == value
        if op == "in":
            return field.in_(list(value))
        if op in _OPERATORS:
            return _OPERATORS[op](field, value)
        raise ValidationError(f"unknown lookup {key!r}")


class Manager(Generic[M]):
    def __init__(self, model: type[M], connect: Callable[[], object]) -> None:
        self.model = model
        self._connect = connect

    def all(self) -> QuerySet[M]:
        return QuerySet(self.model, self._connect)

    def filter(self, **lookups: Any) -> QuerySet[M]:
        return self.all().filter(**lookups)

    def get(self, **lookups: Any) -> M:
        return self.all().get(**lookups)

    def count(self) -> int:
        return self.all().count()

    def first(self) -> M | None:
        return self.all().first()

    def order_by(self, *names: str) -> QuerySet[M]:
        return self.all().order_by(*names)
