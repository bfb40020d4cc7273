"""Run party_orgs as a process: ``python -m civitas.party_orgs``."""

from civitas.chassis.service import serve

from .bootstrap import run_party_orgs

if __name__ == "__main__":
    serve("party_orgs", run_party_orgs)
