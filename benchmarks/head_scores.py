"""What class probabilities does a run's head give 1-s clips, their features read from the store?

Shared by the benchmarks that score several seeds' heads on the same clips (windows of long
recordings, clips in a recording's conditions): the clips are encoded into the feature store
once, by the first head's spotter, and every later head reads them from there.
"""

import numpy as np
import torch

from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model.features import clip_features
from whisper_example.system.disk_cache import DiskCache


def stored_probabilities(spotter: KeywordSpotter, clips, cache: DiskCache) -> np.ndarray:
    """The head's class probabilities of 1-s clips, their features read from the store
    (encoded there once, for every seed's head)."""
    features = clip_features(clips, np.arange(len(clips)), spotter.encoder, cache, report=lambda line: None)
    with torch.inference_mode():
        logits = [spotter.head(batch) for batch, _ in features.batches(np.arange(len(features)), 256)]
    return torch.softmax(torch.cat(logits), dim=1).cpu().numpy()
