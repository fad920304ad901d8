//! Plakar connector plugins in Rust: the v2 wire protocol, stdio gRPC serving, a host, and conformance suites.
