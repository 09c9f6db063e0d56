"""What the poller learns of a task, and what closing it did, as the database takes
them: texts made safe for it on the way in."""

from __future__ import annotations

from dataclasses import dataclass


def safe_text(text: str | None) -> str | None:
    """Text fit for the database: a file name that is not UTF-8 (decoded by Python with
    lone surrogates, which SQLite refuses) shows its raw bytes escaped, e.g. 'bad\\xff'."""
    if text is None or text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes the name really has
    except UnicodeEncodeError:  # a lone surrogate from elsewhere (e.g. JSON '\\ud800')
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Progress:
    """What the poller learned about one task (the backend's TaskStatus, trimmed).
    Its texts, like a Failure's, are made safe for the database on the way in."""

    status: str
    nice_status: str | None
    files_transferred: int
    bytes_transferred: int
    bytes_per_second: float
    fatal_code: str | None = None
    fatal_error: str | None = None
    fault: str | None = None  # the fault an ACTIVE task keeps retrying, if any

    def __post_init__(self) -> None:
        for name in ("nice_status", "fatal_code", "fatal_error", "fault"):
            object.__setattr__(self, name, safe_text(getattr(self, name)))


@dataclass(frozen=True)
class Failure:
    item_id: int
    code: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", safe_text(self.code))
        object.__setattr__(self, "reason", safe_text(self.reason))


@dataclass(frozen=True)
class Finished:
    """What closing a task did to its items."""

    done: int = 0
    failed: int = 0
    halves: tuple[int, ...] = ()  # sizes of the halves a failed batch was split into
    split_round: int = 0  # the round those halves belong to (1 = the first split)
    skipped: tuple[int, ...] = ()  # jobs to advance later: another session held them
    direction: str = "in"
    resent: int = 0  # stage-outs that carried an earlier run's result: they go out again
    deferred: bool = False  # nothing written: another session held a job (next pass)


def describe(progress: Progress) -> str | None:
    if progress.fatal_code is None:
        return None
    return f"{progress.fatal_code}: {progress.fatal_error or ''}".rstrip(": ")
