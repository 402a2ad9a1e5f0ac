"""How long does a spotter take to start, and how many 1-s windows does it score a second?
One model in a fresh process, so that imports, load and memory are its own.

    python -m benchmarks.device_speed MODEL [--windows 32] [--device cpu]

MODEL is an exported ``.onnx`` file (only the device's imports: no torch) or a run folder
(the torch path). Prints one JSON line: seconds to import, to load (the spotter ready and one
window scored, which loads a torch encoder lazily), windows per second over ``--windows``
windows of noise in the spotter's own batches, the real-time factor at the default hop (the
seconds of scoring per second of audio) and the peak resident memory.
"""

import argparse
import json
import time
from pathlib import Path

started = time.perf_counter()

import numpy as np  # noqa: E402

from whisper_example.data.audio import SAMPLE_RATE  # noqa: E402
from whisper_example.inference.detection import DEFAULT_HOP  # noqa: E402
from whisper_example.inference.onnx_spotter import OnnxSpotter, is_exported_model  # noqa: E402


def peak_resident_mb() -> float:
    """VmHWM: this process's own peak (getrusage's ru_maxrss would carry the parent's across exec)."""
    (line,) = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if is_exported_model(args.model):
        imported = time.perf_counter()
        spotter = OnnxSpotter.load(args.model)
    else:
        from whisper_example.inference.spotter import KeywordSpotter

        imported = time.perf_counter()
        spotter = KeywordSpotter.load(args.model, device=args.device)
    spotter.warm_up()
    loaded = time.perf_counter()
    clips = (0.05 * np.random.default_rng(0).standard_normal((args.windows, SAMPLE_RATE))).astype(np.float32)
    spotter.probabilities(lambda indices: clips[indices], args.windows)
    scored = time.perf_counter()
    windows_per_s = args.windows / (scored - loaded)
    figures = {
        "import_s": imported - started,
        "load_s": loaded - imported,
        "windows_per_s": windows_per_s,
        "real_time_factor": (1 / DEFAULT_HOP) / windows_per_s,
        "batch_size": spotter.batch_size,
        "peak_rss_mb": peak_resident_mb(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
