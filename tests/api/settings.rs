//! Settings are checked when they are loaded: a bad value, an unknown key
//! or an unsafe secret stops the process with a message naming the key.

use std::path::PathBuf;
use std::process::Output;

use herald::settings::Settings;

/// A secret long enough for HS256 that is not the shipped one.
const SECRET: &str = "settings-test-secret-0123456789abcdef";

/// A config directory holding `base.toml` = `toml` (plus a valid secret).
fn config_dir_with(toml: &str) -> PathBuf {
    let dir = crate::support::scratch_dir(&format!("settings-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = format!("[auth]\nsecret = {SECRET:?}\n");
    let text = match toml.split_once("[auth]\n") {
        Some((before, after)) => format!("{before}{secret}{after}\n"),
        None => format!("{toml}\n{secret}"),
    };
    std::fs::write(dir.join("base.toml"), text).unwrap();
    dir
}

fn load_error(toml: &str) -> String {
    match Settings::load_from(&config_dir_with(toml)) {
        Ok(_) => panic!("settings with {toml:?} were accepted"),
        Err(e) => e.to_string(),
    }
}

/// Runs the `herald` binary with only `env` (and the repository's config).
pub fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_clear()
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("the herald binary runs")
}

fn failure(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a refusal, got {:?}\nstdout: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        output.stdout.is_empty(),
        "a refusal prints nothing on stdout"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_zero_purge_batch_is_refused_naming_the_key() {
    let error = load_error("[retention]\nbatch = 0");
    assert!(error.contains("retention.batch"), "{error}");
}

#[test]
fn every_numeric_setting_is_range_checked_naming_the_key() {
    for (section, key, bad) in [
        ("server", "heartbeat_secs", "0"),
        ("server", "heartbeat_secs", "31"),
        ("server", "retry_ms", "0"),
        ("server", "max_body_bytes", "0"),
        ("server", "workers", "100000"),
        ("server", "backlog", "0"),
        ("server", "client_request_timeout_ms", "0"),
        ("server", "client_disconnect_timeout_ms", "100000000"),
        ("database", "max_connections", "0"),
        ("database", "acquire_timeout_ms", "0"),
        ("auth", "leeway_secs", "100000"),
        ("stream", "max_streams_per_user", "0"),
        ("stream", "buffer", "0"),
        ("stream", "slow_client_timeout_ms", "0"),
        ("stream", "replay_page", "0"),
        ("publish", "rate_per_sec", "100000000"),
        ("publish", "burst", "100000000"),
        ("publish", "workers", "0"),
        ("publish", "max_batch_requests", "0"),
        ("publish", "max_batch_rows", "0"),
        ("publish", "broadcast_chunk", "0"),
        ("retention", "events_days", "0"),
        ("retention", "notifications_days", "-1"),
        ("retention", "idempotency_hours", "0"),
        ("retention", "interval_secs", "0"),
        ("retention", "batch", "-5"),
        ("log", "access_sample", "1000001"),
        ("log", "access_sample", "-1"),
    ] {
        let error = load_error(&format!("[{section}]\n{key} = {bad}"));
        assert!(
            error.contains(&format!("{section}.{key}")),
            "{section}.{key} = {bad}: {error}"
        );
    }
    // The shipped defaults are inside every range.
    Settings::load_from(&config_dir_with("")).unwrap();
}

#[test]
fn unknown_keys_in_a_config_file_name_the_nearest_valid_one() {
    let error = load_error("[server]\nretryms = 500");
    assert!(error.contains("server.retryms"), "{error}");
    assert!(error.contains("did you mean server.retry_ms?"), "{error}");
    let error = load_error("[retension]\nbatch = 10");
    assert!(error.contains("retension.batch"), "{error}");
    assert!(error.contains("did you mean retention.batch?"), "{error}");
}

#[test]
fn unknown_environment_variables_name_the_nearest_valid_key() {
    let output = herald(
        &["token", "--sub", "u"],
        &[("HERALD__SERVER__RETRYMS", "500")],
    );
    let error = failure(&output);
    assert!(error.contains("HERALD__SERVER__RETRYMS"), "{error}");
    assert!(error.contains("did you mean server.retry_ms?"), "{error}");
    // The valid spelling is accepted.
    let output = herald(
        &["token", "--sub", "u"],
        &[("HERALD__SERVER__RETRY_MS", "500")],
    );
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn out_of_range_environment_values_are_refused_naming_the_key() {
    let error = failure(&herald(
        &["token", "--sub", "u"],
        &[("HERALD__RETENTION__BATCH", "0")],
    ));
    assert!(error.contains("retention.batch"), "{error}");
}

#[test]
fn the_development_secret_is_refused_beyond_the_local_demo() {
    let token = ["token", "--sub", "u"];
    for env in [
        vec![("DATABASE_URL", "postgres://herald@db.internal/herald")],
        vec![("HERALD_LISTEN", "0.0.0.0:8080")],
        vec![("HERALD_ENV", "production")],
    ] {
        let error = failure(&herald(&token, &env));
        assert!(error.contains("development secret"), "{env:?}: {error}");
        assert!(error.contains("HERALD_JWT_SECRET"), "{env:?}: {error}");
        let mut with_secret = env.clone();
        with_secret.push(("HERALD_JWT_SECRET", SECRET));
        assert!(herald(&token, &with_secret).status.success(), "{env:?}");
    }
    let error = failure(&herald(
        &token,
        &[
            ("HERALD_JWT_SECRET", "short-secret"),
            ("HERALD_LISTEN", "127.0.0.1:8080"),
        ],
    ));
    assert!(error.contains("at least 32 bytes"), "{error}");
    assert!(
        !error.contains("short-secret"),
        "the secret is never repeated"
    );
    // The local demo needs no setup.
    let output = herald(&token, &[]);
    assert!(output.status.success(), "{output:?}");
}
