//! The baselines' client: plain reqwest against the Koofr REST API (Basic auth, `primary` mount,
//! API v2), one request per call and no retries, streaming every body so that nothing is held.

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

/// A bare Koofr client: what a hand-written tool or a generic library does.
#[derive(Clone)]
pub struct RawKoofr {
    http: reqwest::Client,
    endpoint: String,
    username: String,
    password: String,
}

impl std::fmt::Debug for RawKoofr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawKoofr")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One child of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Name in its folder.
    pub name: String,
    /// A folder.
    pub is_dir: bool,
}

impl RawKoofr {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:PORT`) with Basic credentials.
    pub fn new(endpoint: &str, username: &str, password: &str) -> anyhow::Result<RawKoofr> {
        let http = reqwest::Client::builder()
            .build()
            .context("building the baseline's reqwest client")?;
        Ok(RawKoofr {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    fn api(&self, route: &str) -> String {
        format!("{}/api/v2/mounts/primary/{route}", self.endpoint)
    }

    fn content(&self, route: &str) -> String {
        format!("{}/content/api/v2/mounts/primary/{route}", self.endpoint)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .with_context(|| format!("{what}: request failed"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("{what}: HTTP {status}: {body}");
        }
        Ok(response)
    }

    /// The direct children of `dir` (`files/list`, one request).
    pub async fn list(&self, dir: &str) -> anyhow::Result<Vec<RawEntry>> {
        let request = self
            .http
            .get(self.api("files/list"))
            .query(&[("path", dir)]);
        let response = self.send(request, &format!("listing {dir}")).await?;
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("listing {dir}: reading the body"))?;
        let body: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("listing {dir}: decoding the JSON"))?;
        let files = body["files"]
            .as_array()
            .with_context(|| format!("listing {dir}: no `files` array"))?;
        files
            .iter()
            .map(|file| {
                let name = file["name"]
                    .as_str()
                    .with_context(|| format!("listing {dir}: an item without a name"))?;
                Ok(RawEntry {
                    name: name.to_owned(),
                    is_dir: file["type"] == "dir",
                })
            })
            .collect()
    }

    /// Walks `dir` folder by folder with `files/list`, one request at a time (the way rclone's
    /// and OpenDAL's Koofr backends list); returns (files, folders) found below it.
    pub async fn walk_sequential(&self, dir: &str) -> anyhow::Result<(usize, usize)> {
        let (mut files, mut folders) = (0, 0);
        let mut pending = vec![dir.to_owned()];
        while let Some(folder) = pending.pop() {
            for entry in self.list(&folder).await? {
                let child = format!("{}/{}", folder.trim_end_matches('/'), entry.name);
                if entry.is_dir {
                    folders += 1;
                    pending.push(child);
                } else {
                    files += 1;
                }
            }
        }
        Ok((files, folders))
    }

    /// One streamed `files/listrecursive` of `dir`, parsed line by line; returns (files,
    /// folders) below it (the folder itself, the first line, is not counted).
    pub async fn list_recursive(&self, dir: &str) -> anyhow::Result<(usize, usize)> {
        let request = self
            .http
            .get(self.content("files/listrecursive"))
            .query(&[("path", dir)]);
        let what = format!("recursive listing of {dir}");
        let response = self.send(request, &what).await?;
        let mut body = response.bytes_stream();
        let (mut files, mut folders) = (0usize, 0usize);
        let mut line = Vec::new();
        let mut count = |line: &[u8]| -> anyhow::Result<()> {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let item: Value = serde_json::from_slice(line)
                .with_context(|| format!("{what}: a line that is not JSON"))?;
            if item["type"] == "error" {
                bail!("{what}: {}", item["error"]);
            }
            if item["path"] == "/" {
                return Ok(());
            }
            if item["file"]["type"] == "dir" {
                folders += 1;
            } else {
                files += 1;
            }
            Ok(())
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("{what}: reading the body"))?;
            let mut rest = &chunk[..];
            while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&rest[..end]);
                count(&line)?;
                line.clear();
                rest = &rest[end + 1..];
            }
            line.extend_from_slice(rest);
        }
        count(&line)?;
        Ok((files, folders))
    }

    /// Downloads `path` (or `length` bytes from `offset`) and hands every chunk to `check`;
    /// returns the byte count.
    pub async fn get(
        &self,
        path: &str,
        range: Option<(u64, u64)>,
        mut check: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let mut request = self
            .http
            .get(self.content("files/get"))
            .query(&[("path", path)]);
        if let Some((offset, length)) = range {
            let last = offset + length - 1;
            request = request.header("Range", format!("bytes={offset}-{last}"));
        }
        let what = format!("downloading {path}");
        let response = self.send(request, &what).await?;
        let mut body = response.bytes_stream();
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("{what}: reading the body"))?;
            check(received, &chunk)?;
            received += chunk.len() as u64;
        }
        Ok(received)
    }

    /// Uploads a streamed body as `dir/name`, replacing any file there (the create-or-replace
    /// flags of spec §7.9), in one request.
    pub async fn put<S>(&self, dir: &str, name: &str, body: S) -> anyhow::Result<()>
    where
        S: Stream<Item = Bytes> + Send + Sync + 'static,
    {
        let body = reqwest::Body::wrap_stream(body.map(Ok::<Bytes, std::io::Error>));
        let request = self
            .http
            .post(self.content("files/put"))
            .query(&[
                ("path", dir),
                ("filename", name),
                ("info", "true"),
                ("overwrite", "true"),
                ("autorename", "false"),
                ("overwriteIgnoreNonexisting", ""),
            ])
            .header("Content-Type", "application/octet-stream")
            .body(body);
        self.send(request, &format!("uploading {dir}/{name}"))
            .await?;
        Ok(())
    }

    /// Creates the folder `parent/name` (its parent must exist).
    pub async fn create_folder(&self, parent: &str, name: &str) -> anyhow::Result<()> {
        let request = self
            .http
            .post(self.api("files/folder"))
            .query(&[("path", parent)])
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "name": name }).to_string());
        self.send(request, &format!("creating folder {parent}/{name}"))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use koofr_emulator::{Emulator, EmulatorConfig};

    #[tokio::test]
    async fn baseline_client_lists_walks_transfers_over_http() {
        let emu = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator");
        emu.put_file("/t/a/one.bin", &b"0123456789"[..], 1_700_000_000_000);
        emu.put_file("/t/a/b/two.bin", &b"xy"[..], 1_700_000_000_000);
        emu.put_file("/t/three.bin", &b""[..], 1_700_000_000_000);
        let raw = RawKoofr::new(&emu.endpoint(), emu.email(), emu.password()).expect("client");

        let mut top = raw.list("/t").await.expect("list");
        top.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            top,
            [
                RawEntry {
                    name: "a".into(),
                    is_dir: true
                },
                RawEntry {
                    name: "three.bin".into(),
                    is_dir: false
                }
            ]
        );
        emu.clear_requests();
        assert_eq!(raw.walk_sequential("/t").await.expect("walk"), (3, 2));
        assert_eq!(emu.requests().len(), 3, "one files/list per folder");
        assert_eq!(
            raw.list_recursive("/t").await.expect("listrecursive"),
            (3, 2)
        );

        let mut seen = Vec::new();
        let read = raw
            .get("/t/a/one.bin", Some((2, 5)), |offset, chunk| {
                seen.push((offset, chunk.to_vec()));
                Ok(())
            })
            .await
            .expect("ranged get");
        assert_eq!(read, 5);
        assert_eq!(seen.first().map(|(offset, _)| *offset), Some(0));
        let bytes: Vec<u8> = seen.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        assert_eq!(bytes, b"23456");

        raw.create_folder("/t", "new").await.expect("folder");
        let body = futures::stream::iter([Bytes::from_static(b"ab"), Bytes::from_static(b"c")]);
        raw.put("/t/new", "up.bin", body).await.expect("put");
        assert_eq!(emu.read_file("/t/new/up.bin").as_deref(), Some(&b"abc"[..]));
        assert!(raw.list("/t/missing").await.is_err(), "a 404 is an error");
    }
}
