"""Which clips does each node hold in ``bench_alone``'s skewed case? A copy of a Speech Commands
folder (links) in which every SuperNode never heard half of the keywords.

In the spirit of silos that each saw some digits only: the even SuperNodes hold no clip of the
first half of the keywords, the odd ones none of the second half; their other words and silence
stay. The skew is written as data, not as an option of the app, so that each node alone
(``centralized.py --partition-id K``), the federation and the pooled baseline read the same
clips through their own unchanged code paths, and the pooled run trains on exactly the union of
what the nodes hold.

A node is a group of speakers (``data.partitions``, by sorted speaker id): a speaker whose train
clips all belong to one half could lose all of them and vanish, shifting every later group. Such
speakers are left out of the train split first (``base``: the speakers kept); the skew is then
cut along ``base``'s partitions, and the copy is checked to make the same partitions.
"""

import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tools.real_speech import Clip, clips_of, link_clips
from tools.synthetic_speech.folder import TESTING_LIST, VALIDATION_LIST
from whisper_example.data.partitions import count_partitions, partition_rows


def never_heard(partition_id: int, words: Sequence[str]) -> tuple[str, ...]:
    """The keywords SuperNode ``partition_id`` of the skewed copy never heard."""
    half = len(words) // 2
    return tuple(words[:half] if partition_id % 2 == 0 else words[half:])


def speakers_of_nodes(folder: Path, speakers_per_node: int) -> list[set[str]]:
    """The speakers of each SuperNode a simulation of ``folder`` makes."""
    count = count_partitions(str(folder), "", speakers_per_node)
    return [set(partition_rows(str(folder), "", speakers_per_node, node, count)["speaker_id"]) for node in range(count)]


def write_skewed(source: Path, out: Path, words: Sequence[str], speakers_per_node: int) -> Path:
    """The skewed copy of ``source`` at ``out / "data"``, testing and validating on the same
    held-out speakers (``base``, the speakers it keeps, beside it)."""
    clips = clips_of(source)
    held_out = {name: set((source / name).read_text().split()) for name in (TESTING_LIST, VALIDATION_LIST)}
    listed = held_out[TESTING_LIST] | held_out[VALIDATION_LIST]
    training = [clip for clip in clips if clip.speaker and clip.relative not in listed]
    heard: dict[str, set[str]] = defaultdict(set)
    for clip in training:
        heard[clip.speaker].add(clip.word)
    halves = (set(never_heard(0, words)), set(never_heard(1, words)))
    fragile = {speaker for speaker, said in heard.items() if any(said <= half for half in halves)}
    left_out = {clip.path for clip in training if clip.speaker in fragile}
    base_clips = [clip for clip in clips if clip.path not in left_out]
    nodes = speakers_of_nodes(_linked(base_clips, out / "base", held_out), speakers_per_node)
    node_of = {speaker: node for node, speakers in enumerate(nodes) for speaker in speakers}
    unheard = {
        clip.path
        for clip in training
        if clip.speaker in node_of and clip.word in never_heard(node_of[clip.speaker], words)
    }
    skewed = _linked([clip for clip in base_clips if clip.path not in unheard], out / "data", held_out)
    if speakers_of_nodes(skewed, speakers_per_node) != nodes:
        raise RuntimeError(f"{skewed}: its SuperNodes are not the speaker groups the skew was cut for")
    return skewed


def _linked(clips: Sequence[Clip], out: Path, held_out: dict[str, set[str]]) -> Path:
    """A fresh folder of links (a rerun's leftovers would add clips)."""
    shutil.rmtree(out, ignore_errors=True)
    return link_clips(clips, out, held_out[TESTING_LIST], held_out[VALIDATION_LIST])
