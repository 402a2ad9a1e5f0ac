"""Run a Flower app on the real Deployment Engine on 127.0.0.1, isolated and self-cleaning.

Plain helper module for tests (no test functions here). Written against flwr 1.41; the
process bookkeeping (marker env variable, killing by session, stale-run cleanup, run
status via `flwr ls`) comes from `flwr_harness`, which does the same for simulations.

One `Deployment` is one federation: a `flower-superlink` on a free port, any number of
`flower-supernode` processes (each with its own node config, FLWR_HOME, working folder
and Runtime API port), and `flwr run <app copy> local-deployment --stream`. What it
relies on, all verified on flwr 1.41.0:

* One HTTP port per SuperLink (`--port`): the CLI (Control API), the SuperNodes (Fleet
  API) and the ServerApp (Runtime API) all use it. Each SuperNode serves its own
  Runtime API to its ClientApps on `--port` (default 9094), so SuperNodes on one host
  need distinct ports.
* `flwr run` reads the SuperLink address from a *connection* in `$FLWR_HOME/config.toml`.
  The first `flwr run <app>` migrates the app's `[tool.flwr.federations]` tables into it
  (and comments them out in pyproject.toml); `--federation-config` only carries
  simulation options and cannot change an address. So the harness migrates the app
  copy first (the same call `flwr run` makes), checks the migrated `local-deployment`
  connection, then points it at the SuperLink it started, as a user edits
  `~/.flwr/config.toml` to reach a SuperLink on another machine.
* Every `flwr-clientapp` is a new process per message (SuperNode -> flower-superexec ->
  flwr-clientapp), and all of them stay in the SuperNode's session; killing that
  process group is a node vanishing.
* A SuperNode that stops sending heartbeats (every ~25 s, expected every 30 s, patience
  2) is marked offline by the SuperLink at most 60 s after its last one; from then on
  the ServerApp receives an error reply ("node_unavail") for its messages.
* SuperNode authentication (`--enable-supernode-auth`) needs TLS; a SuperNode's ECDSA
  public key (OpenSSH format, a NIST curve) is registered with
  `flwr supernode register <key.pub> <connection>` before the SuperNode starts, and the
  SuperNode signs with `--auth-supernode-private-key`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flwr_harness import (
    DEFAULT_COPY_IGNORE,
    MARKER_ENV,
    FlowerRun,
    HarnessError,
    _ANSI_RE,
    _RUN_ID_RE,
    _check_run_config_keys,
    _flwr_executable,
    _free_port,
    _kill_group,
    _kill_tokens,
    _listener_info,
    _port_listening,
    _query_status,
    _read_proc,
    cleanup_stale_harness_processes,
    format_config_overrides,
)

CONNECTION = "local-deployment"
"""The federation of the app's pyproject.toml (and, once migrated, the SuperLink
connection in config.toml) that the harness points at its SuperLink."""
HOST = "127.0.0.1"
_NODE_ID_RE = re.compile(r"SuperNode ID: (\d+)")


# ---------------------------------------------------------------- certificates, keys


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a server certificate signed by it (PEM files)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _write_private_key(key: ec.EllipticCurvePrivateKey, path: Path, fmt: serialization.PrivateFormat) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    path.chmod(0o600)


def make_tls_files(folder: Path, hosts: Iterable[str] = (HOST, "localhost"), days: int = 2) -> TlsFiles:
    """A CA and a SuperLink certificate valid for `hosts` (IP addresses or DNS names).

    The same files `openssl` makes with the commands in README.md ("Run with the
    Deployment Engine"): the server certificate must name, in its subjectAltName,
    the host the SuperNodes and the CLI dial.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whisper_example test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, next(iter(hosts), HOST))]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(folder / "ca.crt", folder / "server.pem", folder / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_private_key(server_key, files.server_key, serialization.PrivateFormat.PKCS8)
    return files


def make_supernode_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format, as `ssh-keygen -t ecdsa -b 384` writes.

    Returns (private key, public key `<name>.pub`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / name, folder / f"{name}.pub"
    _write_private_key(key, private, serialization.PrivateFormat.OpenSSH)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + f" {name}\n".encode()
    )
    return private, public


# ------------------------------------------------------------------------ processes


@dataclass
class SuperNode:
    """One `flower-supernode` started by a Deployment."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    node_config: dict[str, object]
    killed: bool = False

    def log(self) -> str:
        return _ANSI_RE.sub("", self.log_path.read_text(errors="replace")) if self.log_path.exists() else ""

    @property
    def node_id(self) -> int | None:
        """The id the SuperLink gave this SuperNode (from its log), None before that."""
        match = _NODE_ID_RE.search(self.log())
        return int(match.group(1)) if match else None

    def alive(self) -> bool:
        return self.process.poll() is None

    def session_pids(self) -> list[int]:
        """Live processes of this SuperNode: itself, its SuperExec and ClientApps."""
        return [p.pid for p in _procs_of_session(self.process.pid)]


def _procs_of_session(sid: int) -> list:
    procs = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := _read_proc(int(entry))) and proc.sid == sid and proc.state not in ("Z", "X"):
            procs.append(proc)
    return procs


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, details: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise HarnessError(f"Timed out after {timeout:.0f} s waiting for {what}\n{details()[-3000:]}")
        time.sleep(0.2)


@dataclass
class Deployment:
    """A SuperLink, SuperNodes and `flwr run`, all on 127.0.0.1; use it as a context manager.

    Args:
        app_dir: The Flower app (never modified; a copy is run).
        work: A fresh scratch folder (pytest's tmp_path).
        tls: Certificates for the SuperLink; None runs everything with `--insecure`.
        supernode_auth: Start the SuperLink with `--enable-supernode-auth` (needs `tls`).

    On exit every process started here (SuperLink, its SuperExec and ServerApp, the
    SuperNodes and their SuperExecs and ClientApps) is stopped, and HarnessError is
    raised if one survives or one of the ports is still open. Like `run_simulation`,
    entering one first kills what earlier harness runs of this process left behind, so
    use one Deployment at a time per process.
    """

    app_dir: Path
    work: Path
    tls: TlsFiles | None = None
    supernode_auth: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.supernode_auth and self.tls is None:
            raise HarnessError("SuperNode authentication needs TLS (flower-superlink refuses it with --insecure)")
        self.work = Path(self.work).resolve()
        self.app = self.work / "app"
        self.cli_home = self.work / "flwr_home"
        self.token = f"{os.getpid()}:{uuid.uuid4().hex}"
        self.port = 0
        self.supernodes: dict[str, SuperNode] = {}
        self.superlink: subprocess.Popen[bytes] | None = None
        self.flwr = _flwr_executable()
        self.ports: list[int] = []
        self.migrated_connection: dict[str, object] = {}  # as `flwr run` migrated it from pyproject.toml

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Deployment:
        if self.app.exists():
            raise HarnessError(f"{self.work} was already used by a Deployment; use a fresh folder")
        stale = cleanup_stale_harness_processes()
        if stale:
            print(f"deploy_harness: killed processes left by earlier harness runs: {stale}", file=sys.stderr)
        shutil.copytree(self.app_dir, self.app, symlinks=True, ignore=shutil.ignore_patterns(*DEFAULT_COPY_IGNORE))
        try:
            self._migrate_and_point_connection()
            self._start_superlink()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        error = exc_info[1]
        try:
            self.close()
        except HarnessError:
            if error is None:
                raise

    def close(self) -> None:
        """Stop everything started here; raise HarnessError if a process or a port survives."""
        # SuperNodes first, so none is left retrying against a SuperLink that is gone.
        for node in self.supernodes.values():
            if node.alive():
                _signal_group(node.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(node.alive() for node in self.supernodes.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = _kill_tokens({self.token})
        for node in self.supernodes.values():
            if node.alive():
                _signal_group(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=10)
        if self.superlink is not None and self.superlink.poll() is None:
            _signal_group(self.superlink.pid, signal.SIGKILL)
            self.superlink.wait(timeout=10)
        listening = [port for port in self.ports if _port_listening(port)]
        if survivors or listening:
            raise HarnessError(
                "Teardown failed: "
                + "; ".join(f"port {port} open: {_listener_info(port)}" for port in listening)
                + "; ".join(f"{p.pid} {p.cmdline[:120]}" for p in survivors)
            )

    # ------------------------------------------------------------------ environment

    def env(self, flwr_home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FLWR_HOME": str(flwr_home),
                "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                "FLWR_DISABLE_UPDATE_CHECK": "1",
                "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "COLUMNS": "200",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                MARKER_ENV: self.token,
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _new_port(self) -> int:
        port = _free_port()
        if _port_listening(port):
            raise HarnessError(f"Port {port} is in use: {_listener_info(port)}")
        self.ports.append(port)
        return port

    def _start(self, cmd: list[str], name: str, home: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], Path]:
        home.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        log_path = self.work / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                cmd, cwd=cwd, env=self.env(home), stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return process, log_path

    # ------------------------------------------------------------------ SuperLink

    def _migrate_and_point_connection(self) -> None:
        """Migrate the copy's federations (as `flwr run` does) and aim `local-deployment` here."""
        self.port = self._new_port()
        self.cli_home.mkdir()
        migrate = (
            "import sys\n"
            "from flwr.cli.config_migration import migrate\n"
            "migrate(sys.argv[1], [], ignore_legacy_usage=True)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", migrate, str(self.app)], env=self.env(self.cli_home),
            cwd=self.work, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        config_path = self.cli_home / "config.toml"
        if result.returncode != 0 or not config_path.exists():
            raise HarnessError(f"Migrating {self.app}/pyproject.toml failed:\n{result.stdout}\n{result.stderr}")
        config = tomllib.loads(config_path.read_text())
        migrated = config.get("superlink", {}).get(CONNECTION)
        self.migrated_connection = dict(migrated or {})
        if not migrated:
            raise HarnessError(f"pyproject.toml has no federation {CONNECTION!r} to migrate:\n{result.stdout}")
        connection: dict[str, object] = {"address": self.address}
        if self.tls is None:
            connection["insecure"] = True
        else:
            connection["root-certificates"] = str(self.tls.ca_cert)
        config["superlink"][CONNECTION] = connection
        config_path.write_text(tomli_w.dumps(config))

    def _start_superlink(self) -> None:
        cmd = ["flower-superlink", "--host", HOST, "--port", str(self.port), "--disable-runtime-dependency-installation"]
        if self.tls is None:
            cmd.append("--insecure")
        else:
            cmd += [
                "--ssl-ca-certfile", str(self.tls.ca_cert),
                "--ssl-certfile", str(self.tls.server_cert),
                "--ssl-keyfile", str(self.tls.server_key),
            ]
        if self.supernode_auth:
            cmd.append("--enable-supernode-auth")
        home = self.work / "superlink_home"
        cmd += ["--database", str(home / "state.db")]
        self.superlink, self.superlink_log_path = self._start(cmd, "superlink", home, self.work / "superlink")
        _wait_for(
            lambda: "Uvicorn running on" in self.superlink_log() or self.superlink.poll() is not None,
            60, "the SuperLink to listen", self.superlink_log,
        )
        if self.superlink.poll() is not None or not _port_listening(self.port):
            raise HarnessError(f"The SuperLink did not start (rc={self.superlink.poll()}):\n{self.superlink_log()[-3000:]}")

    def superlink_log(self) -> str:
        return _ANSI_RE.sub("", self.superlink_log_path.read_text(errors="replace"))

    # ------------------------------------------------------------------ CLI

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`flwr <args>` with the harness's config.toml, from a folder without pyproject.toml."""
        return subprocess.run(
            [self.flwr, *args], cwd=self.work, env=self.env(self.cli_home),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def register(self, public_key: Path) -> int:
        """`flwr supernode register <key.pub> local-deployment`; returns the node id."""
        result = self.cli("supernode", "register", str(public_key), CONNECTION, "--format", "json")
        try:
            return int(json.loads(result.stdout)["node-id"])
        except (ValueError, KeyError, TypeError) as error:
            raise HarnessError(f"Registering {public_key} failed: {result.stdout}\n{result.stderr}") from error

    def listed_supernodes(self) -> list[dict]:
        """`flwr supernode ls local-deployment --format json`: the nodes the SuperLink knows."""
        result = self.cli("supernode", "ls", CONNECTION, "--format", "json")
        try:
            return list(json.loads(result.stdout)["nodes"])
        except (ValueError, KeyError, TypeError) as error:
            raise HarnessError(f"`flwr supernode ls` failed: {result.stdout}\n{result.stderr}") from error

    # ------------------------------------------------------------------ SuperNodes

    def start_supernode(
        self,
        name: str,
        node_config: Mapping[str, object],
        *,
        private_key: Path | None = None,
        wait: bool = True,
    ) -> SuperNode:
        """Start `flower-supernode --superlink 127.0.0.1:<port> --node-config ...`.

        `wait` returns once the SuperNode has a node id; a SuperNode that the SuperLink
        refuses is started with wait=False.
        """
        if name in self.supernodes:
            raise HarnessError(f"SuperNode {name!r} already started")
        port = self._new_port()
        cmd = ["flower-supernode", "--superlink", self.address, "--port", str(port)]
        cmd += ["--node-config", " ".join(format_config_overrides(node_config))]
        if self.tls is None:
            cmd.append("--insecure")
        else:
            cmd += ["--root-certificates", str(self.tls.ca_cert)]
        if private_key is not None:
            cmd += ["--auth-supernode-private-key", str(private_key)]
        process, log_path = self._start(cmd, f"supernode-{name}", self.work / f"{name}_home", self.work / name)
        node = SuperNode(name, process, log_path, port, dict(node_config))
        self.supernodes[name] = node
        if wait:
            self.wait_connected(node)
        return node

    def wait_connected(self, *nodes: SuperNode, timeout: float = 90) -> None:
        """Wait until every node has a node id (start several with wait=False, then wait)."""
        for node in nodes:
            _wait_for(lambda: node.node_id is not None or not node.alive(), timeout, f"SuperNode {node.name} to connect", node.log)
            if node.node_id is None:
                raise HarnessError(f"SuperNode {node.name} exited (rc={node.process.poll()}):\n{node.log()[-3000:]}")

    def wait_exited(self, node: SuperNode, timeout: float = 90) -> int:
        """Wait for a SuperNode to exit (e.g. refused by the SuperLink); its exit code."""
        _wait_for(lambda: not node.alive(), timeout, f"SuperNode {node.name} to exit", node.log)
        return int(node.process.returncode)

    def kill_supernode(self, name: str) -> list[int]:
        """SIGKILL a SuperNode with its SuperExec and ClientApps: the node is gone, no goodbye."""
        node = self.supernodes[name]
        pids = node.session_pids()
        _signal_group(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=10)
        node.killed = True
        _wait_for(lambda: not node.session_pids(), 10, f"SuperNode {name}'s processes to die")
        return pids

    # ------------------------------------------------------------------ runs

    def run(
        self,
        run_config: Mapping[str, object],
        *,
        timeout: float = 600,
        while_running: Callable[[str], None] | None = None,
    ) -> FlowerRun:
        """`flwr run <app copy> local-deployment --stream` with run-config overrides.

        `while_running(output_so_far)` is called about twice a second until the CLI
        exits (e.g. to kill a SuperNode mid-round). Status is read with `flwr ls`.
        """
        with (self.app_dir / "pyproject.toml").open("rb") as file:
            _check_run_config_keys(tomllib.load(file), run_config)
        cmd = [self.flwr, "run", str(self.app), CONNECTION, "--stream"]
        for item in format_config_overrides(run_config):
            cmd += ["--run-config", item]
        log_path = self.work / f"flwr_run_{uuid.uuid4().hex[:8]}.log"
        timed_out = False
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                cmd, cwd=self.work, env=self.env(self.cli_home), stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                deadline = time.monotonic() + timeout
                while process.poll() is None:
                    if time.monotonic() > deadline:
                        timed_out = True
                        break
                    if while_running is not None:
                        while_running(_ANSI_RE.sub("", log_path.read_text(errors="replace")))
                    time.sleep(0.5)
            finally:
                if process.poll() is None:
                    _kill_group(process)
        output = _ANSI_RE.sub("", log_path.read_text(errors="replace"))
        match = _RUN_ID_RE.search(output)
        run_id = int(match.group(1)) if match else None
        status = details = None
        if run_id is not None:
            status, details = _query_status(
                self.flwr, CONNECTION, run_id, self.env(self.cli_home), self.work, self.port, wait=0 if timed_out else 20
            )
        return FlowerRun(
            returncode=process.returncode,
            output=output,
            run_id=run_id,
            status=status,
            status_details=details,
            timed_out=timed_out,
            app_dir=self.app,
            flwr_home=self.cli_home,
            port=self.port,
            superlink_log=self.superlink_log(),
            command=cmd,
        )


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
