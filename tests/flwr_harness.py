"""Run a Flower app end to end on the real Simulation Engine, isolated and self-cleaning.

Plain helper module for tests (no test functions here). Written against flwr 1.41.

What `run_simulation` does, and why (all verified on flwr 1.41.0):

* `flwr run <app> <connection>` migrates a `[tool.flwr.federations]` section of the
  app's pyproject.toml into `$FLWR_HOME/config.toml` and then REWRITES the app's
  pyproject.toml in place (the section gets commented out). Pre-writing config.toml
  does not prevent this. So the app is always copied to a temp dir first, and the
  original `app_dir` is never touched.
* `FLWR_HOME` points into the test's tmp dir, so config, state.db, installed FABs and
  the SuperLink log are private to the run.
* The managed local SuperLink is a detached process (`start_new_session=True`) that
  the CLI starts only if nothing answers `GET http://127.0.0.1:<port>/health`. Its
  port is 39091 by default but flwr reads it from `FLWR_LOCAL_SUPERLINK_HTTP_API_PORT`
  (and `FLWR_LOCAL_CONTROL_API_PORT`, 39093, which is only passed to a deprecated flag
  and never listened on). The harness picks a free port, checks that nothing listens
  on it, and checks that the CLI printed "Starting local SuperLink on ..." (i.e. it
  did not silently reuse a stale SuperLink).
* `FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1` is only read by `flower-superlink`
  when it starts; because this harness always starts a fresh SuperLink, it is
  effective (no `uv sync`).
* `flwr run --stream` exits 0 when the run finished, also if it FAILED. The status
  is read with `flwr ls <connection> --run-id <id> --format json` ("finished:completed",
  "finished:failed", "finished:stopped", or pending/starting/running).
* `--federation-config` replaces *all* `options.*` of the connection, so the harness
  translates the federation's `options.*` from pyproject.toml into
  `--federation-config` keys and only overrides `num-supernodes`.
* Teardown: the SuperLink spawns `flower-superexec` in another new session, which
  spawns `flwr-simulation`, which starts Ray (gcs_server, raylet, actors...). If the
  SuperLink dies while a run is active, `flwr-simulation` and Ray are orphaned and
  keep running. Every process started here inherits a marker env variable
  (`FLWR_HARNESS_TOKEN`); teardown kills the marked processes, everything in their
  sessions (Ray's agents overwrite their environ via setproctitle) and their
  descendants, then verifies that nothing is left and the port is closed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

MARKER_ENV = "FLWR_HARNESS_TOKEN"
"""Env variable inherited by every process a harness run starts ("<owner-pid>:<uuid>")."""

DEFAULT_COPY_IGNORE: tuple[str, ...] = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    ".flwr",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "*.egg-info",
    "outputs",
)

# Keys accepted by `flwr run --federation-config` (fields of the SimulationConfig proto,
# with "_" written as "-"), keyed by the path of the matching pyproject `options.` key.
_OPTION_TO_FEDERATION_CONFIG: dict[tuple[str, ...], str] = {
    ("num-supernodes",): "num-supernodes",
    ("verbose",): "verbose",
    ("backend", "name"): "backend",
    ("backend", "client-resources", "num-cpus"): "client-resources-num-cpus",
    ("backend", "client-resources", "num-gpus"): "client-resources-num-gpus",
    ("backend", "init-args", "num-cpus"): "init-args-num-cpus",
    ("backend", "init-args", "num-gpus"): "init-args-num-gpus",
    ("backend", "init-args", "logging-level"): "init-args-logging-level",
    ("backend", "init-args", "log-to-driver"): "init-args-log-to-driver",
}
_LOCAL_MAGIC_ADDRESSES = (":local:", ":local-in-memory:")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_RUN_ID_RE = re.compile(r"Successfully started run (\d+)")
_TERMINAL_STATUS_PREFIX = "finished"
_RAY_TMP_PREFIX = "flwr-ray-"  # /tmp/flwr-ray-<owner-pid>-XXXX, RAY_TMPDIR of one run


class HarnessError(RuntimeError):
    """The harness could not run the app or could not clean up after it."""


@dataclass
class FlowerRun:
    """Outcome of one `flwr run ... --stream` executed by `run_simulation`."""

    returncode: int
    """Exit code of `flwr run` (0 also for a run that failed; -9/-15 if killed)."""
    output: str
    """Everything `flwr run --stream` printed (stdout+stderr), ANSI codes removed."""
    run_id: int | None
    status: str | None
    """Run status as `flwr ls --format json` reports it, e.g. "finished:completed",
    "finished:failed"; None if it could not be determined."""
    status_details: str | None
    """E.g. "Simulation failed with exception: ..." ("N/A" on success)."""
    timed_out: bool
    app_dir: Path
    """The temp copy of the app that was run; it is also the working directory of the
    SuperLink, the ServerApp and the ClientApps (relative paths resolve here)."""
    flwr_home: Path
    port: int
    """Port the run's local SuperLink listened on (closed again on return)."""
    superlink_log: str
    """Contents of $FLWR_HOME/local-superlink/superlink.log."""
    command: list[str]

    @property
    def completed(self) -> bool:
        """True if the run finished successfully."""
        return (
            not self.timed_out
            and self.returncode == 0
            and self.status == "finished:completed"
        )

    def describe(self) -> str:
        """Short human-readable summary plus the output tail, for assert messages."""
        tail = "\n".join(self.output.splitlines()[-60:])
        return (
            f"flwr run rc={self.returncode} timed_out={self.timed_out} "
            f"run_id={self.run_id} status={self.status!r} "
            f"details={self.status_details!r}\n"
            f"command: {' '.join(self.command)}\n--- output tail ---\n{tail}"
        )


# --------------------------------------------------------------------------- config


def format_toml_value(value: object) -> str:
    """Format a run-config/federation-config value as TOML for the flwr CLI."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # flwr splits "k=v" pairs with the regex (\S+?)=('[^']*'|"[^"]*"|\S+), so a
        # value may not contain its own quote character, and no newline.
        if "\n" in value or "\r" in value:
            raise ValueError(f"Config strings cannot contain newlines: {value!r}")
        if '"' not in value:
            return json.dumps(value)  # TOML basic string; JSON escapes are valid TOML
        if "'" not in value:
            return f"'{value}'"  # TOML literal string
        raise ValueError(f"Config strings cannot contain both ' and \": {value!r}")
    raise TypeError(
        f"Unsupported config value type {type(value).__name__} ({value!r}); "
        "use bool, int, float or str"
    )


def format_config_overrides(config: Mapping[str, object]) -> list[str]:
    """Return one "key=<toml value>" string per entry (pass each after its own flag)."""
    items = []
    for key, value in config.items():
        if not key or re.search(r"[\s='\"]", key):
            raise ValueError(f"Invalid config key: {key!r}")
        items.append(f"{key}={format_toml_value(value)}")
    return items


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(_flatten(value, full))
        else:
            flat[full] = value
    return flat


def federation_config_for(
    pyproject: Mapping[str, Any], federation: str, num_supernodes: int | None
) -> dict[str, object]:
    """Translate `[tool.flwr.federations.<federation>]` options to --federation-config.

    `flwr run --federation-config` drops every `options.*` entry of the connection, so
    all of them are re-passed here; only `num-supernodes` is overridden.
    """
    feds = pyproject.get("tool", {}).get("flwr", {}).get("federations")
    if not isinstance(feds, Mapping):
        raise HarnessError(
            "pyproject.toml has no [tool.flwr.federations] section (was it already "
            "migrated by a `flwr run` in that directory? flwr 1.41 comments it out)."
        )
    if "default" not in feds:
        raise HarnessError(
            "[tool.flwr.federations] needs `default = \"...\"`: without it flwr 1.41 "
            "aborts the migration with 'No federation name was provided ...'."
        )
    fed = feds.get(federation)
    if not isinstance(fed, Mapping):
        names = sorted(k for k, v in feds.items() if isinstance(v, Mapping))
        raise HarnessError(f"Federation {federation!r} not in pyproject.toml: {names}")
    address = fed.get("address")
    options = fed.get("options")
    if address is not None and address not in _LOCAL_MAGIC_ADDRESSES:
        raise HarnessError(
            f"Federation {federation!r} has address={address!r}: not a local "
            "simulation federation"
        )
    if not isinstance(options, Mapping):
        raise HarnessError(f"Federation {federation!r} has no `options.` table")

    flat = _flatten(options)
    result: dict[str, object] = {}
    for path, value in flat.items():
        key = _OPTION_TO_FEDERATION_CONFIG.get(tuple(path.split(".")))
        if key is None:
            raise HarnessError(
                f"Unknown simulation option `options.{path}` in federation "
                f"{federation!r}; flwr 1.41 knows: "
                + ", ".join("options." + ".".join(p) for p in _OPTION_TO_FEDERATION_CONFIG)
            )
        result[key] = value
    if num_supernodes is not None:
        result["num-supernodes"] = int(num_supernodes)
    if "num-supernodes" not in result:
        raise HarnessError(f"Federation {federation!r} lacks options.num-supernodes")
    return result


def _check_run_config_keys(pyproject: Mapping[str, Any], run_config: Mapping[str, object]) -> None:
    app_cfg = pyproject.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})
    known = _flatten(app_cfg)
    unknown = sorted(set(run_config) - set(known))
    if unknown:
        # flwr would only fail inside the simulation process ("Key ... is not present").
        raise HarnessError(
            f"run_config keys {unknown} are not in [tool.flwr.app.config] "
            f"(known: {sorted(known)})"
        )


# ------------------------------------------------------------------------ processes


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    sid: int
    state: str
    cmdline: str
    marker: str | None


def _read_proc(pid: int) -> _Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        state, ppid, sid = fields[0], int(fields[1]), int(fields[3])
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except (OSError, ValueError, IndexError):
        return None
    marker = None
    try:
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if entry.startswith(MARKER_ENV.encode() + b"="):
                marker = entry.split(b"=", 1)[1].decode(errors="replace")
                break
    except OSError:
        pass
    return _Proc(pid, ppid, sid, state, cmdline.strip(), marker)


def _all_procs() -> list[_Proc]:
    procs = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = _read_proc(int(entry))
            if proc is not None:
                procs.append(proc)
    return procs


def _alive(proc: _Proc) -> bool:
    return proc.state not in ("Z", "X")  # zombies re-parented to PID 1 may linger


def _procs_of(tokens: set[str]) -> list[_Proc]:
    """Live processes carrying one of `tokens`, plus their sessions and descendants.

    Sessions are included because Ray's agents (setproctitle) overwrite their environ;
    all flwr/Ray processes stay in the session of the SuperLink or of the SuperExec.
    """
    procs = _all_procs()
    me, my_sid = os.getpid(), os.getsid(0)
    marked = {p.pid for p in procs if p.marker in tokens}
    sids = {p.sid for p in procs if p.pid in marked} - {0, 1, my_sid}
    selected = marked | {p.pid for p in procs if p.sid in sids}
    changed = True
    while changed:  # add descendants
        changed = False
        for p in procs:
            if p.pid not in selected and p.ppid in selected:
                selected.add(p.pid)
                changed = True
    selected -= {me, 1}
    return [p for p in procs if p.pid in selected and _alive(p)]


def _signal_all(procs: Iterable[_Proc], sig: int) -> None:
    for p in procs:
        try:
            os.kill(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        remaining = {pid for pid in remaining if (p := _read_proc(pid)) and _alive(p)}
        if remaining:
            time.sleep(0.2)
    return remaining


def _kill_tokens(tokens: set[str], graceful_timeout: float = 8.0) -> list[_Proc]:
    """Stop everything started under `tokens`; return what survived (should be [])."""
    # 1) SuperLink first, gracefully (closes state.db; superexec follows via its
    #    parent-pid monitor). An orphaned flwr-simulation + Ray would not follow.
    superlinks = [p for p in _procs_of(tokens) if "flower-superlink" in p.cmdline and p.marker in tokens]
    _signal_all(superlinks, signal.SIGTERM)
    _wait_gone({p.pid for p in superlinks}, graceful_timeout)
    # 2) Everything else: SIGTERM, then SIGKILL.
    for _ in range(5):
        procs = _procs_of(tokens)
        if not procs:
            return []
        _signal_all(procs, signal.SIGTERM)
        left = _wait_gone({p.pid for p in procs}, 3.0)
        if left:
            _signal_all([p for p in procs if p.pid in left], signal.SIGKILL)
            _wait_gone(left, 3.0)
    return _procs_of(tokens)


def _stale_tokens() -> set[str]:
    """Markers of processes left by earlier harness runs whose owner is gone.

    A marker is "<owner-pid>:<uuid>". Runs of the current process are sequential, so
    any marker with our own pid is stale too. Markers of other live owners (e.g.
    parallel pytest workers) are left alone.
    """
    stale = set()
    for p in _all_procs():
        if not p.marker or not _alive(p):
            continue
        owner = p.marker.split(":", 1)[0]
        owner_proc = _read_proc(int(owner)) if owner.isdigit() else None
        if owner_proc is None or not _alive(owner_proc) or int(owner) == os.getpid():
            stale.add(p.marker)
    return stale


def _remove_stale_ray_tmpdirs() -> None:
    for path in Path("/tmp").glob(f"{_RAY_TMP_PREFIX}*-*"):
        owner = path.name[len(_RAY_TMP_PREFIX) :].split("-", 1)[0]
        if not owner.isdigit():
            continue
        owner_proc = _read_proc(int(owner))
        if owner_proc is None or not _alive(owner_proc) or int(owner) == os.getpid():
            shutil.rmtree(path, ignore_errors=True)


def cleanup_stale_harness_processes() -> list[str]:
    """Kill processes left behind by crashed harness runs (ours only). Return cmdlines."""
    tokens = _stale_tokens()
    if not tokens:
        _remove_stale_ray_tmpdirs()
        return []
    found = [p.cmdline[:200] for p in _procs_of(tokens)]
    survivors = _kill_tokens(tokens)
    if survivors:
        raise HarnessError(
            "Could not kill stale harness processes: "
            + "; ".join(f"{p.pid} {p.cmdline[:120]}" for p in survivors)
        )
    _remove_stale_ray_tmpdirs()
    return found


def leftover_flower_processes(owner_pid: int | None = None) -> list[str]:
    """Live `flower-superlink`/`flower-superexec`/`flwr-simulation` processes of harness
    runs (of `owner_pid` only, when given), as "pid cmdline" strings. Empty after a clean
    teardown."""
    out = []
    for p in _all_procs():
        owned = p.marker and (owner_pid is None or p.marker.startswith(f"{owner_pid}:"))
        if owned and _alive(p) and re.search(r"flower-super(link|exec)|flwr-simulation", p.cmdline):
            out.append(f"{p.pid} {p.cmdline[:200]}")
    return out


def _port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listener_info(port: int) -> str:
    try:
        res = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        )
        return res.stdout.strip() or "(ss shows no owner)"
    except (OSError, subprocess.SubprocessError):
        return "(ss unavailable)"


# ------------------------------------------------------------------------------ run


def _flwr_executable() -> str:
    candidate = Path(sys.executable).parent / "flwr"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("flwr")
    if not found:
        raise HarnessError("`flwr` executable not found")
    return found


def _query_status(
    flwr: str,
    federation: str,
    run_id: int,
    env: dict[str, str],
    cwd: Path,
    port: int,
    wait: float,
) -> tuple[str | None, str | None]:
    """Ask the (still running) local SuperLink for the run status via `flwr ls`."""
    status = details = None
    deadline = time.monotonic() + wait
    while True:  # at least one query, also with wait=0
        # Never let `flwr ls` auto-start a SuperLink (it would for a :local: connection).
        if not _port_listening(port):
            break
        try:
            res = subprocess.run(
                [flwr, "ls", federation, "--run-id", str(run_id), "--format", "json"],
                cwd=cwd,  # a dir WITHOUT pyproject.toml: `flwr ls` would migrate it too
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            runs = json.loads(res.stdout).get("runs", [])
        except (subprocess.SubprocessError, ValueError):
            runs = []
        if runs:
            status, details = runs[0].get("status"), runs[0].get("status-details")
            if status and status.startswith(_TERMINAL_STATUS_PREFIX):
                break
        if time.monotonic() + 1 >= deadline:
            break
        time.sleep(1)
    return status, details


def run_simulation(
    app_dir: Path,
    tmp_path: Path,
    *,
    num_supernodes: int | None,
    run_config: Mapping[str, object] | None = None,
    federation: str = "local-sim",
    timeout: float = 600,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    copy_ignore: Iterable[str] = (),
) -> FlowerRun:
    """Run the Flower app in `app_dir` with `flwr run <copy> <federation> --stream`.

    Args:
        app_dir: Directory with the app's pyproject.toml (never modified).
        tmp_path: Private scratch dir (pytest's `tmp_path`); gets `app/` (the copy that
            is run), `flwr_home/` (FLWR_HOME) and `flwr_run.log`.
        num_supernodes: Overrides `options.num-supernodes` of the federation (None:
            keep the pyproject value). Other `options.*` of the federation are kept.
        run_config: Overrides for `[tool.flwr.app.config]` (bool/int/float/str; keys
            must exist there).
        federation: Name of a local simulation federation in `[tool.flwr.federations]`.
        timeout: Seconds to wait for `flwr run --stream` to end; afterwards everything
            is killed and `timed_out=True` is returned.
        port: Local SuperLink HTTP port (default: a free port; flwr's own default is
            39091). Must not be in use.
        extra_env: Extra environment variables for the CLI, SuperLink and the apps.
        copy_ignore: Extra shutil.ignore_patterns for copying the app.

    The local SuperLink and every process it spawned are stopped before returning,
    also on timeout or error; HarnessError is raised if something survives.
    """
    app_dir = Path(app_dir).resolve()
    if not (app_dir / "pyproject.toml").is_file():
        raise HarnessError(f"No pyproject.toml in {app_dir}")
    with (app_dir / "pyproject.toml").open("rb") as f:
        pyproject = tomllib.load(f)
    run_config = dict(run_config or {})
    _check_run_config_keys(pyproject, run_config)
    fed_config = federation_config_for(pyproject, federation, num_supernodes)

    work = Path(tmp_path).resolve()
    app_copy = work / "app"
    flwr_home = work / "flwr_home"
    flwr = _flwr_executable()
    cmd = [flwr, "run", str(app_copy), federation, "--stream"]
    for item in format_config_overrides(run_config):
        cmd += ["--run-config", item]
    for item in format_config_overrides(fed_config):
        cmd += ["--federation-config", item]

    work.mkdir(parents=True, exist_ok=True)
    if app_copy.exists() or flwr_home.exists():
        raise HarnessError(f"{work} was already used by run_simulation; use a fresh dir")
    shutil.copytree(
        app_dir,
        app_copy,
        symlinks=True,
        ignore=shutil.ignore_patterns(*DEFAULT_COPY_IGNORE, *copy_ignore),
    )
    flwr_home.mkdir()

    stale = cleanup_stale_harness_processes()
    if stale:
        warnings.warn(f"Killed processes left by earlier harness runs: {stale}", stacklevel=2)

    port = port or _free_port()
    if _port_listening(port):
        raise HarnessError(
            f"Port {port} is already in use, refusing to talk to a foreign/stale "
            f"SuperLink: {_listener_info(port)}"
        )

    token = f"{os.getpid()}:{uuid.uuid4().hex}"
    # Short path: Ray puts unix sockets below it (107-byte limit).
    ray_tmp = Path(tempfile.mkdtemp(prefix=f"{_RAY_TMP_PREFIX}{os.getpid()}-", dir="/tmp"))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # would make Ray join an existing cluster
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(port),
            "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
            "RAY_DEDUP_LOGS": "0",  # else identical ClientApp lines get swallowed
            "RAY_TMPDIR": str(ray_tmp),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",  # keep rich error boxes readable
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            MARKER_ENV: token,
        }
    )
    env.update(extra_env or {})

    log_path = work / "flwr_run.log"
    returncode: int = -1
    timed_out = False
    status = details = None
    run_id = None
    output = ""
    error: BaseException | None = None
    try:
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                cmd,
                cwd=app_copy,  # becomes the SuperLink's (and the apps') cwd
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:  # timeout or KeyboardInterrupt
                    _kill_group(proc)
                    returncode = proc.returncode
        output = _ANSI_RE.sub("", log_path.read_text(errors="replace"))
        if m := _RUN_ID_RE.search(output):
            run_id = int(m.group(1))
        started_here = f"Starting local SuperLink on 127.0.0.1:{port}" in output
        if run_id is not None and not started_here:
            raise HarnessError(
                f"`flwr run` did not start its own SuperLink on port {port} but reused "
                f"one that was already listening: {_listener_info(port)}\n{output[-3000:]}"
            )
        if run_id is not None:
            status, details = _query_status(
                flwr, federation, run_id, env, work, port, wait=0 if timed_out else 20
            )
    except BaseException as exc:  # noqa: BLE001 - re-raised below after cleanup
        error = exc
    finally:
        survivors = _kill_tokens({token})
        shutil.rmtree(ray_tmp, ignore_errors=True)
        port_open = _port_listening(port)
        if (survivors or port_open) and error is None:
            error = HarnessError(
                f"Teardown failed: port {port} open={port_open}; survivors: "
                + "; ".join(f"{p.pid} {p.cmdline[:120]}" for p in survivors)
            )
    if error is not None:
        raise error

    sl_log = flwr_home / "local-superlink" / "superlink.log"
    return FlowerRun(
        returncode=returncode,
        output=output,
        run_id=run_id,
        status=status,
        status_details=details,
        timed_out=timed_out,
        app_dir=app_copy,
        flwr_home=flwr_home,
        port=port,
        superlink_log=sl_log.read_text(errors="replace") if sl_log.exists() else "",
        command=cmd,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the `flwr run` CLI (its own process group): SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
