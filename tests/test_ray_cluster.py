"""The simulation on an existing Ray cluster, as the README's "On a Ray cluster" has it: a head
and a worker node on 127.0.0.1 (1 CPU each), the SuperLink started with RAY_ADDRESS pointing at
the head. Asking for more CPUs per ClientApp than a node has fails with that reason; asking
for what a node has completes, with ClientApps on both nodes."""

from pathlib import Path

import pytest
from conftest import REPO, simulation_config

from tools.harness.ray_cluster import WHERE_ENV, RayCluster, app_noting_ray_nodes, ray_nodes_noted
from tools.harness.simulation import run_simulation
from whisper_example.data.partitions import count_partitions

pytestmark = pytest.mark.slow  # a Ray cluster and `flwr run`


def test_a_simulation_attached_to_a_two_node_ray_cluster_runs_clientapps_on_both_nodes(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    where, nodes = tmp_path / "where", count_partitions(str(speech_folder), "", 3)
    app = app_noting_ray_nodes(REPO, tmp_path / "app")
    rounds = {"num-server-rounds": 1, "fraction-evaluate": 1.0}
    config = simulation_config(speech_folder, tiny_whisper, tmp_path, **rounds)
    with RayCluster(tmp_path / "ray", cpus=1, workers=1, env={WHERE_ENV: str(where)}) as cluster:
        attached = {"RAY_ADDRESS": cluster.address}
        too_big = run_simulation(
            app, tmp_path / "default", num_supernodes=nodes, run_config=config, extra_env=attached, timeout=300
        )
        run = run_simulation(
            app,
            tmp_path / "fitting",
            num_supernodes=nodes,
            run_config=config,
            federation_config={"client-resources-num-cpus": 1},
            extra_env=attached,
            timeout=600,
        )
    # Flower's default asks 2 CPUs per ClientApp; each node has 1.
    assert too_big.status == "finished:failed", too_big.describe()
    assert "Each ClientApp asks for 2 CPUs (client-resources-num-cpus), more than any Ray node offers" in (
        too_big.output
    ), too_big.describe()
    assert "no GPU" not in too_big.output
    assert run.completed, run.describe()
    noted = ray_nodes_noted(where)
    assert len(noted["train"]) == nodes and len(noted["evaluate"]) == nodes, noted
    ran_on = noted["train"] + noted["evaluate"]
    assert len(set(ran_on)) == 2, noted  # both Ray nodes ran ClientApps
    print(f"\n[ray cluster] messages per Ray node: { {node[:12]: ran_on.count(node) for node in set(ran_on)} }")
