"""Three kinds of source behind one loader; partitions by speaker; prepared clips on disk."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import TEST_WORDS, run_and_list_heavy_imports, run_config, small_config

from whisper_example.config import SILENCE
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE, to_pcm16
from whisper_example.data.clips import CLIP_SCHEMA, Clips, clip_batch
from whisper_example.data.node_data import node_clips, split_for_evaluation
from whisper_example.data.partitions import count_partitions, partition_rows
from whisper_example.data.preparation import prepare_rows, prepare_split, silence_crops
from whisper_example.data.sources import DataSourceError, _load_hub, load_source
from whisper_example.system.process_memo import forget_all


def words_and_speakers(source: str) -> dict[str, list[tuple[str, str | None]]]:
    loaded = load_source(source)
    return {split: sorted(zip(loaded[split]["word"], loaded[split]["speaker_id"]), key=str) for split in loaded}


def test_folder_and_saved_datasetdict_give_the_same_speech(speech_folder: Path, speech_disk: Path) -> None:
    folder, disk = words_and_speakers(str(speech_folder)), words_and_speakers(str(speech_disk))
    for split in ("train", "validation", "test"):
        assert [row for row in folder[split] if row[0] != SILENCE] == [row for row in disk[split] if row[0] != SILENCE]
    assert {word for word, _ in folder["train"]} == {*TEST_WORDS, SILENCE}


def test_labels_come_from_names_not_ids(speech_disk: Path, tmp_path: Path) -> None:
    config = small_config(speech_disk, Path("unused"), tmp_path, keywords="no,yes")
    clips = prepare_split(config, "train", progress=False)
    counts = np.bincount(clips.labels, minlength=4)
    words = load_source(str(speech_disk))["train"]["word"]
    assert clips.names == ("no", "yes", SILENCE, "_unknown_")
    assert counts[0] == words.count("no") and counts[1] == words.count("yes")
    assert counts[3] == sum(words.count(word) for word in ("up", "down", "bed", "cat"))


def test_a_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        load_source(str(tmp_path / "nowhere"))
    with pytest.raises(DataSourceError, match="no clips found"):
        load_source(str(tmp_path))


def test_a_script_hub_dataset_falls_back_to_its_parquet_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(path: str, name: str | None, revision: str | None = None) -> dict:
        calls.append(revision)
        if revision is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found speech_commands.py")
        return {"train": "rows"}

    monkeypatch.setattr("datasets.load_dataset", fake_load_dataset)
    assert _load_hub("google/speech_commands", "v0.02") == {"train": "rows"}
    assert calls == [None, "refs/convert/parquet"]


def test_an_unreachable_hub_says_how_to_use_a_local_copy_and_is_tried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tries = []

    def offline(*args: object, **kwargs: object) -> None:
        tries.append(args)
        raise ConnectionError("Couldn't reach 'google/speech_commands' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr("datasets.load_dataset", offline)
    forget_all()
    for _ in range(2):  # two nodes served by one simulation process
        with pytest.raises(
            DataSourceError,
            match=r"dataset 'google/speech_commands' could not be loaded.*--dataset /data/speech_commands for the "
            r"scripts, --run-config \"dataset=",
        ):
            load_source("google/speech_commands", "v0.02")
    assert len(tries) == 1
    forget_all()


def test_partitions_group_speakers_and_cover_the_train_split(speech_folder: Path) -> None:
    source = str(speech_folder)
    train_speakers = {s for s in load_source(source)["train"]["speaker_id"] if s is not None}
    count = count_partitions(source, "", 3)
    assert count == len(train_speakers) // 3
    seen: list[str] = []
    for node in range(count):
        speakers = set(partition_rows(source, "", 3, node, count)["speaker_id"])
        assert len(speakers) >= 3
        seen += speakers
    assert sorted(seen) == sorted(train_speakers)


def test_a_federation_size_mismatch_names_the_federation_config_to_use(speech_folder: Path) -> None:
    count = count_partitions(str(speech_folder), "", 3)
    with pytest.raises(
        DataSourceError, match=f'simulates {count + 1} SuperNodes.*--federation-config "num-supernodes={count}"'
    ):
        partition_rows(str(speech_folder), "", 3, 0, count + 1)


def test_one_second_noise_clips_split_as_listed_and_are_nodes_silence(speech_folder: Path, tmp_path: Path) -> None:
    """Speech Commands' test archive ships 1-s noise clips, not long recordings."""
    import shutil

    from tools.synthetic_speech.wav import write_wav

    folder = shutil.copytree(speech_folder, tmp_path / "archive")
    shutil.rmtree(folder / "_background_noise_")
    (folder / "_background_noise_").mkdir()
    rng = np.random.default_rng(0)
    noise = [(0.05 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32) for _ in range(6)]
    for index, clip in enumerate(noise):
        write_wav(folder / "_background_noise_" / f"{index}.wav", clip)
    with (folder / "testing_list.txt").open("a") as lists:
        lists.write("_background_noise_/5.wav\n")
    silences = {split: rows["word"].count(SILENCE) for split, rows in load_source(str(folder)).items()}
    assert silences == {"train": 5, "validation": 0, "test": 1}

    config = small_config(folder, Path("unused"), tmp_path)
    clips = node_clips({"partition-id": 0, "num-partitions": count_partitions(str(folder), "", 3)}, config)
    silence = clips.pcm()[clips.labels == config.class_names.index(SILENCE)]
    train_noise = {to_pcm16(clip).tobytes() for clip in noise[:5]}
    assert len(silence) > 0 and all(row.tobytes() in train_noise for row in silence)


def test_silence_crops_are_distinct_and_seeded() -> None:
    noise = (np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32),)
    crops = silence_crops(noise, 20, np.random.default_rng(1))
    assert len({crop.tobytes() for crop in crops}) == 20
    assert np.array_equal(crops, silence_crops(noise, 20, np.random.default_rng(1)))


def test_a_corrupt_clip_is_skipped_and_counted() -> None:
    import io

    import soundfile
    from datasets import Dataset

    silent = io.BytesIO()
    soundfile.write(silent, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, format="WAV")
    good = {"bytes": silent.getvalue(), "path": "good.wav"}
    bad = {"bytes": b"RIFF\x00\x00garbage", "path": "bad.wav"}
    rows = Dataset.from_list(
        [{"audio": good, "word": "yes", "speaker_id": "a"}, {"audio": bad, "word": "no", "speaker_id": "a"}]
    )
    clips = prepare_rows(rows, run_config(), (), seed=0)
    assert clips.skipped == 1 and clips.labels.tolist() == [0]
    assert clips.pcm().shape == (1, SAMPLE_RATE)


def test_a_split_is_prepared_once_with_about_the_silence_fraction(speech_folder: Path, tmp_path: Path) -> None:
    config = small_config(speech_folder, Path("unused"), tmp_path)
    clips = prepare_split(config, "train", progress=False)
    (prepared,) = (tmp_path / "cache" / "clips").glob("train-*.arrow")
    again = prepare_split(config, "train", progress=False)
    assert again.table.equals(clips.table) and list((tmp_path / "cache" / "clips").glob("*.arrow")) == [prepared]
    assert abs(np.mean(clips.labels == config.class_names.index(SILENCE)) - 0.1) < 0.02
    validation = prepare_split(config, "validation", progress=False)
    assert not set(clips.digests.tolist()) & set(validation.digests.tolist())  # no clip in both splits


def test_a_changed_source_is_prepared_again(speech_folder: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(speech_folder, tmp_path / "speech"))
    config = small_config(copy, Path("unused"), tmp_path)
    before = prepare_split(config, "test", progress=False)
    clip = copy / (copy / "testing_list.txt").read_text().split()[0]  # a clip of the test split
    clip.write_bytes(clip.read_bytes()[:-2000])  # same name, other content
    forget_all()  # as a new process would see the folder
    after = prepare_split(config, "test", progress=False)
    assert len(list((tmp_path / "cache" / "clips").glob("test-*.arrow"))) == 2
    changed = [index for index in range(len(before)) if not np.array_equal(before.pcm([index]), after.pcm([index]))]
    assert len(before) == len(after) and len(changed) == 1


def test_a_digest_is_the_content_of_the_clip() -> None:
    pcm = np.random.default_rng(0).integers(-1000, 1000, (3, SAMPLE_RATE), dtype=np.int16)
    pcm[2] = pcm[0]
    batch = clip_batch(pcm, [0, 1, 2])
    digests = batch.column("digest").to_pylist()
    assert digests[0] == digests[2] != digests[1]


def test_the_evaluation_slice_is_stable_and_disjoint() -> None:
    train, held_out = split_for_evaluation(50, 0.2, seed=3)
    again, held_again = split_for_evaluation(50, 0.2, seed=3)
    assert np.array_equal(held_out, held_again) and np.array_equal(train, again)
    assert sorted([*train, *held_out]) == list(range(50)) and len(held_out) == 10


def test_a_preprocessed_partition_loads_without_datasets_or_audio_decoders(
    speech_disk: Path, partitions: list[Path]
) -> None:
    printed, heavy = run_and_list_heavy_imports(
        "from whisper_example.data.node_data import node_clips; from conftest import run_config; "
        f"print(len(node_clips({{'local-data': '{partitions[1]}'}}, run_config())))"
    )
    simulated = node_clips({"partition-id": 1, "num-partitions": 3}, run_config(dataset=str(speech_disk)))
    assert (printed, heavy) == (str(len(simulated)), [])


def rss_anon() -> int:
    (line,) = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("RssAnon:")]
    return int(line.split()[1]) * 1024


def test_a_batch_of_a_memory_mapped_split_is_read_without_copying_the_split(tmp_path: Path) -> None:
    chunks, rows = 8, 1000  # 256 MB of clips on disk, written chunk by chunk as prepare_split does
    path = tmp_path / "split.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, CLIP_SCHEMA) as writer:
        for chunk in range(chunks):
            pcm = np.full((rows, CLIP_SAMPLES), chunk, np.int16) + np.arange(rows, dtype=np.int16)[:, None]
            writer.write_batch(clip_batch(pcm, np.zeros(rows)))
    clips = Clips(pa.ipc.open_file(pa.memory_map(str(path))).read_all(), ("a",))
    wanted = np.array([7999, 3, 1000, 999, 4500, 3])
    before = rss_anon()
    batch = clips.pcm(wanted)
    assert rss_anon() - before < 64 * 2**20  # the split is 256 MB
    assert batch[:, 0].tolist() == [7 + 999, 0 + 3, 1 + 0, 0 + 999, 4 + 500, 0 + 3]
