"""The frozen encoder and the feature store: each clip encoded once, shared, bounded on disk."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    TINY_HIDDEN,
    CountingEncoder,
    features_of,
    head_parameters,
    run_and_list_heavy_imports,
    run_config,
    same_tensors,
    save_tiny_whisper,
    tones,
    trained_head,
)

from whisper_example.data.clips import DIGEST_BYTES
from whisper_example.model import ModelError
from whisper_example.model.encoder import Encoder, encoding_batch_size, load_encoder, whisper_config
from whisper_example.model.features import FeatureStore, clip_features
from whisper_example.model.head import build_head
from whisper_example.system.disk_cache import DiskCache


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


def test_features_are_the_clips_positions_of_the_whole_context(tiny_whisper: Path, tmp_path: Path) -> None:
    def features(frames: int) -> torch.Tensor:
        config = config_for(tiny_whisper, tmp_path / str(frames), **{"encoder-frames": frames})
        return all_features(features_of(tones(2, 2, 0), np.arange(4), config))

    short, long, shorter = features(50), features(1500), features(20)
    assert short.shape == long.shape == (4, 50, TINY_HIDDEN) and shorter.shape == (4, 20, TINY_HIDDEN)
    assert not torch.allclose(short, long, atol=1e-2)  # the clip's positions attended over 30 s of context


@pytest.mark.parametrize("width", [16, 24])
def test_the_models_width_sets_the_features_and_the_head(tmp_path: Path, width: int) -> None:
    config = config_for(save_tiny_whisper(tmp_path / "model", width), tmp_path / "cache")
    features = all_features(features_of(tones(2, 2, 0), np.arange(4), config))
    head = build_head(config)
    assert features.shape == (4, 50, width)
    assert head.conv.in_channels == width
    assert sum(p.numel() for p in head.parameters()) == head_parameters(width, config.num_classes)
    assert head(features).shape == (4, config.num_classes)


def test_a_wider_model_encodes_fewer_clips_at_once(tmp_path: Path) -> None:
    narrow = whisper_config(str(save_tiny_whisper(tmp_path / "narrow", 16)))
    wide = dict(narrow, d_model=768, encoder_attention_heads=12, encoder_ffn_dim=3072)  # whisper-small's encoder
    tiny = dict(narrow, d_model=384, encoder_attention_heads=6, encoder_ffn_dim=1536)  # whisper-tiny's
    assert encoding_batch_size(tiny, 1500, "cpu") == 4
    assert encoding_batch_size(wide, 1500, "cpu") == 2
    assert encoding_batch_size(wide, 50, "cpu") == encoding_batch_size(tiny, 50, "cpu") == 64
    config = config_for(tmp_path / "narrow", tmp_path / "cache", **{"encoder-frames": 1500})
    assert Encoder(config, "cpu").batch_size == encoding_batch_size(narrow, 1500, "cpu")


def test_a_model_that_is_not_whisper_is_refused_naming_model_name(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=f"model-name '{tmp_path}' is a 'bert' model, not a Whisper model"):
        whisper_config(str(tmp_path))
    with pytest.raises(ModelError, match="has no config.json"):
        whisper_config(str(tmp_path / "empty"))


def test_stored_features_equal_freshly_encoded_ones_and_train_the_same_head(tiny_whisper: Path, tmp_path: Path) -> None:
    clips = tones(3, 8, seed=2)
    on_the_fly = features_of(clips, np.arange(24), config_for(tiny_whisper, tmp_path / "off", **{"cache-size-gb": 0.0}))
    stored = features_of(clips, np.arange(24), config_for(tiny_whisper, tmp_path / "on"))
    assert on_the_fly.on_the_fly and not stored.on_the_fly and len(shards(tmp_path / "on")) == 1
    torch.testing.assert_close(all_features(stored), all_features(on_the_fly).half().float())

    three_classes = config_for(tiny_whisper, tmp_path).replace(keywords="a")
    read_back = features_of(clips, np.arange(24), config_for(tiny_whisper, tmp_path / "on"))
    assert same_tensors(trained_head(three_classes, stored), trained_head(three_classes, read_back))
    assert len(shards(tmp_path / "on")) == 1  # the second run only read


def test_clips_already_stored_are_not_encoded_again(tiny_whisper: Path, tmp_path: Path) -> None:
    clips, config = tones(2, 10, seed=3), config_for(tiny_whisper, tmp_path)
    reported: list[str] = []
    features_of(clips, np.arange(0, 12), config, reported.append)
    features_of(clips, np.arange(8, 20), config, reported.append)
    assert [line.split(" (")[0] for line in reported if line.startswith("encoding")] == [
        "encoding 12 of 12 clips",
        "encoding 8 of 12 clips",
    ]
    stores = {path.parent.name for path in shards(tmp_path)}
    features_of(clips, np.arange(4), config.replace(**{"encoder-frames": 100}))
    assert len({path.parent.name for path in shards(tmp_path)} - stores) == 1  # another context, another store


def test_features_that_do_not_fit_the_cache_are_encoded_on_the_fly(tiny_whisper: Path, tmp_path: Path) -> None:
    row_bytes = 50 * TINY_HIDDEN * 2
    config = config_for(tiny_whisper, tmp_path, **{"cache-size-gb": 25.5 * row_bytes / 1e9})
    clips = tones(2, 20, seed=4)
    first = features_of(clips, np.arange(20), config)
    assert not first.on_the_fly
    while_first_is_read = features_of(clips, np.arange(20, 40), config)
    assert while_first_is_read.on_the_fly  # a shard in use is never evicted
    del first, while_first_is_read
    second = features_of(clips, np.arange(20, 40), config)  # evicts the first node's shard
    too_big = features_of(clips, np.arange(40), config)
    assert not second.on_the_fly and too_big.on_the_fly
    size = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    assert size <= config.cache_limit_bytes
    assert all_features(too_big).shape == (40, 50, TINY_HIDDEN)


def test_a_shard_that_fails_mid_write_leaves_no_file_behind(tmp_path: Path) -> None:
    store = FeatureStore(DiskCache(tmp_path, 10**6), "store", (2, 3))

    def rows():
        yield torch.ones(1, 2, 3)
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        store.add(np.zeros(2, dtype=f"V{DIGEST_BYTES}"), rows())
    assert not list(store.folder.iterdir())


def test_a_cached_node_reads_features_without_transformers(tiny_whisper: Path, tmp_path: Path) -> None:
    features_of(tones(2, 3, seed=5), np.arange(6), config_for(tiny_whisper, tmp_path))
    printed, heavy = run_and_list_heavy_imports(
        "import numpy as np; from pathlib import Path; "
        "from conftest import tones, features_of; from test_encoder import config_for, all_features; "
        f"f = features_of(tones(2, 3, seed=5), np.arange(6), config_for(Path('{tiny_whisper}'), Path('{tmp_path}'))); "
        "print(tuple(all_features(f).shape), f.on_the_fly)"
    )
    assert printed == f"(6, 50, {TINY_HIDDEN}) False" and "transformers" not in heavy


def test_mixed_precision_features_stay_close_to_float32(tiny_whisper: Path, tmp_path: Path) -> None:
    clips = tones(2, 4, seed=6)
    exact = all_features(features_of(clips, np.arange(8), config_for(tiny_whisper, tmp_path)))
    config = config_for(tiny_whisper, tmp_path, **{"encoder-precision": "bfloat16"})
    mixed = all_features(features_of(clips, np.arange(8), config))
    assert 0 < (mixed - exact).norm() / exact.norm() < 0.05


def test_on_the_fly_features_are_encoded_in_the_encoders_batches_whatever_the_consumers(
    tiny_whisper: Path, tmp_path: Path
) -> None:
    config = config_for(tiny_whisper, tmp_path, **{"cache-size-gb": 0.0, "encoder-frames": 1500})
    encoder = CountingEncoder(config)
    encoder.batch_size = 4  # what a CPU encodes at once of whisper-tiny at 1500 frames
    features = clip_features(tones(2, 5, seed=7), np.arange(10), encoder, DiskCache.of(config))
    assert [len(labels) for _, labels in features.batches(np.arange(10), 7)] == [7, 3]
    assert encoder.batch_sizes == [4, 3, 3]


def test_storing_features_never_evicts_the_clips_being_read(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    from conftest import small_config

    from whisper_example.data.preparation import prepare_split

    config = small_config(speech_folder, tiny_whisper, tmp_path, **{"encoder-precision": "float32"})
    clips = prepare_split(config, "train", progress=False)
    (prepared,) = (tmp_path / "cache" / "clips").glob("*.arrow")
    tight = config.replace(
        **{"cache-size-gb": (prepared.stat().st_size + 10_000) / 1e9}
    )  # features (~110 KB) do not fit
    assert features_of(clips, np.arange(len(clips)), tight).on_the_fly
    assert prepared.exists()
