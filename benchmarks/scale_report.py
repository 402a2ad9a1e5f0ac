"""What does bench_scale print? A row per case (memory, disk, store fill, clips/s) and
whether peak anonymous memory stays flat from the smallest split to the largest.
"""

MB, GB, FLAT = 2**20, 1e9, 1.15


def print_row(r: dict, header: bool) -> None:
    if header:
        print(f"device {r['device']}; MB = 2^20 B. anon: peak RssAnon of the case's process (the criterion), +imp: "
              "above its RssAnon after imports, grp: peak total_rss (anon) of its cgroup,\ncgmax: cgroup max_usage "
              "(page cache included), fill: store fill (encoding), clips/s: N / s of epoch or evaluation")  # fmt: skip
        print(f"{'frames':>6} {'N':>6} {'case':<13} {'path':<10} {'anon MB':>8} {'+imp':>6} {'grp MB':>7} "
              f"{'cgmax MB':>9} {'disk GB':>8} {'feat GB':>8} {'fill s':>7} {'clips/s':>8} {'wall s':>7}")  # fmt: skip
    peak, nan = r["peak_bytes"], float("nan")  # nan: no memory group
    grp, cgmax = (peak["group_rss"] or nan) / MB, (r["cgroup_max_usage_bytes"] or nan) / MB
    print(
        f"{r['frames']:>6} {r['clips']:>6} {r['kind'] + ('-real' if r['real'] else ''):<13} {r['path']:<10} "
        f"{peak['RssAnon'] / MB:>8.0f} {(peak['RssAnon'] - r['rss_anon_after_imports']) / MB:>6.0f} "
        f"{grp:>7.0f} {cgmax:>9.0f} {sum(r['disk_bytes'].values()) / GB:>8.2f} "
        f"{r['expected_feature_bytes'] / GB:>8.2f} {r['seconds']['fill']:>7.1f} "
        f"{r['clips'] / r['seconds']['pass']:>8.0f} {r['wall_seconds']:>7.0f}",
        flush=True,
    )


def report_flatness(results: list[dict], sizes: list[int]) -> dict:
    """Peak RssAnon at the largest N / at the smallest N, per (frames, case); PASS within FLAT."""
    peak = {(r["frames"], r["kind"], r["n"]): r["peak_bytes"]["RssAnon"] for r in results if not r["real"]}
    flatness = {}
    for frames, kind in dict.fromkeys((f, k) for f, k, _ in peak) if len(sizes) > 1 else ():
        ratio = peak[frames, kind, sizes[-1]] / peak[frames, kind, sizes[0]]
        flatness[f"{frames}f-{kind}"] = {"ratio": ratio, "pass": ratio <= FLAT}
        print(f"flatness {frames:>4} frames {kind:<8}: peak RssAnon N={sizes[-1]} / N={sizes[0]} = {ratio:.3f}  "
              f"{'PASS' if ratio <= FLAT else 'FAIL'} (<= {FLAT})")  # fmt: skip
    return flatness
