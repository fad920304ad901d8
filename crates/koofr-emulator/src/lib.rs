//! An offline emulator of the Koofr REST API, with fault injection, for tests, benchmarks and the demo.
