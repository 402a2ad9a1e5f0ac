"""How does one generate a Speech-Commands-v0.02 look-alike, or a long recording, from the command line?

The command line of ``tools/synthetic_speech`` (not part of the Flower app): espeak-ng speech,
or ``--cheap`` tone patterns, in the official archive layout or as a ``save_to_disk``
DatasetDict; ``--long-recording`` writes one recording with keywords at known times.

CLI, from the repository root::

    python tools/synthetic.py --out DIR [--format folder|disk] [--speakers N] [--words yes no ...]
        [--clips-per-word K] [--noise-files M] [--seed S] [--cheap] [--verbose] [--model-name SRC]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tools.synthetic_speech.conditions import EASY, HARD
from tools.synthetic_speech.disk import make_speech_commands_disk
from tools.synthetic_speech.folder import assign_speaker_splits, make_speech_commands_folder
from tools.synthetic_speech.long_recording import make_long_recording
from tools.synthetic_speech.speakers import make_speakers, make_tone_speakers
from tools.synthetic_speech.words import DEFAULT_WORDS, HARD_WORDS, SPOKEN_WORDS
from whisper_example.config import DEFAULT_KEYWORDS


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python tools/synthetic.py",
        description="Write a Speech-Commands-v0.02 look-alike (espeak-ng speech, or --cheap tone patterns), "
        "or a long recording with keywords at known times (--long-recording).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="output directory of a dataset (missing or empty)")
    where.add_argument(
        "--long-recording",
        type=Path,
        metavar="FILE.wav",
        help="write one long recording spoken by a test speaker of the dataset these options make, "
        "and its words' times to FILE.json",
    )
    parser.add_argument(
        "--format",
        choices=("folder", "disk"),
        default="folder",
        help="official archive layout, or a datasets save_to_disk DatasetDict",
    )
    parser.add_argument("--speakers", type=int, default=10, help="number of speakers")
    parser.add_argument(
        "--words",
        nargs="+",
        help=f"v0.02 words to say (default: {' '.join(DEFAULT_WORDS)}; with --cheap all 35 words; "
        f"with --hard {' '.join(HARD_WORDS)})",
    )
    parser.add_argument("--clips-per-word", type=int, default=1, help="utterances of each word per speaker")
    parser.add_argument("--noise-files", type=int, default=2, help="background noise recordings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cheap", action="store_true", help="tone patterns instead of espeak-ng speech (fast)")
    parser.add_argument(
        "--hard",
        action="store_true",
        help="recordings more like real ones: wide pitch, rate and level, noise at 0-15 dB SNR, reverberant "
        "rooms, words trimmed towards the start of the window, digits as unknown words",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the --long-recording")
    parser.add_argument("--occurrences", type=int, default=8, help="keywords said in the --long-recording")
    parser.add_argument("--verbose", action="store_true", help="also list the speakers")
    parser.add_argument(
        "--model-name",
        help="a Whisper folder or Hub id that the printed commands name (offline: the folder of the weights)",
    )
    args = parser.parse_args(argv)
    if args.cheap and (args.hard or args.long_recording):
        parser.error("--cheap writes tone patterns: it goes with neither --hard nor --long-recording")
    return args


def write_long_recording(args: argparse.Namespace) -> None:
    """``--long-recording``: keywords (and, with --hard, digits between them) said by the
    first test speaker of the dataset the same options make; truth to FILE.json."""
    conditions = HARD if args.hard else EASY
    speakers = make_speakers(args.speakers, args.seed, conditions)
    splits = assign_speaker_splits([s.speaker_id for s in speakers])
    speaker = next((s for s in speakers if splits[s.speaker_id] == "test"), speakers[0])
    keywords = [word for word in (args.words or DEFAULT_KEYWORDS) if word in DEFAULT_KEYWORDS]
    distractors = [word for word in (args.words or HARD_WORDS) if word not in DEFAULT_KEYWORDS] if args.hard else []
    path = args.long_recording.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    others = len(distractors) and args.occurrences // 2  # an unknown word between every two keywords
    truth = make_long_recording(
        path, words=keywords, occurrences=args.occurrences, seconds=args.seconds, speaker=speaker, seed=args.seed,
        conditions=conditions, distractors=distractors, distractor_occurrences=others,
    ).truth  # fmt: skip
    rows = [{"word": word, "start": round(start, 3), "end": round(end, 3)} for word, start, end in truth]
    path.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {path} ({args.seconds:g} s, speaker {speaker.speaker_id}) and {path.with_suffix('.json')}:")
    print("  " + ", ".join(f"{row['word']} {row['start']:.2f}-{row['end']:.2f} s" for row in rows))


QUICK_TRY = Path(__file__).resolve().parents[1] / "configs" / "quick_try.toml"


def toml_value(value: object) -> str:
    """A run-config value as TOML writes it (a JSON string is a valid TOML basic string)."""
    return str(value).lower() if isinstance(value, bool) else json.dumps(value)


def _simulation_hint(dataset: Path, model_name: str | None) -> str:
    """How many SuperNodes the train split makes at the default speakers-per-node, and a
    command that visibly learns on a CPU in minutes: ``configs/quick_try.toml`` with this
    dataset (and ``model_name``) filled in, written beside the dataset; no per-run
    environment, the run's log streamed."""
    import tomllib

    from whisper_example.config import default_values
    from whisper_example.data.partitions import count_partitions

    per_node = int(default_values()["speakers-per-node"])
    try:
        nodes = count_partitions(str(dataset), "", per_node)
    except ValueError:  # flwr-datasets refuses fewer speakers than one group
        return f"simulation: fewer train speakers than speakers-per-node={per_node}; use more --speakers"
    settings = tomllib.loads(QUICK_TRY.read_text()) | {"dataset": str(dataset)}
    settings |= {"model-name": model_name} if model_name else {}
    run_config = dataset.with_name(dataset.name + "_quick_try.toml")
    header = f"# {QUICK_TRY.name} for {dataset}: the command tools/synthetic.py printed runs it\n"
    run_config.write_text(header + "".join(f"{key} = {toml_value(value)}\n" for key, value in settings.items()))
    return (
        f"simulation: {nodes} SuperNodes (speakers-per-node={per_node}): "
        f"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run . --stream --run-config {run_config} "
        f'--federation-config "num-supernodes={nodes}"'
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python tools/synthetic.py``."""
    args = _parse_args(argv)
    if args.long_recording:
        return write_long_recording(args)
    out = args.out.expanduser().resolve()
    words = args.words or (SPOKEN_WORDS if args.cheap else HARD_WORDS if args.hard else DEFAULT_WORDS)
    options = dict(
        words=words,
        num_speakers=args.speakers,
        clips_per_word=args.clips_per_word,
        seed=args.seed,
        noise_files=args.noise_files,
        cheap=args.cheap,
        conditions=HARD if args.hard else EASY,
    )
    import datasets  # needed below anyway; its progress bars would drown the summary

    datasets.disable_progress_bars()
    started = time.perf_counter()
    try:
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty")
        if args.format == "folder":
            make_speech_commands_folder(out, **options)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                folder = make_speech_commands_folder(Path(tmp) / "folder", **options)
                make_speech_commands_disk(folder, out, seed=args.seed)
    except (ValueError, RuntimeError, FileExistsError) as error:
        raise SystemExit(f"error: {error}") from None
    from whisper_example.data.sources import SPLITS, load_source

    loaded = load_source(str(out), "")  # the call count_partitions makes: loaded once
    sizes = ", ".join(f"{split} {loaded[split].num_rows}" for split in SPLITS)
    kind = "tone-pattern" if args.cheap else "espeak-ng, hard" if args.hard else "espeak-ng"
    print(f"wrote {out} ({args.format}, {kind}) in {time.perf_counter() - started:.1f} s: {sizes} rows")
    if args.verbose:
        if args.cheap:
            speakers = make_tone_speakers(args.speakers, args.seed)
            print("speakers: " + ", ".join(f"{s.speaker_id}=x{s.pitch:.2f}" for s in speakers))
        else:
            speakers = make_speakers(args.speakers, args.seed, options["conditions"])
            print("speakers: " + ", ".join(f"{s.speaker_id}={s.espeak_voice}" for s in speakers))
    print(_simulation_hint(out, args.model_name))
    model = f" --model-name {args.model_name}" if args.model_name else ""
    print(f"centralized: python centralized.py --dataset {out}{model}")
    if not args.cheap:  # a recording of one of this dataset's test speakers, and the head's detections in it
        same = f"--speakers {args.speakers} --seed {args.seed}" + (" --hard" if args.hard else "")
        long = out.with_name(out.name + "_long.wav")
        print(f"long recording: python tools/synthetic.py --long-recording {long} --seconds 60 --occurrences 24 {same}")
        print(f"predict: python -m whisper_example.predict RUN_FOLDER {long}")


if __name__ == "__main__":
    main()
