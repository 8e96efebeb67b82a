"""Test scaffolding for tests and benchmarks: a real ``vtremoted`` subprocess, fault switches,
lossy relays; product code never imports it."""
