"""What a site made by an earlier balsam_mp still carries that this one would not write.

A site's settings.yml is copied from the template once, at `site init`; a later
default does not reach it. Where the old default could silently keep wrong data,
`site status` says so under ACTION REQUIRED, but only while the old template's own
line is there: a value the user chose is the user's.
"""

from __future__ import annotations

from pathlib import Path

# the line the template wrote before sync_level's default became checksum
OLD_SYNC_LEVEL = ("sync_level: size                  # skip files already there: "
                  "exists|size|mtime|checksum|null")


def notes(settings_file: Path) -> list[str]:
    try:
        text = settings_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []  # an unreadable file has its own message
    if OLD_SYNC_LEVEL not in text:
        return []
    return [f"{settings_file} still has the old template's `sync_level: size`, which keeps a "
            "destination file of the same size whatever its content (a new job's input on a "
            "reused workdir, a rerun's result): set `sync_level: checksum` (the default now) "
            "and run `balsam site sync`"]
