"""Which clips does this SuperNode have? Its ``local-data`` in deployment, its partition in
simulation, and the slice of them it holds out for evaluation.

Every problem with ``local-data`` raises DataSourceError naming the key and the absolute
path, so the ServerApp can record why a node failed.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from whisper_example.config import RunConfig
from whisper_example.data.clips import CLIP_SCHEMA, Clips
from whisper_example.data.partitions import partition_rows
from whisper_example.data.preparation import node_noise, prepare_rows
from whisper_example.data.sources import DataSourceError, load_source
from whisper_example.system.process_memo import remembered


def node_clips(node_config: Mapping[str, object], config: RunConfig) -> Clips:
    """This SuperNode's clips: ``local-data`` in deployment, a partition in simulation."""
    return _node_clips(tuple(sorted(node_config.items())), config)


@remembered(maxsize=2)  # keyed by the node config's items: a simulation process serves many nodes
def _node_clips(node_items: tuple[tuple[str, object], ...], config: RunConfig) -> Clips:
    node_config = dict(node_items)
    if "local-data" in node_config:
        path = _local_data_path(node_config["local-data"])
        try:
            if (path / "state.json").exists():
                return read_partition(path, config.class_names)
            rows = load_source(str(path))["train"]
            return prepare_rows(rows, config, node_noise(str(path)), config.seed)
        except (OSError, ValueError) as error:  # DataSourceError, and unreadable or corrupt files
            raise DataSourceError(f"node config 'local-data' = '{path}': {error}") from None
    if "partition-id" in node_config and "num-partitions" in node_config:
        partition_id = int(node_config["partition-id"])
        source, subset = config.dataset, config.dataset_subset
        rows = partition_rows(
            source, subset, config.speakers_per_node, partition_id, int(node_config["num-partitions"])
        )
        return prepare_rows(rows, config, node_noise(source, subset), config.seed + partition_id)
    raise DataSourceError(
        "node config has neither 'local-data' (deployment: a partition written by preprocess.py) "
        f"nor 'partition-id'/'num-partitions' (simulation); got keys {sorted(node_config)}"
    )


def _local_data_path(value: object) -> Path:
    """The folder named by node config ``local-data``, absolute, or DataSourceError."""
    text = str(value).strip()
    if not text:
        raise DataSourceError(
            "node config 'local-data' is empty; give the folder of this node's data, "
            "e.g. --node-config \"local-data='/data/partition_0'\""
        )
    path = Path(text).expanduser()
    where = (
        ""
        if path.is_absolute()
        else f" (relative to the ClientApp's working directory {Path.cwd()}; use an absolute path)"
    )
    path = path.absolute()
    if not path.exists():
        raise DataSourceError(f"node config 'local-data' = '{path}': no such file or folder{where}")
    if not path.is_dir():
        raise DataSourceError(
            f"node config 'local-data' = '{path}': is a file, expected a folder "
            "(a partition written by preprocess.py, a save_to_disk DatasetDict or a Speech Commands folder)"
        )
    return path


def read_partition(path: Path, names: Sequence[str]) -> Clips:
    """A partition written by ``preprocess.py``, memory-mapped with pyarrow (no ``datasets``)."""
    try:
        state = json.loads((path / "state.json").read_text())
        info = json.loads((path / "dataset_info.json").read_text())
        found = info["features"]["label"]["names"]
        tables = [pa.ipc.open_stream(pa.memory_map(str(path / f["filename"]))).read_all() for f in state["_data_files"]]
        table = pa.concat_tables(tables).select(CLIP_SCHEMA.names).cast(CLIP_SCHEMA)
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException) as error:
        raise DataSourceError(f"{path} is not a partition written by preprocess.py ({error})") from None
    if list(found) != list(names):
        raise DataSourceError(
            f"{path} was prepared for classes {found}, but this run uses {list(names)}; "
            "re-run preprocess.py with the same keywords"
        )
    return Clips(table, tuple(names))


def split_for_evaluation(num_clips: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a node's training clips and of its held-out slice; the same on every call."""
    if eval_fraction == 0 or num_clips < 2:
        return np.arange(num_clips), np.zeros(0, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(num_clips)
    num_eval = max(1, round(num_clips * eval_fraction))
    return np.sort(order[num_eval:]), np.sort(order[:num_eval])
