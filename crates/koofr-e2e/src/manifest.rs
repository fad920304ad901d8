//! The package manifest (`manifest.yaml`): the subset of YAML it is written in, parsed and
//! checked line by line, and the manifest of the plakar v1.0.x package derived from it (shared
//! by `cargo xtask package` and the real-plakar harness).

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};

/// Top-level keys plakar 1.0.6's `plugins.Manifest` reads and the repository's manifest has
/// (`api_version` and `version` are written by [`plakar_1_0_manifest`] itself).
const PLAKAR_1_0_KEYS: [&str; 6] = [
    "name",
    "display_name",
    "description",
    "homepage",
    "license",
    "tags",
];

/// The parts of `manifest.yaml` this project checks and uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Package name (`name`).
    pub name: String,
    /// Every top-level key with its raw value (flow lists kept as written).
    pub top_level: BTreeMap<String, String>,
    /// One entry per `connectors` item, in order.
    pub connectors: Vec<Connector>,
}

/// One `connectors[]` entry of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connector {
    /// `type`: importer, exporter or storage.
    pub kind: String,
    /// `protocols`.
    pub protocols: Vec<String>,
    /// `location_flags`, None when the key is absent.
    pub location_flags: Option<Vec<String>>,
    /// `executable`, relative to the manifest's folder, without `.exe`.
    pub executable: String,
    /// `class`.
    pub class: String,
    /// `args`, None when the key is absent.
    pub args: Option<Vec<String>>,
    /// Every key of the entry, in order of appearance.
    pub keys: Vec<String>,
}

/// Parses the subset of YAML the manifest uses: top-level `key: value` lines, a `connectors:`
/// list of `- key: value` maps, scalars (optionally quoted) and `[a, b]` flow lists. Anything
/// else is refused with its line number, so a reformatted manifest cannot be misread silently.
pub fn parse_manifest(text: &str) -> Result<Manifest> {
    let mut manifest = Manifest::default();
    let mut in_connectors = false;
    let mut item_indent: Option<usize> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        ensure!(
            !raw[..indent].contains('\t'),
            "manifest.yaml line {number}: tabs are not allowed in YAML indentation"
        );
        // YAML also allows the list's `- ` at the parent's indentation.
        let is_item = trimmed.starts_with("- ");
        if indent == 0 && !(in_connectors && is_item) {
            in_connectors = false;
            let (key, value) = split_key_value(trimmed, number)?;
            ensure!(
                !manifest.top_level.contains_key(key),
                "manifest.yaml line {number}: duplicate key `{key}`"
            );
            if key == "connectors" {
                ensure!(
                    value.is_empty(),
                    "manifest.yaml line {number}: `connectors` must be a block list of `- type: …` items"
                );
                in_connectors = true;
            }
            if key == "name" {
                manifest.name = scalar(value, number)?;
            }
            manifest.top_level.insert(key.to_owned(), value.to_owned());
            continue;
        }
        ensure!(
            in_connectors,
            "manifest.yaml line {number}: unexpected indented line outside `connectors`: {trimmed:?}"
        );
        let entry = if let Some(rest) = trimmed.strip_prefix("- ") {
            ensure!(
                item_indent.is_none_or(|i| i == indent),
                "manifest.yaml line {number}: connector items must all be indented alike"
            );
            item_indent = Some(indent);
            manifest.connectors.push(Connector::default());
            rest.trim_start()
        } else {
            let item = item_indent.ok_or_else(|| {
                anyhow::anyhow!("manifest.yaml line {number}: expected a `- ` list item")
            })?;
            ensure!(
                indent > item,
                "manifest.yaml line {number}: a connector key must be indented under its `- `"
            );
            trimmed
        };
        let connector = manifest
            .connectors
            .last_mut()
            .expect("a list item was pushed above");
        let (key, value) = split_key_value(entry, number)?;
        ensure!(
            !connector.keys.iter().any(|k| k == key),
            "manifest.yaml line {number}: duplicate connector key `{key}`"
        );
        connector.keys.push(key.to_owned());
        match key {
            "type" => connector.kind = scalar(value, number)?,
            "executable" => connector.executable = scalar(value, number)?,
            "class" => connector.class = scalar(value, number)?,
            "protocols" => connector.protocols = flow_list(value, number)?,
            "location_flags" => connector.location_flags = Some(flow_list(value, number)?),
            "args" => connector.args = Some(flow_list(value, number)?),
            _ => {}
        }
    }
    ensure!(!manifest.name.is_empty(), "manifest.yaml has no `name`");
    Ok(manifest)
}

fn split_key_value(line: &str, number: usize) -> Result<(&str, &str)> {
    let (key, value) = line.split_once(':').with_context(|| {
        format!("manifest.yaml line {number}: expected `key: value`, got {line:?}")
    })?;
    let key = key.trim();
    ensure!(
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "manifest.yaml line {number}: invalid key {key:?}"
    );
    let value = value.trim();
    ensure!(
        value.is_empty() || line[key.len()..].starts_with(": ") || line.ends_with(':'),
        "manifest.yaml line {number}: a space must follow `{key}:`"
    );
    Ok((key, value))
}

fn scalar(value: &str, number: usize) -> Result<String> {
    ensure!(
        !value.starts_with('[') && !value.starts_with('{') && !value.starts_with('|'),
        "manifest.yaml line {number}: expected a plain value, got {value:?}"
    );
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value);
    Ok(unquoted.to_owned())
}

fn flow_list(value: &str, number: usize) -> Result<Vec<String>> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .with_context(|| {
            format!(
                "manifest.yaml line {number}: expected a flow list like `[koofr]`, got {value:?}"
            )
        })?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|item| scalar(item.trim(), number))
        .collect()
}

/// The `manifest.yaml` of the plakar v1.0.x package, from the repository's (v1.1) manifest:
/// the keys plakar 1.0.6 reads, `api_version: v1.0.0`, `version:` (which its `pkg create`
/// requires) and, per connector, its type, protocols, location flags and executable, with the
/// `args` that select protocol v1 in kloset-plugin's serve entry points. Types stay `importer`,
/// `exporter`, `storage`: plakar 1.0.6 fails to load a package with any other.
pub fn plakar_1_0_manifest(manifest: &Manifest, version: &str) -> String {
    let mut text = String::from(
        "# Plakar package manifest for plakar v1.0.x (plugin API v1.0.0, protocol v1), generated\n\
         # by `cargo xtask package --api v1.0.0` from the repository's manifest.yaml. Create the\n\
         # package here with `plakar pkg create ./manifest.yaml`.\n",
    );
    for key in PLAKAR_1_0_KEYS {
        if let Some(value) = manifest.top_level.get(key) {
            text.push_str(&format!("{key}: {value}\n"));
        }
    }
    text.push_str(&format!(
        "api_version: v1.0.0\nversion: {version}\nconnectors:\n"
    ));
    // Quoted: a plain YAML scalar may not start with `-`.
    let args: Vec<String> = kloset_plugin::Protocol::V1
        .args()
        .iter()
        .map(|arg| format!("\"{arg}\""))
        .collect();
    for connector in &manifest.connectors {
        text.push_str(&format!(
            "  - type: {}\n    protocols: [{}]\n    location_flags: [{}]\n    executable: {}\n    args: [{}]\n",
            connector.kind,
            connector.protocols.join(", "),
            connector.location_flags.iter().flatten().cloned().collect::<Vec<_>>().join(", "),
            connector.executable,
            args.join(", "),
        ));
    }
    text
}
