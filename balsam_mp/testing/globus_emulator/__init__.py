"""A Globus Transfer and Auth emulator: a real HTTP server on 127.0.0.1.

The unmodified globus-sdk (and the globus CLI) talk to it when pointed at it with
GLOBUS_SDK_SERVICE_URL_TRANSFER / GLOBUS_SDK_SERVICE_URL_AUTH. Endpoints map to folders;
tasks really copy files. Start it in-process (`GlobusEmulator`), as a subprocess
(`EmulatorProcess`), or from the shell (`python -m balsam_mp.testing.globus_emulator`).
"""

from balsam_mp.testing.globus_emulator.control import (
    EmulatorControl,
    EmulatorProcess,
    GlobusEmulator,
)
from balsam_mp.testing.globus_emulator.knobs import Knobs

__all__ = ["EmulatorControl", "EmulatorProcess", "GlobusEmulator", "Knobs"]
