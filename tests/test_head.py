"""The head: the reference's size, refuses a head of another shape, learns, scores correctly."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_HIDDEN, features_of, run_config, same_tensors, tones, trained_head

from whisper_example.model import ModelError
from whisper_example.model.head import build_head, count_parameters, load_head_state
from whisper_example.model.training import balanced_order, evaluate_head, summarise, train_head

KEYWORDS = "yes,no,up,down,left,right,on,off,stop,go"


def test_the_head_has_150797_parameters_at_any_context() -> None:
    sizes = {
        frames: count_parameters(build_head(run_config(**{"encoder-frames": frames, "keywords": KEYWORDS}), 384))
        for frames in (50, 1500)
    }
    assert sizes == {50: 150_797, 1500: 150_797}


def test_the_same_config_builds_the_same_head_and_another_seed_another() -> None:
    first, again = (build_head(run_config(), TINY_HIDDEN).state_dict() for _ in range(2))
    other = build_head(run_config(seed=7), TINY_HIDDEN).state_dict()
    assert same_tensors(first, again)
    assert not torch.equal(first["conv.weight"], other["conv.weight"])


def test_a_word_gives_the_same_output_wherever_it_falls_in_the_window() -> None:
    head = build_head(run_config(), TINY_HIDDEN).eval()
    word = torch.randn(12, TINY_HIDDEN, generator=torch.Generator().manual_seed(0))
    windows = torch.zeros(3, 50, TINY_HIDDEN)
    for window, start in zip(windows, (2, 19, 36)):  # the word at the start, the middle and the end
        window[start : start + 12] = word
    logits = head(windows)
    torch.testing.assert_close(logits[1:], logits[:1].expand(2, -1))


def test_an_incoming_head_of_the_wrong_shape_is_refused_with_both_shapes() -> None:
    head = build_head(run_config(keywords="yes,no,up,down"), TINY_HIDDEN)
    wrong = build_head(run_config(keywords="yes,no,up"), TINY_HIDDEN).state_dict()
    with pytest.raises(ModelError, match=r"'classifier.weight' has shape \(5, 256\), expected \(6, 256\)"):
        load_head_state(head, wrong)


def test_balanced_order_draws_present_classes_equally_and_absent_ones_never() -> None:
    labels = torch.tensor([0] * 90 + [2] * 10)  # class 1 absent
    drawn = labels[balanced_order(labels, torch.Generator().manual_seed(0))]
    counts = torch.bincount(drawn, minlength=3)
    assert counts[1] == 0 and abs(counts[0].item() - counts[2].item()) < 25


def test_the_head_learns_separable_classes_far_above_chance(tiny_whisper: Path, tmp_path: Path) -> None:
    config = run_config(**{"model-name": str(tiny_whisper), "cache-dir": str(tmp_path), "keywords": "a,b"})
    train = features_of(tones(4, 24, seed=0), np.arange(96), config)
    test = features_of(tones(4, 10, seed=1), np.arange(40), config)
    head = build_head(config, TINY_HIDDEN)
    torch.manual_seed(0)
    untrained = evaluate_head(head, test, 4)
    train_head(head, train, epochs=8, learning_rate=1e-3, batch_size=8, seed=0)
    trained = evaluate_head(head, test, 4)
    assert trained.accuracy >= 0.8, f"accuracy {trained.accuracy:.2f} (chance 0.25, untrained {untrained.accuracy:.2f})"
    assert trained.loss < untrained.loss


def test_training_asks_cudnn_for_deterministic_algorithms_and_restores_its_settings(
    tiny_whisper: Path, tmp_path: Path
) -> None:
    config = run_config(**{"model-name": str(tiny_whisper), "cache-dir": str(tmp_path), "keywords": "a,b"})
    head = build_head(config, TINY_HIDDEN)
    seen = []
    head.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.deterministic))
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    train_head(
        head,
        features_of(tones(4, 4, seed=0), np.arange(16), config),
        epochs=1,
        learning_rate=1e-3,
        batch_size=8,
        seed=0,
    )
    assert seen and all(seen)  # what makes a GPU's convolutions repeatable (none on CPU)
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == before


def test_metrics_come_from_the_confusion_matrix() -> None:
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2 has no clip
    result = summarise(confusion, total_loss=6.0)
    assert result.accuracy == pytest.approx(5 / 6) and result.loss == pytest.approx(1.0)
    assert result.per_class_accuracy[:2] == pytest.approx([0.75, 1.0]) and np.isnan(result.per_class_accuracy[2])
    assert result.macro_f1 == pytest.approx((2 * 3 / 7 + 2 * 2 / 5) / 2)


class ClassMeans:
    """Features at the real shapes (frames x 384): a state per class at every position, plus
    noise, in batches."""

    def __init__(self, frames: int, clips: int, classes: int = 12) -> None:
        generator = torch.Generator().manual_seed(0)
        self.means = 0.3 * torch.randn(classes, 1, 384, generator=generator).expand(classes, frames, 384)
        self.labels = torch.arange(clips) % classes

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, order: np.ndarray, batch_size: int, drop_last: bool = False):
        generator = torch.Generator().manual_seed(1)
        for start in range(0, len(order) - len(order) % batch_size, batch_size):
            labels = self.labels[torch.as_tensor(order[start : start + batch_size])]
            yield self.means[labels] + torch.randn(len(labels), *self.means.shape[1:], generator=generator), labels


@pytest.mark.parametrize("frames", [50, 1500])
def test_the_training_loss_falls_from_the_first_steps(frames: int) -> None:
    config = run_config(**{"encoder-frames": frames, "keywords": KEYWORDS})
    data, losses = ClassMeans(frames, clips=96), []
    train_head(
        build_head(config, 384),
        data,
        epochs=3,
        learning_rate=config.learning_rate,
        batch_size=8,
        seed=0,
        after_epoch=lambda epoch, result: losses.append(result.loss),
    )
    assert losses[0] < math.log(12) and losses[-1] < 0.5 * losses[0], losses


def test_the_same_head_features_and_seed_train_the_same_head(tiny_whisper: Path, tmp_path: Path) -> None:
    config = run_config(**{"model-name": str(tiny_whisper), "cache-dir": str(tmp_path), "keywords": "a,b"})
    features = features_of(tones(4, 6, seed=0), np.arange(24), config)

    first, again, other = (trained_head(config, features, seed, schedule="cosine") for seed in (0, 0, 1))
    assert same_tensors(first, again)
    assert not torch.equal(first["classifier.weight"], other["classifier.weight"])
