"""Run cases as a process: ``python -m civitas.cases``."""

from civitas.chassis.service import serve

from .bootstrap import run_cases

if __name__ == "__main__":
    serve("cases", run_cases)
