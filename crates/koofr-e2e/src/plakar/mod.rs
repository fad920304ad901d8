//! Real plakar in the loop: finds a plakar of a [`Line`] (v1.1.x, or v1.0.x with its older
//! flags, XDG isolation and package format), builds the `koofr` package for it from the plugin
//! binaries, gives each run an isolated plakar home with the package installed, runs plakar
//! commands in a hermetic environment, samples the plugin processes' memory, and ends every
//! process a home started when it is dropped (also when a test panics).

mod package;
mod processes;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt};

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
            koofr_testkit::notice(&format!(
                "SKIPPED {test}: no plakar {}x found (${variable} is unset and there is no \
                 `{name}` on PATH); to run it: PATH=$PWD/../shared/tools/{tool}:$PATH cargo test",
                line.prefix()
            ));
            None
        }
        Err(err) => {
            koofr_testkit::notice(&format!("SKIPPED {test}: {err:#}"));
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

pub use package::PlakarPackage;
pub use processes::{PluginProcess, PluginWatch};
use processes::{kill_processes_of, processes_of};

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
}
