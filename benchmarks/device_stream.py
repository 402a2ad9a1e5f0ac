"""How long after a word ends does the live stream report it? A recording handed to
``inference.stream.listen`` as a microphone hands it over: 32-ms periods, each once its time
has come, so that the delay from the end of each detected word's audio to its report is what
a listener would see.
"""

import statistics
import time

import numpy as np

from whisper_example.data.audio import SAMPLE_RATE, to_pcm16
from whisper_example.inference.stream import Heard, listen
from whisper_example.inference.windows import WindowSpotter

PERIOD = 512  # samples a capture device hands over at a time (32 ms)


class RealTimePCM:
    """Raw PCM that arrives in real time, period by period, from the first read on."""

    def __init__(self, pcm: bytes) -> None:
        self.pcm, self.sent, self.began = pcm, 0, 0.0

    def read1(self, limit: int) -> bytes:
        if not self.sent:
            self.began = time.monotonic()
        periods_due = int((time.monotonic() - self.began) * SAMPLE_RATE) // PERIOD
        if periods_due * PERIOD * 2 <= self.sent:  # nothing new yet: wait for the next period
            time.sleep(max(0.0, self.arrival((self.sent // 2 + PERIOD) / SAMPLE_RATE) - time.monotonic()))
            periods_due = self.sent // 2 // PERIOD + 1
        chunk = self.pcm[self.sent : min(periods_due * PERIOD * 2, self.sent + limit)]
        self.sent += len(chunk)
        return chunk

    def arrival(self, seconds: float) -> float:
        """When the audio up to ``seconds`` has arrived: the end of its period."""
        return self.began + -(-round(seconds * SAMPLE_RATE) // PERIOD) * PERIOD / SAMPLE_RATE


def stream_delays(spotter: WindowSpotter, audio: np.ndarray, truth: list, seconds: float) -> dict:
    """The first ``seconds`` of ``audio`` heard live: each detection matched to a word said
    (same word, centres at most 0.5 s apart) and the delay from that word's end to its report."""
    source = RealTimePCM(to_pcm16(audio[: int(seconds * SAMPLE_RATE)]).astype("<i2").tobytes())
    reports: list[tuple[Heard, float]] = []
    summary = listen(spotter, source, lambda heard: reports.append((heard, time.monotonic())))
    delays, used = [], set()
    for heard, when in reports:
        centre = (heard.detection.start + heard.detection.end) / 2
        for index, (word, start, end) in enumerate(truth):
            if index not in used and word == heard.detection.word and abs((start + end) / 2 - centre) <= 0.5:
                used.add(index)
                delays.append(when - source.arrival(end))
                break
    quantiles = statistics.quantiles(delays, n=20) if len(delays) > 1 else delays * 19
    return {
        "seconds": summary.seconds,
        "detections": summary.detections,
        "matched": len(delays),
        "delay_median_s": statistics.median(delays) if delays else None,
        "delay_p95_s": quantiles[-1] if delays else None,
        "reported_delay_median_s": summary.delay_percentile(0.5),
        "busy_per_audio_s": summary.busy_s / max(summary.seconds, 1e-9),
    }
