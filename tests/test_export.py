"""The exported model: one ONNX file with the encoder and the head that gives the torch path's
probabilities from the numpy log-mel, describes itself, quantises to int8, and is what
``predict`` runs when given it."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile
import torch
from conftest import TINY_HIDDEN, run_config

from whisper_example.data.audio import SAMPLE_RATE
from whisper_example.export import check_clips, export
from whisper_example.export import main as export_main
from whisper_example.inference.frontend import log_mel
from whisper_example.inference.onnx_spotter import ExportedModelError, OnnxSpotter
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model.head import build_head
from whisper_example.predict import main as predict_main
from whisper_example.runs.folder import RunFolder

FRAMES = 400  # the default context: a 1-s clip in 8 s


@pytest.fixture(scope="module")
def run_dir(tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the tiny Whisper at 400 frames in float32, whose random head has its
    classifier scaled up: probabilities far from uniform, so that differences show."""
    work = tmp_path_factory.mktemp("export")
    config = run_config(
        **{"model-name": str(tiny_whisper), "encoder-frames": FRAMES, "encoder-precision": "float32"},
        **{"output-dir": str(work / "outputs"), "cache-dir": str(work / "cache")},
    )
    head = build_head(config, TINY_HIDDEN)
    with torch.no_grad():
        head.classifier.weight *= 30
    run = RunFolder.create(config)
    run.finish(head.state_dict(), None)
    return run.path


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "kws.onnx"
    export(KeywordSpotter.load(run_dir, device="cpu"), out)
    return out


def test_the_numpy_log_mel_is_whisper_feature_extractors(tiny_whisper: Path) -> None:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper)
    clips = np.concatenate([check_clips(), np.zeros((1, SAMPLE_RATE), np.float32)])
    for frames in (25, 50, 400):  # shorter than a clip, a clip, the default context
        context = frames * 320
        expected = extractor(list(clips), sampling_rate=SAMPLE_RATE, max_length=context, return_tensors="np")
        np.testing.assert_allclose(log_mel(clips, context), expected.input_features, atol=1e-4)


def test_the_exported_model_gives_the_torch_paths_probabilities(run_dir: Path, exported: Path) -> None:
    clips = np.concatenate([check_clips(), 0.05 * np.random.default_rng(1).standard_normal((4, SAMPLE_RATE))])
    clips = clips.astype(np.float32)
    reference = KeywordSpotter.load(run_dir, device="cpu").probabilities(lambda i: clips[i], len(clips))
    probabilities = OnnxSpotter.load(exported).probabilities(lambda i: clips[i], len(clips))
    assert reference.max(axis=1).min() > 0.5  # far from uniform: a difference would show
    np.testing.assert_allclose(probabilities, reference, atol=1e-5)


def test_the_exported_file_holds_its_classes_context_and_detection_settings(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "kws.onnx"
    assert export_main([str(run_dir), "--out", str(out), "--hop", "0.5", "--threshold", "0.7"]) == 0
    metadata = {item.key: json.loads(item.value) for item in onnx.load(str(out)).metadata_props}
    assert metadata["class_names"] == ["yes", "no", "up", "down", "_silence_", "_unknown_"]
    assert (metadata["encoder_frames"], metadata["sample_rate"], metadata["weights"]) == (FRAMES, 16_000, "float32")
    spotter = OnnxSpotter.load(out)
    assert (spotter.hop, spotter.threshold, spotter.card.context_samples) == (0.5, 0.7, 8 * SAMPLE_RATE)


def test_int8_quantises_the_encoders_matrix_products_and_stays_close(
    run_dir: Path, exported: Path, tmp_path: Path
) -> None:
    out = tmp_path / "kws-int8.onnx"
    export(KeywordSpotter.load(run_dir, device="cpu"), out, int8=True)
    operators = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= operators
    clips = check_clips()
    int8, float32 = OnnxSpotter.load(out), OnnxSpotter.load(exported)
    assert int8.card.weights == "int8" and int8.class_names == float32.class_names
    difference = np.abs(int8.probabilities(lambda i: clips[i], 4) - float32.probabilities(lambda i: clips[i], 4))
    assert 0 < difference.max() < 0.05


def test_predict_on_the_exported_model_answers_as_on_the_checkpoint(
    run_dir: Path, exported: Path, tmp_path: Path, capsys
) -> None:
    rng = np.random.default_rng(2)
    clip, recording = tmp_path / "clip.wav", tmp_path / "recording.wav"
    soundfile.write(clip, 0.1 * rng.standard_normal(SAMPLE_RATE), SAMPLE_RATE)
    soundfile.write(recording, 0.1 * rng.standard_normal(4 * SAMPLE_RATE), SAMPLE_RATE)
    answers = []
    for model in (run_dir, exported):
        assert predict_main([str(model), str(clip), str(recording), "--json", "--threshold", "0.3"]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    (torch_clip, torch_recording), (onnx_clip, onnx_recording) = answers
    assert [top["class"] for top in onnx_clip["top"]] == [top["class"] for top in torch_clip["top"]]
    np.testing.assert_allclose(
        [t["probability"] for t in onnx_clip["top"]], [t["probability"] for t in torch_clip["top"]], atol=1e-5
    )
    words = [d["word"] for d in torch_recording["detections"]]
    assert words and [d["word"] for d in onnx_recording["detections"]] == words


def test_a_file_that_is_not_an_exported_model_says_how_to_export_one(tmp_path: Path, capsys) -> None:
    not_a_model = tmp_path / "kws.onnx"
    not_a_model.write_bytes(b"not a model")
    with pytest.raises(
        ExportedModelError, match="is not a model onnxruntime can load .*python -m whisper_example.export"
    ):
        OnnxSpotter.load(not_a_model)
    with pytest.raises(SystemExit):
        predict_main([str(tmp_path / "missing.onnx"), "clip.wav"])
    assert "exported model " + str(tmp_path / "missing.onnx") + " does not exist" in capsys.readouterr().err
