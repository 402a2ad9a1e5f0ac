"""Which Ray node runs each message? A multi-node Ray cluster on 127.0.0.1 for a simulation to
attach to (``RayCluster``), and an app copy whose ClientApp notes the node of each message."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from tools.harness.app_config import app_with_clientapp
from tools.harness.launch import HOST, _capture, _env, _free_port, _read_log, _spawn, _wait_for, port_listening
from tools.harness.teardown import _IN_USE, _RAY_TMP_PREFIX, _cleanup_stale, _kill_tokens, _verify_teardown

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
