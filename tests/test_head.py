"""The head: the reference's size, refuses a head of another shape, learns, scores correctly."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_HIDDEN, features_of, run_config, tones

from whisper_example.encoder import ModelError
from whisper_example.head import build_head, count_parameters, load_head_state
from whisper_example.training import balanced_order, evaluate_head, optimizer, summarise, train_head


def test_the_reference_head_has_781964_parameters() -> None:
    assert (
        count_parameters(
            build_head(
                run_config(**{"encoder-frames": 1500, "keywords": "yes,no,up,down,left,right,on,off,stop,go"}), 384
            )
        )
        == 781_964
    )


def test_a_short_context_head_is_smaller_by_its_first_layer_only() -> None:
    full, short = (
        build_head(run_config(**{"encoder-frames": 1500}), 384),
        build_head(run_config(**{"encoder-frames": 50}), 384),
    )
    assert count_parameters(full) - count_parameters(short) == (1500 - 50) * 128


def test_an_incoming_head_of_the_wrong_shape_is_refused_with_both_shapes() -> None:
    head = build_head(run_config(**{"encoder-frames": 50}), TINY_HIDDEN)
    wrong = build_head(run_config(**{"encoder-frames": 100}), TINY_HIDDEN).state_dict()
    with pytest.raises(ModelError, match=r"'0.weight' has shape \(128, 100, 1\), expected \(128, 50, 1\)"):
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


def test_metrics_come_from_the_confusion_matrix() -> None:
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2 has no clip
    result = summarise(confusion, total_loss=6.0)
    assert result.accuracy == pytest.approx(5 / 6) and result.loss == pytest.approx(1.0)
    assert result.per_class_accuracy[:2] == pytest.approx([0.75, 1.0]) and np.isnan(result.per_class_accuracy[2])
    assert result.macro_f1 == pytest.approx((2 * 3 / 7 + 2 * 2 / 5) / 2)


class ClassMeans:
    """Features at the real shapes (frames x 384): a mean per class plus noise, in batches."""

    def __init__(self, frames: int, clips: int, classes: int = 12) -> None:
        generator = torch.Generator().manual_seed(0)
        self.means = 0.3 * torch.randn(classes, frames, 384, generator=generator)
        self.labels = torch.arange(clips) % classes

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, order: np.ndarray, batch_size: int, drop_last: bool = False):
        generator = torch.Generator().manual_seed(1)
        for start in range(0, len(order) - len(order) % batch_size, batch_size):
            labels = self.labels[torch.as_tensor(order[start : start + batch_size])]
            yield self.means[labels] + torch.randn(len(labels), *self.means.shape[1:], generator=generator), labels


@pytest.mark.parametrize("frames", [50, 1500])
def test_the_training_loss_does_not_climb_in_the_first_epoch(frames: int) -> None:
    config = run_config(**{"encoder-frames": frames, "keywords": "yes,no,up,down,left,right,on,off,stop,go"})
    data = ClassMeans(frames, clips=96)
    losses = {}
    for name in ("one rate for all", "rates by fan-in"):
        torch.manual_seed(0)
        head = build_head(config, 384)
        adam = torch.optim.Adam(head.parameters(), lr=1e-3) if name == "one rate for all" else optimizer(head, 1e-3)
        losses[name] = []
        for features, labels in data.batches(balanced_order(data.labels, torch.Generator().manual_seed(0)), 8):
            loss = torch.nn.functional.cross_entropy(head(features), labels)
            adam.zero_grad()
            loss.backward()
            adam.step()
            losses[name].append(loss.item())
    start = losses["rates by fan-in"][0]
    assert max(losses["rates by fan-in"]) < 1.2 * start and np.mean(losses["rates by fan-in"][-3:]) < start
    assert max(losses["one rate for all"]) > 2 * start  # what the fan-in rates prevent
