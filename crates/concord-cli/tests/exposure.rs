//! The `concord` binary on what a config and the files it writes expose (issue 12):
//! `validate` warns, naming the field, about every secret written as a literal instead of an
//! `${ENV}` reference, and refuses credentials sent over plain http to another host unless the
//! endpoint allows it; `token new --metrics` makes a token that reads `/metrics` only; the demo's
//! config and store (with its WAL) are private to their owner.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn concord(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("CONCORD_CONFIG")
        .output()
        .expect("run the concord binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Tryton ERP at `url` with `options`, and a sandbox storefront; one stock flow.
fn config(dir: &Path, url: &str, options: &str) -> PathBuf {
    let file = dir.join("concord.toml");
    let body = format!(
        "[endpoints.erp]\nconnector = \"tryton\"\nurl = \"{url}\"\n\
         [endpoints.erp.options]\ndatabase = \"db\"\n{options}\n\n\
         [endpoints.web1]\nconnector = \"sandbox-shop\"\nurl = \"http://127.0.0.1:7002\"\n\n\
         [[flows]]\nname = \"stock\"\nkind = \"stock\"\npattern = \"broadcast\"\nmode = \"delta\"\ninterval = \"10s\"\n\
         from = [\"erp\"]\nto = [\"web1\"]\n"
    );
    std::fs::write(&file, body).expect("write config");
    file
}

/// Regression: a literal password in the config passed `validate` without a word.
#[test]
fn validate_warns_about_literal_secrets_by_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config(
        dir.path(),
        "http://127.0.0.1:8011",
        "password = \"hunter2\"",
    );
    let out = concord(&["validate", "-c", file.to_str().expect("utf-8")], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("warning: endpoints.erp.options.password is a secret written as a literal"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
    // As an environment reference: no such warning.
    let file = config(dir.path(), "http://127.0.0.1:8011", "password = \"${PW}\"");
    let out = concord(
        &["validate", "-c", file.to_str().expect("utf-8")],
        &[("PW", "hunter2")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("literal"),
        "{}",
        text(&out.stdout)
    );
}

/// Regression: nothing stopped a password going in clear to another machine.
#[test]
fn validate_refuses_credentials_over_plain_http_to_another_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("PW", "hunter2")];
    let file = config(
        dir.path(),
        "http://erp.example.com:8000",
        "password = \"${PW}\"",
    );
    let out = concord(&["validate", "-c", file.to_str().expect("utf-8")], &env);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("endpoints.erp.url"), "{stderr}");
    assert!(stderr.contains("allow_insecure_http"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let file = config(
        dir.path(),
        "https://erp.example.com",
        "password = \"${PW}\"",
    );
    let out = concord(&["validate", "-c", file.to_str().expect("utf-8")], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn token_new_makes_a_metrics_token() {
    let out = concord(&["token", "new", "--name", "prometheus", "--metrics"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("[[metrics.tokens]]"), "{stdout}");
    assert!(stdout.contains("name = \"prometheus\""), "{stdout}");
    let out = concord(
        &[
            "token",
            "new",
            "--name",
            "p",
            "--metrics",
            "--role",
            "viewer",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
}

/// Regression: the demo's config (with its webhook secret) and its store were world-readable.
#[cfg(unix)]
#[test]
fn the_demos_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let out = concord(
        &[
            "demo",
            "--seconds",
            "1",
            "--dir",
            data.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&data).expect("read the demo dir") {
        let path = entry.expect("entry").path();
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        seen.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let seen: Vec<String> = seen.into_iter().flatten().collect();
    for f in ["concord.toml", "concord.sqlite"] {
        assert!(seen.iter().any(|s| s == f), "{f} in {seen:?}");
    }
}
