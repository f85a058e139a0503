//! What the real binary writes: the banner with tokens on stdout only for
//! the local demo, logs on stderr always, no colour codes when stderr is
//! not a terminal, and only JSON lines with `log.format = "json"`.

use std::process::Stdio;
use std::time::Duration;

use crate::settings::herald;
use crate::support::{TEST_SECRET, WAIT, fresh_database, scratch_dir};

/// The output of `herald serve` run with `env`, stopped with SIGTERM once
/// `/readyz` answered 200.
async fn serve_until_ready(env: &[(&str, String)]) -> (String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD__SERVER__WORKERS", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the herald binary runs");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    let output = tokio::spawn(child.wait_with_output());
    let http = reqwest::Client::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let r = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await;
            if matches!(r, Ok(r) if r.status() == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = tokio::time::timeout(WAIT * 3, output)
        .await
        .expect("herald stops on SIGTERM")
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    );
    assert!(
        ready.is_ok(),
        "not ready\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// `2026-01-01T00:00:00.000000Z  INFO target: message`, without colour.
fn assert_text_log_line(line: &str) {
    assert!(!line.contains('\x1b'), "a colour code on stderr: {line:?}");
    let mut words = line.split_whitespace();
    let time = words.next().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "not a log line: {line:?}"
    );
    let level = words.next().unwrap_or_default();
    assert!(
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
        "not a log line: {line:?}"
    );
}

#[tokio::test]
async fn the_local_demo_prints_its_banner_on_stdout_and_plain_logs_on_stderr() {
    let dir = scratch_dir(&format!("demo-{}", uuid::Uuid::new_v4().simple()));
    let (stdout, stderr) = serve_until_ready(&[(
        "HERALD__DATABASE__EMBEDDED_DIR",
        dir.to_str().unwrap().to_owned(),
    )])
    .await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("Herald is listening on http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/#token=ey"),
        "the demo prints a user token: {stdout}"
    );
    assert!(
        stdout.contains("Bearer ey"),
        "and a publish token: {stdout}"
    );
    assert!(!stdout.contains('\x1b'));
    assert!(!stderr.is_empty(), "logs go to stderr");
    for line in stderr.lines() {
        assert_text_log_line(line);
    }
    assert!(stderr.contains("listening"), "{stderr}");
}

#[tokio::test]
async fn with_an_external_database_stdout_stays_empty_and_json_logs_are_only_json() {
    let db = fresh_database().await;
    let (stdout, stderr) = serve_until_ready(&[
        ("DATABASE_URL", db),
        ("HERALD_JWT_SECRET", TEST_SECRET.to_owned()),
        ("HERALD__LOG__FORMAT", "json".to_owned()),
    ])
    .await;
    assert_eq!(stdout, "", "no banner and no token outside the local demo");
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(
            value["timestamp"].is_string() && value["level"].is_string(),
            "{line}"
        );
        messages.push(value["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(messages.iter().any(|m| m == "listening"), "{stderr}");
    assert!(!stderr.contains(TEST_SECRET) && !stderr.contains("eyJ"));
}

#[tokio::test]
async fn with_an_external_database_text_logs_have_no_colour_codes() {
    let db = fresh_database().await;
    let (stdout, stderr) = serve_until_ready(&[
        ("DATABASE_URL", db),
        ("HERALD_JWT_SECRET", TEST_SECRET.to_owned()),
    ])
    .await;
    assert_eq!(stdout, "");
    assert!(!stderr.is_empty());
    for line in stderr.lines() {
        assert_text_log_line(line);
    }
}

#[test]
fn herald_config_prints_the_effective_settings_without_secrets() {
    let output = herald(
        &["config"],
        &[
            (
                "DATABASE_URL",
                "postgres://herald:db-pass-123@db.internal/herald",
            ),
            ("HERALD_JWT_SECRET", TEST_SECRET),
            ("HERALD_LISTEN", "0.0.0.0:9000"),
            ("HERALD__RETENTION__BATCH", "77"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let settings: toml::Table = stdout.parse().expect("the output is TOML");
    assert_eq!(settings["server"]["listen"].as_str(), Some("0.0.0.0:9000"));
    assert_eq!(settings["retention"]["batch"].as_integer(), Some(77));
    assert_eq!(
        settings["database"]["url"].as_str(),
        Some("postgres://herald:REDACTED@db.internal/herald")
    );
    assert_eq!(
        settings["auth"]["scope_publish"].as_str(),
        Some("herald:publish")
    );
    assert!(
        !stdout.contains("db-pass-123") && !stdout.contains(TEST_SECRET),
        "{stdout}"
    );
    assert!(stdout.starts_with("# HERALD_ENV=local\n"), "{stdout}");
}
