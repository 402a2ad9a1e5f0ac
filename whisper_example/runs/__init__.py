"""What does a run leave behind? Its folder (config, results, checkpoints) and its streamed metrics."""
