//! Checks the Plakar package manifest against the workspace (every executable is a binary
//! target, exact connector types, protocols and flags), the manifest derived from it for plakar
//! 1.0.x, and the Rust target → Go OS/arch names used in package file names.

use std::collections::BTreeMap;

use xtask::package::{
    go_os_arch, is_plakar_version, manifest_problems, parse_manifest, plakar_1_0_manifest,
};

fn repo_manifest() -> xtask::package::Manifest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifest.yaml");
    let text = std::fs::read_to_string(path).expect("manifest.yaml at the repository root");
    parse_manifest(&text).expect("manifest.yaml parses")
}

#[test]
fn manifest_declares_the_three_koofr_connectors() {
    let manifest = repo_manifest();
    assert_eq!(manifest.name, "koofr");
    assert_eq!(
        manifest.top_level.get("api_version").map(String::as_str),
        Some("v1.1.0")
    );
    assert_eq!(
        manifest.top_level.get("tier").map(String::as_str),
        Some("third-party")
    );
    assert_eq!(
        manifest.top_level.get("license").map(String::as_str),
        Some("mit")
    );
    assert!(
        !manifest.top_level.contains_key("flags"),
        "plakar does not read a `flags` key"
    );
    let by_type: BTreeMap<&str, &koofr_e2e::manifest::Connector> = manifest
        .connectors
        .iter()
        .map(|c| (c.kind.as_str(), c))
        .collect();
    assert_eq!(manifest.connectors.len(), 3, "{manifest:#?}");
    assert_eq!(
        by_type.keys().copied().collect::<Vec<_>>(),
        ["exporter", "importer", "storage"],
        "the store connector type is `storage`, never `store`"
    );
    for (kind, executable) in [
        ("importer", "koofr-importer"),
        ("exporter", "koofr-exporter"),
        ("storage", "koofr-storage"),
    ] {
        let connector = by_type[kind];
        assert_eq!(connector.executable, executable, "{kind}");
        assert_eq!(connector.protocols, ["koofr"], "{kind}");
        assert_eq!(connector.location_flags, Some(Vec::new()), "{kind}");
        assert_eq!(connector.class, "file-storage", "{kind}");
        assert!(
            !connector.keys.iter().any(|k| k == "flags"),
            "{kind}: `flags` is not read by plakar"
        );
    }
}

#[test]
fn plakar_1_0_manifest_is_what_plakar_1_0_6_loads() {
    let repo = repo_manifest();
    let text = plakar_1_0_manifest(&repo, "v0.3.0");
    let manifest = parse_manifest(&text).expect("the derived manifest parses");
    let top = |key: &str| manifest.top_level.get(key).map(String::as_str);
    assert_eq!(manifest.name, "koofr");
    // `pkg create` of plakar 1.0.6 takes the version from the manifest.
    assert_eq!(top("version"), Some("v0.3.0"));
    assert_eq!(top("api_version"), Some("v1.0.0"));
    for key in ["display_name", "description", "homepage", "license", "tags"] {
        assert_eq!(
            top(key),
            repo.top_level.get(key).map(String::as_str),
            "{key}"
        );
    }
    assert_eq!(top("tier"), None, "a plakar 1.1 key");
    assert_eq!(manifest.connectors.len(), repo.connectors.len());
    for (connector, original) in manifest.connectors.iter().zip(&repo.connectors) {
        // Any other type makes plakar 1.0.6 refuse to load the package.
        assert!(
            ["importer", "exporter", "storage"].contains(&connector.kind.as_str()),
            "{connector:?}"
        );
        assert_eq!(connector.kind, original.kind);
        assert_eq!(connector.executable, original.executable);
        assert_eq!(connector.protocols, ["koofr"]);
        assert_eq!(connector.location_flags, Some(Vec::new()));
        let args = connector.args.clone().expect("args");
        assert_eq!(
            kloset_plugin::Protocol::from_args(args),
            Ok(kloset_plugin::Protocol::V1),
            "the executables must be told to speak protocol v1"
        );
        assert!(
            !connector.keys.iter().any(|k| k == "class"),
            "a plakar 1.1 key: {connector:?}"
        );
    }
    let workspace = xtask::package::workspace().expect("cargo metadata");
    for connector in &manifest.connectors {
        assert!(workspace.binaries.contains_key(&connector.executable));
    }
}

#[test]
fn every_manifest_executable_is_a_workspace_binary() {
    let workspace = xtask::package::workspace().expect("cargo metadata");
    let manifest = repo_manifest();
    for connector in &manifest.connectors {
        assert!(
            workspace.binaries.contains_key(&connector.executable),
            "`{}` ({}) is not a [[bin]] or src/bin target of any workspace crate; binaries: {:?}",
            connector.executable,
            connector.kind,
            workspace.binaries
        );
    }
    assert_eq!(
        manifest_problems(&manifest, &workspace.binaries),
        Vec::<String>::new()
    );
}

#[test]
fn the_checker_rejects_the_usual_mistakes() {
    let bad = "\
name: koofr_x
flags: []
connectors:
  - type: store
    class: file-storage
    protocols: [koofr, rclone]
    flags: [localfs]
    executable: koofr-storage
  - type: importer
    class: file-storage
    protocols: [koofr]
    location_flags: [stream]
    executable: no-such-binary
";
    let manifest = parse_manifest(bad).unwrap();
    let binaries = BTreeMap::from([("koofr-storage".to_owned(), "koofr-storage".to_owned())]);
    let problems = manifest_problems(&manifest, &binaries).join("\n");
    for expected in [
        "package name \"koofr_x\"",
        "top-level `flags`",
        "never `store`",
        "`flags` is not read",
        "[\"koofr\", \"rclone\"]",
        "`location_flags: []` is missing",
        "location_flags [\"stream\"]",
        "executable `no-such-binary`",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
}

#[test]
fn the_parser_refuses_what_it_cannot_read() {
    for (text, needle) in [
        (
            "name: koofr\nconnectors:\n  - type: storage\n    protocols:\n      - koofr\n",
            "flow list",
        ),
        ("name: koofr\n  stray: 1\n", "outside `connectors`"),
        ("name: koofr\nname: other\n", "duplicate key"),
        ("connectors:\n  - type: storage\n", "no `name`"),
        (
            "name: koofr\nconnectors:\n  - type: a\n    type: b\n",
            "duplicate connector key",
        ),
    ] {
        let error = parse_manifest(text).unwrap_err().to_string();
        assert!(error.contains(needle), "{text:?}: {error}");
    }
    let parsed = parse_manifest(
        "# c\nname: 'koofr'\nconnectors:\n- type: \"storage\"\n  location_flags: [ ]\n",
    )
    .unwrap();
    assert_eq!(parsed.name, "koofr");
    assert_eq!(parsed.connectors[0].kind, "storage");
    assert_eq!(parsed.connectors[0].location_flags, Some(Vec::new()));
}

#[test]
fn rust_targets_map_to_go_os_arch() {
    for (target, want) in [
        ("x86_64-unknown-linux-gnu", ("linux", "amd64")),
        ("x86_64-unknown-linux-musl", ("linux", "amd64")),
        ("aarch64-unknown-linux-gnu", ("linux", "arm64")),
        ("aarch64-unknown-linux-musl", ("linux", "arm64")),
        ("armv7-unknown-linux-gnueabihf", ("linux", "arm")),
        ("i686-unknown-linux-gnu", ("linux", "386")),
        ("riscv64gc-unknown-linux-gnu", ("linux", "riscv64")),
        ("x86_64-apple-darwin", ("darwin", "amd64")),
        ("aarch64-apple-darwin", ("darwin", "arm64")),
        ("x86_64-pc-windows-msvc", ("windows", "amd64")),
        ("x86_64-pc-windows-gnu", ("windows", "amd64")),
        ("aarch64-pc-windows-msvc", ("windows", "arm64")),
        ("x86_64-unknown-freebsd", ("freebsd", "amd64")),
        ("x86_64-unknown-openbsd", ("openbsd", "amd64")),
        ("aarch64-linux-android", ("android", "arm64")),
    ] {
        assert_eq!(go_os_arch(target), Some(want), "{target}");
    }
    for unknown in [
        "wasm32-unknown-unknown",
        "x86_64-unknown-none",
        "sparc64-unknown-linux-gnu",
    ] {
        assert_eq!(go_os_arch(unknown), None, "{unknown}");
    }
}

#[test]
fn package_versions_are_semver_with_a_leading_v() {
    for good in [
        "v0.1.0",
        "v1.10.0",
        "v1.2.3-rc.1",
        "v1.2.3+build.5",
        "v1.2.3-beta.4+x",
    ] {
        assert!(is_plakar_version(good), "{good}");
    }
    for bad in [
        "0.1.0", "v1.2", "v1.2.3.4", "v01.2.3", "v1.2.3-", "v1.2.x", "V1.2.3", "",
    ] {
        assert!(!is_plakar_version(bad), "{bad}");
    }
}
