"""The tests' machinery, shared with the benchmark (bench/): never shipped in the image.

- compose_file: compose.yaml (and its overrides) read as data, as Compose merges it.
- native: the stack's services started without Docker, configured from that data.
- project: a throwaway Compose project in a clean copy of the checkout, under a real engine.
- commands: running the stack's commands and goose's stand-in as a user would.
- tripwire: a listening socket that catches any request bound for the internet.
"""
