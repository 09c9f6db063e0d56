"""Every error the product raises on purpose derives from BalsamError.

The CLI maps a BalsamError to one line on stderr and exit code 1; anything else is a bug
and keeps its traceback.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (a driver adds query lines and hints), or its
    type's name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def one_line(exc: BaseException) -> str:
    """An error's whole multi-line message (a driver's hints) as one line."""
    return " ".join(str(exc).split())


class BalsamError(Exception):
    """A user-facing error: its message says what is wrong and where."""


class SettingsError(BalsamError):
    """settings.yml is unreadable or invalid."""


class SiteNotFound(BalsamError):
    """No site directory could be located."""


class ValidationError(BalsamError):
    """Input (a job, an app, a transfer spec) was rejected before anything was written."""


class NotFound(BalsamError):
    """A looked-up object does not exist."""


class ForkSafetyError(BalsamError):
    """A database connection was opened or used across a fork."""


class StateConflict(BalsamError):
    """A compare-and-set found the row in another state than expected."""


class DatabaseFailure(BalsamError):
    """The site database or its disk failed: unreadable, corrupt, missing, read-only, full.
    The message names the file and the cause."""


class DatabaseUnreachable(BalsamError):
    """The PostgreSQL server refused or dropped the connection (down, restarting, no slot
    left): a state that passes, unlike a bad setting."""


class DiskFull(DatabaseFailure):
    """No space (or no quota) left where the site database is written."""
