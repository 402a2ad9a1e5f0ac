"""With the real pretrained encoder, the head learns spoken keywords of unseen speakers."""

from pathlib import Path


from conftest import run_config
from whisper_example.labels import DEFAULT_KEYWORDS
from whisper_example.model import build_head, evaluate_head, train_head
from whisper_example.pipeline import split_features
from whisper_example.synthetic import make_speech_commands_folder


def test_real_encoder_learns_espeak_keywords_well_above_chance(real_whisper: Path, tmp_path: Path) -> None:
    folder = make_speech_commands_folder(
        tmp_path / "speech", words=(*DEFAULT_KEYWORDS, "bed", "marvin"), num_speakers=24, seed=1
    )
    config = run_config(**{
        "dataset": str(folder),
        "model-name": str(real_whisper),
        "keywords": ",".join(DEFAULT_KEYWORDS),
        "num-classes": 12,
        "encoder-frames": 50,
        "cache-dir": str(tmp_path / "cache"),
    })
    train, _ = split_features(config, "train", progress=False)
    test, _ = split_features(config, "test", progress=False)  # speakers never seen in training
    head = build_head(50, train.features.shape[2], 12)
    train_head(head, train.features, train.labels, epochs=6, learning_rate=1e-3, batch_size=8, seed=0)
    result = evaluate_head(head, test.features, test.labels, 12)
    chance = 1 / 12
    assert result.accuracy >= 0.6, f"held-out accuracy {result.accuracy:.2f} (chance {chance:.2f}, {len(test)} clips)"
