//! Progress bars on stderr for the long phases (hidden in tests).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes progress bars, or hidden ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Bars drawn on stderr.
    pub fn stderr() -> Progress {
        Progress { visible: true }
    }

    /// No bars (tests, non-interactive runs).
    pub fn hidden() -> Progress {
        Progress { visible: false }
    }

    /// A byte-counting bar for `phase` with a known total.
    pub fn bytes(&self, phase: &str, total: u64) -> ProgressBar {
        if !self.visible {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase.to_owned());
        bar
    }
}
