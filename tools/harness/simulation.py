"""How does the app run on the Simulation Engine? A copy of it under `flwr run`, on a fresh local
SuperLink, with everything it started stopped before returning."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from tools.harness.app_config import _copy_app, _flags, _write_flwr_config
from tools.harness.flwr_run import FlowerRun, _query_status, _run_cli
from tools.harness.launch import HOST, HarnessError, _env, _free_port, _read_log
from tools.harness.teardown import _RAY_TMP_PREFIX, _cleanup_stale, _kill_tokens, _verify_teardown


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
