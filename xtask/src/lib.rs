//! The project's tasks behind `cargo xtask` (demo, conformance, bench, package), as a library
//! so that their tests use the same code as the binary.

pub mod bench;
pub mod conformance;
pub mod demo;
pub mod package;
