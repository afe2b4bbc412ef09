"""What the tests and the benchmarks share: services started locally and in containers, faults,
fuzzing, a tiny judge server, polling, small known models. Benchmarks import this, never a test."""
