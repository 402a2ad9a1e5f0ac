"""Write ready-to-train SuperNode partitions to disk, for the Deployment Engine.

    python preprocess.py                      # every partition, in parallel
    python preprocess.py --partition-id 0     # one partition

Each partition is ``<output-dir>/partition_<N>/``: a ``datasets`` folder of 1-s int16
clips with class labels (silence crops included), exactly the data the simulation gives
node N. Give it to a SuperNode with ``--node-config "local-data='<that folder>'"``.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from whisper_example.config import ConfigError, default_config, validate
from whisper_example.data import count_partitions
from whisper_example.labels import class_names, parse_keywords
from whisper_example.pipeline import node_clips


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = default_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=defaults["dataset"], help="Hub id, save_to_disk folder or Speech Commands folder")
    parser.add_argument("--dataset-subset", default=defaults["dataset-subset"])
    parser.add_argument("--keywords", default=defaults["keywords"])
    parser.add_argument("--speakers-per-node", type=int, default=defaults["speakers-per-node"])
    parser.add_argument("--silence-fraction", type=float, default=defaults["silence-fraction"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--partition-id", type=int, default=None, help="write only this partition")
    parser.add_argument("--output-dir", type=Path, default=Path("partitions"))
    parser.add_argument("--workers", type=int, default=2, help="processes writing partitions in parallel")
    return parser.parse_args(argv)


def folder_size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def write_partition(config: dict[str, object], partition_id: int, num_partitions: int, output_dir: Path) -> tuple[int, int, int, int]:
    """Prepare one node's clips and save them; returns (id, clips, skipped, bytes)."""
    clips = node_clips({"partition-id": partition_id, "num-partitions": num_partitions}, config)
    target = output_dir / f"partition_{partition_id}"
    clips.dataset.save_to_disk(str(target))
    return partition_id, len(clips), clips.skipped, folder_size(target)


def main(argv: list[str] | None = None) -> list[tuple[int, int, int, int]]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    config = default_config() | {
        "dataset": args.dataset,
        "dataset-subset": args.dataset_subset,
        "keywords": args.keywords,
        "speakers-per-node": args.speakers_per_node,
        "silence-fraction": args.silence_fraction,
        "seed": args.seed,
    }
    try:
        config["num-classes"] = len(class_names(parse_keywords(str(args.keywords))))
        config = validate(config)
    except (ConfigError, ValueError) as error:
        raise SystemExit(f"error: {error}") from error
    num_partitions = count_partitions(args.dataset, args.dataset_subset, args.speakers_per_node)
    if args.partition_id is not None and not 0 <= args.partition_id < num_partitions:
        raise SystemExit(f"error: --partition-id must be in 0..{num_partitions - 1} ({num_partitions} partitions)")
    wanted = [args.partition_id] if args.partition_id is not None else list(range(num_partitions))
    output_dir = args.output_dir.expanduser().resolve()
    print(f"Writing {len(wanted)} of {num_partitions} partitions to {output_dir}")

    written = []
    if len(wanted) == 1 or args.workers <= 1:
        written = [write_partition(config, pid, num_partitions, output_dir) for pid in tqdm(wanted, desc="partitions")]
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(write_partition, config, pid, num_partitions, output_dir) for pid in wanted]
            written = [future.result() for future in tqdm(as_completed(futures), total=len(futures), desc="partitions")]
    for partition_id, clips, skipped, size in sorted(written):
        print(
            f"partition_{partition_id}: {clips} clips, {skipped} skipped, {size / 1e6:.2f} MB "
            f"({size / max(clips, 1) / 1e3:.1f} KB per clip) -> {output_dir / f'partition_{partition_id}'}"
        )
    return sorted(written)


if __name__ == "__main__":
    main()
