//! Where a test or a run happens: the in-process emulator (default) or a fresh random folder on
//! real Koofr; gives a retrying client, paths below the base folder, plugin config maps and
//! `plakar … add` arguments (also with a wrong password or a refused endpoint), the request log,
//! listings and the account's secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::Once;

use anyhow::Context;
use futures::StreamExt;
use koofr_core::{Client, KoofrConfig, KoofrPath, ListEntry, PathError, RetryPolicy};
use koofr_emulator::{Emulator, EmulatorConfig, RequestRecord};

use crate::live::{LiveAuth, LiveCredentials};

/// The `retries` key of every site's plugin config: enough for the fault tests' random 503s.
const PLUGIN_RETRIES: &str = "8";

/// The retry policy of clients on the emulator: millisecond backoffs, four attempts.
pub fn test_retry() -> RetryPolicy {
    RetryPolicy::fast_for_tests(4)
}

/// `http://127.0.0.1:<port>` on a port just bound and released: an endpoint nothing listens on.
pub fn refused_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("the bound port").port();
    format!("http://127.0.0.1:{port}")
}

/// A Basic-auth client config for `emulator`, with [`test_retry`].
pub fn emulator_config(emulator: &Emulator) -> KoofrConfig {
    KoofrConfig::basic(&emulator.endpoint(), emulator.email(), emulator.password())
        .expect("the emulator's endpoint and account make a valid config")
        .with_retry(test_retry())
}

/// How to start the emulator of a site.
#[derive(Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// The emulator's configuration (latency, quota, account, …). Its `data_dir` is ignored:
    /// see `on_disk`.
    pub config: EmulatorConfig,
    /// Keep file contents in a temporary directory (removed with the site) instead of memory.
    pub on_disk: bool,
}

/// One backend and the base folder a test or a run works in (everything it writes is below it).
pub struct Site {
    emulator: Option<Emulator>,
    client: Client,
    base: KoofrPath,
    account: LiveCredentials,
    // Holds the emulator's blob directory for the emulator's lifetime.
    _data_dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Site")
            .field("backend", &self.backend_name())
            .field("base", &self.base)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

static SKIP_NOTICE: Once = Once::new();

impl Site {
    /// The emulator with its default configuration; the base folder is `/test`.
    pub async fn start_emulator() -> anyhow::Result<Site> {
        Site::start_emulator_with(EmulatorOptions::default()).await
    }

    /// The emulator for a test that needs its fault hooks or request log: on a live run (Koofr
    /// credentials set) the test still runs, on the emulator, and says so on stderr.
    pub async fn start_emulator_only(test: &str) -> anyhow::Result<Site> {
        if LiveCredentials::from_env().is_some() {
            notice(&format!(
                "{test}: live Koofr part skipped: this test needs the emulator's fault hooks and request log"
            ));
        }
        Site::start_emulator().await
    }

    /// An emulator started with `options`; the base folder is `/test`.
    pub async fn start_emulator_with(options: EmulatorOptions) -> anyhow::Result<Site> {
        let data_dir = if options.on_disk {
            Some(tempfile::tempdir().context("creating the emulator's data directory")?)
        } else {
            None
        };
        let mut config = options.config;
        config.data_dir = data_dir.as_ref().map(|d| d.path().to_path_buf());
        let emulator = Emulator::start(config)
            .await
            .context("starting the Koofr emulator")?;
        let account = LiveCredentials {
            endpoint: emulator.endpoint(),
            auth: LiveAuth::Password {
                username: emulator.email().to_owned(),
                password: emulator.password().to_owned(),
            },
            api_version: None,
        };
        let client = Client::new(emulator_config(&emulator)).context("creating the client")?;
        let base = KoofrPath::parse("/test").context("base folder")?;
        emulator.create_folder_all(base.as_str());
        Ok(Site {
            emulator: Some(emulator),
            client,
            base,
            account,
            _data_dir: data_dir,
        })
    }

    /// Real Koofr, in a fresh folder `/koofr-plakar-<tag>-<random>` (removed by
    /// [`Site::finish`]).
    pub async fn start_live(credentials: &LiveCredentials, tag: &str) -> anyhow::Result<Site> {
        let mut map = credentials.config_map();
        map.insert("location".to_owned(), "koofr:///".to_owned());
        let (config, _warnings) = KoofrConfig::from_map(&map, &|_| None)
            .map_err(|e| anyhow::anyhow!("the live account's configuration: {e}"))?;
        let client = Client::new(config.with_retry(RetryPolicy::with_attempts(8)))
            .context("creating the client")?;
        let random: u64 = rand::random();
        let base = KoofrPath::parse(&format!("/koofr-plakar-{tag}-{random:016x}"))
            .with_context(|| format!("a base folder for tag {tag:?}"))?;
        client
            .create_folder_all(&base)
            .await
            .with_context(|| format!("creating {base} on Koofr"))?;
        Ok(Site {
            emulator: None,
            client,
            base,
            account: credentials.clone(),
            _data_dir: None,
        })
    }

    /// Real Koofr when the environment names an account ([`LiveCredentials::from_env`]), else
    /// the emulator (saying once per process that the live run is skipped).
    pub async fn start_live_or_emulator(tag: &str) -> anyhow::Result<Site> {
        match LiveCredentials::from_env() {
            Some(credentials) => Site::start_live(&credentials, tag).await,
            None => {
                SKIP_NOTICE.call_once(|| {
                    notice(
                        "live Koofr run skipped (KOOFR_ENDPOINT with KOOFR_ACCESS_TOKEN or KOOFR_USERNAME and KOOFR_PASSWORD is not set); using the emulator",
                    );
                });
                Site::start_emulator().await
            }
        }
    }

    /// Whether this runs on real Koofr.
    pub fn is_live(&self) -> bool {
        self.emulator.is_none()
    }

    /// `emulator` or `koofr` (for reports).
    pub fn backend_name(&self) -> &'static str {
        if self.is_live() { "koofr" } else { "emulator" }
    }

    /// The emulator (request log, faults, direct reads and writes); panics on real Koofr, so
    /// only emulator-only code calls it (others check [`Site::is_live`] first).
    pub fn emulator(&self) -> &Emulator {
        self.emulator
            .as_ref()
            .expect("this needs the emulator, and the site is on real Koofr")
    }

    /// A koofr-core client on the account, rooted at the mount root, with retries.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The base folder (created).
    pub fn base(&self) -> &KoofrPath {
        &self.base
    }

    /// A path below the base folder.
    pub fn path(&self, relative: &str) -> Result<KoofrPath, PathError> {
        self.base.join(relative)
    }

    /// The account: the emulator's user and password, or the live credentials (password or
    /// token, and API version).
    pub fn account(&self) -> &LiveCredentials {
        &self.account
    }

    /// The account's secret (password or token), for checks that it never leaks.
    pub fn secret(&self) -> &str {
        self.account.secret()
    }

    /// The account keys of a Plakar entry on this site: endpoint, credential, API version when
    /// set, and the retry settings (short delays on the emulator).
    fn entry_map(&self) -> HashMap<String, String> {
        let mut map = self.account.config_map();
        map.extend([
            ("retries".to_owned(), PLUGIN_RETRIES.to_owned()),
            (
                "retry_delay_ms".to_owned(),
                if self.is_live() { "500" } else { "2" }.to_owned(),
            ),
        ]);
        map
    }

    /// The flat config map Plakar would pass to a plugin's `Init` for `location`, as a named
    /// entry gives it: the location and [`Site::entry_args`]' keys.
    pub fn plugin_config(&self, location: &KoofrPath) -> HashMap<String, String> {
        let mut map = self.entry_map();
        map.insert("location".to_owned(), format!("koofr://{location}"));
        map
    }

    /// [`Site::plugin_config`] for `location` with a password Koofr refuses.
    pub fn wrong_password_config(&self, location: &KoofrPath) -> HashMap<String, String> {
        let mut map = self.plugin_config(location);
        map.insert("password".to_owned(), "WRONG".to_owned());
        map
    }

    /// [`Site::plugin_config`] for `location` with an endpoint nothing listens on and 8 retries
    /// allowed (so that giving up sooner is the connecting limit, not the setting); and the
    /// message a connector gives when it gives up on that endpoint.
    pub fn refused_endpoint_config(
        &self,
        location: &KoofrPath,
    ) -> (HashMap<String, String>, String) {
        let endpoint = refused_endpoint();
        let mut map = self.plugin_config(location);
        map.insert("endpoint".to_owned(), endpoint.clone());
        map.insert("retries".to_owned(), "8".to_owned());
        let message =
            format!("cannot connect to {endpoint}: connection refused [gave up after 3 attempts]");
        (map, message)
    }

    /// The account keys of a Plakar entry on this site (endpoint, credential, API version when
    /// set, and the retry settings) as sorted `key=value` arguments of
    /// `plakar store|source|destination add`.
    pub fn entry_args(&self) -> Vec<String> {
        let mut args: Vec<String> = self
            .entry_map()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        args.sort();
        args
    }

    /// The request log since it was last cleared (empty on real Koofr).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.emulator
            .as_ref()
            .map(Emulator::requests)
            .unwrap_or_default()
    }

    /// Clears the request log.
    pub fn clear_requests(&self) {
        if let Some(emulator) = &self.emulator {
            emulator.clear_requests();
        }
    }

    /// The request log since it was last cleared, clearing it (empty on real Koofr).
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        self.emulator
            .as_ref()
            .map(Emulator::take_requests)
            .unwrap_or_default()
    }

    /// Everything below `dir` (excluded), with paths relative to it, sorted; the emulator's own
    /// view on the emulator, a recursive listing through koofr-core on real Koofr.
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

/// Prints `line` on the process's real stderr. The test harness captures `println!` and
/// `eprintln!` of a passing test, so a skip said that way would never be seen.
pub fn notice(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
