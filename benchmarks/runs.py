"""How does a benchmark run the app's scripts as a user runs them, and what did its runs score?

``run`` runs a script or module of a checkout (this one, ``REPO``, or another made with ``git
worktree add``) with this Python and returns what it printed; ``centralized`` runs that
checkout's ``centralized.py`` on a dataset and reads its test accuracy from the run folder's
``results.json``; ``completed_run`` finds a run an interrupted benchmark already finished;
``summary`` is a figure's mean, min, max and spread over the seeds' runs.
Standard library only: benchmarks whose parent process must import nothing else use ``REPO``.
"""

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path = REPO) -> str:
    done = subprocess.run([sys.executable, *command], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def completed_run(out: Path) -> Path | None:
    """The completed run folder under ``out`` (an interrupted benchmark's), or None."""
    results = sorted(out.glob("*/*/results.json"))
    return next((path.parent for path in results if json.loads(path.read_text())["status"] == "completed"), None)


def centralized(checkout: Path, data: Path, out: Path, options: dict[str, object]) -> dict:
    """One ``centralized.py`` run of ``checkout``: its run folder and results. A completed
    run already in ``out`` (an interrupted benchmark's) is reused."""
    run_dir, seconds = completed_run(out), None
    if run_dir is None:
        shutil.rmtree(out, ignore_errors=True)
        flags = [item for key, value in options.items() for item in (f"--{key}", str(value))]
        started = time.perf_counter()
        run(["centralized.py", "--dataset", str(data), "--output-dir", str(out), *flags], cwd=checkout)
        (run_dir,) = out.glob("*/*")
        seconds = time.perf_counter() - started
    results = json.loads((run_dir / "results.json").read_text())
    return {"run": str(run_dir), "test": results["test"]["accuracy"], "seconds": seconds}


def summary(rows: list[dict], key: str) -> dict:
    values = [row[key] for row in rows]
    return {
        "mean": statistics.mean(values),
        "min": min(values),
        "max": max(values),
        "spread_pp": 100 * (max(values) - min(values)),
    }
