"""Run insights as a process: ``python -m civitas.insights``."""

from civitas.chassis.service import serve

from .bootstrap import run_insights

if __name__ == "__main__":
    serve("insights", run_insights)
