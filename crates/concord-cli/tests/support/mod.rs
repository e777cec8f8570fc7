//! Shared by the CLI tests that run the real binary: a `concord run` child process with its
//! output in a log file, SIGKILLed and reaped on every exit path (a failing test never leaves a
//! hub running).
//!
//! Must never wait on the child without a bound or hide its output: a hub that died says so,
//! with its log.

#![allow(dead_code)] // each test file uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The running `concord run` child.
pub struct Hub {
    child: Option<Child>,
    log: PathBuf,
}

impl Hub {
    /// `concord run -c config` with `CONCORD_LOG=warn`, its output appended to `log`.
    pub fn spawn(config: &Path, log: PathBuf) -> Hub {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_concord"));
        cmd.env("CONCORD_LOG", "warn");
        Hub::spawn_with(cmd, config, log)
    }

    /// `cmd run -c config` (the caller's command: binary, environment), stdin closed, its
    /// output appended to `log`.
    pub fn spawn_with(cmd: Command, config: &Path, log: PathBuf) -> Hub {
        Hub::spawn_with_args(cmd, config, log, &[])
    }

    /// [`Hub::spawn_with`] with more arguments to `run` (e.g. `--standby`).
    pub fn spawn_with_args(mut cmd: Command, config: &Path, log: PathBuf, args: &[&str]) -> Hub {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the hub's log file");
        let err = out.try_clone().expect("clone the log file handle");
        let child = cmd
            .arg("run")
            .args(args)
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn `concord run`");
        Hub {
            child: Some(child),
            log,
        }
    }

    /// What the hub has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Panics (with the hub's log) if the child has exited on its own.
    pub fn assert_alive(&mut self) {
        self.assert_alive_after("");
    }

    /// [`Hub::assert_alive`], naming what was just done to it.
    pub fn assert_alive_after(&mut self, after: &str) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let after = if after.is_empty() {
                    String::new()
                } else {
                    format!(" after {after}")
                };
                panic!(
                    "`concord run` exited by itself with {status}{after}; its output:\n{}",
                    self.log()
                );
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}
