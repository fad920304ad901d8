//! Downloads: whole files (MD5-verified) and byte ranges, as streams that hold a concurrency
//! permit, detect truncation, and resume a broken transfer with a range request after checking
//! that the file did not change. One retry state covers a download's first request and all its
//! resumes.

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use reqwest::header::{HeaderMap, RANGE};

use crate::client::{Client, Family};
use crate::error::{Error, ErrorKind, Result};
use crate::path::KoofrPath;
use crate::retry::Retry;
use crate::transport::{ByteStream, RequestContext, body_stream};
use crate::types::FileInfo;

/// A whole-file download: the file's metadata and its verified content.
pub struct Download {
    /// The file being downloaded (from `X-File-Info`, or an `info` call when absent).
    pub info: FileInfo,
    /// The content; ends with an error if it is shorter, longer, or its MD5 differs.
    pub stream: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// One opened `files/get` response.
struct Opened {
    body: ByteStream,
    info: Option<FileInfo>,
    /// Bytes to drop from the body's start (the server ignored the range and sent everything).
    skip: u64,
}

impl Client {
    /// Downloads a whole file. One request when the server sends `X-File-Info`.
    pub async fn download(&self, path: &KoofrPath) -> Result<Download> {
        let mut retry = self.new_retry();
        let mut opened = self.open_get("download", path, 0, None, &mut retry).await?;
        let header_seen = opened.info.is_some();
        let info = match opened.info.clone() {
            Some(info) => info,
            None => {
                // Release this response's permit before asking for info (no deadlock at
                // concurrency 1), then read again.
                drop(opened);
                let info = self.info_with(path, &mut retry).await?;
                opened = self.open_get("download", path, 0, None, &mut retry).await?;
                info
            }
        };
        if info.is_dir() {
            return Err(
                Error::permanent(ErrorKind::NotAFile, "download", "is a folder").with_path(path),
            );
        }
        let reader = Reader {
            client: self.clone(),
            path: path.clone(),
            op: "download",
            end: None,
            pos: 0,
            expected_size: Some(info.size),
            identity: Some(info.clone()),
            md5: info.hash.as_ref().map(|_| Md5::new()),
            header_seen,
            body: Some(opened.body),
            skip: opened.skip,
            retry,
            done: false,
        };
        Ok(Download {
            info,
            stream: reader.into_stream(),
        })
    }

    /// Reads `len` bytes from `offset` (fewer if the file ends first) in ONE request; `len == 0`
    /// makes no request. An `offset` at or beyond the end gives
    /// [`ErrorKind::RangeNotSatisfiable`].
    pub async fn download_range(
        &self,
        path: &KoofrPath,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream> {
        if len == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let end = offset.checked_add(len).ok_or_else(|| {
            Error::permanent(
                ErrorKind::InvalidInput,
                "read range",
                format!("range {offset}+{len} overflows"),
            )
            .with_path(path)
        })?;
        let mut retry = self.new_retry();
        let opened = self
            .open_get("read range", path, offset, Some(end), &mut retry)
            .await?;
        let reader = Reader {
            client: self.clone(),
            path: path.clone(),
            op: "read range",
            end: Some(end),
            pos: offset,
            expected_size: None,
            header_seen: opened.info.is_some(),
            identity: opened.info,
            md5: None,
            body: Some(opened.body),
            skip: opened.skip,
            retry,
            done: false,
        };
        Ok(reader.into_stream())
    }

    /// Sends `files/get` for `[from, end)` (retrying within `retry`), and checks the answer's
    /// range.
    async fn open_get(
        &self,
        op: &'static str,
        path: &KoofrPath,
        from: u64,
        end: Option<u64>,
        retry: &mut Retry,
    ) -> Result<Opened> {
        let url = self.files_url(Family::Content, "get", path, "").await?;
        let ctx = RequestContext {
            op,
            path: Some(path.as_str()),
            exists_possible: false,
        };
        let range = match end {
            _ if from == 0 && end.is_none() => None,
            Some(end) => Some(format!("bytes={from}-{}", end - 1)),
            None => Some(format!("bytes={from}-")),
        };
        let url = url.as_str();
        let range = range.as_deref();
        let stall = self.transport().stall();
        retry.run(true, |_| async move {
            let response = self
                .transport()
                .send(ctx, None, move |http| {
                    let request = http.get(url);
                    Ok(match range {
                        Some(range) => request.header(RANGE, range),
                        None => request,
                    })
                })
                .await
                .map_err(|e| {
                    if e.kind() == ErrorKind::RangeNotSatisfiable {
                        Error::permanent(
                            ErrorKind::RangeNotSatisfiable,
                            op,
                            format!("offset {from} is at or beyond the end of the file"),
                        )
                        .with_path(path)
                        .with_status(416, e.code().map(str::to_owned))
                    } else {
                        e
                    }
                })?;
            let info = parse_file_info(response.inner.headers());
            let skip = match response.inner.status().as_u16() {
                206 => {
                    let start = content_range_start(response.inner.headers());
                    if start != Some(from) {
                        return Err(ctx.error(
                            ErrorKind::Unexpected,
                            false,
                            format!("asked for bytes from {from}, the server answered a range from {start:?}"),
                        ));
                    }
                    0
                }
                200 => from,
                other => {
                    return Err(ctx.error(ErrorKind::Unexpected, false, format!("unexpected status {other}")));
                }
            };
            Ok(Opened { body: body_stream(response, op, Some(path.to_string()), stall), info, skip })
        })
        .await
    }
}

/// `X-File-Info` as raw UTF-8 JSON (spec §7.8), or percent-encoded as a fallback.
fn parse_file_info(headers: &HeaderMap) -> Option<FileInfo> {
    let raw = headers.get("x-file-info")?.as_bytes();
    let text = std::str::from_utf8(raw).ok()?;
    serde_json::from_str(text).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes ")?;
    spec.split('-').next()?.trim().parse().ok()
}

struct Reader {
    client: Client,
    path: KoofrPath,
    op: &'static str,
    /// Absolute end (exclusive) for ranges; `None` = to the end of the file.
    end: Option<u64>,
    /// Absolute offset of the next byte to deliver.
    pos: u64,
    /// For whole files: the size the content must have.
    expected_size: Option<u64>,
    /// The version being read; a resumed request must see the same one.
    identity: Option<FileInfo>,
    md5: Option<Md5>,
    /// Whether the server sends `X-File-Info`; if not, a resume checks the version with `info`.
    header_seen: bool,
    body: Option<ByteStream>,
    skip: u64,
    /// The download's one retry state (its first request and every resume).
    retry: Retry,
    done: bool,
}

impl Reader {
    fn into_stream(self) -> ByteStream {
        futures::stream::unfold(self, |mut st| async move {
            let item = st.next_chunk().await;
            match item {
                None => None,
                Some(item) => {
                    if item.is_err() {
                        st.done = true;
                        st.body = None;
                    }
                    Some((item, st))
                }
            }
        })
        .boxed()
    }

    fn error(&self, kind: ErrorKind, message: String) -> Error {
        Error::permanent(kind, self.op, message).with_path(&self.path)
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if self.end.is_some_and(|end| self.pos >= end) {
                self.done = true;
                self.body = None;
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                if let Err(e) = self.resume().await {
                    return Some(Err(e));
                }
                continue;
            };
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let n = self.skip.min(chunk.len() as u64);
                        chunk = chunk.slice(n as usize..);
                        self.skip -= n;
                    }
                    if let Some(end) = self.end {
                        let room = end - self.pos;
                        if chunk.len() as u64 > room {
                            chunk.truncate(room as usize);
                        }
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    self.pos += chunk.len() as u64;
                    if let Some(md5) = self.md5.as_mut() {
                        md5.update(&chunk);
                    }
                    self.retry.progressed();
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    self.body = None;
                    if let Err(e) = self.retry.failed(e, true).await {
                        return Some(Err(e));
                    }
                    tracing::debug!(offset = self.pos, "koofr: download broke off, resuming");
                }
                None => {
                    self.done = true;
                    self.body = None;
                    return self.finish().err().map(Err);
                }
            }
        }
    }

    /// Checks the length and MD5 of a whole-file download.
    fn finish(&mut self) -> Result<()> {
        if let Some(size) = self.expected_size
            && self.pos != size
        {
            return Err(self.error(
                ErrorKind::Integrity,
                format!("received {} bytes, the file has {size}", self.pos),
            ));
        }
        if let (Some(md5), Some(expected)) = (
            self.md5.take(),
            self.identity.as_ref().and_then(|i| i.hash.clone()),
        ) {
            let actual = hex::encode(md5.finalize());
            if actual != expected {
                return Err(self.error(
                    ErrorKind::Integrity,
                    format!("MD5 mismatch: received {actual}, Koofr has {expected}"),
                ));
            }
        }
        Ok(())
    }

    /// Reopens the transfer from `pos` and makes sure the file is still the same version.
    async fn resume(&mut self) -> Result<()> {
        // Without X-File-Info, ask for info before opening: no permit is held at that point.
        let checked = match (&self.identity, self.header_seen) {
            (Some(_), false) => Some(self.client.info_with(&self.path, &mut self.retry).await?),
            _ => None,
        };
        let opened = self
            .client
            .open_get(self.op, &self.path, self.pos, self.end, &mut self.retry)
            .await?;
        let current = opened.info.or(checked);
        if let (Some(expected), Some(current)) = (&self.identity, &current)
            && !expected.same_version(current)
        {
            return Err(self.error(
                ErrorKind::Integrity,
                "the file changed on Koofr while it was being downloaded".to_owned(),
            ));
        }
        self.body = Some(opened.body);
        self.skip = opened.skip;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn parses_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-file-info",
            HeaderValue::from_bytes(r#"{"name":"é.txt","type":"file","modified":5,"size":3,"contentType":"","hash":"ab"}"#.as_bytes())
                .unwrap(),
        );
        headers.insert(
            reqwest::header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 10-19/100"),
        );
        let info = parse_file_info(&headers).unwrap();
        assert_eq!(info.name, "é.txt");
        assert_eq!(content_range_start(&headers), Some(10));
    }
}
