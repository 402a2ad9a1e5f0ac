"""Dataset pictures: the project's own partitions, counted per node and per class name."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TEST_KEYWORDS
from whisper_example import dataset_plots
from whisper_example.data import count_partitions, partition_rows
from whisper_example.dataset_plots import LABEL_DISTRIBUTION, PARTITION_SIZES, draw_dataset, silence_count
from whisper_example.labels import class_names, class_of

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPEAKERS_PER_NODE = 3


def test_counts_are_the_partitions(speech_folder: Path, tmp_path: Path) -> None:
    source = str(speech_folder)
    pictures = draw_dataset(source, "", TEST_KEYWORDS, SPEAKERS_PER_NODE, 0.0, 30, tmp_path)
    assert [path.name for path in pictures.paths] == [PARTITION_SIZES, LABEL_DISTRIBUTION]
    for path in pictures.paths:
        assert path.read_bytes()[:8] == PNG_MAGIC

    num_nodes = count_partitions(source, "", SPEAKERS_PER_NODE)
    partitions = [partition_rows(source, "", SPEAKERS_PER_NODE, node, num_nodes) for node in range(num_nodes)]
    assert pictures.sizes == [len(rows) for rows in partitions]

    counts = pictures.label_counts
    assert list(counts.columns) == class_names(TEST_KEYWORDS)  # names, never ids
    assert counts.sum(axis=1).tolist() == pictures.sizes
    for node, rows in enumerate(partitions):
        expected = {name: 0 for name in counts.columns}
        for word in rows["word"]:
            expected[class_names(TEST_KEYWORDS)[class_of(word, TEST_KEYWORDS)]] += 1
        assert counts.loc[node].to_dict() == expected


def test_silence_crops_and_max_partitions(speech_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = str(speech_folder)
    num_nodes = count_partitions(source, "", SPEAKERS_PER_NODE)
    assert num_nodes >= 2
    pictures = dataset_plots.main(
        ["--dataset", source, "--keywords", ",".join(TEST_KEYWORDS), "--speakers-per-node", str(SPEAKERS_PER_NODE),
         "--silence-fraction", "0.1", "--max-partitions", "2", "--out", str(tmp_path / "_static")]
    )
    assert capsys.readouterr().out.split() == [str(path) for path in pictures.paths]
    assert all(path.parent == tmp_path / "_static" and path.is_file() for path in pictures.paths)
    speech = [len(partition_rows(source, "", SPEAKERS_PER_NODE, node, num_nodes)) for node in range(num_nodes)]
    assert pictures.sizes == [count + silence_count(count, 0.1) for count in speech]  # every node
    assert len(pictures.label_counts) == 2  # only the first --max-partitions nodes
    assert pictures.label_counts["_silence_"].tolist() == [silence_count(count, 0.1) for count in speech[:2]]
