"""The benchmark against PyTorch (staff only; docs/speed.md). Entry point: tools/bench.py."""
