//! The `koofr-importer` Plakar plugin: serves [`koofr_importer::KoofrImporter`] on stdin/stdout.

use std::process::ExitCode;

use kloset_plugin::{init_logging, serve_importer};
use koofr_importer::KoofrImporter;

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    serve_importer(KoofrImporter::from_init).await
}
