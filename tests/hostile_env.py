"""Real conditions of a shared login node for tests: another user, a full disk.

Root bypasses file permissions, so a permission case runs as `nobody`: in a forked child
that drops to its uid (this interpreter is already loaded: the child needs to read no
file of the venv, which may sit in root's home). A full disk is a small tmpfs that root
mounts. Without root both are skipped, saying why.
"""

from __future__ import annotations

import _strptime  # noqa: F401 - datetime imports it lazily; a child as nobody cannot
import contextlib
import io
import json
import os
import pwd
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import balsam_mp.cli as cli  # loaded before any fork: the child imports nothing

NOBODY = "nobody"


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        reason = f"{what} needs root (to switch to {NOBODY!r} or mount a tmpfs); " \
                 f"running as uid {os.geteuid()}"
        print(f"SKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


def nobody_ids() -> tuple[int, int]:
    need_root("a permission case")
    entry = pwd.getpwnam(NOBODY)
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def open_folder() -> Iterator[Path]:
    """A folder `nobody` may enter (pytest's tmp_path is root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="balsam-login-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def give_to_nobody(path: Path) -> None:
    uid, gid = nobody_ids()
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, uid, gid)


def as_user(call: Callable[[], object], uid: int, gid: int,
            groups: tuple[int, ...] = ()) -> tuple[object, str]:
    """Run `call` in a child with that uid: (its result or its exception's repr, the
    text it wrote to stderr)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(reader)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    result: object = call()
                except SystemExit as exc:
                    result = {"exit": exc.code}
                except BaseException as exc:  # noqa: BLE001 - reported to the parent
                    result = {"raised": type(exc).__name__, "message": str(exc)}
            os.write(writer, json.dumps([result, err.getvalue()], default=str).encode())
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"child as uid {uid} failed: status {status}"
    result, err = json.loads(data)
    return result, err


def balsam_as_nobody(*args: str) -> tuple[int, str]:
    """`balsam ARGS` as nobody: (exit code, stderr)."""
    uid, gid = nobody_ids()

    def run() -> object:
        cli.main(list(args), prog_name="balsam")
        return {"exit": 0}
    result, err = as_user(run, uid, gid)
    assert isinstance(result, dict) and "exit" in result, f"not an exit: {result} {err}"
    return int(result["exit"] or 0), err


@contextlib.contextmanager
def small_tmpfs(size: str = "1m") -> Iterator[Path]:
    """A tmpfs of `size`, mounted on a fresh folder for this test."""
    need_root("a full disk")
    folder = Path(tempfile.mkdtemp(prefix="balsam-full-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        folder.rmdir()
        reason = f"cannot mount a tmpfs: {mounted.stderr.strip()}"
        print(f"SKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def fill(folder: Path) -> None:
    """Take every free byte of the file system holding `folder`."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        for size in (65536, 512, 1):  # big steps first, then the last bytes
            with contextlib.suppress(OSError):
                while filler.write(b"\0" * size):
                    pass
