"""The real ClientApp functions, called with real Messages and Contexts: bad clips cost only
themselves, a node with too little data says so, a failure it can name comes back on one
line, and a message pays only for the clips it uses."""

import logging
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import (
    TEST_KEYWORDS,
    claiming_rate,
    context,
    instruction,
    metrics,
    run_and_list_heavy_imports,
    small_config,
    wav_bytes,
)

from whisper_example import client_app
from whisper_example.data.audio import SAMPLE_RATE, resample
from whisper_example.data.node_data import node_clips, split_for_evaluation
from whisper_example.data.partitions import count_partitions, partition_rows
from whisper_example.federation.strategy import failure_of
from whisper_example.model.encoder import load_encoder
from whisper_example.system import memory_budget as memory
from whisper_example.system.process_memo import forget_all

pytestmark = pytest.mark.usefixtures("serverapp_identity")
SPEAKERS = 3  # speakers per node: the 12-speaker folder makes 3 SuperNodes


# Each fault replaces one clip of partition 0, made from that clip's own speech.
SKIPPED_CLIPS = {
    "truncated WAV header": lambda speech: wav_bytes(speech)[:30],
    "random bytes": lambda speech: np.random.default_rng(0).bytes(4000),
    "zero-length file": lambda speech: b"",
    "WAV with no samples": lambda speech: wav_bytes(np.zeros(0, np.float32)),
    "NaN-laden float WAV": lambda speech: wav_bytes(
        np.where(np.arange(speech.size) % 7 == 0, np.nan, speech), subtype="FLOAT"
    ),
    "1-Hz sample rate in the header": lambda speech: claiming_rate(wav_bytes(speech), 1),
}
HANDLED_CLIPS = {
    "silent": lambda speech: wav_bytes(np.zeros(SAMPLE_RATE, np.float32)),
    "stereo": lambda speech: wav_bytes(np.stack([speech, 0.5 * speech], axis=1)),
    **{
        f"{rate} Hz": (lambda r: lambda speech: wav_bytes(resample(speech, SAMPLE_RATE, r), r))(rate)
        for rate in (8000, 22050, 44100, 48000)
    },
    "0.3 s": lambda speech: wav_bytes(speech[6000:10800]),
    "2.5 s": lambda speech: wav_bytes(
        np.concatenate([np.zeros(12000, np.float32), speech, np.zeros(12000, np.float32)])
    ),
    "truncated mid-data": lambda speech: wav_bytes(speech)[: 44 + SAMPLE_RATE],
    "float WAV beyond full scale": lambda speech: wav_bytes(4 * speech, subtype="FLOAT"),
}


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Each test starts as a new ClientApp process would (a SuperNode starts one per message)."""
    forget_all()
    yield
    forget_all()


def partition_files(folder: Path, copy: Path, partition_id: int) -> list[Path]:
    """The clips of one simulated SuperNode, as paths inside ``copy`` (read from the original)."""
    rows = partition_rows(str(folder), "", SPEAKERS, partition_id, count_partitions(str(folder), "", SPEAKERS))
    return [copy / Path(cell["path"]).relative_to(folder) for cell in rows["audio"]]


def test_bad_clips_are_handled_or_skipped_and_counted_and_the_node_still_trains(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(speech_folder, tmp_path / "speech"))
    files = partition_files(speech_folder, copy, 0)
    faults = [*SKIPPED_CLIPS.values(), *HANDLED_CLIPS.values()]
    assert len(files) > len(faults)
    for path, fault in zip(files, faults):
        path.write_bytes(fault(soundfile.read(path, dtype="float32")[0]))
    noise = sorted((copy / "_background_noise_").glob("*.wav"))
    noise[0].write_bytes(np.random.default_rng(1).bytes(10_000))  # silence is cropped from the other one
    config = small_config(copy, tiny_whisper, tmp_path)

    faulty = metrics(client_app.train(instruction(config), context(config, 5, 0)))
    healthy = metrics(client_app.train(instruction(config), context(config, 6, 1)))
    assert faulty["skipped-clips"] == len(SKIPPED_CLIPS) and healthy["skipped-clips"] == 0
    assert faulty["trained"] == 1 and math.isfinite(faulty["train-loss"])
    clips = node_clips(context(config, 5, 0).node_config, config)
    speech = clips.labels != config.class_names.index("_silence_")
    assert speech.sum() == len(files) - len(SKIPPED_CLIPS) and (~speech).sum() > 0
    evaluated = metrics(client_app.evaluate(instruction(config, "evaluate"), context(config, 5, 0)))
    assert evaluated["num-examples"] > 0 and math.isfinite(evaluated["eval-loss"])


def test_an_incoming_head_of_another_shape_comes_back_as_an_error_naming_both(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = small_config(speech_folder, tiny_whisper, tmp_path)
    reply = client_app.train(instruction(config, keywords="yes,no,up"), context(config, 5, 1))
    assert failure_of(reply).startswith(
        "ModelError: incoming head tensor 'classifier.weight' has shape (5, 256), expected (6, 256)"
    )


def test_a_partition_count_mismatch_comes_back_as_a_one_line_error(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = small_config(speech_folder, tiny_whisper, tmp_path)
    reason = failure_of(client_app.train(instruction(config), context(config, 5, 0, num_partitions=2)))
    assert reason == (
        "DataSourceError: the federation simulates 2 SuperNodes, "
        f"but dataset {speech_folder} makes 3 (speakers-per-node=3): "
        'run with --federation-config "num-supernodes=3" or change speakers-per-node'
    )


def test_too_little_memory_is_refused_before_the_work_naming_what_to_change(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small_config(speech_folder, tiny_whisper, tmp_path, **{"encoder-frames": 1500})
    monkeypatch.setattr(
        memory, "available", lambda: (50 * 2**20, "cgroup limit 1500 MB, 1450 MB in use by its processes")
    )
    reason = failure_of(client_app.train(instruction(config), context(config, 5, 1)))
    assert reason.startswith("MemoryLimitError: this needs about ")
    assert "only 50 MB is available (cgroup limit 1500 MB" in reason and "encoder-frames" in reason
    assert not list(tmp_path.glob("cache/features/*/*.npy"))


def test_empty_tiny_and_single_class_nodes_do_not_train(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(speech_folder, tmp_path / "speech"))
    for path in partition_files(speech_folder, copy, 0):  # node 0: every clip corrupt
        path.write_bytes(b"")
    for path in partition_files(speech_folder, copy, 1)[1:]:  # node 1: one clip left
        path.write_bytes(b"RIFF")
    for path in partition_files(speech_folder, copy, 2):  # node 2: only unknown words, one class
        if path.parent.name in TEST_KEYWORDS:
            path.unlink()
    config = small_config(copy, tiny_whisper, tmp_path, **{"batch-size": 2, "silence-fraction": 0.0})
    replies = [metrics(client_app.train(instruction(config), context(config, 5 + node, node))) for node in range(3)]
    assert [(m["trained"], m["num-examples"]) for m in replies] == [(0, 0), (0, 1), (0, 5)]
    assert not list(tmp_path.glob("cache/features/*/*.npy"))  # nothing encoded for nothing
    evaluated = [
        metrics(client_app.evaluate(instruction(config, "evaluate"), context(config, 5 + node, node)))
        for node in range(3)
    ]
    assert [m["num-examples"] for m in evaluated] == [0, 0, 1]
    assert [sorted(m) for m in evaluated[1:]] == [["num-examples"], ["eval-accuracy", "eval-loss", "num-examples"]]


def test_a_partition_trains_the_same_head_whatever_its_node_id_and_others_shuffle_differently(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = small_config(speech_folder, tiny_whisper, tmp_path)

    def head_after(node_id: int, partition: int = 1, server_round: int = 1) -> dict:
        forget_all()
        reply = client_app.train(instruction(config, server_round=server_round), context(config, node_id, partition))
        return {name: array.numpy() for name, array in reply.content["arrays"].items()}

    first = head_after(5)
    # Flower draws new node ids for every simulation: the partition and the round seed a node's training.
    assert all(np.array_equal(first[name], again[name]) for again in [head_after(9)] for name in first)
    for other in (head_after(5, partition=2), head_after(5, server_round=2)):
        assert not all(np.array_equal(first[name], other[name]) for name in first)


def test_a_message_encodes_only_the_clips_it_uses(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = small_config(speech_folder, tiny_whisper, tmp_path)
    clips = node_clips(context(config, 5, 1).node_config, config)
    train, held_out = split_for_evaluation(len(clips), config.eval_fraction, config.seed)
    with caplog.at_level(logging.INFO, logger="flwr"):
        client_app.evaluate(instruction(config, "evaluate"), context(config, 5, 1))
        client_app.train(instruction(config), context(config, 5, 1))
        client_app.train(instruction(config, server_round=2), context(config, 5, 1))
        client_app.evaluate(instruction(config, "evaluate"), context(config, 5, 1))
    encoded = [int(count) for count in re.findall(r"encoding (\d+) of \d+ clips", caplog.text)]
    # the training clips with their stored variants; then everything is read from the store
    assert encoded == [len(held_out), (1 + config.augment_variants) * len(train)]

    forget_all()  # a new ClientApp process, on a node whose features are stored
    assert metrics(client_app.train(instruction(config, server_round=3), context(config, 5, 1)))["trained"] == 1
    assert load_encoder.cache_info().currsize == 0, "a node whose features are stored must not load the encoder"


def test_importing_the_clientapp_loads_neither_transformers_nor_datasets_nor_audio_decoders() -> None:
    assert run_and_list_heavy_imports("import whisper_example.client_app") == ("", [])
