//! A child process the tests start, its output in a log file of its own: restarted with the
//! same arguments, SIGKILLed as a crash would, SIGTERMed as a cluster would, killed when
//! dropped (also when a test fails). The real components ([`crate::nats`],
//! [`crate::sluice`](mod@crate::sluice)) and the operator in `chart.rs` run in one.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

/// A child process restarted with the same arguments; killed when dropped.
pub struct Proc {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(OsString, OsString)>,
    log: PathBuf,
    child: Option<Child>,
    /// Starts so far.
    starts: usize,
}

impl Proc {
    /// Starts `program ARGS`, its stdout and stderr appended to `log`.
    pub fn spawn(program: &Path, args: Vec<String>, log: PathBuf) -> Proc {
        Proc::spawn_with_env(program, args, &[], log)
    }

    /// Starts `program ARGS` with `env` added to the test's environment.
    pub fn spawn_with_env(
        program: &Path,
        args: Vec<String>,
        env: &[(&str, &OsStr)],
        log: PathBuf,
    ) -> Proc {
        let mut p = Proc {
            program: program.to_owned(),
            args,
            env: env
                .iter()
                .map(|(k, v)| (OsString::from(k), v.to_os_string()))
                .collect(),
            log,
            child: None,
            starts: 0,
        };
        p.restart();
        p
    }

    /// Starts it again (after `kill9`), appending to the same log.
    pub fn restart(&mut self) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.program.display()));
        self.child = Some(child);
        self.starts += 1;
    }

    /// Arguments added for every later start (a changed setting, as after a redeploy).
    pub fn add_args(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|a| a.to_string()));
    }

    /// How many times it was started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (up to 30 s) for a graceful exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the log until `found` reads something in it; fails when the process exits first
    /// or `timeout` passes.
    pub fn wait_log<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if let Some(v) = found(&log) {
                return v;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited ({status}):\n{log}", self.program.display());
            }
            assert!(Instant::now() < deadline, "{what}:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
