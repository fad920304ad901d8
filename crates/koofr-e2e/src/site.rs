//! Where a run happens: the in-process emulator (default) or a fresh random folder on real
//! Koofr; gives the plugin config maps, a koofr-core client, listings and the request log.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use koofr_core::{Client, KoofrConfig, KoofrPath, ListEntry, RetryPolicy};
use koofr_emulator::{Emulator, EmulatorConfig, RequestRecord};

/// Real Koofr credentials: a password or an access token (never in `Debug`), the endpoint and
/// the API version; the same type koofr-core's test harness reads from the environment.
pub use koofr_core::testing::{LiveAuth, LiveCredentials};

/// How to start the emulator.
#[derive(Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// Latency added to every request.
    pub latency: Duration,
    /// Keep file contents in a temporary directory instead of memory.
    pub on_disk: bool,
}

/// One backend and the base folder a run works in (everything the run writes is below it).
pub struct Site {
    emulator: Option<Emulator>,
    client: Client,
    base: KoofrPath,
    account: HashMap<String, String>,
    // Holds the emulator's blob directory alive for the emulator's lifetime.
    _data_dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Site")
            .field("live", &self.is_live())
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// Starts an in-process emulator on 127.0.0.1; the base folder is `/e2e`.
    pub async fn start_emulator(options: EmulatorOptions) -> anyhow::Result<Site> {
        let data_dir = if options.on_disk {
            Some(tempfile::tempdir().context("creating the emulator's data directory")?)
        } else {
            None
        };
        let mut config = EmulatorConfig::default();
        config.latency = options.latency;
        config.data_dir = data_dir.as_ref().map(|d| d.path().to_path_buf());
        let emulator = Emulator::start(config)
            .await
            .context("starting the Koofr emulator")?;
        let account = HashMap::from([
            ("endpoint".to_owned(), emulator.endpoint()),
            ("username".to_owned(), emulator.email().to_owned()),
            ("password".to_owned(), emulator.password().to_owned()),
            // Short backoffs: the emulator answers at once, and faults are injected on purpose.
            ("retries".to_owned(), "8".to_owned()),
            ("retry_delay_ms".to_owned(), "2".to_owned()),
        ]);
        let base = KoofrPath::parse("/e2e").context("base folder")?;
        let client = client_for(&account, RetryPolicy::fast_for_tests(8))?;
        client
            .create_folder_all(&base)
            .await
            .context("creating the base folder on the emulator")?;
        Ok(Site {
            emulator: Some(emulator),
            client,
            base,
            account,
            _data_dir: data_dir,
        })
    }

    /// Real Koofr, in a fresh folder `/koofr-plakar-<tag>-<random>` (removed by [`Site::finish`]).
    pub async fn live(credentials: &LiveCredentials, tag: &str) -> anyhow::Result<Site> {
        let mut account = credentials.config_map();
        account.extend([
            ("retries".to_owned(), "8".to_owned()),
            ("retry_delay_ms".to_owned(), "500".to_owned()),
        ]);
        let client = client_for(&account, RetryPolicy::with_attempts(8))?;
        let random: u64 = rand::random();
        let base = KoofrPath::parse(&format!("/koofr-plakar-{tag}-{random:016x}"))
            .context("base folder")?;
        client
            .create_folder_all(&base)
            .await
            .with_context(|| format!("creating {base} on Koofr"))?;
        Ok(Site {
            emulator: None,
            client,
            base,
            account,
            _data_dir: None,
        })
    }

    /// Whether this runs on real Koofr.
    pub fn is_live(&self) -> bool {
        self.emulator.is_none()
    }

    /// `emulator` or `koofr` (for reports).
    pub fn backend_name(&self) -> &'static str {
        if self.is_live() { "koofr" } else { "emulator" }
    }

    /// The emulator, if any (request log, faults).
    pub fn emulator(&self) -> Option<&Emulator> {
        self.emulator.as_ref()
    }

    /// A koofr-core client on the account (retrying).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The run's base folder.
    pub fn base(&self) -> &KoofrPath {
        &self.base
    }

    /// A folder below the base folder.
    pub fn path(&self, relative: &str) -> anyhow::Result<KoofrPath> {
        self.base
            .join(relative)
            .with_context(|| format!("path {relative:?} below {}", self.base))
    }

    /// The flat config map Plakar would pass to a plugin for `location`, as a named store entry
    /// gives it: location, endpoint, username, password and the retry settings.
    pub fn plugin_config(&self, location: &KoofrPath) -> HashMap<String, String> {
        let mut map = self.account.clone();
        map.insert("location".to_owned(), format!("koofr://{location}"));
        map
    }

    /// The account keys of a Plakar entry on this site (endpoint, username, password and the
    /// retry settings) as the `key=value` arguments of `plakar store|source|destination add`.
    pub fn entry_args(&self) -> Vec<String> {
        let mut args: Vec<String> = self
            .account
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        args.sort();
        args
    }

    /// The request log since the last [`Site::clear_requests`] (empty on real Koofr).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.emulator
            .as_ref()
            .map(Emulator::requests)
            .unwrap_or_default()
    }

    /// Clears the emulator's request log.
    pub fn clear_requests(&self) {
        if let Some(emulator) = &self.emulator {
            emulator.clear_requests();
        }
    }

    /// Everything below `dir` (excluded), with paths relative to it; the emulator's own view
    /// on the emulator, a recursive listing through koofr-core on real Koofr.
    pub async fn walk(&self, dir: &KoofrPath) -> anyhow::Result<Vec<RemoteEntry>> {
        let mut out = Vec::new();
        match &self.emulator {
            Some(emulator) => {
                for (path, info) in emulator.walk(dir.as_str()) {
                    out.push(RemoteEntry {
                        path: relative(dir, &path)?,
                        is_dir: info.is_dir,
                        size: info.size,
                        modified_ms: info.modified_ms,
                        md5: info.hash,
                    });
                }
            }
            None => {
                let mut listing = self
                    .client
                    .list_recursive(dir)
                    .await
                    .with_context(|| format!("listing {dir}"))?;
                while let Some(item) = listing.next().await {
                    match item.with_context(|| format!("listing {dir}"))? {
                        ListEntry::File { path, info } => {
                            if path == *dir {
                                continue;
                            }
                            out.push(RemoteEntry {
                                path: relative(dir, path.as_str())?,
                                is_dir: info.is_dir(),
                                size: info.size,
                                modified_ms: info.modified,
                                md5: info.hash,
                            });
                        }
                        ListEntry::Error {
                            path,
                            code,
                            message,
                        } => anyhow::bail!(
                            "listing {}: {code}: {message}",
                            path.map(|p| p.to_string())
                                .unwrap_or_else(|| dir.to_string())
                        ),
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes the base folder on real Koofr (the emulator just goes away).
    pub async fn finish(self) -> anyhow::Result<()> {
        if self.is_live() {
            self.client
                .remove(&self.base)
                .await
                .with_context(|| format!("removing {} from Koofr", self.base))?;
        }
        Ok(())
    }
}

fn relative(dir: &KoofrPath, path: &str) -> anyhow::Result<String> {
    let prefix = if dir.is_root() {
        "/".to_owned()
    } else {
        format!("{dir}/")
    };
    path.strip_prefix(&prefix)
        .map(str::to_owned)
        .with_context(|| format!("{path} listed outside {dir}"))
}

fn client_for(account: &HashMap<String, String>, retry: RetryPolicy) -> anyhow::Result<Client> {
    let mut map = account.clone();
    map.insert("location".to_owned(), "koofr:///".to_owned());
    let (config, _warnings) = KoofrConfig::from_map(&map, &|_| None)
        .map_err(|e| anyhow::anyhow!("client configuration: {e}"))?;
    Client::new(config.with_retry(retry)).context("creating the koofr-core client")
}

/// One file or folder of a listing, relative to the listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Relative `/`-separated path.
    pub path: String,
    /// A folder.
    pub is_dir: bool,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// Modification time in Unix milliseconds.
    pub modified_ms: i64,
    /// Lowercase hex MD5 (files).
    pub md5: Option<String>,
}
