"""What every API object shares: built from a row, remembers what it was read as.

Users never hold a bare database row. An object knows the values it was read with
(`_loaded`), so `save()` writes only what the caller changed and a stale object never
overwrites what the site wrote meanwhile. Models other than Job are read-only: their
rows are written by the site (`balsam transfer retry|cancel` change items and tasks,
`App.sync()` / `balsam app sync` change apps).
"""

from __future__ import annotations

from typing import Any, ClassVar

import peewee

from balsam_mp.api.query import Manager, QuerySet, guarded
from balsam_mp.api.site import connect
from balsam_mp.errors import NotFound, ValidationError


class MultipleObjectsReturned(NotFound):
    """`.get()` matched more than one object."""


def _snapshot(value: Any) -> Any:
    """A copy that in-place edits of `value` do not reach. Values come from JSON, or are
    immutable (str, numbers, paths, datetimes): much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {key: _snapshot(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_snapshot(item) for item in value]
    return value


class Model:
    _table: ClassVar[type[peewee.Model]]
    _filters: ClassVar[dict[str, tuple[Any, str]]] = {}  # name -> (column, kind)
    _choices: ClassVar[dict[str, tuple[str, ...]]] = {}  # kind -> allowed values
    _tracked: ClassVar[tuple[str, ...]] = ()  # attributes save() compares
    _read_only_hint: ClassVar[str] = ""
    _default_order: ClassVar[tuple[Any, ...]] = ()  # else by id
    _manager: ClassVar[type[Manager[Any]]] = Manager
    objects: ClassVar[Manager[Any]]
    DoesNotExist: ClassVar[type[NotFound]]
    MultipleObjectsReturned: ClassVar[type[NotFound]]

    id: int | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        cls.DoesNotExist = type("DoesNotExist", (NotFound,), {
            "__module__": cls.__module__, "__qualname__": f"{name}.DoesNotExist",
            "__doc__": f"No {name} matches the query."})
        cls.MultipleObjectsReturned = type("MultipleObjectsReturned", (MultipleObjectsReturned,), {
            "__module__": cls.__module__, "__qualname__": f"{name}.MultipleObjectsReturned",
            "__doc__": f"More than one {name} matches the query."})
        cls.objects = cls._manager(cls)

    # --- reading ---------------------------------------------------------------------

    @classmethod
    def _select(cls, *columns: Any) -> peewee.ModelSelect:
        connect()
        return cls._table.select(*columns)

    @classmethod
    def _from_row(cls, row: dict[str, Any]) -> Any:
        obj = cls.__new__(cls)
        obj._load(row)
        return obj

    def _load(self, row: dict[str, Any]) -> None:
        for name, value in self._convert(row).items():
            setattr(self, name, value)
        self._loaded = {name: _snapshot(getattr(self, name)) for name in self._tracked}

    @classmethod
    def _convert(cls, row: dict[str, Any]) -> dict[str, Any]:
        return dict(row)

    @classmethod
    def _lookup(cls, name: str, op: str, value: Any) -> Any:
        """A model's own SQL for a lookup, or None for the generic one."""
        return None

    def _same_row(self) -> Any:
        """The row this object was read from (a model whose ids can be reused after a
        delete adds what tells the new row from the old)."""
        return self._table.id == self.id

    def _changed(self) -> list[str]:
        loaded = getattr(self, "_loaded", {})
        return [name for name in self._tracked if name in loaded and
                getattr(self, name, None) != loaded[name]]

    def refresh_from_db(self) -> None:
        """Re-read this object from the database (changes not saved are dropped)."""
        if self.id is None:
            raise ValidationError(f"{type(self).__name__} is not saved yet: nothing to refresh")
        row = guarded(lambda: self._select().where(self._same_row()).dicts().first())
        if row is None:
            raise self.DoesNotExist(f"{type(self).__name__} {self.id} no longer exists")
        self._load(row)

    # --- writing: read-only unless a model says otherwise ------------------------------

    def save(self) -> None:
        changed = self._changed()
        if changed:
            raise ValidationError(
                f"{type(self).__name__} {self.id}: {', '.join(changed)} cannot be changed "
                f"from the API; {self._read_only_hint}")

    def delete(self) -> None:
        raise ValidationError(f"{type(self).__name__} objects cannot be deleted from the API; "
                              f"{self._read_only_hint}")

    @classmethod
    def _update(cls, query: QuerySet[Any], fields: dict[str, Any]) -> list[Any]:
        raise ValidationError(f"{cls.__name__} objects cannot be updated from the API; "
                              f"{cls._read_only_hint}")

    @classmethod
    def _delete(cls, query: QuerySet[Any]) -> int:
        raise ValidationError(f"{cls.__name__} objects cannot be deleted from the API; "
                              f"{cls._read_only_hint}")

    # --- identity ----------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or self.id is None:
            return other is self
        return self.id == other.id  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id)) if self.id is not None else id(self)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name, None)!r}"
                          for name in ("id", *self._repr_fields))
        return f"{type(self).__name__}({shown})"

    _repr_fields: ClassVar[tuple[str, ...]] = ()
