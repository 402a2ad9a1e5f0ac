"""Live audio: raw PCM read as it arrives, each detection reported once it is decided, the same
detections as the file's whichever model scores the windows, memory flat however long it runs,
and Ctrl-C or the end of the input ending it with a summary."""

import io
import json
import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from tone_words import FLOOR, pcm_bytes, tone_head, tone_recording

from whisper_example.export import export
from whisper_example.inference.detection import DetectionTracker, find_detections
from whisper_example.inference.onnx_spotter import OnnxSpotter
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.inference.stream import listen

WORDS = ["yes", "no", "up", "down", "no", "yes"]


@pytest.fixture(scope="module")
def tone_models(tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[KeywordSpotter, Path]:
    """The torch spotter of a head trained on tone words, and the same exported (50 frames)."""
    work = tmp_path_factory.mktemp("tone-words")
    _, run = tone_head(tiny_whisper, work)
    spotter = KeywordSpotter.load(run, device="cpu")
    export(spotter, work / "kws.onnx")
    return spotter, work / "kws.onnx"


def heard_in(spotter, pcm: bytes, source=None) -> list:
    heard: list = []
    listen(spotter, source or io.BytesIO(pcm), heard.append)
    return heard


def close(first: list, second: list) -> bool:
    """The same detections, up to float noise (onnxruntime's sums differ with the batch size)."""
    return len(first) == len(second) and all(
        a.word == b.word and abs(a.start - b.start) < 1e-4 and abs(a.probability - b.probability) < 1e-4
        for a, b in zip(first, second)
    )


def windows_of_detections(seed: int, gaps: tuple[int, int] = (0, 5)) -> tuple[np.ndarray, np.ndarray]:
    """Window starts (hop 0.25 s) and probabilities with keywords winning runs of 1-6 windows,
    between stretches of ``gaps`` windows of silence (by default often less than a second)."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < 400:
        silence = np.full(6, 0.02)
        silence[4] = 0.9
        rows += [silence] * int(rng.integers(*gaps))
        keyword, probability = int(rng.integers(0, 4)), rng.uniform(0.5, 1.0)
        for _ in range(int(rng.integers(1, 7))):
            row = np.full(6, (1 - probability) / 5)
            row[keyword] = probability
            rows.append(row)
    return np.arange(len(rows)) * 0.25, np.array(rows)


def test_detections_decided_window_by_window_are_those_of_the_whole_file() -> None:
    keywords = {0: "yes", 1: "no", 2: "up", 3: "down"}
    for seed in range(5):
        starts, probabilities = windows_of_detections(seed)
        tracker, live = DetectionTracker(keywords, 0.25, 0.6), []
        for index in range(len(starts)):
            live += tracker.push(starts[index : index + 1], probabilities[index : index + 1])
        live += tracker.finish()
        whole = find_detections(keywords, starts, probabilities, 0.6)
        assert len(whole) > 20 and live == whole


def test_a_lone_detection_is_decided_as_soon_as_no_later_window_can_overlap_it() -> None:
    keywords = {0: "yes", 1: "no", 2: "up", 3: "down"}
    starts, probabilities = windows_of_detections(0, gaps=(9, 12))  # detections 2 s and more apart
    tracker, lags = DetectionTracker(keywords, 0.25, 0.6), []
    for index in range(len(starts)):
        for detection in tracker.push(starts[index : index + 1], probabilities[index : index + 1]):
            lags.append(starts[index] - (detection.start + 0.5))  # the last window seen, after the centre
    # decided by the last window that starts up to the centre + 0.5 s: no later window can reach it
    assert len(lags) > 10 and 0.25 - 1e-9 <= min(lags) and max(lags) <= 0.5 + 1e-9


def test_a_stream_gives_the_detections_of_its_file(tone_models) -> None:
    _, exported = tone_models
    spotter = OnnxSpotter.load(exported)
    audio, _ = tone_recording(WORDS)
    pcm = pcm_bytes(audio)
    as_file = spotter.detect(np.frombuffer(pcm, "<i2") / np.float32(32768), 16_000)
    assert len(as_file) == len(WORDS) and close([heard.detection for heard in heard_in(spotter, pcm)], as_file)


def test_the_torch_and_the_exported_model_hear_the_same_stream(tone_models) -> None:
    torch_spotter, exported = tone_models
    pcm = pcm_bytes(tone_recording(WORDS, seed=1)[0])
    through_torch, through_onnx = heard_in(torch_spotter, pcm), heard_in(OnnxSpotter.load(exported), pcm)
    assert [h.detection.word for h in through_onnx] == WORDS
    assert close([h.detection for h in through_torch], [h.detection for h in through_onnx])
    assert [h.decided_at for h in through_torch] == [h.decided_at for h in through_onnx]


class Trickle(io.RawIOBase):
    """A pipe that hands over an odd number of bytes at a time, splitting samples."""

    def __init__(self, data: bytes, size: int = 1001) -> None:
        self.data, self.size = data, size

    def read1(self, limit: int = -1) -> bytes:
        chunk, self.data = self.data[: min(self.size, limit)], self.data[min(self.size, limit) :]
        return chunk


def test_samples_split_between_reads_are_joined(tone_models) -> None:
    spotter = OnnxSpotter.load(tone_models[1])
    pcm = pcm_bytes(tone_recording(WORDS, seed=2)[0])
    trickled, at_once = heard_in(spotter, pcm, Trickle(pcm)), heard_in(spotter, pcm)
    assert len(trickled) == len(WORDS) and close([h.detection for h in trickled], [h.detection for h in at_once])
    assert [h.decided_at for h in trickled] == [h.decided_at for h in at_once]


def start_stream(exported: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "whisper_example.predict", str(exported), "-", "--stream", "--json"]
    return subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow  # starts the command line
def test_the_command_line_spots_piped_words_in_order_and_on_time(tone_models) -> None:
    audio, truth = tone_recording(WORDS, seed=3)
    stream = start_stream(tone_models[1])
    out, err = stream.communicate(pcm_bytes(audio), timeout=120)
    *lines, last = [json.loads(line) for line in out.decode().splitlines()]
    assert stream.returncode == 0, err.decode()[-2000:]
    assert [line["word"] for line in lines] == [word for word, _, _ in truth]
    for line, (_, start, end) in zip(lines, truth):
        assert abs((line["start"] + line["end"]) / 2 - (start + end) / 2) < 0.25  # centred on the word
        # decided by the last window that starts up to the detection's centre + 0.5 s
        assert 1.25 - 1e-6 <= line["decided_at"] - (line["start"] + line["end"]) / 2 <= 1.5 + 1e-6
        assert 0.5 < line["decided_at"] - end < 2.0 and line["delay"] >= 0
    assert last["summary"]["detections"] == len(WORDS) and last["summary"]["stopped"] == "end of input"
    assert last["summary"]["windows"] == (len(audio) - 16_000) // 4000 + 1


def resident_kb(pid: int) -> int:
    (line,) = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1])


@pytest.mark.slow  # starts the command line and streams four minutes of audio through it
def test_memory_stays_flat_over_a_long_stream(tone_models) -> None:
    second = 16_000 * 2
    audio = pcm_bytes((FLOOR * np.random.default_rng(4).standard_normal(240 * 16_000)).astype(np.float32))
    stream = start_stream(tone_models[1])
    resident = []  # after each second written: a full pipe holds the writer back, so the stream keeps up
    for start in range(0, len(audio), second):
        stream.stdin.write(audio[start : start + second])
        stream.stdin.flush()
        resident.append(resident_kb(stream.pid))
    out, _ = stream.communicate(timeout=120)
    assert json.loads(out.decode().splitlines()[-1])["summary"]["seconds"] == 240.0
    # The least of each minute, below a batch's passing arrays. Holding the audio would add
    # 1.9 MB a minute (int16), 3.8 MB as float32.
    second_minute, last_minute = min(resident[60:120]), min(resident[180:])
    assert last_minute - second_minute < 1000, (second_minute, last_minute)


@pytest.mark.slow  # starts the command line and interrupts it
def test_ctrl_c_ends_the_stream_with_a_summary(tone_models) -> None:
    stream = start_stream(tone_models[1])
    stream.stdin.write(pcm_bytes(tone_recording(WORDS[:2], seed=5)[0]))
    stream.stdin.flush()
    heard = []
    for _ in WORDS[:2]:  # then the stream waits for more audio
        assert select.select([stream.stdout], [], [], 60)[0], "no detection within a minute"
        heard.append(json.loads(stream.stdout.readline())["word"])
    stream.send_signal(signal.SIGINT)
    out, err = stream.communicate(timeout=60)
    assert stream.returncode == 0 and "Traceback" not in err.decode(), err.decode()[-2000:]
    assert heard == WORDS[:2] and json.loads(out.decode())["summary"]["stopped"] == "interrupted"
