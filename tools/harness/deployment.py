"""How does the app run on the Deployment Engine? A `flower-superlink`, `flower-supernode`s and
`flwr run` on 127.0.0.1 (``Deployment``), with TLS, SuperNode authentication and memory limits."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from tools.harness.app_config import _copy_app, _flags, _write_flwr_config, declared_federation, format_config_overrides
from tools.harness.credentials import TlsFiles
from tools.harness.flwr_run import FlowerRun, _query_status, _run_cli
from tools.harness.launch import (
    HOST,
    HarnessError,
    _capture,
    _env,
    _free_port,
    _read_log,
    _spawn,
    _stop_group,
    _wait_for,
    port_listening,
)
from tools.harness.memory_group import MemoryGroup
from tools.harness.teardown import _cleanup_stale, _kill_tokens, _verify_teardown, all_processes

DEPLOYMENT = "local-deployment"


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
