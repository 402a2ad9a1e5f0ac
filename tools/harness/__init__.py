"""How do the tests and benchmarks run the Flower app end to end, on the Simulation or the Deployment
Engine, isolated and self-cleaning?

``simulation.run_simulation`` and ``deployment.Deployment`` run it; ``flwr_run`` reads how a run
went, ``app_config`` makes the app copy and the CLI's config it runs with, ``launch`` starts the
processes and ``teardown`` finds and stops them all; ``ray_cluster``, ``memory_group`` and
``credentials`` add a multi-node Ray cluster, a memory limit and TLS files and SuperNode keys.

The facts it relies on (verified on flwr 1.41.0 and 1.42.0):

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
