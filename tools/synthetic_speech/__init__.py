"""What do the tests, the benchmarks and the README's quick try hear in place of Speech Commands?

Speech-Commands-v0.02 look-alikes, not part of the Flower app. Tests and benchmarks cannot
download Speech Commands, yet the loaders, the feature extractor and the frozen Whisper encoder
should be fed audio that really is speech, laid out exactly like the real data. These modules
speak the dataset's words (``words``) with several espeak-ng voices ("speakers", ``speakers``)
under ``EASY`` or ``HARD`` conditions (``conditions``): each word is spoken dry (``speech``),
then recorded in a room, at a level and over background noise (``recording``, ``noise``) and
written as a WAV file (``wav``), either

* in the official archive layout (``folder.make_speech_commands_folder``), or
* as a ``datasets.DatasetDict`` with the Hugging Face ``speech_commands`` v0.02 features,
  saved with ``save_to_disk`` (``disk.make_speech_commands_disk``).

``cheap=True`` (``--cheap``) replaces speech by word-specific tone patterns: no espeak-ng, and
fast enough for a folder of Speech Commands' size (2618 speakers x 35 words, ~90k clips).
``long_recording.make_long_recording`` writes a long recording with keywords at known times,
for testing keyword detection. The command line is ``tools/synthetic.py``.
"""
