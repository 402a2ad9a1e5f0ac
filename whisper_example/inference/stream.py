"""What does a live stream of audio say, as it arrives? Raw 16-kHz mono 16-bit PCM (what
``arecord -f S16_LE -r 16000 -c 1 -t raw`` writes) read as it comes, 1-s windows scored
as soon as they are whole, and each detection reported as soon as it is decided.

    arecord -f S16_LE -r 16000 -c 1 -t raw | python -m whisper_example.predict kws.onnx - --stream

``listen`` serves any ``WindowSpotter`` (the exported model's or the torch one's), and its
windows and detections are those of the same audio scanned as a file (``detection``).
Memory stays bounded however long it runs: audio is kept from the oldest window not yet
scored, a detection's arrival time for a few seconds, delays as a histogram. Audio that
arrives faster than real time is scored in batches as fast as the CPU allows (the pipe
holds back its writer meanwhile). Ctrl-C and the end of the input both end it with the
detections still undecided and a ``Summary``.
"""

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE
from whisper_example.inference.detection import MAX_UNDECIDED_S, Detection, DetectionTracker, hop_samples
from whisper_example.inference.windows import WindowSpotter

PCM_SCALE = 32768.0  # as soundfile reads 16-bit PCM: a stream and its WAV file give the same windows
# A detection ends at most this long before it is decided (MAX_UNDECIDED_S, then the 1.5 s of
# audio after a candidate's centre that decides it): arrival times kept for that long.
ARRIVALS_KEPT_S = MAX_UNDECIDED_S + 3.0
DELAY_BIN_S, DELAY_BINS = 0.01, 6000  # the delay histogram: 10-ms bins up to a minute (and one above)


@dataclass(frozen=True)
class Heard:
    """A detection as the stream reports it."""

    detection: Detection
    decided_at: float  # seconds into the stream: the end of the window whose score decided it
    delay: float  # seconds from the arrival of the audio at the detection's end to its report


@dataclass
class Summary:
    """What a stream did, from its first byte to its end."""

    seconds: float = 0.0  # audio received
    windows: int = 0  # windows scored
    detections: int = 0
    busy_s: float = 0.0  # time spent scoring windows
    wall_s: float = 0.0
    stopped: str = "end of input"  # or "interrupted" (Ctrl-C)
    delay_counts: np.ndarray = field(default_factory=lambda: np.zeros(DELAY_BINS + 1, np.int64))

    def delay_percentile(self, share: float) -> float | None:
        """The delay (s) that ``share`` of the reported detections stayed within, to 10 ms."""
        total = int(self.delay_counts.sum())
        if not total:
            return None
        at = int(np.searchsorted(np.cumsum(self.delay_counts), share * total))
        return (at + 0.5) * DELAY_BIN_S

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 3),
            "windows": self.windows,
            "detections": self.detections,
            "busy_s": round(self.busy_s, 3),
            "wall_s": round(self.wall_s, 3),
            "real_time_factor": round(self.busy_s / self.seconds, 4) if self.seconds else None,
            "delay_median_s": self.delay_percentile(0.5),
            "delay_p95_s": self.delay_percentile(0.95),
            "stopped": self.stopped,
        }


class _CtrlC:
    """Ctrl-C while reading ends the stream at once; while scoring, once the batch is done
    (an interrupted batch would leave the detections half-updated)."""

    def __init__(self) -> None:
        self.requested = self.reading = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.reading:
            raise KeyboardInterrupt

    def __enter__(self) -> "_CtrlC":
        main = threading.current_thread() is threading.main_thread()
        self.previous = signal.signal(signal.SIGINT, self) if main else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def listen(
    spotter: WindowSpotter,
    source: BinaryIO,
    report: Callable[[Heard], None],
    hop: float | None = None,
    threshold: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Summary:
    """Spot keywords in the raw PCM of ``source`` as it arrives; ``report`` each detection
    when it is decided. Returns when the input ends or on Ctrl-C."""
    step = hop_samples(hop or spotter.hop)
    tracker = DetectionTracker(spotter.keywords, step / SAMPLE_RATE, threshold or spotter.threshold)
    summary, began = Summary(), clock()
    read = source.read1 if hasattr(source, "read1") else source.read  # read1: what has arrived, no more
    chunk_bytes = 2 * step * max(1, spotter.batch_size)
    audio = np.zeros(0, np.int16)  # from the start of the next window to score
    audio_start = received = 0  # samples: where ``audio`` starts in the stream, and how many arrived
    arrivals: deque[tuple[int, float]] = deque()  # (samples received, when), for the delays
    odd_byte = b""

    def score(count: int) -> None:
        nonlocal audio, audio_start
        first = audio_start // step
        windows = np.stack([audio[i * step : i * step + CLIP_SAMPLES] for i in range(count)])
        windows = windows.astype(np.float32) / np.float32(PCM_SCALE)
        started = clock()
        probabilities = spotter.probabilities(lambda indices: windows[indices], count)
        summary.busy_s += clock() - started
        summary.windows += count
        starts = (first + np.arange(count)) * step / SAMPLE_RATE
        audio, audio_start = audio[count * step :], audio_start + count * step
        for index in range(count):  # window by window: each detection is told when its window decided it
            tell(tracker.push(starts[index : index + 1], probabilities[index : index + 1]), starts[index] + 1.0)

    def tell(decided: list[Detection], decided_at: float) -> None:
        now = clock()
        for detection in decided:
            end = round(detection.end * SAMPLE_RATE)
            arrived = next((when for count, when in arrivals if count >= end), arrivals[-1][1])
            delay = max(0.0, now - arrived)
            summary.delay_counts[min(DELAY_BINS, int(delay / DELAY_BIN_S))] += 1
            summary.detections += 1
            report(Heard(detection, decided_at, delay))

    with _CtrlC() as ctrl_c:
        spotter.warm_up()  # before the first read: the first words do not wait for the model to load
        try:
            while not ctrl_c.requested:
                ctrl_c.reading = True
                data = read(chunk_bytes)
                ctrl_c.reading = False
                if not data:
                    break
                data, odd_byte = odd_byte + data, b""
                if len(data) % 2:  # a sample split between two reads
                    data, odd_byte = data[:-1], data[-1:]
                audio = np.concatenate([audio, np.frombuffer(data, "<i2")])
                received += len(data) // 2
                arrivals.append((received, clock()))
                while len(arrivals) > 1 and arrivals[1][0] < received - ARRIVALS_KEPT_S * SAMPLE_RATE:
                    arrivals.popleft()
                while audio.size >= CLIP_SAMPLES:
                    score(min(spotter.batch_size, (audio.size - CLIP_SAMPLES) // step + 1))
        except KeyboardInterrupt:
            ctrl_c.requested = True
        ctrl_c.reading = False
        if ctrl_c.requested:
            summary.stopped = "interrupted"
        if received and not summary.windows:  # under a second in all: one window, padded, as a file's
            audio = np.pad(audio, (0, CLIP_SAMPLES - audio.size))
            score(1)
        tell(tracker.finish(), max(received, CLIP_SAMPLES) / SAMPLE_RATE)
    summary.seconds, summary.wall_s = received / SAMPLE_RATE, clock() - began
    return summary
