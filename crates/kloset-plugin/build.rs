//! Compiles the `.proto` files with protox (no system `protoc`) and tonic-prost-build: protocol
//! v2 into `OUT_DIR`, protocol v1 into `OUT_DIR/v1` (its packages `importer` and `store` have
//! the same names as v2's, so their generated files would collide). Protocol v1 imports the
//! shared messages of `connectors.proto` and uses v2's generated code for them.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let v2 = [
        "connectors.proto",
        "importer/importer.proto",
        "exporter/exporter.proto",
        "storage/storage.proto",
    ];
    let v1 = [
        "v1/session.proto",
        "v1/importer/importer.proto",
        "v1/exporter/exporter.proto",
        "v1/storage/storage.proto",
    ];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    compile(&v2, &[], out_dir.clone())?;
    let shared = (".plakar.connectors", "crate::pb::plakar::connectors");
    compile(&v1, &[shared], out_dir.join("v1"))?;
    Ok(())
}

fn compile(
    files: &[&str],
    extern_paths: &[(&str, &str)],
    out_dir: PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    for file in files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    std::fs::create_dir_all(&out_dir)?;
    let descriptors = protox::compile(files, ["proto"])?;
    let mut config = tonic_prost_build::configure();
    for (proto_path, rust_path) in extern_paths {
        config = config.extern_path(*proto_path, *rust_path);
    }
    config
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .out_dir(out_dir)
        .compile_fds(descriptors)?;
    Ok(())
}
