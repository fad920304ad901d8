//! The interim `cargo xtask demo`: starts the Koofr emulator in-process, seeds a small tree and
//! acts as a client over real HTTP (mounts, recursive listing, one verified download).

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use koofr_emulator::{Emulator, EmulatorConfig};
use md5::{Digest, Md5};
use serde_json::Value;

/// Files the demo seeds: (path, content, modified ms). Names have spaces and accents.
const SEED: &[(&str, &str, i64)] = &[
    (
        "/Documents/Quarterly Report.txt",
        "Revenue went up.\n",
        1_700_000_000_000,
    ),
    (
        "/Documents/Notes/todo list.md",
        "- back up the laptop\n- test a restore\n",
        1_700_000_100_000,
    ),
    (
        "/Photos/Été 2024/plage à Nice.jpg",
        "not really a JPEG, but bytes all the same",
        1_720_000_000_000,
    ),
    (
        "/Photos/Été 2024/Čevapi.png",
        "another image stand-in",
        1_720_000_200_000,
    ),
    (
        "/readme.txt",
        "Seeded by cargo xtask demo.\n",
        1_690_000_000_000,
    ),
];

/// The file the demo downloads and verifies.
const DOWNLOAD: &str = "/Photos/Été 2024/plage à Nice.jpg";

pub async fn run() -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .context("starting the Koofr emulator")?;
    println!("Koofr emulator listening on {}", emulator.endpoint());
    emulator.create_folder_all("/Music");
    for (path, content, modified) in SEED {
        emulator.put_file(path, content.as_bytes().to_vec(), *modified);
    }
    println!("Seeded {} files and 1 empty folder.\n", SEED.len());

    let http = reqwest::Client::new();
    let base = emulator.endpoint();
    let get = |url: String| {
        http.get(url)
            .basic_auth(emulator.email(), Some(emulator.password()))
            .header("Accept", "application/json")
    };

    // 1. Mounts: find the primary one, as rclone does.
    let response = get(format!("{base}/api/v2/mounts")).send().await?;
    ensure!(
        response.status() == 200,
        "GET mounts answered {}",
        response.status()
    );
    let mounts: Value = serde_json::from_slice(&response.bytes().await?)?;
    let mounts = mounts["mounts"]
        .as_array()
        .context("mounts response has no `mounts` array")?;
    println!("Mounts:");
    for mount in mounts {
        println!(
            "  {} {:<12} primary={:<5} space {} of {} MiB used",
            mount["id"].as_str().unwrap_or("?"),
            mount["name"].as_str().unwrap_or("?"),
            mount["isPrimary"],
            mount["spaceUsed"],
            mount["spaceTotal"],
        );
    }
    let primary = mounts
        .iter()
        .find(|m| m["isPrimary"] == true)
        .and_then(|m| m["id"].as_str())
        .context("failed to find primary mount")?
        .to_string();

    // 2. Recursive listing, parsed line by line as it streams.
    let mut response = get(format!(
        "{base}/content/api/v2/mounts/{primary}/files/listrecursive?path=%2F"
    ))
    .send()
    .await?;
    ensure!(
        response.status() == 200,
        "listrecursive answered {}",
        response.status()
    );
    let mut pending = Vec::new();
    let mut hashes = BTreeMap::new();
    println!("\nRecursive listing of / (NDJSON, streamed):");
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let item: Value = serde_json::from_slice(&line).context("listrecursive line")?;
            if item["type"] == "error" {
                bail!("listrecursive reported an error: {}", item["error"]);
            }
            let path = item["path"]
                .as_str()
                .context("item without path")?
                .to_string();
            let file = &item["file"];
            let kind = file["type"].as_str().unwrap_or("?");
            if kind == "file" {
                println!(
                    "  {:<40} {:>4} bytes  md5 {}",
                    path,
                    file["size"],
                    file["hash"].as_str().unwrap_or("-")
                );
                if let Some(hash) = file["hash"].as_str() {
                    hashes.insert(path, hash.to_string());
                }
            } else {
                println!("  {path:<40} (folder)");
            }
        }
    }
    ensure!(pending.is_empty(), "listing ended with a partial line");

    // 3. Download one file and verify its MD5 against the listing.
    let encoded: String = url_encode(DOWNLOAD);
    let response = get(format!(
        "{base}/content/api/v2/mounts/{primary}/files/get?path={encoded}"
    ))
    .send()
    .await?;
    ensure!(
        response.status() == 200,
        "download answered {}",
        response.status()
    );
    let body = response.bytes().await?;
    let actual = hex::encode(Md5::digest(&body));
    let expected = hashes
        .get(DOWNLOAD)
        .with_context(|| format!("{DOWNLOAD} is missing from the listing"))?;
    println!(
        "\nDownloaded {DOWNLOAD}: {} bytes, md5 {actual}",
        body.len()
    );
    if &actual != expected {
        bail!("MD5 mismatch for {DOWNLOAD}: listing says {expected}, content hashes to {actual}");
    }
    println!("MD5 matches the listing.");

    // 4. What the server saw.
    let mut counts: BTreeMap<(&str, String, u16), (usize, u64)> = BTreeMap::new();
    for record in emulator.requests() {
        let entry = counts
            .entry((record.endpoint, record.method.clone(), record.status))
            .or_default();
        entry.0 += 1;
        entry.1 += record.bytes_out;
    }
    println!("\nRequest log (endpoint, method, status: count, response bytes):");
    for ((endpoint, method, status), (count, bytes)) in counts {
        println!("  {endpoint:<22} {method:<6} {status}: {count} request(s), {bytes} bytes");
    }
    Ok(())
}

/// Percent-encodes a query value (everything but unreserved characters).
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
