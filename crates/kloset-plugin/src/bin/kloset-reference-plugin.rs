//! A plugin binary serving the reference connectors: argv[1] = importer | exporter | store,
//! then `--plakar-protocol v1` for protocol v1 (v2 by default).

use std::process::ExitCode;

use kloset_plugin::reference::{
    ReferenceExporter, ReferenceImporter, ReferenceStore, backend_from_config,
};
use kloset_plugin::{
    ConnectorError, ExportPipeline, InitContext, PROTOCOL_ARG, Protocol, init_logging,
    serve_exporter_as, serve_importer_as, serve_store_as,
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
    let usage = || {
        eprintln!("usage: kloset-reference-plugin importer|exporter|store [{PROTOCOL_ARG} v1|v2]");
        ExitCode::from(2)
    };
    let Some((role, rest)) = args.split_first() else {
        return usage();
    };
    let protocol = match Protocol::from_args(rest.iter().cloned()) {
        Ok(protocol) => protocol,
        Err(err) => {
            eprintln!("kloset-reference-plugin: {err}");
            return usage();
        }
    };
    match role.as_str() {
        "store" => {
            serve_store_as(protocol, |ctx: InitContext| async move {
                let (backend, root) = backend_from_config(&ctx)?;
                Ok(ReferenceStore::new(backend, &root))
            })
            .await
        }
        "importer" => {
            serve_importer_as(protocol, |ctx: InitContext| async move {
                let (backend, root) = backend_from_config(&ctx)?;
                Ok(ReferenceImporter::new(backend, &root))
            })
            .await
        }
        "exporter" => {
            serve_exporter_as(
                protocol,
                ExportPipeline::default(),
                |ctx: InitContext| async move {
                    let (backend, root) = backend_from_config(&ctx)?;
                    Ok(ReferenceExporter::new(backend, &root, concurrency(&ctx)?))
                },
            )
            .await
        }
        _ => usage(),
    }
}
