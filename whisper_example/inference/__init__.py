"""How is a trained head used on audio? Clip probabilities and detections in recordings."""
