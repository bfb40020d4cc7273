"""A process that exits at once with code 3 (``python -m tests.support.exits``): a
service that keeps crashing, for tests of restarts."""

raise SystemExit(3)
