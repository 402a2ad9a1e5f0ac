"""Installed like a library: a wheel, not an editable checkout, in a fresh environment finds the
run config's defaults and uses a trained head."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_wheel, run_config

from whisper_example.config import default_values
from whisper_example.model.head import build_head
from whisper_example.runs.folder import HEAD_SETTINGS, save_head

pytestmark = pytest.mark.slow  # builds a wheel and installs it into a new virtual environment


def test_a_wheel_installed_elsewhere_loads_a_head_and_predicts(tiny_whisper: Path, tmp_path: Path) -> None:
    config = run_config(**{"model-name": str(tiny_whisper)})
    settings = {key: value for key, value in config.to_dict().items() if key in HEAD_SETTINGS}
    checkpoint = save_head(tmp_path / "best.pt", head=build_head(config).state_dict(), settings=settings, round=1)
    wheel = build_wheel(tmp_path)
    # The environment's packages (torch, transformers) are shared; the project is not: only the wheel has it.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=300)
    probe = (
        "import json, numpy, whisper_example\n"
        "from whisper_example.inference.spotter import KeywordSpotter\n"
        f"spotter = KeywordSpotter.load({str(checkpoint)!r})\n"
        "scores = spotter.predict(numpy.zeros(16000, numpy.float32), 16000)\n"
        "print(json.dumps([whisper_example.__file__, spotter.config.batch_size, sorted(scores)]))"
    )
    done = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    where, batch_size, classes = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(where).is_relative_to(tmp_path / "venv")  # the wheel's copy, not the checkout's
    assert batch_size == default_values()["batch-size"]  # read from the pyproject.toml the wheel carries
    assert classes == sorted(config.class_names)
