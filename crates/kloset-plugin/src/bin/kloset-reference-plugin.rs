//! A plugin binary serving the reference connectors: argv[1] = importer | exporter | store.

use std::process::ExitCode;

use kloset_plugin::reference::{
    ReferenceExporter, ReferenceImporter, ReferenceStore, backend_from_config,
};
use kloset_plugin::{
    ConnectorError, InitContext, init_logging, serve_exporter, serve_importer, serve_store,
};

fn concurrency(ctx: &InitContext) -> Result<usize, ConnectorError> {
    match ctx.config.get("concurrency") {
        None => Ok(4),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ConnectorError::invalid_input(format!(
                "concurrency must be a positive integer, got {v:?}"
            ))
        }),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["store"] => {
            serve_store(|ctx: InitContext| async move {
                let (backend, root) = backend_from_config(&ctx)?;
                Ok(ReferenceStore::new(backend, &root))
            })
            .await
        }
        ["importer"] => {
            serve_importer(|ctx: InitContext| async move {
                let (backend, root) = backend_from_config(&ctx)?;
                Ok(ReferenceImporter::new(backend, &root))
            })
            .await
        }
        ["exporter"] => {
            serve_exporter(|ctx: InitContext| async move {
                let (backend, root) = backend_from_config(&ctx)?;
                Ok(ReferenceExporter::new(backend, &root, concurrency(&ctx)?))
            })
            .await
        }
        _ => {
            eprintln!("usage: kloset-reference-plugin importer|exporter|store");
            ExitCode::from(2)
        }
    }
}
