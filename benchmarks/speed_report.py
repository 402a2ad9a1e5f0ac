"""What does bench_speed print? Each variant's epoch time, speed-up, peak memory and disk per
clip, the scan speeds, and whether bf16 stays within 0.5 pp of fp32 on held-out speakers.

Standard library only: the parent process that prints it imports nothing else.
"""

import os

from benchmarks.speed_variants import BATCH

HEAD = "{:<14}{:>9}{:>9}{:>9}{:>7}{:>11}{:>9}{:>13}"
ROW = "{:<14}{:>9}{:>9.2f}{:>9.2f}{:>7.1f}{:>11.0f}{:>9.0f}{:>13.1f}"


def report(out: dict) -> None:
    print(HEAD.format("\nvariant", "dtype", "epoch s", "clips/s", "x (a)", "RssAnon MB", "VmHWM MB", "disk KB/clip"))
    for name, v in out["variants"].items():
        figures = (v["seconds"], v["clips_per_s"], v["speedup"], v["peak_rss_anon_mb"], v["vm_hwm_mb"])
        print(ROW.format(name, v["dtype"], *figures, v["disk_bytes_per_clip"] / 1e3))
    ref = out["variants"]["a_reference"]
    print(f"{ref['clips']} clips, batch {BATCH}, {ref['device']}, {ref['threads']} torch threads; epoch seconds:")
    print("; ".join(f"{n} " + " ".join(f"{s:.2f}" for s in v["epoch_seconds"]) for n, v in out["variants"].items()))
    for frames, p in out["predict"].items():
        print(f"predict, {frames} frames: {p['windows']} windows in {p['seconds']:.1f} s, {p['windows_per_s']:.1f}/s")
    if acc := out.get("accuracy"):
        print(f"\nHeld-out-speaker accuracy: {acc['clips']} clips, {acc['speakers']} speakers, {acc['folds']} folds")
        for frames in ("50", "1500"):
            a, verdict = acc[frames], "within" if abs(acc[frames]["diff_pp"]) <= 0.5 else "NOT within"
            print(f"  {frames:>4} frames: fp32 {a['float32']:.1%}, bf16 {a['bfloat16']:.1%} (binomial s.e. "
                  f"{a['binomial_se_pp']:.1f} pp); bf16 - fp32 {a['diff_pp']:+.2f} pp (paired s.e. "
                  f"{a['diff_se_pp']:.2f}), {verdict} 0.5 pp; right only with bf16 {a['only_bf16_right']}, "
                  f"only with fp32 {a['only_fp32_right']}, of {a['evaluations']} (clips x seeds)")  # fmt: skip
    elif out["note"]:
        print(f"\nNo accuracy part: {out['note']}")
    print("step seconds, process start included: " + ", ".join(f"{k} {v:.0f}" for k, v in out["step_seconds"].items()))
    print(f"load average at start {out['load'][0]:.2f}, at end {out['load'][1]:.2f} ({os.cpu_count()} CPUs)")
