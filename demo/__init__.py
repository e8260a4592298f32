"""The demo dataset generator (`billing demo`, the benchmark, tests): not part of the runtime."""
