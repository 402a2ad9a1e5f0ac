"""What is trained on what? The frozen encoder, its stored features, the head and its training."""


class ModelError(ValueError):
    """A model that is not a Whisper model, or a head that does not fit the run."""
