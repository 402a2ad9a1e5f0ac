"""Dataset pictures count the project's own partitions, by class name, with their silence crops."""

from pathlib import Path

import matplotlib.image
import numpy as np
from conftest import small_config

from tools.dataset_plots import LABEL_DISTRIBUTION, PARTITION_SIZES, main, node_class_counts
from whisper_example.data.clips import class_of
from whisper_example.data.partitions import count_partitions, partition_rows
from whisper_example.data.preparation import silence_count


def test_counts_are_the_partitions_words_plus_their_silence(speech_folder: Path, tmp_path: Path) -> None:
    config = small_config(speech_folder, Path("unused"), tmp_path)
    counts = node_class_counts(config)
    nodes = count_partitions(str(speech_folder), "", 3)
    assert counts.shape == (nodes, 6)
    for node in range(nodes):
        words = partition_rows(str(speech_folder), "", 3, node, nodes)["word"]
        expected = np.bincount([class_of(word, config.words) for word in words], minlength=6)
        expected[4] += silence_count(len(words), config.silence_fraction)  # the folder has background noise
        assert counts[node].tolist() == expected.tolist()


def test_the_command_draws_both_pictures(speech_folder: Path, tmp_path: Path, capsys) -> None:
    args = [
        "--dataset",
        str(speech_folder),
        "--keywords",
        "yes,no,up,down",
        "--speakers-per-node",
        "3",
        "--max-partitions",
        "2",
    ]
    paths = main([*args, "--out", str(tmp_path)])
    assert [path.name for path in paths] == [PARTITION_SIZES, LABEL_DISTRIBUTION]
    assert capsys.readouterr().out.split() == [str(path) for path in paths]
    for path in paths:
        assert matplotlib.image.imread(path).shape[0] > 100
