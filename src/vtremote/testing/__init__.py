"""Test scaffolding: fault switches and lossy relays for tests and benchmarks; product code never imports it."""
