//! Test helpers: a small reqwest-based client for the emulator and response assertions.

#![allow(dead_code)]

use bytes::Bytes;
use koofr_emulator::{Emulator, EmulatorConfig};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts status and error code of a §6.4 error body.
    pub fn assert_error(&self, status: u16, code: &str) -> &Reply {
        assert_eq!(self.status, status, "status; body {:?}", self.text());
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "error code in {json}");
        assert!(json["requestId"].is_string(), "requestId in {json}");
        self
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub email: String,
    pub password: String,
}

impl Client {
    pub fn new(emulator: &Emulator) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: emulator.endpoint(),
            email: emulator.email().to_string(),
            password: emulator.password().to_string(),
        }
    }

    /// An authenticated request; `url` starts with `/`.
    pub fn req(&self, method: Method, url: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{url}", self.base))
            .basic_auth(&self.email, Some(&self.password))
    }

    pub fn anon(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{url}", self.base))
    }

    pub async fn get(&self, url: &str) -> Reply {
        send(self.req(Method::GET, url)).await
    }

    pub async fn json(&self, method: Method, url: &str, body: Value) -> Reply {
        send(
            self.req(method, url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// Raw-body upload to `/content/api/{version}/mounts/primary/files/put?{query}`.
    pub async fn put_raw(&self, version: &str, query: &str, content: &[u8]) -> Reply {
        send(
            self.req(
                Method::POST,
                &format!("/content/api/{version}/mounts/primary/files/put?{query}"),
            )
            .header("content-type", "application/octet-stream")
            .body(content.to_vec()),
        )
        .await
    }

    pub async fn mkdir(&self, version: &str, parent: &str, name: &str) -> Reply {
        self.json(
            Method::POST,
            &format!(
                "/api/{version}/mounts/primary/files/folder?path={}",
                enc(parent)
            ),
            serde_json::json!({ "name": name }),
        )
        .await
    }
}

pub async fn send(builder: RequestBuilder) -> Reply {
    let response = builder.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body read");
    Reply {
        status,
        headers,
        body,
    }
}

/// Percent-encodes a query value, spaces as `%20`.
pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub async fn start() -> (Emulator, Client) {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(config: EmulatorConfig) -> (Emulator, Client) {
    let emulator = Emulator::start(config).await.expect("emulator starts");
    let client = Client::new(&emulator);
    (emulator, client)
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}
