"""vidgen: text-to-video from the command line, on diffusers pipelines."""

__version__ = "0.1.0"
