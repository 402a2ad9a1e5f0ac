"""What does bench_speed compare? Its variants, which differ only in where the head's input
comes from, each timed over epochs of train_head at one batch size.

Standard library only: the parent process imports it to name the steps it runs.
"""

BATCH = 8
VARIANTS = {  # name: (encoder frames, encoder precision, features stored?, epochs timed)
    "a_reference": (1500, "float32", False, 1), "b_1500_fp32": (1500, "float32", False, 1),
    "b_1500_auto": (1500, "auto", False, 1), "c_50_fp32": (50, "float32", False, 3),
    "c_50_auto": (50, "auto", False, 3), "d_1500_stored": (1500, "auto", True, 5), "d_50_stored": (50, "auto", True, 5),
}  # fmt: skip
