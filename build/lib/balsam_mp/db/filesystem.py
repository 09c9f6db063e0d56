"""Refuse to put the site database on a network or parallel file system.

SQLite's WAL mode shares an mmap'd -shm file between processes and relies on POSIX
locks; on NFS, Lustre, GPFS and friends those are unreliable, and the database can be
corrupted silently. HPC home and project directories are usually such file systems, so
the check runs at `site start`, and `database_path` moves the database to local disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import psutil

from balsam_mp.errors import BalsamError

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb", "smb3", "smbfs", "ceph",
    "cephfs", "glusterfs", "panfs", "pvfs2", "orangefs", "afs", "9p", "fuse.sshfs",
    "fuse.glusterfs", "fuse.cephfs", "wekafs", "vastfs",
})


def filesystem_of(path: Path, partitions: Iterable | None = None) -> str | None:
    """The type of the file system holding `path` (the longest matching mount point)."""
    real = os.path.realpath(path)
    best, fstype = "", None
    for part in partitions if partitions is not None else psutil.disk_partitions(all=True):
        mount = part.mountpoint.rstrip("/") or "/"
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, part.fstype
    return fstype


def check_database_location(db_path: Path, settings_file: Path,
                            partitions: Iterable | None = None) -> None:
    fstype = filesystem_of(db_path.parent, partitions)
    if fstype in NETWORK_FILESYSTEMS:
        raise BalsamError(
            f"{db_path} is on a {fstype} file system, where SQLite's locking and WAL are "
            f"unreliable; set database_path in {settings_file} to a file on local disk "
            "(for example /tmp/<site>.db or node-local scratch) and run the site there"
        )
