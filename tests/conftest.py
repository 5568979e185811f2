"""pytest configuration: tests/ has no __init__.py, so `from audiogen import write_tone` works (rootdir-relative)."""
