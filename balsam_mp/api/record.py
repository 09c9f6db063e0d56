"""What a queryset needs of the model class it reads: api/model.py's Model has all of it.

A Protocol, so that query.py (which model.py builds on) never imports model.py back.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import peewee

from balsam_mp.errors import NotFound


class Record(Protocol):
    _table: ClassVar[type[peewee.Model]]
    _filters: ClassVar[dict[str, tuple[Any, str]]]  # name -> (column, kind)
    _choices: ClassVar[dict[str, tuple[str, ...]]]  # kind -> allowed values
    _default_order: ClassVar[tuple[Any, ...]]
    DoesNotExist: ClassVar[type[NotFound]]
    MultipleObjectsReturned: ClassVar[type[NotFound]]

    @classmethod
    def _select(cls, *columns: Any) -> peewee.ModelSelect: ...

    @classmethod
    def _from_row(cls, row: dict[str, Any]) -> Any: ...

    @classmethod
    def _lookup(cls, name: str, op: str, value: Any) -> Any: ...

    @classmethod
    def _update(cls, query: Any, fields: dict[str, Any]) -> list[Any]: ...

    @classmethod
    def _delete(cls, query: Any) -> int: ...
