//! Compiles the `.proto` files with protox (no system `protoc`) and tonic-prost-build: protocol
//! v2 into `OUT_DIR`, protocol v1 into `OUT_DIR/v1` (its packages `importer` and `store` have
//! the same names as v2's, so their generated files would collide).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let v2 = [
        "connectors.proto",
        "importer/importer.proto",
        "exporter/exporter.proto",
        "storage/storage.proto",
    ];
    let v1 = [
        "importer/importer.proto",
        "exporter/exporter.proto",
        "storage/storage.proto",
    ];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    compile(&v2, "proto", out_dir.clone())?;
    compile(&v1, "proto/v1", out_dir.join("v1"))?;
    Ok(())
}

fn compile(
    files: &[&str],
    include: &str,
    out_dir: PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    for file in files {
        println!("cargo:rerun-if-changed={include}/{file}");
    }
    std::fs::create_dir_all(&out_dir)?;
    let descriptors = protox::compile(files, [include])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .out_dir(out_dir)
        .compile_fds(descriptors)?;
    Ok(())
}
