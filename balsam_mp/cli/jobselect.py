"""What `balsam job` commands share: KEY=VALUE pairs, apps by id or name, job
selections (ids, tags, states), and Balsam's launcher options (accepted, ignored)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from balsam_mp import api
from balsam_mp.cli.common import MAX_ID
from balsam_mp.errors import NotFound, ValidationError
from balsam_mp.states import JOB_STATES


def pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE options as a dict; a key given twice is refused (a typo, most likely)."""
    found: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise ValidationError(f"{option} {value!r}: expected KEY=VALUE")
        if key in found:
            raise ValidationError(f"{option} {key}= is given twice ({found[key]!r} and "
                                  f"{rest!r}); give each once")
        found[key] = rest
    return found


class JobStateName(click.ParamType):
    """A job state's name, as Balsam's JobState spells it."""

    name = "state"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        if value not in JOB_STATES:
            self.fail(f"{value!r} is not a job state ({', '.join(JOB_STATES)})", param, ctx)
        return value


class UnknownApp(ValidationError):
    """No app of the site has the id or name given."""


def find_app(value: str) -> tuple[int, str]:
    """(id, name) of the app named by `value`: its id, its name, or Balsam's
    module.ClassName (the file in SITE/apps/ and the class)."""
    apps = list(api.App.objects.order_by("name"))
    number = int(value) if value.isdigit() else None  # as Balsam: digits are an id
    for app in apps:
        if app.id == number or (number is None and value in (app.name, app.class_path)):
            return app.id, app.name
    known = ", ".join(f"{a.id} {a.name} ({a.class_path})" for a in apps) or \
        "none; run `balsam app sync`"
    raise UnknownApp(f"--app: unknown app {value!r}: no app has that id or name "
                          f"(apps: {known})")


def parse_ids(option: str, values: tuple[str, ...]) -> list[int]:
    ids = []
    for value in values:
        if not value.isdigit() or not 0 < int(value) <= MAX_ID:
            raise ValidationError(f"{option} {value!r} is not an id (a whole number from 1 "
                                  f"to {MAX_ID})")
        ids.append(int(value))
    return list(dict.fromkeys(ids))


def select_jobs(ids: list[int], tags: dict[str, str], state: str | None = None,
                exclude_state: str | None = None) -> api.QuerySet:
    """The jobs matching every selector given; each id given must exist."""
    query = api.Job.objects.all()
    if ids:
        found = {job.id for job in query.filter(id=ids)}
        missing = [str(i) for i in ids if i not in found]
        if missing:
            raise NotFound(f"no job with id {', '.join(missing)}")
        query = query.filter(id=ids)
    if tags:
        query = query.filter(tags=tags)
    if state:
        query = query.filter(state=state)
    if exclude_state:
        query = query.filter(state__ne=exclude_state)
    return query


class WallTime(click.ParamType):
    """Balsam's -t/--wall-time-min; `-t SLOT=...` is this site's old transfer flag."""

    name = "minutes"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        text = str(value)
        if "=" in text:
            self.fail(f"{text!r}: -t is Balsam's wall time in minutes; give a transfer "
                      "with -s/--stage-data (or --transfer) SLOT=ALIAS:/path", param, ctx)
        return click.INT.convert(value, param, ctx)


# Balsam's launcher options: accepted, so Balsam's command lines run, and named in one
# warning (this site stages files and runs no apps, so they cannot change anything)
LAUNCHER_OPTIONS = [
    (("-n", "--num-nodes"), {"type": int}),
    (("-rpn", "--ranks-per-node"), {"type": int}),
    (("-tpr", "--threads-per-rank"), {"type": int}),
    (("-tpc", "--threads-per-core"), {"type": int}),
    (("-g", "--gpus-per-rank"), {"type": float}),
    (("-npc", "--node-packing-count"), {"type": int}),
    (("-lp", "--launch-param"), {"multiple": True, "metavar": "NAME=VALUE"}),
    (("-t", "--wall-time-min"), {"type": WallTime()}),
    (("-pid", "--parent-id"), {"type": int, "multiple": True}),
]


def launcher_options(command: Callable) -> Callable:
    for flags, extra in reversed(LAUNCHER_OPTIONS):
        command = click.option(*flags, f"launcher_{flags[1][2:].replace('-', '_')}",
                               default=None, help="Balsam's launcher option: ignored here "
                               "(this site runs no apps).", **extra)(command)
    return command


def check_launcher(given: dict[str, Any]) -> None:
    """What Balsam would refuse is refused here too, before anything is written."""
    pairs("-lp", given.get("launcher_launch_param") or ())


def warn_launcher(given: dict[str, Any]) -> None:
    """One line on stderr naming the launcher options given (output stays parseable)."""
    flags = {f"launcher_{flags[1][2:].replace('-', '_')}": flags[0]
             for flags, _ in LAUNCHER_OPTIONS}
    used = [flags[name] for name, value in given.items()
            if name in flags and value not in (None, ())]
    if used:
        click.echo(f"warning: {', '.join(used)} ignored: this site stages files and runs no "
                   "apps (Balsam's launcher options have no effect here)", err=True)
