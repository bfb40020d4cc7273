"""Run volunteers as a process: ``python -m civitas.volunteers``."""

from civitas.chassis.service import serve

from .bootstrap import run_volunteers

if __name__ == "__main__":
    serve("volunteers", run_volunteers)
