"""Training the built-in Shapes model (not shipped in the wheel): `make train-embedded`,
docs/embedded-model.md. Its weights are vidgen/embedded/weights/shapes."""
