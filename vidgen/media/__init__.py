"""Media: frames to files and back, sound, inputs, post-processing."""
