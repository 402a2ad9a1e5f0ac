"""How is the data spread over the SuperNodes? Pictures of the clips each node holds, and of
which class: the README's dataset pictures.

The partitions are the project's own (``partitions.partition_rows``); each node's words are
counted by class name as the task names them, and the node's silence crops (about
``silence-fraction`` of its clips, when the source has background noise) are added as
the ClientApp adds them.

    python tools/dataset_plots.py --dataset /tmp/speech --keywords yes,no,up,down
    python tools/dataset_plots.py --max-partitions 40   # Speech Commands v0.02

Writes ``partition_sizes.png`` (every node) and ``label_distribution.png`` (the first
``--max-partitions`` nodes, stacked per class) into ``--out`` (default ``dataset_plots/``).
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps

from whisper_example.config import SILENCE, RunConfig, add_config_options, config_from_options
from whisper_example.data.clips import class_of
from whisper_example.data.partitions import count_partitions, partition_rows
from whisper_example.data.preparation import silence_count
from whisper_example.data.sources import DataSourceError, is_silence, load_source
from whisper_example.plots import figure, save

OPTIONS = ("dataset", "dataset-subset", "keywords", "speakers-per-node", "silence-fraction")
PARTITION_SIZES = "partition_sizes.png"
LABEL_DISTRIBUTION = "label_distribution.png"


def node_class_counts(config: RunConfig) -> np.ndarray:
    """(nodes, classes) clip counts of every SuperNode, silence crops included."""
    source, subset = config.dataset, config.dataset_subset
    has_noise = bool(is_silence(load_source(source, subset)["train"]).any())
    num_nodes = count_partitions(source, subset, config.speakers_per_node)
    counts = np.zeros((num_nodes, config.num_classes), dtype=np.int64)
    for node in range(num_nodes):
        rows = partition_rows(source, subset, config.speakers_per_node, node, num_nodes)
        labels = [
            class_of(word, config.words)
            for word in rows.select_columns(["word"]).with_format("arrow")[:]["word"].to_pylist()
        ]
        counts[node] = np.bincount(labels, minlength=config.num_classes)
        if has_noise:
            counts[node, class_of(SILENCE, config.words)] += silence_count(len(labels), config.silence_fraction)
    return counts


def _colours(num_keywords: int) -> list:
    """One colour per keyword, then light grey for silence and dark grey for unknown."""
    palette = [colour for index, colour in enumerate(colormaps["tab20"].colors) if index not in (14, 15)]
    return [palette[index % len(palette)] for index in range(num_keywords)] + ["#cfcfcf", "#4d4d4d"]


def draw_dataset(config: RunConfig, max_partitions: int, out_dir: Path) -> list[Path]:
    """Both pictures of the configured partitioning, written into ``out_dir``."""
    counts = node_class_counts(config)
    sizes = counts.sum(axis=1)
    nodes = np.arange(len(sizes))
    name = f"{config.dataset}, {len(sizes)} SuperNodes (speakers-per-node={config.speakers_per_node})"

    drawing = figure(min(16.0, max(8.0, 0.25 * len(sizes) + 2)), 4.2)
    axes = drawing.subplots()
    axes.bar(nodes, sizes, width=0.8 if len(sizes) <= 60 else 1.0, color="tab:blue")
    axes.axhline(sizes.mean(), color="tab:orange", linestyle="--", linewidth=1)
    axes.set_title(
        f"Clips per SuperNode: {name}\nmin {sizes.min()}, median {np.median(sizes):g}, "
        f"max {sizes.max()}, mean {sizes.mean():.1f} (dashed)",
        fontsize="medium",
    )
    axes.set_xlabel("SuperNode (partition id)")
    axes.set_ylabel("clips (speech + silence crops)")
    axes.grid(True, axis="y", alpha=0.3)
    paths = [save(drawing, out_dir / PARTITION_SIZES)]

    shown = counts[:max_partitions]
    drawing = figure(min(16.0, max(8.0, 0.3 * len(shown) + 3.5)), 4.8)
    axes = drawing.subplots()
    bottom = np.zeros(len(shown))
    for index, (class_name, colour) in enumerate(zip(config.class_names, _colours(len(config.words)))):
        axes.bar(
            np.arange(len(shown)), shown[:, index], bottom=bottom, width=0.85, color=colour, label=f" {class_name}"
        )
        bottom += shown[:, index]
    handles, labels = axes.get_legend_handles_labels()
    drawing.legend(handles[::-1], labels[::-1], title="class", loc="outside right center")
    which = (
        f"first {len(shown)} of {len(counts)} SuperNodes" if len(shown) < len(counts) else f"{len(counts)} SuperNodes"
    )
    axes.set_title(f"Classes per SuperNode: {config.dataset}, {which}", fontsize="medium")
    axes.set_xlabel("SuperNode (partition id)")
    axes.set_ylabel("clips")
    axes.grid(True, axis="y", alpha=0.3)
    return paths + [save(drawing, out_dir / LABEL_DISTRIBUTION)]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python tools/dataset_plots.py", description=__doc__.split("\n")[0])
    add_config_options(parser, *OPTIONS)
    parser.add_argument(
        "--max-partitions", type=int, default=30, help="SuperNodes shown in the class distribution (sizes show all)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("dataset_plots"), help="output folder (default: dataset_plots/)"
    )
    args = parser.parse_args(argv)
    if args.max_partitions < 1:
        parser.error("--max-partitions must be >= 1")
    config = config_from_options(args, *OPTIONS)
    try:
        paths = draw_dataset(config, args.max_partitions, args.out)
    except DataSourceError as error:
        parser.error(str(error))
    except ValueError as error:  # the partitioner: more speakers per node than speakers
        parser.error(f"--speakers-per-node {config.speakers_per_node}: {error}")
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
