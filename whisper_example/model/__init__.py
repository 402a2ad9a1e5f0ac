"""What is trained on what? The frozen encoder, its stored features, the head and its training."""
