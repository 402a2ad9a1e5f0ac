"""What does bench_device print, and how are its Raspberry Pi figures estimated? The side-by-side
table with ratios to torch, the installed sizes, and Pi estimates from the encoder's arithmetic.

Pi estimates (no Pi was measured): the encoder's floating-point operations per window are
counted from its config (the convolutions, the attention projections and scores, the
feed-forward layers; a multiply-add is 2), and a Pi is assumed to sustain ``PI_GFLOPS`` on them
with ONNX Runtime in float32 on its 4 cores: the Pi 4 runs HPL (float64) at about 8 GFLOP/s,
float32 doubles its SIMD width but a transformer's softmax, normalisation and GELU do not
speed up with it, so 8 is kept; the Pi 5's Cortex-A76 at 2.4 GHz is taken as 3x the Pi 4.
int8 is scaled by the int8/float32 speed ratio measured here, which overstates the Pi 4 (its
Cortex-A72 has no int8 dot-product instructions). Take them as +-2x.
"""

import re
from importlib import metadata

from packaging.requirements import Requirement

from benchmarks.runs import REPO
from whisper_example.model.encoder import whisper_config

PI_GFLOPS = {"Pi 4": 8.0, "Pi 5": 24.0}
HOP_WINDOWS_PER_S = 4  # windows a second of audio needs at the default hop (0.25 s)


def operations_per_window(model_name: str, frames: int) -> float:
    """Floating-point operations of the encoder on one window at ``frames`` positions."""
    model = whisper_config(model_name)
    width, ffn, mels = model["d_model"], model["encoder_ffn_dim"], model["num_mel_bins"]
    convolutions = 2 * 3 * mels * width * 2 * frames + 2 * 3 * width * width * frames
    per_layer = 2 * 4 * frames * width * width + 2 * 2 * frames * frames * width + 2 * 2 * frames * width * ffn
    return float(convolutions + model["encoder_layers"] * per_layer)


def estimates(speed: dict) -> dict:
    """Estimated windows/s and real-time factor of the exported models on Pis (see the docstring)."""
    out: dict = {}
    for frames, runtimes in speed.items():
        int8_gain = runtimes["onnx-int8"]["windows_per_s"] / runtimes["onnx-float32"]["windows_per_s"]
        for pi, gflops in PI_GFLOPS.items():
            windows = gflops * 1e9 / runtimes["operations"]
            for name, rate in (("onnx-float32", windows), ("onnx-int8", windows * int8_gain)):
                out.setdefault(str(frames), {})[f"{pi} {name}"] = {
                    "windows_per_s": rate,
                    "real_time_factor": HOP_WINDOWS_PER_S / rate,
                }
    return out


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions these requirements bring, with their extras'."""
    seen: set[str] = set()
    pending = [Requirement(text) for text in requirements]
    while pending:
        requirement = pending.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            needed = Requirement(text)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(needed)
        seen.add(name)
    return seen


def _megabytes(names: set[str]) -> float:
    return sum(file.size or 0 for name in names for file in metadata.distribution(name).files or []) / 1e6


def installed_mb() -> dict:
    """Installed size of the torch-free path (the wheel and the ``onnx`` extra) and of the full
    project, counted the same way from this environment's files."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    device, full = _closure(project["optional-dependencies"]["onnx"]), _closure(project["dependencies"])
    return {"onnx_only": _megabytes(device), "full": _megabytes(full), "onnx_only_packages": sorted(device)}


HEAD = "{:<14}{:>7}{:>10}{:>10}{:>12}{:>10}{:>12}{:>10}"
ROW = "{:<14}{:>7}{:>10.2f}{:>10.2f}{:>12.2f}{:>10.3f}{:>12}{:>10.0f}"


def report(out: dict) -> None:
    print(HEAD.format("\nmodel", "frames", "import s", "load s", "windows/s", "RTF", "x torch", "peak MB"))
    for frames, runtimes in out["speed"].items():
        torch_rate = runtimes["torch"]["windows_per_s"]
        for name in ("torch", "onnx-float32", "onnx-int8"):
            s = runtimes[name]
            ratio = f"{s['windows_per_s'] / torch_rate:.2f}x"
            figures = (s["import_s"], s["load_s"], s["windows_per_s"], s["real_time_factor"], ratio, s["peak_rss_mb"])
            print(ROW.format(name, frames, *figures))
    print("RTF: seconds of scoring per second of audio at the default hop (4 windows/s); < 1 keeps up live")
    clips = out["clips"]
    print(f"\nheld-out clips: {clips['count']} clips of {clips['speakers']} speakers never trained on")
    for name in ("torch", "torch-float32", "onnx-float32", "onnx-int8"):
        c = clips[name]
        diffs = ", ".join(f"max |p - {k[12:]}| {v:.2e}" for k, v in c.items() if k.startswith("max_diff_vs_"))
        print(f"  {name:<14} accuracy {c['accuracy']:.4f}  {diffs}")
    print(f"  int8 - float32: {clips['int8_minus_float32_pp']:+.2f} pp (bar: within 1 pp)")
    d = out["detection"]
    print(f"\ndetection on {d['recordings']} recordings (100 s each), threshold {d['threshold']}:")
    for name in ("torch", "onnx-float32", "onnx-int8"):
        print(
            f"  {name:<14} precision {d[name]['precision']:.3f}  recall {d[name]['recall']:.3f}  "
            f"({d[name]['spoken']} keywords said)"
        )
    print("\nlive stream (real-time input), delay from the end of each detected word to its report:")
    for name, s in out["stream"].items():
        if s["delay_median_s"] is None:
            print(f"  {name:<14} no detection matched in {s['seconds']:.0f} s")
            continue
        print(
            f"  {name:<14} median {s['delay_median_s']:.2f} s, 95th percentile {s['delay_p95_s']:.2f} s "
            f"({s['matched']} of {s['detections']} detections matched, {s['seconds']:.0f} s of audio; "
            f"scoring {s['busy_per_audio_s']:.2f} s per s)"
        )
    sizes = out["installed_mb"]
    print(
        f"\ninstalled: torch-free path {sizes['onnx_only']:.0f} MB ({', '.join(sizes['onnx_only_packages'])}), "
        f"full project {sizes['full']:.0f} MB"
    )
    print("\nRaspberry Pi, ESTIMATES (not measured; see benchmarks/device_report.py for how):")
    for frames, rows in out["pi_estimates"].items():
        print(
            f"  {frames:>4} frames: "
            + "; ".join(
                f"{name} {e['windows_per_s']:.1f} windows/s (RTF {e['real_time_factor']:.2f})"
                for name, e in rows.items()
            )
        )
    print(
        f"\n{out['seconds']:.0f} s; load average at start {out['load'][0]:.2f}, at end {out['load'][1]:.2f} "
        f"({out['cpu']} CPUs)"
    )
