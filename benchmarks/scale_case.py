"""What does one bench_scale case cost in its own process? Peak memory per phase and the
seconds of preparing a split, filling the feature store and one train or evaluate pass.

``run_case`` runs in a fresh child (``python -m benchmarks.bench_scale --case SPEC``) inside
its own memory group; a ``Sampler`` thread reads RssAnon and VmHWM from /proc/self/status and
the group's total_rss every 20 ms, by phase (imports, prepare, fill, pass). Without real
weights the encoder is a stand-in (``RandomFeatures``) that writes random features of the real
shape through the same store. The app is imported only once the sampler runs, so the imports
are measured too; this module's own imports are the standard library's.
"""

import json
import logging
import threading
import time
from pathlib import Path


class Sampler(threading.Thread):
    """Peak RssAnon / VmHWM of this process and total_rss of its memory group, per phase."""

    def __init__(self, group: str | None) -> None:
        super().__init__(daemon=True)
        self.stat = Path(group, "memory.stat") if group else None
        self.phase, self.peaks, self.done = "imports", {}, threading.Event()

    def sample(self) -> dict[str, int]:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        now = {key: int(status[key].split()[0]) * 1024 for key in ("RssAnon", "VmHWM")}
        if self.stat:
            stats = dict(line.split() for line in self.stat.read_text().splitlines())
            now["group_rss"] = int(stats["total_rss"])
        peak = self.peaks.setdefault(self.phase, {})
        for key, value in now.items():
            peak[key] = max(peak.get(key, 0), value)
        return now

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.sample()

    def mark(self, phase: str) -> dict[str, int]:
        now = self.sample()
        self.phase = phase
        return now


def run_case(spec: dict) -> None:
    sampler = Sampler(spec["group"])
    sampler.start()
    started = time.perf_counter()
    import numpy as np
    import torch

    from whisper_example.config import RunConfig, default_values
    from whisper_example.data.preparation import prepare_split
    from whisper_example.model.encoder import Encoder, clip_positions, default_device
    from whisper_example.model.features import clip_features
    from whisper_example.model.head import build_head
    from whisper_example.model.training import evaluate_head, train_head
    from whisper_example.system.disk_cache import DiskCache

    class RandomFeatures(Encoder):
        """The real Encoder's shapes (the clip's positions of any context), store folder and
        batches, with random features (no model)."""

        def encode(self, waveforms, batches):
            for batch in batches:
                waveforms(batch)  # read the clips, as the log-mel step does
                yield torch.randn(len(batch), clip_positions(self.frames), self.hidden, device=self.device)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = spec["device"] or default_device()
    changes = {"dataset": spec["data"], "model-name": spec["model"], "encoder-frames": spec["frames"]}
    changes |= {"cache-dir": spec["cache"], "cache-size-gb": spec["cache_gb"]}
    config = RunConfig.from_mapping(default_values() | changes)
    seconds, notes = {"imports": time.perf_counter() - started}, []
    after_imports = sampler.mark("prepare")

    def timed(phase: str, work):
        begin = time.perf_counter()
        value = work()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds[phase] = time.perf_counter() - begin
        return value

    clips = timed("prepare", lambda: prepare_split(config, "train", progress=False))
    sampler.mark("fill")
    all_clips = np.arange(len(clips))
    encoder = (Encoder if spec["real"] else RandomFeatures)(config, device)
    fill = lambda: clip_features(clips, all_clips, encoder, DiskCache.of(config), report=notes.append)  # noqa: E731
    features = timed("fill", fill)
    sampler.mark("pass")
    head = build_head(config)
    if spec["kind"] == "train":
        train = dict(epochs=1, learning_rate=config.learning_rate, batch_size=config.batch_size, seed=config.seed)
        timed("pass", lambda: train_head(head, features, **train, device=device))
    else:  # CentralEvaluator.__call__: evaluate_head with its default batch size
        timed("pass", lambda: evaluate_head(head, features, config.num_classes, device=device))
    end = sampler.mark("end")
    sampler.done.set()
    peaks = {key: max(p.get(key, 0) for p in sampler.peaks.values()) for key in ("RssAnon", "VmHWM", "group_rss")}
    result = {
        "device": device, "clips": len(clips), "path": "on-the-fly" if features.on_the_fly else "store",
        "seconds": seconds, "notes": notes, "peak_bytes": peaks, "phase_peak_bytes": sampler.peaks,
        "rss_anon_after_imports": after_imports["RssAnon"], "group_rss_at_end": end.get("group_rss"),
        "expected_feature_bytes": len(clips) * clip_positions(config.encoder_frames) * encoder.hidden * 2,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
    }  # fmt: skip
    Path(spec["out"]).write_text(json.dumps(result, indent=1))
