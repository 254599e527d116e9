"""Built-in baselines: classical codecs measured beside ours with real files."""
