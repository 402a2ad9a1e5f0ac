"""The head, the short-context encoder, the feature cache, and that the head learns."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperModel

from whisper_example.data import make_prepared
from whisper_example.audio import SAMPLE_RATE, to_pcm16
from whisper_example.features import encoder_features
from whisper_example.model import (
    ModelError,
    build_head,
    check_head_state,
    count_parameters,
    encode,
    evaluate_head,
    learning_rate_at,
    load_encoder,
    train_head,
)


def test_reference_head_has_781964_parameters() -> None:
    assert count_parameters(build_head(encoder_frames=1500, hidden_size=384, num_classes=12)) == 781_964


def test_short_context_head_is_smaller_by_the_first_layer_only() -> None:
    full, short = build_head(1500, 384, 12), build_head(50, 384, 12)
    assert count_parameters(full) - count_parameters(short) == (1500 - 50) * 128


def test_short_encoder_keeps_the_first_pretrained_positions(tiny_whisper: Path) -> None:
    full = WhisperModel.from_pretrained(tiny_whisper).get_encoder()
    short = load_encoder(str(tiny_whisper), 50)
    assert short.embed_positions.weight.shape[0] == 50
    assert torch.equal(short.embed_positions.weight, full.embed_positions.weight[:50])
    assert torch.equal(short.layers[0].fc1.weight, full.layers[0].fc1.weight)
    assert not any(parameter.requires_grad for parameter in short.parameters())


@pytest.mark.parametrize("frames", [50, 100, 1500])
def test_encoder_output_has_one_row_per_encoder_frame(tiny_whisper: Path, frames: int) -> None:
    clips = np.random.default_rng(0).standard_normal((3, SAMPLE_RATE)).astype(np.float32) * 0.1
    features = encode(clips, str(tiny_whisper), frames, progress=False)
    assert features.shape == (3, frames, 16)
    assert features.dtype == torch.float16


def test_non_whisper_model_is_refused(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="is a 'bert' model, not a Whisper model"):
        load_encoder(str(tmp_path), 50)


def test_incoming_head_of_the_wrong_shape_is_refused_with_both_shapes() -> None:
    head = build_head(50, 16, 6)
    wrong = build_head(100, 16, 6).state_dict()
    with pytest.raises(ModelError, match=r"'0.weight' has shape \(128, 100, 1\), expected \(128, 50, 1\)"):
        check_head_state(wrong, head)


def tones(num_classes: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy tones, one pitch per class: classes any working encoder separates."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clips, labels = [], []
    for label in range(num_classes):
        for _ in range(per_class):
            tone = np.sin(2 * np.pi * (300 + 700 * label) * t + rng.uniform(0, 2 * np.pi))
            clips.append(rng.uniform(0.2, 0.6) * tone + 0.02 * rng.standard_normal(SAMPLE_RATE))
            labels.append(label)
    return np.asarray(clips, np.float32), np.asarray(labels)


def test_head_learns_separable_classes_far_above_chance(tiny_whisper: Path) -> None:
    train_clips, train_labels = tones(4, 24, seed=0)
    test_clips, test_labels = tones(4, 10, seed=1)
    model = str(tiny_whisper)
    train_x, test_x = encode(train_clips, model, 50, progress=False), encode(test_clips, model, 50, progress=False)
    head = build_head(50, 16, 4)
    torch.manual_seed(0)
    untrained = evaluate_head(head, test_x, torch.from_numpy(test_labels), 4)
    train_head(head, train_x, torch.from_numpy(train_labels), epochs=8, learning_rate=1e-3, batch_size=8, seed=0)
    trained = evaluate_head(head, test_x, torch.from_numpy(test_labels), 4)
    assert trained.accuracy >= 0.8, f"accuracy {trained.accuracy:.2f} (chance 0.25, untrained {untrained.accuracy:.2f})"
    assert trained.loss < untrained.loss


def test_cached_and_uncached_features_train_the_same_head(tiny_whisper: Path, tmp_path: Path) -> None:
    clips, labels = tones(3, 8, seed=2)
    prepared = make_prepared(to_pcm16(clips), labels.tolist(), ["a", "b", "c"])
    model = str(tiny_whisper)
    uncached = encoder_features(prepared, model, 50, cache_dir=None, progress=False)
    cold = encoder_features(prepared, model, 50, cache_dir=tmp_path, progress=False)
    warm = encoder_features(prepared, model, 50, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def trained(features: torch.Tensor) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        head = build_head(50, 16, 3)
        train_head(head, features, torch.from_numpy(labels), epochs=2, learning_rate=1e-3, batch_size=4, seed=0)
        return head.state_dict()

    reference = trained(uncached)
    for features in (cold, warm):
        for name, tensor in trained(features).items():
            torch.testing.assert_close(tensor, reference[name], rtol=0, atol=1e-6)


def test_cache_key_changes_with_encoder_frames_and_audio(tiny_whisper: Path, tmp_path: Path) -> None:
    clips, labels = tones(2, 2, seed=3)
    prepared = make_prepared(to_pcm16(clips), labels.tolist(), ["a", "b"])
    other = make_prepared(to_pcm16(clips[::-1].copy()), labels.tolist(), ["a", "b"])
    model = str(tiny_whisper)
    encoder_features(prepared, model, 50, cache_dir=tmp_path, progress=False)
    encoder_features(prepared, model, 100, cache_dir=tmp_path, progress=False)
    encoder_features(other, model, 50, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_corrupt_cache_file_is_recomputed(tiny_whisper: Path, tmp_path: Path) -> None:
    clips, labels = tones(2, 2, seed=4)
    prepared = make_prepared(to_pcm16(clips), labels.tolist(), ["a", "b"])
    first = encoder_features(prepared, str(tiny_whisper), 50, cache_dir=tmp_path, progress=False)
    (cache_file,) = tmp_path.glob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    again = encoder_features(prepared, str(tiny_whisper), 50, cache_dir=tmp_path, progress=False)
    assert torch.equal(first, again)


@pytest.mark.parametrize(("schedule", "expected"), [("constant", [1.0, 1.0, 1.0]), ("cosine", [1.0, 0.5, 0.0])])
def test_learning_rate_schedule_across_rounds(schedule: str, expected: list[float]) -> None:
    rates = [learning_rate_at(schedule, 1.0, r, 3) for r in (1, 2, 3)]
    assert rates == pytest.approx(expected, abs=1e-9)
