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

/// Dependencies used without being named in the crate's sources, each with the reason.
const USED_UNNAMED: &[(&str, &str, &str)] = &[
    // (package, dependency, why)
    (
        "kloset-plugin",
        "tonic-prost",
        "named by the gRPC code build.rs generates into OUT_DIR",
    ),
    (
        "kloset-plugin",
        "prost",
        "the messages build.rs generates into OUT_DIR derive `::prost::Message`",
    ),
];

/// The library name of every package in the dependency graph, by package name.
fn library_names(metadata: &serde_json::Value) -> std::collections::HashMap<String, String> {
    let mut names = std::collections::HashMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        let library = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["kind"].as_array().is_some_and(|kinds| {
                    kinds
                        .iter()
                        .any(|k| k == "lib" || k == "proc-macro" || k == "rlib")
                })
            })
            .and_then(|t| t["name"].as_str())
            .map(|n| n.replace('-', "_"));
        if let Some(library) = library {
            names.insert(name, library);
        }
    }
    names
}

/// Whether `text` names the crate `library` as a path (`library::`, `use library`,
/// `extern crate library`).
fn names_crate(text: &str, library: &str) -> bool {
    text.match_indices(library).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + library.len()..];
        let starts_a_word = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
        starts_a_word
            && (after.starts_with("::")
                || (text[..at].ends_with("use ")
                    && !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
                || text[..at].ends_with("extern crate "))
    })
}

#[test]
fn every_declared_dependency_is_used() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(repo_root())
        .output()
        .expect("running cargo metadata");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let libraries = library_names(&metadata);
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut unused = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let id = package["id"].as_str().unwrap_or_default();
        if !members.contains(&id) {
            continue;
        }
        let name = package["name"].as_str().unwrap();
        let dir = Path::new(package["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_path_buf();
        let mut sources = Vec::new();
        files(&dir, &["rs"], &mut sources);
        let text: String = sources
            .iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for dependency in package["dependencies"].as_array().unwrap() {
            let dep = dependency["name"].as_str().unwrap();
            let library = dependency["rename"]
                .as_str()
                .map(|r| r.replace('-', "_"))
                .or_else(|| libraries.get(dep).cloned())
                .unwrap_or_else(|| dep.replace('-', "_"));
            let excused = USED_UNNAMED.iter().any(|(p, d, _)| *p == name && *d == dep);
            if !excused && !names_crate(&text, &library) {
                let kind = dependency["kind"].as_str().unwrap_or("normal");
                unused.push(format!("{name}: {dep} ({kind})"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "declared but never named in the crate's sources (remove them, or list them in \
         USED_UNNAMED with the reason): {unused:#?}"
    );
}

#[test]
fn crate_names_are_recognised_as_paths_only() {
    assert!(names_crate("use md5::{Digest, Md5};", "md5"));
    assert!(names_crate("let x = tokio::spawn(f);", "tokio"));
    assert!(names_crate("#[tokio::test]", "tokio"));
    assert!(names_crate("use bytes;", "bytes"));
    assert!(!names_crate("let bytes = 3; my_tokio::x();", "tokio"));
    assert!(!names_crate("// tokio is great", "tokio"));
    assert!(!names_crate("use bytes_more::X;", "bytes"));
}
