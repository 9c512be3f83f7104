"""Benchmarks: stagefx's overhead as ratios against floors measured in the same run."""
