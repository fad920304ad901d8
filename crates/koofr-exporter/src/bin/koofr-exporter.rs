//! The `koofr-exporter` Plakar plugin: serves [`KoofrExporter`] over stdin/stdout.

use std::process::ExitCode;

use kloset_plugin::{InitContext, init_logging, serve_exporter};
use koofr_exporter::KoofrExporter;

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    serve_exporter(|ctx: InitContext| async move { KoofrExporter::open(&ctx).await }).await
}
