"""What does a run leave behind? Its folder (config, results, checkpoints), its streamed metrics,
its record read back, and how runs compare side by side."""
