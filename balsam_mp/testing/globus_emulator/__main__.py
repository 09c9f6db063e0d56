"""python -m balsam_mp.testing.globus_emulator --endpoint UUID=DIR [...] [--port N]

Prints its base URL on the first line, then the environment lines to export, and runs
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import uuid
from pathlib import Path

from balsam_mp.testing.globus_emulator.control import GlobusEmulator
from balsam_mp.testing.globus_emulator.profiles import PROFILES, profile


def _endpoint(text: str) -> tuple[str, Path]:
    endpoint, sep, folder = text.partition("=")
    try:
        uuid.UUID(endpoint)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{endpoint!r} is not a UUID") from None
    if not sep or not Path(folder).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: expected UUID=EXISTING_DIR")
    return endpoint, Path(folder).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m balsam_mp.testing.globus_emulator")
    parser.add_argument("--endpoint", type=_endpoint, action="append", default=[],
                        help="UUID=DIR: an endpoint and the folder it serves (repeatable)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--accept-any-token", action="store_true",
                        help="accept any bearer token (for foreign clients like the globus CLI)")
    parser.add_argument("--client", action="append", default=[],
                        help="CLIENT_ID:SECRET accepted for client_credentials (repeatable)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="instant",
                        help="preset knobs ('realistic': Globus as its users see it); "
                        "the options below override it")
    parser.add_argument("--max-active", type=int, default=None, help="running tasks per user")
    parser.add_argument("--startup-delay", type=float, default=None, help="s per task")
    parser.add_argument("--file-overhead", type=float, default=None, help="s per file")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s per task")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s per user")
    parser.add_argument("--metadata-only", action="store_true",
                        help="BENCHMARKS ONLY: complete tasks without copying any file")
    parser.add_argument("--seed", type=int, default=None, help="seed for probabilistic faults")
    args = parser.parse_args()

    preset = profile(args.profile)
    knobs = preset.make_knobs(startup_delay=args.startup_delay, bandwidth=args.bandwidth,
                              max_active=args.max_active, file_overhead=args.file_overhead,
                              metadata_only=args.metadata_only or None)
    rate_limit = args.rate_limit if args.rate_limit is not None else preset.rate_limit
    emulator = GlobusEmulator(dict(args.endpoint), port=args.port, knobs=knobs,
                              accept_any_token=args.accept_any_token, seed=args.seed,
                              rate_limit=rate_limit)
    for pair in args.client:
        client_id, _, secret = pair.partition(":")
        emulator.emulator.clients[client_id] = secret
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator.start()
    print(emulator.base_url)
    for key, value in emulator.env.items():
        print(f"export {key}={value}")
    if args.metadata_only:
        print("# METADATA-ONLY MODE: tasks complete without copying files", file=sys.stderr)
    sys.stdout.flush()
    stop.wait()
    emulator.stop()


if __name__ == "__main__":
    main()
