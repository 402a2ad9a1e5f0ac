"""Run a Flower app end to end on the Simulation or the Deployment Engine, isolated and self-cleaning.

For the tests and benchmarks (flwr 1.41 and 1.42). Facts they rely on (verified on flwr 1.41.0 and 1.42.0):

* `flwr run <app>` migrates the app's `[tool.flwr.federations]` into `$FLWR_HOME/config.toml`
  (overwriting connections of the same name), then comments that section out in pyproject.toml. So
  the app is always run from a copy, and the harness never reads federations from pyproject.toml: it
  writes config.toml itself (a checkout already migrated runs the same). For a Deployment it comments
  the copy's section out first, else the migration would re-aim `local-deployment` at port 8000.
* Simulation settings go in `--federation-config` (flwr then ignores a connection's `options.*`, with
  a warning); `num-supernodes` is always passed.
* The local SuperLink is started only if nothing answers on `FLWR_LOCAL_SUPERLINK_HTTP_API_PORT`:
  the harness picks a free port and checks that the CLI printed "Starting local SuperLink on ...".
* `FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1` is read by `flower-superlink` at start-up only,
  which is why every run starts a fresh one (no `uv sync`).
* `flwr run --stream` exits 0 also for a FAILED run: the status comes from `flwr ls <connection>
  --run-id <id> --format json`, run from a folder without pyproject.toml (it would migrate it), and
  only while the SuperLink listens (else `flwr ls` starts a `:local:` one).
* Ray puts unix sockets (107-byte path limit) below `RAY_TMPDIR`: a short /tmp folder per run.
* SuperLink -> flower-superexec (own session) -> flwr-simulation -> Ray, and SuperNode ->
  flower-superexec -> one flwr-clientapp per message (in the SuperNode's session). Orphans keep
  running when a parent dies, and Ray's agents overwrite their environ (setproctitle). Every process
  started here inherits `MARKER_ENV`; teardown kills the marked processes, their sessions and their
  descendants, then raises HarnessError if a process or a port survives.
* A silent SuperNode is marked offline at most 60 s after its last heartbeat. SuperNode
  authentication needs TLS; keys are registered with `flwr supernode register`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

MARKER_ENV = "FLWR_HARNESS_TOKEN"
"""Env variable inherited by every process the harness starts: "<owner pid>:<uuid>"."""
DEFAULT_COPY_IGNORE = (".git", ".venv", "venv", ".flwr", "__pycache__", "*.pyc", ".*_cache", "*.egg-info", "outputs")
HOST = "127.0.0.1"
DEPLOYMENT = "local-deployment"
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_RAY_TMP_PREFIX = "flwr-ray-"  # /tmp/flwr-ray-<owner pid>-XXXX


class HarnessError(RuntimeError):
    """The harness could not run the app or could not clean up after it."""


@dataclass
class FlowerRun:
    """Outcome of one `flwr run ... --stream`."""

    returncode: int  # 0 also for a run that failed; negative if killed
    output: str  # stdout+stderr of `flwr run`, ANSI codes removed
    run_id: int | None
    status: str | None  # from `flwr ls`: "finished:completed", "finished:failed", ...
    status_details: str | None  # e.g. "Simulation failed with exception: ..."
    timed_out: bool
    app_dir: Path  # the copy that was run (a simulation's SuperLink and apps run in it)
    flwr_home: Path  # FLWR_HOME of the CLI
    port: int  # the SuperLink's HTTP port
    superlink_log: str
    command: list[str]

    @property
    def completed(self) -> bool:
        return not self.timed_out and self.returncode == 0 and self.status == "finished:completed"

    def describe(self) -> str:
        """Summary plus the output tail, for assert messages."""
        tail = "\n".join(self.output.splitlines()[-60:])
        return (
            f"flwr run rc={self.returncode} timed_out={self.timed_out} run_id={self.run_id} status={self.status!r} "
            f"details={self.status_details!r}\ncommand: {shlex.join(self.command)}\n--- output tail ---\n{tail}"
        )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan" if math.isnan(value) else "-inf" if value < 0 else "inf"
    if not isinstance(value, str):
        raise TypeError(f"Unsupported config value type {type(value).__name__} ({value!r}): use bool, int, float, str")
    # flwr splits "k=v" pairs with (\S+?)=('[^']*'|"[^"]*"|\S+): no newline, not both quote characters.
    if "\n" in value or "\r" in value or ('"' in value and "'" in value):
        raise ValueError(f"Config strings cannot contain newlines or both ' and \": {value!r}")
    return json.dumps(value) if '"' not in value else f"'{value}'"  # TOML basic (JSON escapes) or literal string


def format_config_overrides(config: Mapping[str, object]) -> list[str]:
    """One "key=<toml value>" string per entry (each goes after its own --run-config flag)."""
    if bad := [key for key in config if not key or re.search(r"[\s='\"]", key)]:
        raise ValueError(f"Invalid config keys: {bad}")
    return [f"{key}={_toml_value(value)}" for key, value in config.items()]


def _flags(flag: str, config: Mapping[str, object]) -> list[str]:
    return [arg for item in format_config_overrides(config) for arg in (flag, item)]


def _write_flwr_config(home: Path, default: str, connections: Mapping[str, Mapping[str, object]]) -> None:
    lines = ["[superlink]", f"default = {_toml_value(default)}"]
    for name, table in connections.items():
        lines += ["", f"[superlink.{name}]", *(f"{key} = {_toml_value(value)}" for key, value in table.items())]
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("\n".join(lines) + "\n")


def comment_out_federations(pyproject: Path) -> None:
    """Comment out `[tool.flwr.federations*]` as flwr's migration does (same section pattern);
    a section already commented out stays as it is."""
    inside, lines = False, []
    for line in pyproject.read_text().splitlines(keepends=True):
        if match := re.match(r"\s*\[(.*)\]", line):
            inside = match.group(1).startswith("tool.flwr.federations")
        lines.append(f"# {line}" if inside and line.strip() else line)
    pyproject.write_text("".join(lines))


def declared_federation(pyproject: Path, name: str) -> dict | None:
    """The `[tool.flwr.federations.<name>]` table of an app, also once flwr's migration has
    commented the section out (it then lives in `$FLWR_HOME/config.toml`); None if absent."""
    lines, migrated = [], False
    for line in pyproject.read_text().splitlines():
        if match := re.match(r"\s*(# )?\[(.*)\]", line):
            migrated = bool(match.group(1)) and match.group(2).startswith("tool.flwr.federations")
        lines.append(line.removeprefix("# ") if migrated else line)
    table = tomllib.loads("\n".join(lines))
    for key in ("tool", "flwr", "federations", name):
        table = table.get(key) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else None


def _copy_app(app_dir: Path, dest: Path, *, federations: bool = True) -> None:
    if dest.exists() or not (app_dir / "pyproject.toml").is_file():
        raise HarnessError(f"Need a fresh {dest} and a pyproject.toml in {app_dir}")
    shutil.copytree(app_dir, dest, symlinks=True, ignore=shutil.ignore_patterns(*DEFAULT_COPY_IGNORE))
    if not federations:
        comment_out_federations(dest / "pyproject.toml")


@dataclass(frozen=True)
class Proc:
    """A live process (zombies are left out)."""

    pid: int
    ppid: int
    sid: int
    cmdline: str
    marker: str | None  # its MARKER_ENV value


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state, ppid, _, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, ValueError):
        return None
    environ = []
    with suppress(OSError):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    key = f"{MARKER_ENV}=".encode()
    marker = next((entry[len(key) :].decode(errors="replace") for entry in environ if entry.startswith(key)), None)
    return None if state in "ZX" else Proc(pid, int(ppid), int(sid), cmdline, marker)


def all_processes() -> list[Proc]:
    return [proc for entry in os.listdir("/proc") if entry.isdigit() and (proc := _read_proc(int(entry)))]


def harness_processes(owner_pid: int | None = None) -> list[str]:
    """Live processes carrying a marker of `owner_pid` (default: this process), as "pid cmdline"."""
    prefix = f"{owner_pid or os.getpid()}:"
    return [f"{p.pid} {p.cmdline[:200]}" for p in all_processes() if (p.marker or "").startswith(prefix)]


def _procs_of(tokens: set[str]) -> list[Proc]:
    """Processes carrying one of `tokens`, everything in their sessions, and their descendants."""
    procs = all_processes()
    selected = {p.pid for p in procs if p.marker in tokens}
    sids = {p.sid for p in procs if p.pid in selected} - {0, 1, os.getsid(0)}
    selected |= {p.pid for p in procs if p.sid in sids}
    while new := {p.pid for p in procs if p.ppid in selected and p.pid not in selected}:
        selected |= new
    return [p for p in procs if p.pid in selected - {os.getpid(), 1}]


def _signal(pids: Iterable[int], sig: int, wait: float) -> set[int]:
    """Send `sig`, then wait up to `wait` s; the pids still alive."""
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline, pids = time.monotonic() + wait, set(pids)
    while (pids := {pid for pid in pids if _read_proc(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


def _kill_tokens(tokens: set[str]) -> list[Proc]:
    """Stop everything started under `tokens`; what survived (should be [])."""
    # Gracefully first: the SuperNodes (none left retrying), then the SuperLink (closes state.db; its
    # SuperExec follows it). Orphaned simulations and Ray do not follow: they get the signals below.
    for name in ("flower-supernode", "flower-superlink"):
        _signal({p.pid for p in _procs_of(tokens) if p.marker in tokens and name in p.cmdline}, signal.SIGTERM, 8)
    for _ in range(5):
        if not (pids := {p.pid for p in _procs_of(tokens)}):
            return []
        if left := _signal(pids, signal.SIGTERM, 3):
            _signal(left, signal.SIGKILL, 3)
    return _procs_of(tokens)


def _owner_gone(owner: str) -> bool:
    """Is `owner` not a live pid, or this process's (whose earlier runs are over)?"""
    return not owner.isdigit() or int(owner) == os.getpid() or _read_proc(int(owner)) is None


_IN_USE: set[str] = set()  # tokens and Ray temp dirs of this process's open RayClusters


def _cleanup_stale() -> None:
    """Kill what earlier harness runs left behind (of owners that are gone, or of this process,
    except a RayCluster it still has open)."""
    stale = {p.marker for p in all_processes() if p.marker and _owner_gone(p.marker.split(":")[0])}
    if tokens := stale - _IN_USE:
        found = [p.cmdline[:200] for p in _procs_of(tokens)]
        if survivors := _kill_tokens(tokens):
            raise HarnessError(f"Could not kill stale harness processes: {survivors}")
        warnings.warn(f"Killed processes left by earlier harness runs: {found}", stacklevel=3)
    for path in Path("/tmp").glob(f"{_RAY_TMP_PREFIX}*-*"):
        if _owner_gone(path.name.split("-")[2]) and str(path) not in _IN_USE:
            shutil.rmtree(path, ignore_errors=True)


def port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])
    if port_listening(port):
        raise HarnessError(f"Port {port} is in use")
    return port


def _verify_teardown(survivors: list[Proc], ports: Iterable[int]) -> None:
    problems = [f"port {port} open" for port in ports if port_listening(port)]
    if problems := problems + [f"{p.pid} {p.cmdline[:120]}" for p in survivors]:
        raise HarnessError("Teardown failed: " + "; ".join(problems))


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, details: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise HarnessError(f"Timed out after {timeout:.0f} s waiting for {what}\n{details()[-3000:]}")
        time.sleep(0.2)


def _env(home: Path, token: str, extra_env: Mapping[str, str] | None, **more: str) -> dict[str, str]:
    """The environment of every process the harness starts (executables are looked up in its PATH)."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # would join a Ray cluster
    bin_dir = Path(sys.executable).parent
    env |= {
        "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "RAY_DEDUP_LOGS": "0",  # else identical ClientApp lines are swallowed
        "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
    }  # fmt: skip
    return env | more | dict(extra_env or {}) | {MARKER_ENV: token}


def _read_log(path: Path) -> str:
    return _ANSI_RE.sub("", path.read_text(errors="replace")) if path.exists() else ""


def _capture(cmd: list[str], cwd: Path, env: dict[str, str] | None, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _spawn(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, **kwargs) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **kwargs,
        )  # fmt: skip


def _stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal a process's group (then SIGKILL it if needed) and reap the process."""
    for signum in (sig, signal.SIGKILL):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
            return


def _run_cli(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float, while_running=None):
    """Run `flwr run --stream` to its end: (returncode, timed_out, output, run id)."""
    process = _spawn(cmd, cwd, env, log)
    deadline, timed_out = time.monotonic() + timeout, False
    try:
        while process.poll() is None and not (timed_out := time.monotonic() > deadline):
            if while_running is not None:
                while_running(_read_log(log))
            time.sleep(0.5)
    finally:
        if process.poll() is None:  # timeout or KeyboardInterrupt
            _stop_group(process)
    match = re.search(r"Successfully started run (\d+)", output := _read_log(log))
    return process.returncode, timed_out, output, int(match.group(1)) if match else None


def _query_status(connection: str, run_id: int, env: dict[str, str], cwd: Path, port: int, wait: float):
    """(status, details) of a run from `flwr ls`, waiting up to `wait` s for a finished status."""
    status = details = None
    deadline = time.monotonic() + wait
    while port_listening(port):  # never let `flwr ls` auto-start a SuperLink
        cmd = ["flwr", "ls", connection, "--run-id", str(run_id), "--format", "json"]
        with suppress(subprocess.SubprocessError, ValueError, IndexError):
            res = _capture(cmd, cwd, env, timeout=60)
            status, details = (json.loads(res.stdout)["runs"][0].get(key) for key in ("status", "status-details"))
        if (status or "").startswith("finished") or time.monotonic() + 1 >= deadline:
            break
        time.sleep(1)
    return status, details


def run_simulation(
    app_dir: Path,
    work: Path,
    *,
    num_supernodes: int,
    run_config: Mapping[str, object] | None = None,
    federation_config: Mapping[str, object] | None = None,
    connection: str = "local-sim",
    timeout: float = 600,
    extra_env: Mapping[str, str] | None = None,
) -> FlowerRun:
    """`flwr run <copy of app_dir> <connection> --stream` on a fresh local SuperLink.

    `work` (fresh) gets `app/` (the copy; `app_dir` is never modified), `flwr_home/` and `flwr_run.log`.
    `federation_config` (e.g. `client-resources-num-gpus`) goes to `--federation-config` with
    `num-supernodes`. On timeout everything is killed and `timed_out=True` is returned. Everything
    started is stopped before returning.
    """
    work = Path(work).resolve()
    app, home = work / "app", work / "flwr_home"
    _copy_app(Path(app_dir).resolve(), app)
    local = {"address": ":local:"}
    _write_flwr_config(home, "local-sim", {"local-sim": local, "local-sim-gpu": local, connection: local})
    cmd = ["flwr", "run", str(app), connection, "--stream", *_flags("--run-config", run_config or {})]
    cmd += _flags("--federation-config", dict(federation_config or {}) | {"num-supernodes": int(num_supernodes)})
    _cleanup_stale()
    port, token = _free_port(), f"{os.getpid()}:{uuid.uuid4().hex}"
    ray_tmp = tempfile.mkdtemp(prefix=f"{_RAY_TMP_PREFIX}{os.getpid()}-", dir="/tmp")
    env = _env(
        home, token, extra_env, RAY_TMPDIR=ray_tmp, FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(port),
        FLWR_LOCAL_CONTROL_API_PORT=str(_free_port()),  # only passed on to a deprecated flag
    )  # fmt: skip
    try:  # cwd: the copy becomes the working folder of the SuperLink and the apps
        returncode, timed_out, output, run_id = _run_cli(cmd, app, env, work / "flwr_run.log", timeout)
        status = details = None
        if run_id is not None:
            if f"Starting local SuperLink on {HOST}:{port}" not in output:
                raise HarnessError(f"`flwr run` reused a SuperLink on port {port}:\n{output[-3000:]}")
            status, details = _query_status(connection, run_id, env, work, port, wait=0 if timed_out else 20)
    except BaseException:
        _kill_tokens({token})
        raise
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    _verify_teardown(_kill_tokens({token}), [port])
    superlink_log = _read_log(home / "local-superlink" / "superlink.log")
    return FlowerRun(returncode, output, run_id, status, details, timed_out, app, home, port, superlink_log, cmd)


def app_with_clientapp(app_dir: Path, dest: Path, module: str, source: str) -> Path:
    """A copy of the app at ``dest`` whose ClientApp is ``module:app`` (``source`` written next to
    pyproject.toml), its federations commented out as Flower leaves them after a first run."""
    app = Path(
        shutil.copytree(app_dir, dest, ignore=shutil.ignore_patterns(*DEFAULT_COPY_IGNORE, "tests", "benchmarks"))
    )
    (app / f"{module}.py").write_text(source)
    pyproject = app / "pyproject.toml"
    original = 'clientapp = "whisper_example.client_app:app"'
    if original not in pyproject.read_text():
        raise HarnessError(f"{pyproject} does not declare {original}")
    pyproject.write_text(pyproject.read_text().replace(original, f'clientapp = "{module}:app"'))
    comment_out_federations(pyproject)
    return app


WHERE_ENV = "WHISPER_EXAMPLE_WHERE"
"""A folder: the ClientApp of ``app_noting_ray_nodes`` writes one file per message into it."""
NOTING_RAY_NODES = f'''"""The app's ClientApp, noting the Ray node that runs each message in ${WHERE_ENV}."""
import os
import uuid
from pathlib import Path

import ray
from flwr.clientapp import ClientApp

from whisper_example import client_app

app = ClientApp()


def _note(kind):
    where = Path(os.environ["{WHERE_ENV}"])
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{{kind}}-{{uuid.uuid4().hex}}").write_text(ray.get_runtime_context().get_node_id())


@app.train()
def train(msg, context):
    _note("train")
    return client_app.train(msg, context)


@app.evaluate()
def evaluate(msg, context):
    _note("evaluate")
    return client_app.evaluate(msg, context)
'''


def app_noting_ray_nodes(app_dir: Path, dest: Path) -> Path:
    """A copy of the app whose ClientApp notes, per message, the Ray node it ran on."""
    return app_with_clientapp(app_dir, dest, "noting_ray_nodes", NOTING_RAY_NODES)


def ray_nodes_noted(where: Path) -> dict[str, list[str]]:
    """Message kind -> the Ray node ids that ran those messages (from ``app_noting_ray_nodes``)."""
    noted: dict[str, list[str]] = {}
    for path in sorted(Path(where).glob("*-*")):
        noted.setdefault(path.name.split("-")[0], []).append(path.read_text())
    return noted


class RayCluster:
    """A Ray cluster on 127.0.0.1 for a simulation to attach to (``RAY_ADDRESS``): a head and
    ``workers`` more nodes of ``cpus`` CPUs each, started as Flower's multi-node guide has it
    (``ray start --head``, then ``ray start --address``), with a private temp dir. ``env``
    reaches every Ray worker process. Everything it started is stopped on exit.
    """

    def __init__(self, work: Path, *, cpus: int = 1, workers: int = 1, env: Mapping[str, str] | None = None) -> None:
        self.work, self.cpus, self.nodes = Path(work).resolve(), cpus, 1 + workers
        self.token, self.port = f"{os.getpid()}:{uuid.uuid4().hex}", _free_port()
        self.extra_env = dict(env or {})

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def __enter__(self) -> RayCluster:
        _cleanup_stale()
        self.tmp = tempfile.mkdtemp(prefix=f"{_RAY_TMP_PREFIX}{os.getpid()}-", dir="/tmp")
        _IN_USE.update((self.token, self.tmp))  # simulations run meanwhile must not clean it up
        env = _env(self.work / "flwr_home", self.token, self.extra_env, RAY_TMPDIR=self.tmp)
        common = ["--num-cpus", str(self.cpus), "--num-gpus", "0", "--disable-usage-stats", "--block"]
        head = ["ray", "start", "--head", f"--node-ip-address={HOST}", f"--port={self.port}"]
        head += ["--include-dashboard=false", f"--temp-dir={self.tmp}", *common]
        try:
            _spawn(head, self.work, env, self.work / "ray_head.log")
            _wait_for(lambda: port_listening(self.port), 60, "the Ray head", self._logs)
            for index in range(1, self.nodes):
                worker = ["ray", "start", f"--address={self.address}", f"--node-ip-address={HOST}", *common]
                _spawn(worker, self.work, env, self.work / f"ray_worker_{index}.log")
            _wait_for(lambda: self.alive_nodes() == self.nodes, 90, f"{self.nodes} Ray nodes", self._logs)
        except BaseException:
            self.close()
            raise
        return self

    def alive_nodes(self) -> int:
        """Nodes the cluster counts as alive (from ``ray status``)."""
        done = _capture(["ray", "status", f"--address={self.address}"], self.work, None, 30)
        active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in done.stdout else ""
        return len(re.findall(r"\b\d+ node_[0-9a-f]+", active))

    def _logs(self) -> str:
        return "\n".join(_read_log(path) for path in sorted(self.work.glob("ray_*.log")))

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        survivors = _kill_tokens({self.token})
        shutil.rmtree(self.tmp, ignore_errors=True)
        _IN_USE.difference_update((self.token, self.tmp))
        _verify_teardown(survivors, [self.port])


class MemoryGroup:
    """A cgroup v1 memory group with a limit, made below this process's own group (so limits nest).

    Processes added to it, and the processes they start, share the limit; past it the kernel
    OOM-kills one of them (SIGKILL).
    """

    def __init__(self, limit_bytes: int) -> None:
        own = [line for line in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in line] or ["0::/"]
        self.path = Path("/sys/fs/cgroup/memory", own[0].split(":", 2)[2].lstrip("/"), f"harness-{uuid.uuid4().hex}")
        self.limit_bytes = int(limit_bytes)
        try:
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
        except OSError as error:
            with suppress(OSError):
                self.path.rmdir()
            raise HarnessError(f"cgroup v1 memory controller not writable ({self.path}): {error}") from error
        with suppress(OSError):  # no swapping past the limit (the file exists with swap accounting only)
            (self.path / "memory.memsw.limit_in_bytes").write_text(str(self.limit_bytes))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]

    def peak_bytes(self) -> int:
        return int((self.path / "memory.max_usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        stats = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return int(stats["oom_kill"])

    def remove(self, timeout: float = 10) -> None:
        """Remove the group once its processes are gone."""
        if self.path.exists():
            _wait_for(lambda: not self.pids(), timeout, f"the processes of {self.path} to exit")
            self.path.rmdir()


def _tool(cmd: str, cwd: Path) -> None:
    result = _capture(shlex.split(cmd), cwd, None, timeout=60)
    if result.returncode:
        raise HarnessError(f"`{cmd}` failed:\n{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(folder: Path, hosts: Iterable[str] = (HOST, "localhost"), days: int = 2) -> TlsFiles:
    """A CA and a SuperLink certificate for `hosts` (IPs or DNS names), made with the `openssl` commands
    of README.md ("Run with the Deployment Engine")."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ", ".join(f"IP:{h}" if re.fullmatch(r"[\d.]+|.*:.*", h) else f"DNS:{h}" for h in hosts)
    ext = f"subjectAltName = {names}\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
    (folder / "server.ext").write_text(ext)
    for cmd in (
        "openssl ecparam -name secp384r1 -genkey -noout -out ca.key",
        f"openssl req -x509 -new -key ca.key -sha256 -days {days} -subj '/CN=whisper_example CA' -out ca.crt",
        "openssl ecparam -name secp384r1 -genkey -noout -out server.key",
        "openssl req -new -key server.key -subj /CN=superlink -out server.csr",
        f"openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days {days} -sha256 "
        "-extfile server.ext -out server.pem",
    ):
        _tool(cmd, folder)
    return TlsFiles(folder / "ca.crt", folder / "server.pem", folder / "server.key")


def make_supernode_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair made as README.md says (`ssh-keygen`): (private key, `<name>.pub`)."""
    folder.mkdir(parents=True, exist_ok=True)
    _tool(f"ssh-keygen -q -t ecdsa -b 384 -N '' -C {shlex.quote(name)} -f {shlex.quote(name)}", folder)
    return folder / name, folder / f"{name}.pub"


@dataclass
class SuperNode:
    """One `flower-supernode` started by a Deployment."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int  # its Runtime API port (for its ClientApps)
    node_config: dict[str, object]
    killed: bool = False
    memory: MemoryGroup | None = None  # the group it, its SuperExec and its ClientApps run in

    def log(self) -> str:
        return _read_log(self.log_path)

    @property
    def node_id(self) -> int | None:
        """The id the SuperLink gave this SuperNode (from its log), None before that."""
        match = re.search(r"SuperNode ID: (\d+)", self.log())
        return int(match.group(1)) if match else None

    def alive(self) -> bool:
        return self.process.poll() is None

    def session_pids(self) -> list[int]:
        """Live processes of this SuperNode: itself, its SuperExec and ClientApps."""
        return [p.pid for p in all_processes() if p.sid == self.process.pid]


@dataclass
class Deployment:
    """`flower-superlink`, `flower-supernode`s and `flwr run` on 127.0.0.1, as a context manager.

    `tls=None` runs everything `--insecure`; `supernode_auth` needs `tls`. The CLI's config.toml has one
    connection, `local-deployment`, aimed at this SuperLink; `declared_connection` is the table that
    app_dir's pyproject.toml declares for it (also once flwr's migration commented it out; None if
    absent). On exit every process is stopped, and HarnessError is raised if one or a port survives.
    One Deployment (or simulation) at a time per process: each start kills what earlier ones left.
    """

    app_dir: Path
    work: Path
    tls: TlsFiles | None = None
    supernode_auth: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.supernode_auth and self.tls is None:
            raise HarnessError("SuperNode authentication needs TLS (flower-superlink refuses it with --insecure)")
        self.app_dir, self.work = Path(self.app_dir).resolve(), Path(self.work).resolve()
        self.app, self.cli_home = self.work / "app", self.work / "flwr_home"
        self.superlink_log_path = self.work / "superlink.log"
        self.token, self.port = f"{os.getpid()}:{uuid.uuid4().hex}", 0
        self.ports: list[int] = []
        self.supernodes: dict[str, SuperNode] = {}
        self.superlink: subprocess.Popen[bytes] | None = None
        self.declared_connection = declared_federation(self.app_dir / "pyproject.toml", DEPLOYMENT)

    def __enter__(self) -> Deployment:
        _copy_app(self.app_dir, self.app, federations=False)
        _cleanup_stale()
        try:
            self.port = self._new_port()
            trust = {"insecure": True} if self.tls is None else {"root-certificates": str(self.tls.ca_cert)}
            _write_flwr_config(self.cli_home, DEPLOYMENT, {DEPLOYMENT: {"address": self.address, **trust}})
            self._start_superlink()
        except BaseException:
            self.close(check=False)
            raise
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(check=exc_type is None)

    def close(self, check: bool = True) -> None:
        """Stop everything started here; with `check`, raise HarnessError if a process or a port survives."""
        survivors = _kill_tokens({self.token})
        for process in [node.process for node in self.supernodes.values()] + [self.superlink]:
            if process is not None and process.poll() is None:
                _stop_group(process, signal.SIGKILL)
        with suppress(*(() if check else (HarnessError, OSError))):
            for node in self.supernodes.values():
                if node.memory is not None:
                    node.memory.remove()
            _verify_teardown(survivors, self.ports)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _new_port(self) -> int:
        self.ports.append(_free_port())
        return self.ports[-1]

    def _start_superlink(self) -> None:
        home = self.work / "superlink_home"
        cmd = ["flower-superlink", "--host", HOST, "--port", str(self.port), "--database", str(home / "state.db")]
        cmd += ["--disable-runtime-dependency-installation"]
        if self.tls is None:
            cmd.append("--insecure")
        else:
            cmd += ["--ssl-ca-certfile", str(self.tls.ca_cert), "--ssl-certfile", str(self.tls.server_cert)]
            cmd += ["--ssl-keyfile", str(self.tls.server_key)]
        cmd += ["--enable-supernode-auth"] if self.supernode_auth else []
        home.mkdir(parents=True)
        env = _env(home, self.token, self.extra_env)
        self.superlink = superlink = _spawn(cmd, self.work / "superlink", env, self.superlink_log_path)
        ready = lambda: "Uvicorn running on" in self.superlink_log() or superlink.poll() is not None  # noqa: E731
        _wait_for(ready, 60, "the SuperLink to listen", self.superlink_log)
        if superlink.poll() is not None or not port_listening(self.port):
            raise HarnessError(f"The SuperLink did not start (rc={superlink.poll()}):\n{self.superlink_log()[-3000:]}")

    def superlink_log(self) -> str:
        return _read_log(self.superlink_log_path)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`flwr <args>` with the harness's config.toml, from a folder without pyproject.toml."""
        return _capture(["flwr", *args], self.work, _env(self.cli_home, self.token, self.extra_env), timeout)

    def _cli_json(self, key: str, *args: str):
        result = self.cli(*args, DEPLOYMENT, "--format", "json")
        try:
            return json.loads(result.stdout)[key]
        except (ValueError, KeyError, TypeError) as error:
            raise HarnessError(f"`flwr {shlex.join(args)}` failed: {result.stdout}\n{result.stderr}") from error

    def register(self, public_key: Path) -> int:
        """`flwr supernode register <key.pub> local-deployment`: the node id."""
        return int(self._cli_json("node-id", "supernode", "register", str(public_key)))

    def listed_supernodes(self) -> list[dict]:
        """`flwr supernode ls local-deployment`: the nodes the SuperLink knows."""
        return list(self._cli_json("nodes", "supernode", "ls"))

    def start_supernode(
        self,
        name: str,
        node_config: Mapping[str, object],
        *,
        private_key: Path | None = None,
        wait: bool = True,
        memory_limit: int | None = None,
    ) -> SuperNode:
        """Start `flower-supernode --superlink 127.0.0.1:<port> --node-config ...`.

        `wait`: return once it has a node id (start one that will be refused with wait=False).
        `memory_limit` (bytes): run it, its SuperExec and its ClientApps in a new MemoryGroup.
        """
        if name in self.supernodes:
            raise HarnessError(f"SuperNode {name!r} already started")
        port, log = self._new_port(), self.work / f"supernode-{name}.log"
        cmd = ["flower-supernode", "--superlink", self.address, "--port", str(port)]
        cmd += ["--node-config", " ".join(format_config_overrides(node_config))]
        cmd += ["--insecure"] if self.tls is None else ["--root-certificates", str(self.tls.ca_cert)]
        cmd += [] if private_key is None else ["--auth-supernode-private-key", str(private_key)]
        memory = None if memory_limit is None else MemoryGroup(memory_limit)
        join = None if memory is None else lambda: memory.add(os.getpid())  # in the child, before exec
        (home := self.work / f"{name}_home").mkdir(parents=True)
        env = _env(home, self.token, self.extra_env)
        process = _spawn(cmd, self.work / name, env, log, preexec_fn=join)
        node = self.supernodes[name] = SuperNode(name, process, log, port, dict(node_config), memory=memory)
        if wait:
            self.wait_connected(node)
        return node

    def wait_connected(self, *nodes: SuperNode, timeout: float = 90) -> None:
        """Wait until every node has a node id (start several with wait=False, then wait)."""
        for node in nodes:
            connected = lambda node=node: node.node_id is not None or not node.alive()  # noqa: E731
            _wait_for(connected, timeout, f"SuperNode {node.name} to connect", node.log)
            if node.node_id is None:
                raise HarnessError(f"SuperNode {node.name} exited (rc={node.process.poll()}):\n{node.log()[-3000:]}")

    def wait_exited(self, node: SuperNode, timeout: float = 90) -> int:
        """Wait for a SuperNode to exit (e.g. refused by the SuperLink): its exit code."""
        _wait_for(lambda: not node.alive(), timeout, f"SuperNode {node.name} to exit", node.log)
        return int(node.process.returncode)

    def kill_supernode(self, name: str) -> list[int]:
        """SIGKILL a SuperNode with its SuperExec and ClientApps (the node vanishes): their pids."""
        node = self.supernodes[name]
        pids = node.session_pids()
        _stop_group(node.process, signal.SIGKILL)
        node.killed = True
        _wait_for(lambda: not node.session_pids(), 10, f"SuperNode {name}'s processes to die")
        return pids

    def run(
        self,
        run_config: Mapping[str, object],
        *,
        timeout: float = 600,
        while_running: Callable[[str], None] | None = None,
    ) -> FlowerRun:
        """`flwr run <app copy> local-deployment --stream`; `while_running(output so far)` is called about
        twice a second until the CLI exits (e.g. to kill a SuperNode mid-round)."""
        cmd = ["flwr", "run", str(self.app), DEPLOYMENT, "--stream", *_flags("--run-config", run_config)]
        env, log = _env(self.cli_home, self.token, self.extra_env), self.work / f"flwr_run_{uuid.uuid4().hex[:8]}.log"
        returncode, timed_out, output, run_id = _run_cli(cmd, self.work, env, log, timeout, while_running)
        status = details = None
        if run_id is not None:
            status, details = _query_status(DEPLOYMENT, run_id, env, self.work, self.port, 0 if timed_out else 20)
        return FlowerRun(
            returncode, output, run_id, status, details, timed_out, self.app, self.cli_home, self.port,
            self.superlink_log(), cmd,
        )  # fmt: skip
