"""Measuring code behind ``vtremote bench`` and ``benchmarks/``."""
