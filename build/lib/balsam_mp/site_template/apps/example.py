"""An example app: one input file staged in, one result staged out."""

from balsam_mp.api import ApplicationDefinition


class MySim(ApplicationDefinition):
    """Reads input.dat, writes output.dat."""

    transfers = {
        "input_file": {
            "required": True,
            "direction": "in",
            "local_path": "input.dat",
            "description": "The simulation input",
            "recursive": False,
        },
        "result": {
            "required": False,
            "direction": "out",
            "local_path": "output.dat",
            "description": "The simulation output",
            "recursive": False,
        },
    }
