//! The processes of a plakar home: finding and ending them, and sampling the plugins among
//! them (peak memory, CPU time, the names of their `KOOFR_*` variables).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::summary::{cpu_time, peak_rss_kib};

/// The argv of a process, NUL-separated.
fn cmdline(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// Live processes whose command line names `root` or whose `HOME` is `root`.
pub(super) fn processes_of(root: &Path) -> Vec<u32> {
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
pub(super) fn kill_processes_of(root: &Path) -> usize {
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
    pub(super) fn start(plugins: PathBuf) -> PluginWatch {
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
        entry.sample();
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
        if let Some(known) = seen.get_mut(&pid) {
            known.sample();
            continue;
        }
        let executable = Path::new(&program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(program.clone());
        let mut found = PluginProcess {
            pid,
            executable,
            peak_kib: 0,
            cpu: Duration::ZERO,
            koofr_variables: koofr_variables(pid),
        };
        // Not kept if it exited between the listing and the reads.
        if found.sample() {
            seen.insert(pid, found);
        }
    }
}

impl PluginProcess {
    /// Reads the process's peak memory and CPU time, keeping the highest seen; false when
    /// the process is gone.
    fn sample(&mut self) -> bool {
        let (Some(peak), Some(cpu)) = (peak_rss_kib(self.pid), cpu_time(self.pid)) else {
            return false;
        };
        self.peak_kib = self.peak_kib.max(peak);
        self.cpu = self.cpu.max(cpu);
        true
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
