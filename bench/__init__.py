"""threadwise benchmarks: `python -m bench` (see README, "Benchmarks").

Not part of the test suite. Everything runs against the emulators in tests/fakes/
on 127.0.0.1, with the real adapters and the real platform client libraries.
"""
