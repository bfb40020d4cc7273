"""party_orgs under cProfile, for ``BENCH_GRPC_PROFILE=1 python -m benchmarks.grpc_commands``.

Runs party_orgs as ``python -m civitas.party_orgs`` does (same settings from the environment),
with every thread profiled from SIGUSR1 on (the benchmark sends it once its setup
is done, so the profile holds only the measured commands). On exit (SIGTERM) it
writes ``main.pstats`` (the event-loop thread) and ``threads.pstats`` (every other
thread: the SQLite writer, the reader pool, ``to_thread`` workers) into the
directory given as the first argument.
"""

from __future__ import annotations

import cProfile
import pstats
import signal
import sys
import threading
from pathlib import Path
from typing import Any

_active = threading.Event()
_profiles: list[tuple[str, cProfile.Profile]] = []
_lock = threading.Lock()


def _thread_hook(*_: Any) -> None:
    """Installed in every new thread; enables that thread's profiler once profiling is on."""
    if not _active.is_set():
        return
    profile = cProfile.Profile()
    with _lock:
        _profiles.append((threading.current_thread().name, profile))
    profile.enable()  # replaces this hook for the thread


def main() -> None:
    out = Path(sys.argv[1])
    threading.setprofile(_thread_hook)
    main_profile = cProfile.Profile()

    def start(*_: Any) -> None:
        _active.set()
        main_profile.enable()

    signal.signal(signal.SIGUSR1, start)
    from civitas.chassis.service import serve
    from civitas.party_orgs.bootstrap import run_party_orgs

    try:
        serve("party_orgs", run_party_orgs)
    finally:
        main_profile.disable()
        threading.setprofile(None)
        main_profile.dump_stats(out / "main.pstats")
        with _lock:
            others = list(_profiles)
        if others:
            stats = pstats.Stats(others[0][1])
            for _, profile in others[1:]:
                stats.add(profile)
            stats.dump_stats(out / "threads.pstats")
        names = sorted({name.rsplit("_", 1)[0] for name, _ in others})
        (out / "threads.txt").write_text("\n".join(names) + "\n")


if __name__ == "__main__":
    main()
