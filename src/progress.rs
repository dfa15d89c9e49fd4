//! One indicatif display on stderr for the whole run; bars are hidden when
//! stderr is not a terminal (logs, CI), log lines are always printed.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    visible: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        let visible = std::io::stderr().is_terminal();
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Progress { multi: MultiProgress::with_draw_target(target), visible }
    }

    /// A display that draws nothing (tests, library use).
    pub fn hidden() -> Progress {
        Progress { multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()), visible: false }
    }

    /// A bar of `len` steps with rate and ETA.
    pub fn bar(&self, len: u64, prefix: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(prefix.to_string());
        bar
    }

    /// A line on stderr that does not tear a visible bar.
    pub fn log(&self, line: &str) {
        if self.visible {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}

/// A duration for a log line: tenths of a second below 10 s, seconds below
/// 2 min, minutes below 2 h, then hours.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_pick_the_unit_a_reader_wants() {
        assert_eq!(human_duration(4.25), "4.2 s");
        assert_eq!(human_duration(95.0), "95 s");
        assert_eq!(human_duration(665.0), "11 min");
        assert_eq!(human_duration(7200.0), "2.0 h");
        assert_eq!(human_duration(26_640.0), "7.4 h");
    }
}
