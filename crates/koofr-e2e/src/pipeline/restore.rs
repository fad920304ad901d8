//! The restore phase: the snapshot's state read back, file contents read with ranged `Get`s,
//! and one `Export` stream to the exporter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, ensure};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use kloset_plugin::host::{InitArgs, RemoteExporter, RemoteStore, host_options};
use kloset_plugin::suites::read_all;
use kloset_plugin::{
    ByteRange, ByteStream, ConnectorError, Exporter, FileMode, Mac, Record, Resource, Store,
};
use md5::{Digest, Md5};

use super::{Locations, PipelineOptions, end_process, spawn_plugin, start_store};
use crate::index::{IndexEntry, Snapshot};
use crate::summary::ProcessPeak;
use koofr_testkit::Site;

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Records sent on the `Export` stream.
    pub records: u64,
    /// Of which regular files.
    pub files: u64,
    /// Of which directories.
    pub dirs: u64,
    /// Content bytes sent.
    pub bytes: u64,
    /// Ranged `Get`s of packfiles.
    pub ranged_gets: u64,
    /// Records answered with an Ok result.
    pub results_ok: u64,
    /// Records answered with an error: (pathname, error).
    pub failures: Vec<(String, String)>,
    /// The storage and exporter processes.
    pub processes: Vec<ProcessPeak>,
}

/// The record pathname of `pathname` once the snapshot root is re-rooted to `/` (§6.4), or
/// None for entries above the root.
pub fn reroot(root: &str, pathname: &str) -> Option<String> {
    if pathname == root {
        return Some("/".to_owned());
    }
    if root == "/" {
        return pathname.starts_with('/').then(|| pathname.to_owned());
    }
    pathname
        .strip_prefix(root)
        .filter(|rest| rest.starts_with('/'))
        .map(str::to_owned)
}

/// A file's content read back with one ranged `Get` per piece, checked against its size and
/// MD5 at the end (a mismatch ends the stream with an error: the exporter then aborts the file).
fn restore_content(
    store: Arc<RemoteStore>,
    entry: &IndexEntry,
    gets: Arc<AtomicU64>,
    bar: ProgressBar,
) -> anyhow::Result<ByteStream> {
    let pieces = entry
        .pieces
        .iter()
        .map(|p| Ok((p.mac()?, p.offset, p.length)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pathname = entry.pathname.clone();
    let expected_size = u64::try_from(entry.info.size).unwrap_or(0);
    let expected_md5 = entry.md5.clone().unwrap_or_default();
    let seen = Arc::new(std::sync::Mutex::new((Md5::new(), 0u64)));
    let body = futures::stream::iter(pieces)
        .then(move |(mac, offset, length)| {
            let store = store.clone();
            let gets = gets.clone();
            async move {
                gets.fetch_add(1, Ordering::Relaxed);
                store
                    .get(
                        Resource::Packfile.key(mac),
                        Some(ByteRange { offset, length }),
                    )
                    .await
                    .map_err(|e| {
                        e.context(format_args!(
                            "ranged Get of packfile {mac} at {offset}+{length}"
                        ))
                    })
            }
        })
        .try_flatten();
    let hashing = seen.clone();
    let body = body.map_ok(move |chunk| {
        let mut state = hashing.lock().unwrap_or_else(|e| e.into_inner());
        state.0.update(&chunk);
        state.1 += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
        chunk
    });
    let check = futures::stream::once(async move {
        let (hasher, size) = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
        let md5 = hex::encode(hasher.finalize());
        if size != expected_size || md5 != expected_md5 {
            Err(ConnectorError::other(format!(
                "{pathname}: read back {size} bytes with MD5 {md5}, the index says {expected_size} bytes with MD5 {expected_md5}"
            )))
        } else {
            Ok(bytes::Bytes::new())
        }
    })
    .try_filter(|chunk| futures::future::ready(!chunk.is_empty()));
    Ok(body.chain(check).boxed())
}

/// Restores the snapshot of state `state_mac` into `locations.restore`: storage `Init` →
/// `Open` → `List(STATE)` → `Get(state)` → ranged `Get`s; exporter `Init` → one `Export` stream
/// (parents first, file chunks ≤ 1 MiB then the empty terminator) → `Close`.
pub async fn restore(
    site: &Site,
    options: &PipelineOptions,
    locations: &Locations,
    config: &[u8],
    state_mac: Mac,
) -> anyhow::Result<RestoreReport> {
    let store = Arc::new(start_store(site, options, &locations.kloset).await?);
    let stored_config = store.open().await.context("storage Open")?;
    ensure!(
        stored_config.as_ref() == config,
        "storage Open returned other config bytes than Create stored"
    );
    let states = store.list(Resource::State).await.context("List(STATE)")?;
    ensure!(
        states.contains(&state_mac),
        "List(STATE) does not return state {state_mac}"
    );
    let state = read_all(
        store
            .get(Resource::State.key(state_mac), None)
            .await
            .with_context(|| format!("Get of state {state_mac}"))?,
    )
    .await
    .with_context(|| format!("reading state {state_mac}"))?;
    let snapshot = Snapshot::decode(&state, &state_mac)?;

    let mut init = InitArgs::new("koofr", site.plugin_config(&locations.restore));
    init.options = host_options(options.open_concurrency as i64);
    let exporter = Arc::new(
        RemoteExporter::init(spawn_plugin(&options.binaries.exporter).await?, &init)
            .await
            .context("exporter Init")?,
    );
    let total: u64 = snapshot
        .files()
        .map(|e| u64::try_from(e.info.size).unwrap_or(0))
        .sum();
    let bar = options.progress.bytes("restore", total);
    let gets = Arc::new(AtomicU64::new(0));
    let root = snapshot.source.root.clone();
    let mut work = Vec::new();
    for entry in &snapshot.entries {
        if let Some(pathname) = reroot(&root, &entry.pathname) {
            work.push((pathname, entry.clone()));
        }
    }
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    for (_, entry) in &work {
        let mode = FileMode(entry.info.mode);
        if mode.is_dir() {
            dirs += 1;
        } else if mode.is_regular() {
            files += 1;
            bytes += u64::try_from(entry.info.size).unwrap_or(0);
        }
    }
    let records = work.len() as u64;
    // Calls start in record order (the exporter client sends them on its stream in the order
    // they queue), so parents precede children; results are awaited concurrently.
    let results: Vec<(String, Result<(), String>)> = futures::stream::iter(work)
        .map(|(pathname, entry)| {
            let exporter = exporter.clone();
            let content = FileMode(entry.info.mode)
                .is_regular()
                .then(|| restore_content(store.clone(), &entry, gets.clone(), bar.clone()));
            async move {
                let info = entry.info.to_file_info();
                let outcome = match content {
                    Some(Ok(content)) => exporter.store_file(&pathname, &info, content).await,
                    Some(Err(err)) => Err(ConnectorError::other(format!("{err:#}"))),
                    None if info.mode.is_dir() => exporter.create_directory(&pathname, &info).await,
                    None => exporter.other(&Record::file(pathname.clone(), info)).await,
                };
                (pathname, outcome.map_err(|e| e.to_string()))
            }
        })
        .buffered(options.export_in_flight.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    exporter
        .close()
        .await
        .context("exporter Close (half-close of Export, every result received)")?;
    let exporter_peak = end_process("exporter", exporter.plugin()).await?;
    store.close().await.context("storage Close")?;
    let storage_peak = end_process("storage (restore)", store.plugin()).await?;
    let mut failures = Vec::new();
    let mut results_ok = 0;
    for (pathname, outcome) in results {
        match outcome {
            Ok(()) => results_ok += 1,
            Err(err) => failures.push((pathname, err)),
        }
    }
    Ok(RestoreReport {
        records,
        files,
        dirs,
        bytes,
        ranged_gets: gets.load(Ordering::Relaxed),
        results_ok,
        failures,
        processes: vec![storage_peak, exporter_peak],
    })
}
