//! Progress of long work (`replay`, `dlq redrive`, `bench`, `module fetch`): a live bar or
//! spinner when stderr is a terminal, otherwise plain lines at most every few seconds, so logs
//! of CI jobs and init containers stay readable. Always on stderr: stdout keeps the results.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often plain progress lines are written when nothing changes the state.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    last: Option<(Instant, String)>,
}

impl Progress {
    /// A bar out of `len` (a spinner when it is not known).
    pub fn new(label: &str, len: Option<u64>) -> Progress {
        Self::with(label, len, std::io::stderr().is_terminal())
    }

    fn with(label: &str, len: Option<u64>, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = match len {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {percent:>3}% {msg} ({elapsed})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{prefix} {spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            label: label.to_owned(),
            bar,
            last: None,
        }
    }

    /// Where the work is: `pos` of the length (ignored by a spinner) and a short message.
    pub fn update(&mut self, pos: u64, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.set_message(msg.to_owned());
            return;
        }
        if let Some(line) = plain_line(&self.label, msg, self.last.as_ref(), Instant::now()) {
            eprintln!("{line}");
            self.last = Some((Instant::now(), msg.to_owned()));
        }
    }

    /// Ends the bar and leaves `msg` as the last line.
    pub fn finish(self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{}: {msg}", self.label);
    }
}

/// The plain line to write now, if any: when the message changed, or when it has not been
/// written for `LINE_EVERY` (so a long quiet step still shows it is alive).
fn plain_line(
    label: &str,
    msg: &str,
    last: Option<&(Instant, String)>,
    now: Instant,
) -> Option<String> {
    match last {
        Some((at, text)) if text == msg && now.duration_since(*at) < LINE_EVERY => None,
        _ => Some(format!("{label}: {msg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_on_change_or_after_a_quiet_while() {
        let t0 = Instant::now();
        assert_eq!(
            plain_line("replay", "10%", None, t0).as_deref(),
            Some("replay: 10%")
        );
        let last = (t0, "10%".to_string());
        assert_eq!(
            plain_line("replay", "10%", Some(&last), t0 + Duration::from_secs(1)),
            None
        );
        assert!(plain_line("replay", "20%", Some(&last), t0 + Duration::from_secs(1)).is_some());
        assert!(plain_line("replay", "10%", Some(&last), t0 + LINE_EVERY).is_some());
    }

    #[test]
    fn without_a_terminal_there_is_no_bar() {
        let p = Progress::with("x", Some(10), false);
        assert!(p.bar.is_none());
        let p = Progress::with("x", None, true);
        assert!(p.bar.is_some());
        p.finish("done");
    }
}
