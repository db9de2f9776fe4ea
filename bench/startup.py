"""Time ``manage.py check`` with the app installed and without it (run by hand, not a test).

::

    python bench/startup.py [--repeat 9]

Each variant runs in a fresh interpreter (``bench/startup_settings.py``), alternately, and the
medians are compared. On a shared machine, read the CPU figures. Part of a difference can be
one more full garbage collection (generation 2) that the app's few thousand extra objects
happen to trigger during the checks (about 90 ms on this machine under load); ``--no-gc``
runs both variants with the collector off to show the app's own cost. ``--importtime`` also
prints the app's modules imported at startup with their cumulative import time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


NO_GC = (
    "import gc, runpy, sys; gc.disable(); sys.argv = [sys.argv[1], 'check'];"
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run(
    with_app: bool, extra: list[str] | None = None, no_gc: bool = False
) -> tuple[float, float, str]:
    """Wall ms, CPU ms (user + system, of the child) and stderr of one ``manage.py check``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.startup_settings",
        "LLM_ACTIONS_BENCH_APP": "1" if with_app else "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
        "SANDBOX_DB": str(Path(tempfile.gettempdir()) / "llm-actions-startup.sqlite3"),
    }
    env.pop("DATABASE_URL", None)
    manage = str(ROOT / "sandbox" / "manage.py")
    if no_gc:
        cmd = [sys.executable, *(extra or []), "-c", NO_GC, manage]
    else:
        cmd = [sys.executable, *(extra or []), manage, "check"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu, out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--no-gc", action="store_true", help="garbage collector off in both")
    args = parser.parse_args()

    run(True), run(False)  # warm the OS file cache
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.repeat):
        for with_app in (True, False):
            wall, cpu, _err = run(with_app, no_gc=args.no_gc)
            results[with_app].append((wall, cpu))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (machine shared: CPU time is")
    print("the steadier figure; wall time includes waiting for a core)")
    for index, what in ((0, "wall"), (1, "CPU ")):
        a = statistics.median(r[index] for r in results[True])
        b = statistics.median(r[index] for r in results[False])
        low_a = min(r[index] for r in results[True])
        low_b = min(r[index] for r in results[False])
        print(
            f"manage.py check {what}: app installed {a:.0f} ms, not installed {b:.0f} ms "
            f"(medians of {args.repeat}): overhead {a - b:+.0f} ms; min-to-min "
            f"{low_a - low_b:+.0f} ms"
        )

    if args.importtime:
        _wall, _cpu, stderr = run(True, ["-X", "importtime"])
        rows = []
        for line in stderr.splitlines():
            if "wagtail_llm_actions" in line or "litellm" in line:
                fields = line.replace(":", "|", 1).split("|")
                cumulative, name = fields[2].strip(), fields[3].strip()
                rows.append((int(cumulative), name))
        for cumulative, name in sorted(rows, reverse=True)[:25]:
            print(f"  {cumulative / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
