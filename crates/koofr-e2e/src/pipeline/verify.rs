//! Verification: the source and the restored tree compared with the manifest, and the
//! snapshot's recorded MD5s checked.

use std::collections::HashMap;

use anyhow::bail;

use super::Locations;
use super::restore::reroot;
use crate::index::{IndexEntry, Snapshot};
use crate::tree::Manifest;
use koofr_testkit::{RemoteEntry, Site};

/// Differences between a listing and the manifest (path named in each).
pub fn compare_with_manifest(entries: &[RemoteEntry], manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen_files = 0;
    let mut seen_folders = 0;
    for entry in entries {
        if entry.is_dir {
            if manifest.folders.contains(&entry.path) {
                seen_folders += 1;
            } else {
                problems.push(format!("{}: unexpected folder", entry.path));
            }
            continue;
        }
        let Some(expected) = manifest.files.get(&entry.path) else {
            problems.push(format!("{}: unexpected file", entry.path));
            continue;
        };
        seen_files += 1;
        if entry.size != expected.size {
            problems.push(format!(
                "{}: size {} instead of {}",
                entry.path, entry.size, expected.size
            ));
        }
        match &entry.md5 {
            Some(md5) if *md5 == expected.md5 => {}
            other => problems.push(format!(
                "{}: MD5 {other:?} instead of {}",
                entry.path, expected.md5
            )),
        }
        if entry.modified_ms != expected.mtime_ms {
            problems.push(format!(
                "{}: mtime {} instead of {}",
                entry.path, entry.modified_ms, expected.mtime_ms
            ));
        }
    }
    if seen_files != manifest.files.len() || seen_folders != manifest.folders.len() {
        let present: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.path.as_str()).collect();
        for path in manifest
            .files
            .keys()
            .chain(manifest.folders.iter())
            .filter(|p| !present.contains(p.as_str()))
        {
            problems.push(format!("{path}: missing"));
        }
    }
    problems
}

/// What verification checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files compared.
    pub files: u64,
    /// Folders compared.
    pub folders: u64,
    /// Bytes of the files compared.
    pub bytes: u64,
}

fn bail_on(phase: &str, problems: &[String]) -> anyhow::Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = problems.iter().take(10).map(String::as_str).collect();
    bail!(
        "{phase}: {} difference(s), first: {}",
        problems.len(),
        shown.join("; ")
    )
}

/// Checks that the source and the restored tree both equal the manifest (names, sizes, MD5s,
/// mtimes), and that the snapshot recorded the right MD5 for every file.
pub async fn verify(
    site: &Site,
    locations: &Locations,
    manifest: &Manifest,
    snapshot: &Snapshot,
) -> anyhow::Result<VerifyReport> {
    let source = site.walk(&locations.source).await?;
    bail_on(
        "verify (source vs seeded tree)",
        &compare_with_manifest(&source, manifest),
    )?;
    let restored = site.walk(&locations.restore).await?;
    bail_on(
        "verify (restored tree vs original)",
        &compare_with_manifest(&restored, manifest),
    )?;
    let root = snapshot.source.root.clone();
    let mut problems = Vec::new();
    let recorded: HashMap<String, &IndexEntry> = snapshot
        .files()
        .filter_map(|e| {
            Some((
                reroot(&root, &e.pathname)?
                    .trim_start_matches('/')
                    .to_owned(),
                e,
            ))
        })
        .collect();
    for (path, expected) in &manifest.files {
        match recorded.get(path).and_then(|e| e.md5.as_ref()) {
            Some(md5) if *md5 == expected.md5 => {}
            other => problems.push(format!(
                "{path}: snapshot MD5 {other:?} instead of {}",
                expected.md5
            )),
        }
    }
    bail_on("verify (snapshot index)", &problems)?;
    Ok(VerifyReport {
        files: manifest.files.len() as u64,
        folders: manifest.folders.len() as u64,
        bytes: manifest.total_bytes(),
    })
}
