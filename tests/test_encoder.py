"""The frozen encoder and the feature store: each clip encoded once, shared, bounded on disk."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_HIDDEN, run_config

from whisper_example.audio import SAMPLE_RATE, to_pcm16
from whisper_example.data import Clips, in_memory_clips
from whisper_example.encoder import ModelError, clip_features, load_encoder, whisper_config
from whisper_example.head import build_head, train_head


def tones(num_classes: int, per_class: int, seed: int) -> Clips:
    """Noisy tones, one pitch per class: classes any working encoder separates."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clips, labels = [], []
    for label in range(num_classes):
        for _ in range(per_class):
            tone = np.sin(2 * np.pi * (300 + 700 * label) * t + rng.uniform(0, 2 * np.pi))
            clips.append(rng.uniform(0.2, 0.6) * tone + 0.02 * rng.standard_normal(SAMPLE_RATE))
            labels.append(label)
    names = [f"class{index}" for index in range(num_classes)]
    return in_memory_clips(to_pcm16(np.asarray(clips)), np.asarray(labels), names)


def config_for(model: Path, cache: Path, **overrides: object):
    return run_config(**{"model-name": str(model), "cache-dir": str(cache), "encoder-precision": "float32"} | overrides)


def all_features(features) -> torch.Tensor:
    return torch.cat([batch for batch, _ in features.batches(np.arange(len(features)), 7)])


def shards(cache: Path) -> list[Path]:
    return sorted(cache.glob("features/*/*.npy"))


def test_a_short_encoder_keeps_the_first_pretrained_positions(tiny_whisper: Path) -> None:
    from transformers import WhisperModel

    full = WhisperModel.from_pretrained(tiny_whisper).get_encoder()
    short = load_encoder(str(tiny_whisper), 50, "cpu")
    assert short.embed_positions.weight.shape[0] == 50
    assert torch.equal(short.embed_positions.weight, full.embed_positions.weight[:50])
    assert torch.equal(short.layers[0].fc1.weight, full.layers[0].fc1.weight)
    assert not any(parameter.requires_grad for parameter in short.parameters())


@pytest.mark.parametrize("frames", [50, 1500])
def test_features_have_one_row_per_encoder_frame(tiny_whisper: Path, tmp_path: Path, frames: int) -> None:
    features = clip_features(
        tones(2, 2, 0), np.arange(4), config_for(tiny_whisper, tmp_path, **{"encoder-frames": frames}), device="cpu"
    )
    assert all_features(features).shape == (4, frames, TINY_HIDDEN)


def test_a_model_that_is_not_whisper_is_refused_naming_model_name(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=f"model-name '{tmp_path}' is a 'bert' model, not a Whisper model"):
        whisper_config(str(tmp_path))
    with pytest.raises(ModelError, match="has no config.json"):
        whisper_config(str(tmp_path / "empty"))


def test_stored_features_equal_freshly_encoded_ones_and_train_the_same_head(tiny_whisper: Path, tmp_path: Path) -> None:
    clips = tones(3, 8, seed=2)
    on_the_fly = clip_features(
        clips, np.arange(24), config_for(tiny_whisper, tmp_path / "off", **{"cache-size-gb": 0.0}), device="cpu"
    )
    stored = clip_features(clips, np.arange(24), config_for(tiny_whisper, tmp_path / "on"), device="cpu")
    assert on_the_fly.on_the_fly and not stored.on_the_fly and len(shards(tmp_path / "on")) == 1
    torch.testing.assert_close(all_features(stored), all_features(on_the_fly).half().float())

    def trained(features) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        head = build_head(config_for(tiny_whisper, tmp_path).replace(keywords="a"), TINY_HIDDEN)
        train_head(head, features, epochs=2, learning_rate=1e-3, batch_size=4, seed=0)
        return head.state_dict()

    first, second = (
        trained(stored),
        trained(clip_features(clips, np.arange(24), config_for(tiny_whisper, tmp_path / "on"), device="cpu")),
    )
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert len(shards(tmp_path / "on")) == 1  # the second run only read


def test_clips_already_stored_are_not_encoded_again(tiny_whisper: Path, tmp_path: Path) -> None:
    clips, config = tones(2, 10, seed=3), config_for(tiny_whisper, tmp_path)
    reported: list[str] = []
    clip_features(clips, np.arange(0, 12), config, device="cpu", report=reported.append)
    clip_features(clips, np.arange(8, 20), config, device="cpu", report=reported.append)
    assert [line.split(" (")[0] for line in reported if line.startswith("encoding")] == [
        "encoding 12 of 12 clips",
        "encoding 8 of 12 clips",
    ]
    stores = {path.parent.name for path in shards(tmp_path)}
    clip_features(clips, np.arange(4), config.replace(**{"encoder-frames": 100}), device="cpu")
    assert len({path.parent.name for path in shards(tmp_path)} - stores) == 1  # another context, another store


def test_features_that_do_not_fit_the_cache_are_encoded_on_the_fly(tiny_whisper: Path, tmp_path: Path) -> None:
    row_bytes = 50 * TINY_HIDDEN * 2
    config = config_for(tiny_whisper, tmp_path, **{"cache-size-gb": 25.5 * row_bytes / 1e9})
    clips = tones(2, 20, seed=4)
    first = clip_features(clips, np.arange(20), config, device="cpu")
    assert not first.on_the_fly
    while_first_is_read = clip_features(clips, np.arange(20, 40), config, device="cpu")
    assert while_first_is_read.on_the_fly  # a shard in use is never evicted
    del first, while_first_is_read
    second = clip_features(clips, np.arange(20, 40), config, device="cpu")  # evicts the first node's shard
    too_big = clip_features(clips, np.arange(40), config, device="cpu")
    assert not second.on_the_fly and too_big.on_the_fly
    size = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    assert size <= config.cache_limit_bytes
    assert all_features(too_big).shape == (40, 50, TINY_HIDDEN)


def test_a_cached_node_reads_features_without_transformers(tiny_whisper: Path, tmp_path: Path) -> None:
    config = config_for(tiny_whisper, tmp_path)
    clips = tones(2, 3, seed=5)
    clip_features(clips, np.arange(6), config, device="cpu")
    probe = (
        "import sys, numpy as np; from test_encoder import tones, config_for, all_features; "
        "from whisper_example.encoder import clip_features; from pathlib import Path; "
        f"f = clip_features(tones(2, 3, seed=5), np.arange(6), config_for(Path('{tiny_whisper}'), Path('{tmp_path}')), "
        "device='cpu'); print(tuple(all_features(f).shape), 'transformers' in sys.modules, f.on_the_fly)"
    )
    probed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO / "tests", capture_output=True, text=True, check=True
    )
    assert probed.stdout.strip() == f"(6, 50, {TINY_HIDDEN}) False False"


def test_mixed_precision_features_stay_close_to_float32(tiny_whisper: Path, tmp_path: Path) -> None:
    clips = tones(2, 4, seed=6)
    exact = all_features(clip_features(clips, np.arange(8), config_for(tiny_whisper, tmp_path), device="cpu"))
    config = config_for(tiny_whisper, tmp_path, **{"encoder-precision": "bfloat16"})
    mixed = all_features(clip_features(clips, np.arange(8), config, device="cpu"))
    assert 0 < (mixed - exact).norm() / exact.norm() < 0.05


def test_on_the_fly_features_are_encoded_in_the_encoders_batches_whatever_the_consumers(
    tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whisper_example import encoder

    config = config_for(tiny_whisper, tmp_path, **{"cache-size-gb": 0.0, "encoder-frames": 1500})  # 4 clips per call
    sizes: list[int] = []
    original = encoder.Encoder.encode
    monkeypatch.setattr(
        encoder.Encoder,
        "encode",
        lambda self, waves, batches: (sizes.extend(map(len, batches)), original(self, waves, batches))[1],
    )
    features = clip_features(tones(2, 5, seed=7), np.arange(10), config, device="cpu")
    assert [len(labels) for _, labels in features.batches(np.arange(10), 7)] == [7, 3]
    assert sizes == [4, 3, 3]


def test_storing_features_never_evicts_the_clips_being_read(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    from conftest import small_config

    from whisper_example.data import prepare_split

    config = small_config(speech_folder, tiny_whisper, tmp_path, **{"encoder-precision": "float32"})
    clips = prepare_split(config, "train", progress=False)
    (prepared,) = (tmp_path / "cache" / "clips").glob("*.arrow")
    tight = config.replace(
        **{"cache-size-gb": (prepared.stat().st_size + 10_000) / 1e9}
    )  # features (~110 KB) do not fit
    assert clip_features(clips, np.arange(len(clips)), tight, device="cpu").on_the_fly
    assert prepared.exists()
