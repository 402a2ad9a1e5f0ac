"""Write ready-to-train SuperNode partitions to disk, for the Deployment Engine.

    python preprocess.py --dataset SRC                 # every partition, in parallel
    python preprocess.py --dataset SRC --partition-id 0

Each partition is ``<output-dir>/partition_<N>/``: a ``datasets`` folder (``save_to_disk``)
of 1-s int16 clips with class labels and content digests (silence crops included),
exactly the clips the simulation gives node N. Give it to a SuperNode with
``--node-config "local-data='<that folder>'"``.
"""

import argparse
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from whisper_example.config import RunConfig, add_config_options, config_from_options
from whisper_example.data.clips import BYTES_PER_CLIP, Clips
from whisper_example.data.node_data import node_clips
from whisper_example.data.partitions import count_partitions
from whisper_example.data.sources import DataSourceError, load_source, speech_rows
from whisper_example.system.disk_cache import gigabytes

OPTIONS = ("dataset", "dataset-subset", "keywords", "speakers-per-node", "silence-fraction", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_options(parser, *OPTIONS)
    parser.add_argument("--partition-id", type=int, default=None, help="write only this partition")
    parser.add_argument("--output-dir", type=Path, default=Path("partitions"))
    parser.add_argument("--workers", type=int, default=2, help="processes writing partitions in parallel")
    return parser.parse_args(argv)


def write_partition(
    config: RunConfig, partition_id: int, num_partitions: int, output_dir: Path
) -> tuple[int, int, int, int]:
    """Prepare one node's clips and save them; returns (id, clips, skipped, bytes)."""
    clips = node_clips({"partition-id": partition_id, "num-partitions": num_partitions}, config)
    target = output_dir / f"partition_{partition_id}"
    save_clips(clips, target)
    size = sum(file.stat().st_size for file in target.rglob("*") if file.is_file())
    return partition_id, len(clips), clips.skipped, size


def save_clips(clips: Clips, target: Path) -> None:
    """Prepared clips as a folder that node config ``local-data`` can name."""
    from datasets import ClassLabel, Dataset, DatasetInfo, Features, List, Value

    features = Features(
        {
            "audio": List(Value("int16"), length=clips.table.schema.field("audio").type.list_size),
            "label": ClassLabel(names=list(clips.names)),
            "digest": List(Value("uint8"), length=clips.table.schema.field("digest").type.list_size),
        }
    )
    Dataset(clips.table.cast(features.arrow_schema), info=DatasetInfo(features=features)).save_to_disk(str(target))


def main(argv: list[str] | None = None) -> list[tuple[int, int, int, int]]:
    args = parse_args(argv)
    config = config_from_options(args, *OPTIONS)
    try:
        num_partitions = count_partitions(config.dataset, config.dataset_subset, config.speakers_per_node)
        speech = len(speech_rows(load_source(config.dataset, config.dataset_subset)["train"]))
    except (DataSourceError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.partition_id is not None and not 0 <= args.partition_id < num_partitions:
        raise SystemExit(f"error: --partition-id must be in 0..{num_partitions - 1} ({num_partitions} partitions)")
    wanted = [args.partition_id] if args.partition_id is not None else list(range(num_partitions))
    output_dir = args.output_dir.expanduser().resolve()
    clips = speech / (1 - config.silence_fraction) * len(wanted) / num_partitions
    print(
        f"{config.dataset}: {num_partitions} partitions (speakers-per-node={config.speakers_per_node}); a simulation "
        f'of this dataset needs --federation-config "num-supernodes={num_partitions}", a deployment one SuperNode each'
    )
    print(
        f"Writing {len(wanted)} partition(s), about {clips:,.0f} clips "
        f"({gigabytes(clips * BYTES_PER_CLIP)}), to {output_dir}"
    )
    if len(wanted) == 1 or args.workers <= 1:
        written = [write_partition(config, pid, num_partitions, output_dir) for pid in tqdm(wanted, desc="partitions")]
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(write_partition, config, pid, num_partitions, output_dir) for pid in wanted]
            written = [future.result() for future in tqdm(as_completed(futures), total=len(futures), desc="partitions")]
    for partition_id, count, skipped, size in sorted(written):
        print(
            f"partition_{partition_id}: {count} clips, {skipped} skipped, {size / 1e6:.2f} MB "
            f"({size / max(count, 1) / 1e3:.1f} KB per clip) -> {output_dir / f'partition_{partition_id}'}"
        )
    return sorted(written)


if __name__ == "__main__":
    main()
