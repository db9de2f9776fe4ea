"""Time ``manage.py check`` with the app installed and without it (run by hand, not a test).

::

    python bench/startup.py [--repeat 21] [--importtime] [--no-gc]

Each variant runs in a fresh interpreter (``bench/startup_settings.py``), in pairs whose order
alternates (installed first, then not first), so a drift in load hits both alike. Per variant
it prints the median and the minimum of:

* wall time,
* CPU time of the child (user + system, ``getrusage`` of children): on a shared machine the
  steadier figure,
* CPU time spent in the garbage collector (``gc.callbacks``) and how many full (generation 2)
  collections ran: one more full collection costs tens of ms whatever caused it,
* and, exact and free of noise, the modules imported and the memory blocks allocated.

The overhead is the median of the per-pair differences (robust against drift) and the
difference of the minima. Bytecode: a deployed app is installed with its ``.pyc`` files, and
the venv's packages have theirs, so the children write and reuse bytecode (in a cache
directory under the temporary directory, ``PYTHONPYCACHEPREFIX``), even when the shell sets
``PYTHONDONTWRITEBYTECODE``; otherwise the app's modules would be compiled from source on every
run and the bench would measure the compiler. ``--no-gc`` runs both with the collector off.
``--importtime`` also prints the app's modules imported at startup (``-X importtime``, self
time). Last, two untimed runs count the objects the collector tracks and how many more could be
allocated before the next full collection: when that margin is smaller than what the app
adds, the app's startup includes one full collection that the site without it would run a few
requests later (a threshold, not a cost of the app alone; see the README). ``--markdown`` prints the
table as Markdown for a note.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Runs ``manage.py check`` in the child and reports what it cost, on the last stderr line.
CHILD = """
import gc, json, os, runpy, sys, time
no_gc = sys.argv.pop(1) == '1'
if no_gc:
    gc.disable()
gc_time = [0.0, 0]
def _gc(phase, info, _t=[0.0]):
    if phase == 'start':
        _t[0] = time.process_time()
    else:
        gc_time[0] += time.process_time() - _t[0]
        gc_time[1] += info['generation'] == 2
gc.callbacks.append(_gc)
sys.argv = [sys.argv[1], 'check']
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
finally:
    margin = None
    if os.environ.get('LLM_BENCH_MARGIN') == '1':  # untimed diagnostic run
        tracked, full, keep = len(gc.get_objects()), gc_time[1], []
        while gc_time[1] == full and len(keep) < 1_000_000:
            keep.append([])
        margin = len(keep)
    print(json.dumps({
        'margin': margin, 'tracked': tracked if margin is not None else None,
        'gc_ms': gc_time[0] * 1000, 'full_gcs': gc_time[1],
        'modules': len(sys.modules),
        'app_modules': sorted(m for m in sys.modules if m.startswith('wagtail_llm_actions')
                              and type(sys.modules[m]).__name__ == 'module'),
        'blocks': sys.getallocatedblocks(),
    }), file=sys.stderr)
"""


def child_env(with_app: bool, pycache: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.startup_settings",
        "LLM_ACTIONS_BENCH_APP": "1" if with_app else "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
        "SANDBOX_DB": str(Path(tempfile.gettempdir()) / "llm-actions-startup.sqlite3"),
        "PYTHONPYCACHEPREFIX": pycache,
    }
    env.pop("DATABASE_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run(
    with_app: bool,
    pycache: str,
    extra: list[str] | None = None,
    no_gc: bool = False,
    margin: bool = False,
) -> tuple[dict, str]:
    """One ``manage.py check``: wall ms, CPU ms (of the child) and what the child reported."""
    manage = str(ROOT / "sandbox" / "manage.py")
    cmd = [sys.executable, *(extra or []), "-c", CHILD, "1" if no_gc else "0", manage]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {**child_env(with_app, pycache), "LLM_BENCH_MARGIN": "1" if margin else "0"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    report = json.loads(out.stderr.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, **report}, out.stderr


def importtime(pycache: str) -> None:
    """The app's modules imported by ``manage.py check``, by self time."""
    _report, stderr = run(True, pycache, ["-X", "importtime"])
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "wagtail_llm_actions" in line:
            fields = line[len("import time:") :].split("|")
            rows.append((int(fields[0]), int(fields[1]), fields[2].strip()))
    print(f"\nApp modules imported by manage.py check (-X importtime, {len(rows)} modules):")
    for own, cumulative, name in sorted(rows, reverse=True):
        print(f"  {own / 1000:7.1f} ms self {cumulative / 1000:8.1f} ms cumulative  {name}")
    print(f"  {sum(r[0] for r in rows) / 1000:7.1f} ms self in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="pairs of runs (default 21)")
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--no-gc", action="store_true", help="garbage collector off in both")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    pycache = str(Path(tempfile.gettempdir()) / "llm-actions-startup-pycache")
    for _ in range(2):  # write the bytecode and warm the OS file cache
        run(True, pycache), run(False, pycache)
    load_start = os.getloadavg()[0]
    results: dict[bool, list[dict]] = {True: [], False: []}
    for n in range(args.repeat):
        order = (True, False) if n % 2 == 0 else (False, True)
        for with_app in order:
            report, _err = run(with_app, pycache, no_gc=args.no_gc)
            results[with_app].append(report)
    load_end = os.getloadavg()[0]

    def med(with_app: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[with_app])

    def low(with_app: bool, key: str) -> float:
        return min(r[key] for r in results[with_app])

    def paired(key: str) -> float:
        return statistics.median(
            a[key] - b[key] for a, b in zip(results[True], results[False], strict=True)
        )

    def row(label: str, key: str, unit: str = "", scale: float = 1, minimum: bool = False):
        if minimum:
            a, b = low(True, key), low(False, key)
            return label, a / scale, b / scale, (a - b) / scale, unit
        return label, med(True, key) / scale, med(False, key) / scale, paired(key) / scale, unit

    rows = [
        row("wall, median", "wall", "ms"),
        row("wall, min", "wall", "ms", minimum=True),
        row("CPU, median", "cpu", "ms"),
        row("CPU, min", "cpu", "ms", minimum=True),
        row("CPU in the GC, median", "gc_ms", "ms"),
        row("full GC collections", "full_gcs"),
        row("modules imported", "modules"),
        row("memory blocks (k)", "blocks", scale=1000),
    ]
    gc_note = ", GC off" if args.no_gc else ""
    print(
        f"manage.py check, {args.repeat} pairs of runs{gc_note}; load average "
        f"{load_start:.2f} -> {load_end:.2f} (1 min); {os.cpu_count()} CPUs"
    )
    if args.markdown:
        print("\n| measure | app installed | not installed | overhead |")
        print("|---|---:|---:|---:|")
        for label, a, b, diff, unit in rows:
            print(f"| {label} | {a:.0f} {unit} | {b:.0f} {unit} | {diff:+.0f} {unit} |")
    else:
        print(f"  {'':22}{'installed':>12}{'not':>12}{'overhead':>12}")
        for label, a, b, diff, unit in rows:
            print(f"  {label:<22}{a:>9.0f} {unit:<2}{b:>9.0f} {unit:<2}{diff:>+9.0f} {unit:<2}")
    print("  overhead = median of the per-pair differences (min row: difference of minima)")
    print("  app modules loaded:", ", ".join(results[True][-1]["app_modules"]))
    if not args.no_gc:
        with_app, _err = run(True, pycache, margin=True)
        without, _err = run(False, pycache, margin=True)
        print(
            f"  objects tracked by the GC at the end: {with_app['tracked']:,} installed, "
            f"{without['tracked']:,} not ({with_app['tracked'] - without['tracked']:+,});\n"
            f"  without the app, the next full collection comes after {without['margin']:,} "
            f"more objects (with it, after {with_app['margin']:,}): a full collection is due "
            "every time\n  the long-lived objects grow by a quarter, so an app that adds more "
            "than that margin moves\n  one into `check` that the site would otherwise run on "
            "its first requests."
        )

    if args.importtime:
        importtime(pycache)


if __name__ == "__main__":
    main()
