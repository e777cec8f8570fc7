//! `concord run --dry-run` from the outside (issue 16): it refuses the hub's own store, runs on
//! a separate store file that it marks, lists its planned writes when stopped, and a real
//! `concord run` refuses that marked store (so nothing planned in a dry run is ever delivered).
//! The endpoints are never reached here (nothing to capture): this checks the stores only; the
//! sandbox test of what a dry run plans and does not write is `concord-server/tests/dry_run.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn concord(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_concord"));
    c.args(args).env_remove("CONCORD_CONFIG");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn config(dir: &Path, store: &Path) -> PathBuf {
    let file = dir.join(format!(
        "{}.toml",
        store
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    let body = format!(
        "[store]\npath = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [endpoints.erp]\nconnector = \"sandbox-erp\"\nurl = \"http://127.0.0.1:9\"\n\n\
         [endpoints.web]\nconnector = \"sandbox-shop\"\nurl = \"http://127.0.0.1:9\"\n\n\
         [[flows]]\nname = \"products\"\nkind = \"product\"\npattern = \"broadcast\"\nmode = \"realtime\"\n\
         from = [\"erp\"]\nto = [\"web\"]\n",
        store.display()
    );
    std::fs::write(&file, body).expect("write config");
    file
}

/// Run `cmd` until it exits by itself or `after` passes, then SIGTERM it; its output.
fn run_then_stop(mut cmd: Command, after: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn concord");
    let id = child.id().to_string();
    let until = Instant::now() + after;
    let mut child = child;
    while Instant::now() < until {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM: the same orderly stop as Ctrl-C.
    let _ = Command::new("kill").args(["-TERM", &id]).status();
    child.wait_with_output().expect("output")
}

#[test]
fn a_dry_run_has_its_own_marked_store_that_a_real_run_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub_store = dir.path().join("hub.sqlite");
    let cfg = config(dir.path(), &hub_store);
    let cfg_s = cfg.to_str().expect("utf-8");

    // Not on the hub's own store.
    let out = concord(&["run", "--dry-run", "-c", cfg_s, "--store"])
        .arg(&hub_store)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("needs its own store"),
        "{}",
        text(&out.stderr)
    );
    assert!(!hub_store.exists(), "the hub's store was not even created");

    // On its own store (by default beside the hub's), marked; planned writes listed at the end.
    let out = run_then_stop(
        concord(&["run", "--dry-run", "-c", cfg_s]),
        Duration::from_secs(3),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("DRY RUN"), "{stderr}");
    assert!(
        stdout.contains("dry run: 0 planned write(s) (nothing was written)"),
        "{stdout}\n{stderr}"
    );
    let dry_store = dir.path().join("hub.dry-run.sqlite");
    assert!(dry_store.exists());
    assert!(!hub_store.exists(), "the hub's store is never touched");

    // A real run on the dry run's store is refused at once.
    let marked_cfg = config(dir.path(), &dry_store);
    let out = run_then_stop(
        concord(&["run", "-c", marked_cfg.to_str().expect("utf-8")]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("belongs to a dry run"),
        "{}",
        text(&out.stderr)
    );
}
