"""Settings: the table, the layers, presets, prompts files, the request (torch-free)."""
