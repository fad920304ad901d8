//! Repository policy checks that `cargo test` enforces: module docs, no trailing whitespace,
//! one lint policy for every crate.

use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// Every file under `dir` with one of `extensions`, skipping build output and hidden folders.
fn files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name.starts_with('.') || name == "target" || name.starts_with("target-") {
                continue;
            }
            files(&path, extensions, out);
        } else if extensions
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext))
        {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut rust_files = Vec::new();
    files(&repo_root(), &["rs"], &mut rust_files);
    assert!(
        rust_files.len() > 3,
        "found too few Rust files: {rust_files:?}"
    );
    let missing: Vec<_> = rust_files
        .iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap_or_default();
            let first = text.lines().find(|line| !line.trim().is_empty());
            !first.is_some_and(|line| line.starts_with("//!"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they are for: {missing:#?}"
    );
}

#[test]
fn no_trailing_whitespace_in_sources_and_docs() {
    let mut paths = Vec::new();
    files(
        &repo_root(),
        &["rs", "toml", "md", "proto", "yaml"],
        &mut paths,
    );
    let mut offenders = Vec::new();
    for path in &paths {
        let text = fs::read_to_string(path).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                offenders.push(format!("{}:{}", path.display(), number + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "trailing whitespace at {offenders:#?}"
    );
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    let mut manifests = Vec::new();
    files(&repo_root().join("crates"), &["toml"], &mut manifests);
    files(&repo_root().join("xtask"), &["toml"], &mut manifests);
    let manifests: Vec<_> = manifests
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "Cargo.toml"))
        .collect();
    assert!(!manifests.is_empty());
    for manifest in manifests {
        let text = fs::read_to_string(&manifest).unwrap();
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} does not inherit the workspace lints",
            manifest.display()
        );
    }
}
