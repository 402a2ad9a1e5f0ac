"""On the device: ``predict`` on an exported model imports neither torch nor transformers, and
the documented torch-free install (the wheel without its dependencies, then the ``onnx``
extra's list) predicts in a fresh virtual environment."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import REPO, TINY_HIDDEN, build_wheel, run_config
from tone_words import pcm_bytes

from whisper_example.data.audio import SAMPLE_RATE
from whisper_example.export import export
from whisper_example.inference.onnx_spotter import OnnxSpotter
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model.head import build_head
from whisper_example.runs.folder import RunFolder

pytestmark = pytest.mark.slow  # starts the command line; builds and installs a wheel
NOT_ON_THE_DEVICE = ("torch", "transformers", "whisper_example.model", "onnx", "pyarrow", "matplotlib")
# pip's words when the package registry cannot be reached: the fresh install is then skipped
NO_REGISTRY = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable")


@pytest.fixture(scope="module")
def device_files(tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An exported model (the tiny Whisper, a random head), a clip and a 3-s recording (WAV and raw PCM)."""
    work = tmp_path_factory.mktemp("device")
    config = run_config(**{"model-name": str(tiny_whisper), "output-dir": str(work / "outputs")})
    run = RunFolder.create(config)
    run.finish(build_head(config, TINY_HIDDEN).state_dict(), None)
    export(KeywordSpotter.load(run.path, device="cpu"), work / "kws.onnx")
    audio = (0.1 * np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    soundfile.write(work / "clip.wav", audio[:SAMPLE_RATE], SAMPLE_RATE)
    soundfile.write(work / "recording.wav", audio, SAMPLE_RATE)
    (work / "recording.raw").write_bytes(pcm_bytes(audio))
    return {name: work / name for name in ("kws.onnx", "clip.wav", "recording.wav", "recording.raw")}


def imported_by(python: str | Path, *args: str, stdin: Path | None = None, cwd: Path = REPO) -> tuple[str, set[str]]:
    """Run ``python -X importtime ARGS``: what it printed and every module it imported."""
    with open(stdin or "/dev/null", "rb") as source:
        done = subprocess.run(
            [str(python), "-X", "importtime", *args], cwd=cwd, stdin=source, capture_output=True, timeout=300
        )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    lines = done.stderr.decode().splitlines()
    modules = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    return done.stdout.decode(), modules


@pytest.mark.parametrize("mode", ["files", "stream"])
def test_predict_on_an_exported_model_imports_no_torch(device_files: dict[str, Path], mode: str) -> None:
    files = (
        [device_files["clip.wav"], device_files["recording.wav"]] if mode == "files" else ["-", "--stream", "--json"]
    )
    printed, modules = imported_by(
        sys.executable,
        *("-m", "whisper_example.predict", str(device_files["kws.onnx"]), *map(str, files)),
        stdin=device_files["recording.raw"],
    )
    assert "onnxruntime" in modules and "whisper_example.inference.onnx_spotter" in modules
    assert not {name for name in modules if name.split(".")[0] in NOT_ON_THE_DEVICE or name in NOT_ON_THE_DEVICE}
    assert printed  # it answered


def device_requirements() -> list[str]:
    """The ``onnx`` extra of pyproject.toml: what the device installs beside the wheel."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["onnx"]


def test_the_torch_free_install_predicts_in_a_fresh_venv(device_files: dict[str, Path], tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)  # its own packages
    python = tmp_path / "venv" / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    done = subprocess.run([*pip, *device_requirements()], capture_output=True, text=True, timeout=600)
    if done.returncode and any(words in done.stderr for words in NO_REGISTRY):
        pytest.skip(f"the package registry cannot be reached: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-3000:]
    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, timeout=60)
    assert no_torch.returncode != 0  # the venv has no torch to fall back on
    predict = ["-m", "whisper_example.predict", str(device_files["kws.onnx"]), str(device_files["clip.wav"]), "--json"]
    printed, modules = imported_by(python, *predict, cwd=tmp_path)
    (answer,) = json.loads(printed)
    expected = OnnxSpotter.load(device_files["kws.onnx"]).predict(soundfile.read(device_files["clip.wav"])[0], 16_000)
    assert [top["class"] for top in answer["top"]] == list(expected)[:3]
    assert "torch" not in modules
    where = "import whisper_example; print(whisper_example.__file__)"
    origin = subprocess.run([python, "-c", where], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert Path(origin.stdout.strip()).is_relative_to(tmp_path / "venv")  # the wheel's copy, not the checkout's
