"""What does the machine allow? The disk cache, the memory budget, per-process memos and progress."""
