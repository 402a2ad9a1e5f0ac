"""How is a trained head used on audio? Clip probabilities, detections in recordings and in live
audio, with torch or with the exported model alone."""
