//! Real plakar in the loop: finds a plakar of a [`Line`] (v1.1.x, or v1.0.x with its older
//! flags, XDG isolation and package format), builds the `koofr` package for it from the plugin
//! binaries, gives each run an isolated plakar home with the package installed, runs plakar
//! commands in a hermetic environment, samples the plugin processes' memory, and ends every
//! process a home started when it is dropped (also when a test panics).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::binaries::{PluginBinaries, workspace_root};
use crate::summary::{cpu_time, peak_rss_kib};

/// The plakar line the connectors' package targets (plugin API v1.1.0, protocol v2).
pub const SUPPORTED_LINE: &str = "v1.1.";

/// A line of plakar releases, with what differs when a harness drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Line {
    /// plakar v1.1.x: protocol v2, `-cachedir`/`-configdir`/`-datadir`, `pkg create` with a
    /// version argument.
    V1_1,
    /// plakar v1.0.x: protocol v1 (the package starts the executables with
    /// `--plakar-protocol v1`), `-config` and the `XDG_*` variables, `-no-agent`, `pkg create`
    /// of a manifest with `version:`.
    V1_0,
}

impl Line {
    /// The version prefix, e.g. `v1.1.`.
    pub fn prefix(self) -> &'static str {
        match self {
            Line::V1_1 => SUPPORTED_LINE,
            Line::V1_0 => "v1.0.",
        }
    }

    /// The variable naming the executable, then its name on `PATH`.
    fn program(self) -> (&'static str, &'static str) {
        match self {
            Line::V1_1 => ("PLAKAR", "plakar"),
            Line::V1_0 => ("PLAKAR_1_0", "plakar-1.0"),
        }
    }

    /// The flags every command starts with: the configuration, cache and data directories at
    /// their default places below `home` (see [`Line::V1_1`]), or for 1.0 `-config` (the cache
    /// and data come from `XDG_*`) and `-no-agent` (its agent dies without syslog, and panics
    /// after commands where it runs).
    fn flags(self, home: &Path) -> Vec<String> {
        let below = |dir: &str| home.join(dir).display().to_string();
        match self {
            Line::V1_1 => vec![
                "-cachedir".to_owned(),
                below(".cache/plakar"),
                "-configdir".to_owned(),
                below(".config/plakar"),
                "-datadir".to_owned(),
                below(".local/share/plakar"),
            ],
            Line::V1_0 => vec![
                "-config".to_owned(),
                below(".config/plakar"),
                "-no-agent".to_owned(),
            ],
        }
    }

    /// Variables of its own a run gets, below `home`.
    fn env(self, home: &Path) -> Vec<(String, String)> {
        match self {
            Line::V1_1 => Vec::new(),
            Line::V1_0 => [
                ("XDG_CACHE_HOME", ".cache"),
                ("XDG_CONFIG_HOME", ".config"),
                ("XDG_DATA_HOME", ".local/share"),
            ]
            .iter()
            .map(|(key, dir)| ((*key).to_owned(), home.join(dir).display().to_string()))
            .collect(),
        }
    }
}
/// The version the harness gives the package it builds.
pub const PACKAGE_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
/// How long one plakar command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Output kept per stream of a command (enough for a `cat` of a test file); the rest is read
/// and dropped: a command that loops on a prompt without a terminal must not fill memory.
const OUTPUT_CAP: usize = 64 << 20;

/// A plakar executable whose version was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plakar {
    program: PathBuf,
    version: String,
    line: Line,
}

impl Plakar {
    /// The plakar to use: `$PLAKAR` if set, else `plakar` on `PATH`; `Ok(None)` when there is
    /// neither; an error naming the program when it does not run or is not v1.1.x.
    pub fn find() -> anyhow::Result<Option<Plakar>> {
        Plakar::find_line(Line::V1_1)
    }

    /// The plakar of `line`: `$PLAKAR` / `plakar` for v1.1.x, `$PLAKAR_1_0` / `plakar-1.0` for
    /// v1.0.x (see [`Plakar::find`]).
    pub fn find_line(line: Line) -> anyhow::Result<Option<Plakar>> {
        let (variable, name) = line.program();
        let program = match std::env::var_os(variable).filter(|v| !v.is_empty()) {
            Some(explicit) => PathBuf::from(explicit),
            None => match find_on_path(name) {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        Plakar::at_line(&program, line).map(Some)
    }

    /// Checks that `program` is a plakar v1.1.x (`plakar version` → `plakar/v1.1.x`).
    pub fn at(program: &Path) -> anyhow::Result<Plakar> {
        Plakar::at_line(program, Line::V1_1)
    }

    /// Checks that `program` is a plakar of `line`.
    pub fn at_line(program: &Path, line: Line) -> anyhow::Result<Plakar> {
        let version = probe_version(program, line)
            .with_context(|| format!("running `{} version`", program.display()))?;
        let (variable, name) = line.program();
        ensure!(
            version.starts_with(line.prefix()),
            "{} is plakar {version}, not {}x (set ${variable} to one, or put one first on PATH \
             as `{name}`)",
            program.display(),
            line.prefix()
        );
        Ok(Plakar {
            program: program.to_path_buf(),
            version,
            line,
        })
    }

    /// The executable (or the script that runs it).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Its version, e.g. `v1.1.4`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Its line.
    pub fn line(&self) -> Line {
        self.line
    }
}

/// The plakar for `test`, or `None` after printing why `test` is skipped.
pub fn plakar_for(test: &str) -> Option<Plakar> {
    plakar_of_line_for(test, Line::V1_1)
}

/// The plakar of `line` for `test`, or `None` after printing why `test` is skipped.
pub fn plakar_of_line_for(test: &str, line: Line) -> Option<Plakar> {
    match Plakar::find_line(line) {
        Ok(Some(plakar)) => Some(plakar),
        Ok(None) => {
            let (variable, name) = line.program();
            let tool = match line {
                Line::V1_1 => "plakar",
                Line::V1_0 => "plakar-1.0",
            };
            println!(
                "SKIPPED {test}: no plakar {}x found (${variable} is unset and there is no \
                 `{name}` on PATH); to run it: PATH=$PWD/../shared/tools/{tool}:$PATH cargo test",
                line.prefix()
            );
            None
        }
        Err(err) => {
            println!("SKIPPED {test}: {err:#}");
            None
        }
    }
}

/// The first `name` on `PATH` that is an executable file.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where the shared plakar tool script unpacks its binary (its own default, computed from the
/// real environment): set for every run so an isolated `HOME` does not unpack it again.
fn tool_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PLAKAR_TOOL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("plakar-tool"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/plakar-tool"))
}

/// The environment every plakar process gets: nothing of the caller's but `PATH`, `TMPDIR` and
/// the tool cache, so no `KOOFR_*` or `PLAKAR_*` variable of the developer leaks into a run.
fn hermetic_env(home: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_owned(), home.display().to_string()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("TZ".to_owned(), "UTC".to_owned()),
    ];
    for key in ["PATH", "TMPDIR"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_owned(), value));
        }
    }
    if let Some(cache) = tool_cache() {
        env.push(("PLAKAR_TOOL_CACHE".to_owned(), cache.display().to_string()));
    }
    env
}

/// The three directories plakar v1.1 takes as flags, at their default places below `home`: the
/// background `plakar cached` daemon is started with `-cachedir` only and finds plugins under
/// the default data directory of `$HOME`, so other places break every store command.
#[cfg(test)]
fn directory_flags(home: &Path) -> Vec<String> {
    Line::V1_1.flags(home)
}

fn probe_version(program: &Path, line: Line) -> anyhow::Result<String> {
    let scratch = tempfile::tempdir().context("creating a scratch plakar home")?;
    let run = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        let output = std::process::Command::new(program)
            .args(line.flags(scratch.path()))
            .args(args)
            .env_clear()
            .envs(hermetic_env(scratch.path()))
            .envs(line.env(scratch.path()))
            .stdin(Stdio::null())
            .output()?;
        Ok(output)
    };
    // Without the cookie, the first call prints a welcome text and checks for updates online
    // (plakar 1.0 exits 1 after writing it).
    run(&["-disable-security-check"])?;
    let output = run(&["version"])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("plakar/"))
        .map(str::to_owned);
    kill_processes_of(scratch.path());
    match version {
        Some(version) if output.status.success() => Ok(version),
        _ => bail!(
            "it did not print `plakar/<version>` ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// The `koofr` package (`.ptar`) built with `plakar pkg create` from the repository's
/// `manifest.yaml` (for plakar 1.0: the manifest derived from it) and the given plugin binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlakarPackage {
    ptar: PathBuf,
}

impl PlakarPackage {
    /// Stages `manifest.yaml` and the three executables in `dir` (emptied first) and runs
    /// `plakar pkg create ./manifest.yaml <version>` there (in a scratch home); for plakar 1.0,
    /// the derived manifest, with the version in it, and `plakar pkg create ./manifest.yaml`.
    pub async fn create(
        plakar: &Plakar,
        binaries: &PluginBinaries,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let manifest = workspace_root().join("manifest.yaml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let (text, create) = match plakar.line() {
            Line::V1_1 => (
                text,
                vec!["pkg", "create", "./manifest.yaml", PACKAGE_VERSION],
            ),
            Line::V1_0 => {
                let parsed = crate::manifest::parse_manifest(&text)?;
                let derived = crate::manifest::plakar_1_0_manifest(&parsed, PACKAGE_VERSION);
                (derived, vec!["pkg", "create", "./manifest.yaml"])
            }
        };
        std::fs::write(dir.join("manifest.yaml"), text)
            .with_context(|| format!("writing the manifest into {}", dir.display()))?;
        for executable in [&binaries.importer, &binaries.exporter, &binaries.storage] {
            let name = executable.file_name().context("executable name")?;
            let staged = dir.join(name);
            // A hard link costs nothing; a copy where the target is on another filesystem.
            if std::fs::hard_link(executable, &staged).is_err() {
                std::fs::copy(executable, &staged)
                    .with_context(|| format!("copying {}", executable.display()))?;
            }
        }
        let home = PlakarHome::bare(plakar).await?;
        let mut command = home.command(create);
        command.current_dir(dir);
        home.finish(command, COMMAND_TIMEOUT)
            .await?
            .success("plakar pkg create")?;
        let ptar = dir.join(format!(
            "koofr_{PACKAGE_VERSION}_{}_{}.ptar",
            std::env::consts::OS,
            go_arch()
        ));
        ensure!(
            ptar.is_file(),
            "plakar pkg create did not write {}",
            ptar.display()
        );
        Ok(PlakarPackage { ptar })
    }

    /// The package file.
    pub fn path(&self) -> &Path {
        &self.ptar
    }
}

/// Go's name for this machine's architecture (as in package file names).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// What one plakar command did.
#[derive(Debug, Clone)]
pub struct PlakarOutput {
    /// What was run (for messages; the program and directory flags left out).
    pub args: Vec<String>,
    /// The exit code, `None` if killed by a signal (or the timeout).
    pub code: Option<i32>,
    /// Standard output (at most 64 MiB).
    pub stdout: Vec<u8>,
    /// Standard error (at most 64 MiB).
    pub stderr: Vec<u8>,
    /// Wall time.
    pub elapsed: Duration,
}

impl PlakarOutput {
    /// Exit code 0.
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// `self` if the command exited 0, else an error with its output.
    pub fn success(self, what: &str) -> anyhow::Result<PlakarOutput> {
        ensure!(
            self.succeeded(),
            "{what} (`plakar {}`) exited with {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.code,
            tail(&self.stdout_text()),
            tail(&self.stderr_text())
        );
        Ok(self)
    }

    /// Standard output as (lossy) UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as (lossy) UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Standard output and standard error together, as (lossy) UTF-8.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout_text(), self.stderr_text())
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(8 << 10);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// An isolated plakar home: its own `HOME` with the cache, config and data directories below it,
/// the security check disabled, and (from [`PlakarHome::new`]) the koofr package installed.
/// Dropping it ends every process it started (plakar, `plakar cached`, plugins).
#[derive(Debug)]
pub struct PlakarHome {
    plakar: Plakar,
    root: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl PlakarHome {
    /// A home with the package installed (`plakar pkg add`).
    pub async fn new(plakar: &Plakar, package: &PlakarPackage) -> anyhow::Result<PlakarHome> {
        let home = PlakarHome::bare(plakar).await?;
        let ptar = package.path().display().to_string();
        home.run_ok(["pkg", "add", ptar.as_str()]).await?;
        let listed = home.run_ok(["pkg", "list"]).await?;
        ensure!(
            listed
                .stdout_text()
                .contains(&format!("koofr@{PACKAGE_VERSION}")),
            "plakar pkg list does not show koofr@{PACKAGE_VERSION}: {}",
            listed.text()
        );
        Ok(home)
    }

    /// A home without the package.
    pub async fn bare(plakar: &Plakar) -> anyhow::Result<PlakarHome> {
        let root = tempfile::Builder::new()
            .prefix("plakar-home-")
            .tempdir()
            .context("creating a plakar home")?;
        let home = PlakarHome {
            plakar: plakar.clone(),
            root,
            env: Vec::new(),
        };
        // A command of its own: it writes the cookie and exits (as a prefix it does nothing);
        // plakar 1.0 exits 1 after it.
        let disabled = home.run(["-disable-security-check"]).await?;
        if !disabled.stdout_text().contains("security check disabled") {
            disabled.success("plakar -disable-security-check")?;
        }
        Ok(home)
    }

    /// The home folder (`HOME` of every process).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The plakar it runs.
    pub fn plakar(&self) -> &Plakar {
        &self.plakar
    }

    /// Sets a variable for every later command (e.g. `PLAKAR_PASSPHRASE`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// `plakar <line flags> <args>` with the hermetic environment, stdin closed, output piped,
    /// killed if dropped.
    pub fn command<I, S>(&self, args: I) -> tokio::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = tokio::process::Command::new(self.plakar.program());
        command
            .args(self.plakar.line.flags(self.root()))
            .args(args)
            .env_clear()
            .envs(hermetic_env(self.root()))
            .envs(self.plakar.line.env(self.root()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `plakar <args>` to the end (or [`COMMAND_TIMEOUT`]).
    pub async fn run<I, S>(&self, args: I) -> anyhow::Result<PlakarOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.finish(self.command(args), COMMAND_TIMEOUT).await
    }

    /// Runs `plakar <args>` and fails, with its output, unless it exits 0.
    pub async fn run_ok<I, S>(&self, args: I) -> anyhow::Result<PlakarOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self.run(args).await?;
        let what = format!("plakar {}", output.args.join(" "));
        output.success(&what)
    }

    /// Runs a prepared command to the end, reading its output as it comes.
    pub async fn finish(
        &self,
        mut command: tokio::process::Command,
        timeout: Duration,
    ) -> anyhow::Result<PlakarOutput> {
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .skip(self.plakar.line.flags(self.root()).len())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.plakar.program().display()))?;
        let stdout = tokio::spawn(read_capped(child.stdout.take()));
        let stderr = tokio::spawn(read_capped(child.stderr.take()));
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => Some(status.context("waiting for plakar")?),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        let stdout = stdout.await.context("reading plakar's stdout")?;
        let stderr = stderr.await.context("reading plakar's stderr")?;
        let output = PlakarOutput {
            args,
            code: status.and_then(|s| s.code()),
            stdout,
            stderr,
            elapsed: started.elapsed(),
        };
        ensure!(
            status.is_some(),
            "`plakar {}` did not finish within {} s and was killed\nstdout:\n{}\nstderr:\n{}",
            output.args.join(" "),
            timeout.as_secs(),
            tail(&output.stdout_text()),
            tail(&output.stderr_text())
        );
        Ok(output)
    }

    /// The processes this home started that still run (plakar, `plakar cached`, plugins).
    pub fn processes(&self) -> Vec<u32> {
        processes_of(self.root())
    }

    /// Starts sampling the memory and CPU time of the plugin processes this home runs.
    pub fn watch_plugins(&self) -> PluginWatch {
        PluginWatch::start(self.root().join(".cache/plakar/plugins"))
    }

    /// Ends every process of this home (also done on drop); returns how many there were.
    pub fn end_processes(&self) -> usize {
        kill_processes_of(self.root())
    }
}

impl Drop for PlakarHome {
    fn drop(&mut self) {
        kill_processes_of(self.root());
    }
}

async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// The argv of a process, NUL-separated.
fn cmdline(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// Live processes whose command line names `root` or whose `HOME` is `root`.
fn processes_of(root: &Path) -> Vec<u32> {
    let root_text = root.display().to_string();
    let home = format!("HOME={root_text}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|&pid| {
            let names_root = cmdline(pid).is_some_and(|argv| {
                argv.split(|&b| b == 0)
                    .any(|arg| String::from_utf8_lossy(arg).contains(&root_text))
            });
            names_root
                || std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == home.as_bytes()))
        })
        .collect()
}

/// Kills the processes of `root` until none is left (a daemon may spawn a plugin meanwhile);
/// returns how many were killed.
fn kill_processes_of(root: &Path) -> usize {
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = processes_of(root);
        if pids.is_empty() || Instant::now() > deadline {
            return killed;
        }
        for pid in pids {
            let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            else {
                continue;
            };
            if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One plugin process seen by a [`PluginWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginProcess {
    /// Its pid.
    pub pid: u32,
    /// The executable's file name, e.g. `koofr-storage`.
    pub executable: String,
    /// The highest VmHWM sampled, KiB.
    pub peak_kib: u64,
    /// The last CPU time sampled.
    pub cpu: Duration,
    /// The names (never the values) of the `KOOFR_*` variables in its environment.
    pub koofr_variables: Vec<String>,
}

/// Samples, every 10 ms on a thread of its own (new processes every 20 ms), the plugin
/// processes whose executable lies below a plugin folder: their peak memory (VmHWM) and CPU
/// time.
#[derive(Debug)]
pub struct PluginWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<HashMap<u32, PluginProcess>>>,
}

impl PluginWatch {
    fn start(plugins: PathBuf) -> PluginWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let prefix = plugins.display().to_string();
            let mut seen: HashMap<u32, PluginProcess> = HashMap::new();
            // Listing every process is what costs (and it reads every process's command line):
            // do it every 20 ms, and read the plugins already found every 10 ms.
            let mut round = 0u32;
            while !flag.load(Ordering::Relaxed) {
                if round % 2 == 0 {
                    sample_plugins(&prefix, &mut seen);
                } else {
                    sample_known(&prefix, &mut seen);
                }
                round = round.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(10));
            }
            sample_plugins(&prefix, &mut seen);
            seen
        });
        PluginWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the plugin processes seen, in pid order.
    pub fn finish(mut self) -> Vec<PluginProcess> {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen: Vec<PluginProcess> = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .map(|m| m.into_values().collect())
            .unwrap_or_default();
        seen.sort_by_key(|p| p.pid);
        seen
    }
}

impl Drop for PluginWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads the peak memory and CPU time of the plugin processes already seen (still plugins:
/// a pid may be reused once its plugin exits).
fn sample_known(prefix: &str, seen: &mut HashMap<u32, PluginProcess>) {
    for entry in seen.values_mut() {
        if !cmdline(entry.pid).is_some_and(|argv| argv.starts_with(prefix.as_bytes())) {
            continue;
        }
        if let (Some(peak), Some(cpu)) = (peak_rss_kib(entry.pid), cpu_time(entry.pid)) {
            entry.peak_kib = entry.peak_kib.max(peak);
            entry.cpu = entry.cpu.max(cpu);
        }
    }
}

fn sample_plugins(prefix: &str, seen: &mut HashMap<u32, PluginProcess>) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Some(argv) = cmdline(pid) else { continue };
        let program =
            String::from_utf8_lossy(argv.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
        if !program.starts_with(prefix) {
            continue;
        }
        let (Some(peak), Some(cpu)) = (peak_rss_kib(pid), cpu_time(pid)) else {
            continue; // Exited between the listing and the reads.
        };
        let executable = Path::new(&program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(program.clone());
        let entry = seen.entry(pid).or_insert_with(|| PluginProcess {
            pid,
            executable,
            peak_kib: 0,
            cpu: Duration::ZERO,
            koofr_variables: koofr_variables(pid),
        });
        entry.peak_kib = entry.peak_kib.max(peak);
        entry.cpu = entry.cpu.max(cpu);
    }
}

/// The names of the `KOOFR_*` variables in the environment of `pid`.
fn koofr_variables(pid: u32) -> Vec<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    environ
        .split(|&b| b == 0)
        .filter_map(|var| {
            let var = String::from_utf8_lossy(var);
            let (name, _) = var.split_once('=')?;
            name.starts_with("KOOFR_").then(|| name.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_hermetic() {
        let env = hermetic_env(Path::new("/tmp/h"));
        assert!(env.iter().any(|(k, v)| k == "HOME" && v == "/tmp/h"));
        assert!(
            env.iter()
                .all(|(k, _)| !k.starts_with("KOOFR_") && k != "PLAKAR_PASSPHRASE"),
            "{env:?}"
        );
        let flags = directory_flags(Path::new("/tmp/h"));
        assert_eq!(flags[1], "/tmp/h/.cache/plakar");
        assert_eq!(flags[5], "/tmp/h/.local/share/plakar");
    }

    #[test]
    fn plakar_1_0_is_isolated_with_config_xdg_and_no_agent() {
        let home = Path::new("/tmp/h");
        assert_eq!(
            Line::V1_0.flags(home),
            ["-config", "/tmp/h/.config/plakar", "-no-agent"]
        );
        let env = Line::V1_0.env(home);
        for (key, dir) in [
            ("XDG_CACHE_HOME", "/tmp/h/.cache"),
            ("XDG_CONFIG_HOME", "/tmp/h/.config"),
            ("XDG_DATA_HOME", "/tmp/h/.local/share"),
        ] {
            assert!(env.iter().any(|(k, v)| k == key && v == dir), "{env:?}");
        }
        assert!(Line::V1_1.env(home).is_empty());
        let err = Plakar::at_line(Path::new("/bin/true"), Line::V1_0).unwrap_err();
        assert!(format!("{err:#}").contains("/bin/true"), "{err:#}");
    }

    #[test]
    fn a_program_that_is_not_plakar_is_refused_by_name() {
        let err = Plakar::at(Path::new("/bin/true")).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("/bin/true"), "{message}");
        assert!(message.contains("plakar/<version>"), "{message}");
    }

    #[test]
    fn output_is_cut_past_the_cap_and_the_rest_is_read() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let big = vec![b'x'; OUTPUT_CAP + 1000];
        let kept = runtime.block_on(read_capped(Some(&big[..])));
        assert_eq!(kept.len(), OUTPUT_CAP);
    }

    #[test]
    fn processes_of_finds_a_child_by_its_home_and_kill_ends_it() {
        let home = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("HOME", home.path())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_of(home.path()).contains(&pid) {
            assert!(Instant::now() < deadline, "child {pid} not found");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(kill_processes_of(home.path()), 1);
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
