"""Pictures of the federated dataset: how many clips each SuperNode holds, and of which class.

The partitions are the project's own (``data.partition_rows``: speakers grouped into
SuperNodes by ``GroupedNaturalIdPartitioner``), never a second partitioning. Each
node's clips are reduced to their class, named as the task names them (the keywords,
``_silence_`` and ``_unknown_``), and drawn with flwr-datasets' visualization helpers.

Like the ClientApp, every node also gets silence crops of the background noise, about
``silence-fraction`` of its clips (counted here as if every clip decodes).

    python -m whisper_example.synthetic --out /tmp/speech --speakers 30
    python -m whisper_example.dataset_plots --dataset /tmp/speech --keywords yes,no,up,down
    python -m whisper_example.dataset_plots --max-partitions 40   # Speech Commands v0.02

Writes ``partition_sizes.png`` (all nodes) and ``label_distribution.png`` (the first
``--max-partitions`` nodes, stacked per class) into ``--out`` (default ``_static/``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Features
from flwr_datasets.partitioner import Partitioner
from flwr_datasets.visualization import plot_label_distributions
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from whisper_example.config import default_config
from whisper_example.data import DataSourceError, count_partitions, load_source, partition_rows
from whisper_example.labels import SILENCE, class_names, class_of, parse_keywords

LABEL = "label"
PARTITION_SIZES = "partition_sizes.png"
LABEL_DISTRIBUTION = "label_distribution.png"
DEFAULT_MAX_PARTITIONS = 30


def silence_count(num_speech: int, silence_fraction: float) -> int:
    """Silence crops a node adds to ``num_speech`` clips (as ``data.prepare_clips`` does)."""
    return round(num_speech * silence_fraction / (1 - silence_fraction))


class NodeClasses(Partitioner):
    """The project's SuperNode partitions, each row reduced to its class (a ClassLabel).

    A read-only view for flwr-datasets' plots: partition ``i`` holds the classes of
    ``data.partition_rows(..., i, ...)`` plus the node's silence crops (when the source
    has background noise); ``dataset`` is every node's classes, node after node.
    """

    def __init__(
        self, source: str, subset: str, keywords: Sequence[str], speakers_per_node: int, silence_fraction: float
    ) -> None:
        super().__init__()
        self.source, self.subset = source, subset
        self.keywords = tuple(keywords)
        self.speakers_per_node = speakers_per_node
        self.features = Features({LABEL: ClassLabel(names=class_names(self.keywords))})
        has_noise = pc.any(pc.equal(_words(load_source(source, subset)["train"]), SILENCE)).as_py()
        self.silence_fraction = silence_fraction if has_noise else 0.0
        self._num_partitions = count_partitions(source, subset, speakers_per_node)
        self._labels = [self._node_labels(partition_id) for partition_id in range(self._num_partitions)]
        self.dataset = self._classes(np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64))

    @property
    def num_partitions(self) -> int:
        return self._num_partitions

    def sizes(self) -> list[int]:
        """Clips per node (speech rows plus silence crops), for every node."""
        return [len(labels) for labels in self._labels]

    def load_partition(self, partition_id: int) -> Dataset:
        return self._classes(self._labels[partition_id])

    def _node_labels(self, partition_id: int) -> np.ndarray:
        rows = partition_rows(self.source, self.subset, self.speakers_per_node, partition_id, self._num_partitions)
        speech = [class_of(word, self.keywords) for word in _words(rows).to_pylist()]
        silence = [class_of(SILENCE, self.keywords)] * silence_count(len(speech), self.silence_fraction)
        return np.asarray(speech + silence, dtype=np.int64)

    def _classes(self, labels: np.ndarray) -> Dataset:
        return Dataset.from_dict({LABEL: labels}, features=self.features)


def _words(rows: Dataset) -> pa.ChunkedArray:
    """The ``word`` column straight from Arrow (iterating a datasets Column is slow)."""
    return rows.select_columns(["word"]).with_format("arrow")[:]["word"]


@dataclass(frozen=True)
class DatasetPictures:
    paths: list[Path]
    sizes: list[int]  # clips per node, as drawn in partition_sizes.png
    label_counts: pd.DataFrame  # rows: node id, columns: class names, as drawn in label_distribution.png


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _describe(source: str, subset: str) -> str:
    return f"{source} ({subset})" if subset and not Path(source).expanduser().exists() else source


def class_colours(keywords: Sequence[str]) -> ListedColormap:
    """One colour per class, in class order: keywords in colour, silence and unknown in greys."""
    palette = [f"C{index}" for index in range(10) if index != 7]  # C7 is grey
    palette += [colormaps["tab20b"].colors[index] for index in range(0, 20, 4)]
    palette += [colour for index, colour in enumerate(colormaps["tab20"].colors) if index % 2 and index != 15]
    keyword_colours = [palette[index % len(palette)] for index in range(len(keywords))]
    # Exactly one colour per class: pandas samples the map at linspace(0, 1, classes).
    return ListedColormap([*keyword_colours, "#cfcfcf", "#4d4d4d"])


def draw_partition_sizes(sizes: Sequence[int], out: Path, title: str) -> Path:
    figure = _figure(min(16.0, max(8.0, 0.25 * len(sizes) + 2)), 4.2)
    axes = figure.subplots()
    nodes = np.arange(len(sizes))
    axes.bar(nodes, sizes, width=0.8 if len(sizes) <= 60 else 1.0, color="tab:blue")
    if len(sizes):
        mean = float(np.mean(sizes))
        axes.axhline(mean, color="tab:orange", linestyle="--", linewidth=1)
        title += f"\nmin {min(sizes)}, median {np.median(sizes):g}, max {max(sizes)}, mean {mean:.1f} (dashed)"
    axes.set_xlabel("SuperNode (partition id)")
    axes.set_ylabel("clips (speech + silence crops)")
    axes.set_xlim(-0.6, len(sizes) - 0.4)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(title, fontsize="medium")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return out


def draw_label_distribution(view: NodeClasses, max_partitions: int, out: Path, title: str) -> pd.DataFrame:
    shown = min(max_partitions, view.num_partitions)
    figure = _figure(min(16.0, max(8.0, 0.3 * shown + 3.5)), 4.8)
    axes = figure.subplots()
    _, _, counts = plot_label_distributions(
        view,
        label_name=LABEL,
        plot_type="bar",
        size_unit="absolute",
        max_num_partitions=shown,
        partition_id_axis="x",
        axis=axes,
        title=title,
        cmap=class_colours(view.keywords),
        legend=False,
        verbose_labels=True,
        plot_kwargs={"width": 0.85},
    )
    # Our own legend: matplotlib drops labels starting with "_" (_silence_, _unknown_).
    handles = list(axes.containers)[::-1]
    figure.legend(handles=handles, labels=[str(name) for name in counts.columns][::-1], title="class", loc="outside right center")
    step = max(1, -(-shown // 50))  # at most about 50 node ids on the axis
    for index, tick in enumerate(axes.get_xticklabels()):
        tick.set_visible(index % step == 0 if shown > 50 else tick.get_visible())
    axes.set_xlabel("SuperNode (partition id)")
    axes.set_ylabel("clips")
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(title, fontsize="medium")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return counts


def draw_dataset(
    source: str,
    subset: str,
    keywords: Sequence[str],
    speakers_per_node: int,
    silence_fraction: float,
    max_partitions: int,
    out_dir: Path,
) -> DatasetPictures:
    """Both pictures of the chosen partitioning, written into ``out_dir``."""
    view = NodeClasses(source, subset, keywords, speakers_per_node, silence_fraction)
    sizes = view.sizes()
    name = _describe(source, subset)
    nodes = f"{view.num_partitions} SuperNodes (speakers-per-node={speakers_per_node})"
    sizes_path = draw_partition_sizes(sizes, out_dir / PARTITION_SIZES, f"Clips per SuperNode: {name}, {nodes}")
    shown = min(max_partitions, view.num_partitions)
    which = f"first {shown} of {view.num_partitions} SuperNodes" if shown < view.num_partitions else nodes
    counts = draw_label_distribution(view, max_partitions, out_dir / LABEL_DISTRIBUTION, f"Classes per SuperNode: {name}, {which}")
    return DatasetPictures([sizes_path, out_dir / LABEL_DISTRIBUTION], sizes, counts)


def _keywords(values: Sequence[str]) -> tuple[str, ...]:
    return parse_keywords(",".join(values))


def main(argv: Sequence[str] | None = None) -> DatasetPictures:
    defaults = default_config()
    parser = argparse.ArgumentParser(
        prog="python -m whisper_example.dataset_plots",
        description="Draw clips per SuperNode and the class distribution across SuperNodes.",
    )
    parser.add_argument("--dataset", default=str(defaults["dataset"]), help="Hub id, save_to_disk folder or Speech Commands folder")
    parser.add_argument("--dataset-subset", default=str(defaults["dataset-subset"]), help="Hub configuration (ignored for local folders)")
    parser.add_argument(
        "--keywords", nargs="+", default=[str(defaults["keywords"])], help="keywords, comma- or space-separated (default: the run config's)"
    )
    parser.add_argument("--speakers-per-node", type=int, default=int(defaults["speakers-per-node"]))
    parser.add_argument(
        "--silence-fraction", type=float, default=float(defaults["silence-fraction"]), help="share of silence crops each node adds"
    )
    parser.add_argument(
        "--max-partitions", type=int, default=DEFAULT_MAX_PARTITIONS, help="SuperNodes shown in the class distribution (sizes show all)"
    )
    parser.add_argument("--out", type=Path, default=Path("_static"), help="output folder (default: _static/)")
    args = parser.parse_args(argv)
    if args.speakers_per_node < 1 or args.max_partitions < 1:
        parser.error("--speakers-per-node and --max-partitions must be >= 1")
    if not 0 <= args.silence_fraction < 1:
        parser.error("--silence-fraction must be in [0, 1)")
    try:
        keywords = _keywords(args.keywords)
    except ValueError as error:
        parser.error(f"--keywords: {error}")
    try:
        pictures = draw_dataset(
            args.dataset, args.dataset_subset, keywords, args.speakers_per_node, args.silence_fraction, args.max_partitions, args.out
        )
    except DataSourceError as error:
        parser.error(str(error))
    except ValueError as error:  # e.g. the partitioner: more speakers per node than speakers
        parser.error(f"--speakers-per-node {args.speakers_per_node}: {error}")
    for path in pictures.paths:
        print(path)
    return pictures


if __name__ == "__main__":
    main()
