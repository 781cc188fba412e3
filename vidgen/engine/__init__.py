"""The engine: loading pipelines, the call, stages, sampling, acceleration, making videos."""
