"""What does bench_hard print of an encoder context? Its seeds' test accuracy, precision and
recall, its costs, each test recording's conditions and scores, and the validation sweep.
"""

import statistics


def _ms(seconds: float | None) -> str:
    return "not timed (read from the store)" if seconds is None else f"{1000 * seconds:.1f} ms/clip"


def print_context(name: str, context: dict) -> None:
    runs = context["seeds"]
    print(
        f"{name}: test {context['test']['mean']:.4f} (spread {context['test']['spread_pp']:.1f} pp), "
        f"precision {context['precision']['mean']:.3f} (min {context['precision']['min']:.3f}), "
        f"recall {context['recall']['mean']:.3f} (min {context['recall']['min']:.3f}); "
        f"encoding {_ms(context['encode_s_per_clip'])}, {context['bytes_per_clip'] / 1e3:.0f} KB/clip; "
        f"predict {context['predict_windows_per_s']:.1f} windows/s; per seed: "
        + ", ".join(f"{r['test']:.4f} {r['precision']:.2f}/{r['recall']:.2f}" for r in runs),
        flush=True,
    )
    print("  by test recording: precision/recall; accuracy on clips in its conditions (means over seeds):")
    for row in context["recordings"]:
        snr = "" if row["snr_db"] is None else f" at {row['snr_db']:.1f} dB"
        print(
            f"    {row['recording']}: {row['words_per_min']} words/min, pitch {row['pitch']}, "
            f"RT60 {row['rt60_s']:.2f} s, {row['noise']}{snr}: "
            f"{statistics.mean(row['precision']):.2f}/{statistics.mean(row['recall']):.2f}; "
            f"clips {statistics.mean(row['clip_accuracy']):.2f}"
        )
    for threshold, scores in context.get("validation_sweep", {}).items():
        print(f"  validation speakers, threshold {threshold}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
