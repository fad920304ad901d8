//! The `koofr-storage` plugin binary: serves [`koofr_storage::KoofrStore`] to Plakar on
//! stdin/stdout (gRPC, protocol v2, or v1 with `--plakar-protocol v1`); logs go to stderr
//! (`RUST_LOG` filters them).

use std::process::ExitCode;

use kloset_plugin::{InitContext, init_logging, serve_store};
use koofr_storage::KoofrStore;

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    serve_store(|ctx: InitContext| async move { KoofrStore::from_init(&ctx) }).await
}
