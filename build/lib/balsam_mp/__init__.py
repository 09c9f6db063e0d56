"""balsam_mp: a site service that stages the files of many HPC jobs in and out."""

__version__ = "0.1.0"
