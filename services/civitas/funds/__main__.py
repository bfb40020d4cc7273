"""Run funds as a process: ``python -m civitas.funds``."""

from civitas.chassis.service import serve

from .bootstrap import run_funds

if __name__ == "__main__":
    serve("funds", run_funds)
