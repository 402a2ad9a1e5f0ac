"""Developer tools that are not part of the Flower app (data generators for tests, benchmarks, the README)."""
