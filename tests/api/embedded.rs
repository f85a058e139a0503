//! The private PostgreSQL: what it trusts on disk, who may connect to it,
//! and a second `herald` process started while one already runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald::app::embedded_pg::{EmbeddedPostgres, Options, connect_with_retry};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::support::{scratch_dir, scratch_dir_path, start_private_postgres};

/// The `host=` (socket directory) of a private server's URL.
fn socket_dir(pg: &EmbeddedPostgres) -> PathBuf {
    let url = pg.url("postgres");
    let host = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("host="))
        .expect("the URL names the socket directory");
    PathBuf::from(host)
}

fn start_on(data_dir: &Path) -> EmbeddedPostgres {
    EmbeddedPostgres::start(Options {
        data_dir: data_dir.to_owned(),
        fsync: false,
        max_connections: 20,
    })
    .expect("private PostgreSQL starts")
}

#[tokio::test]
async fn the_server_log_is_never_written_through_a_planted_link() {
    let pg = start_private_postgres("planted-log");
    pg.stop();
    let data = scratch_dir_path("planted-log");
    let log = data.join("server.log");
    let victims = scratch_dir("planted-log-victims");
    std::fs::create_dir_all(&victims).unwrap();
    let by_symlink = victims.join("symlinked");
    let by_hard_link = victims.join("hard-linked");
    for victim in [&by_symlink, &by_hard_link] {
        std::fs::write(victim, "precious").unwrap();
    }

    // Whoever owns the data directory (the server's account) can replace
    // the log by a link to a file it may not write itself.
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&by_symlink, &log).unwrap();
    let pg = start_on(&data);
    pg.stop();
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&by_hard_link, &log).unwrap();
    let pg = start_on(&data);
    pg.stop();

    for victim in [&by_symlink, &by_hard_link] {
        assert_eq!(std::fs::read_to_string(victim).unwrap(), "precious");
    }
    let meta = std::fs::symlink_metadata(&log).unwrap();
    assert!(meta.file_type().is_file());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("starting PostgreSQL"),
        "the server logs into its own, new file"
    );
}

#[tokio::test]
async fn the_socket_directory_is_private_and_its_name_random() {
    use std::os::unix::fs::MetadataExt;
    let pg = start_private_postgres("socket-dir");
    let first = socket_dir(&pg);
    let meta = std::fs::symlink_metadata(&first).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", first.display());
    pg.stop();
    assert!(!first.exists(), "removed when the server stops");

    // A restarted server is found where its clients knew it.
    let data = scratch_dir_path("socket-dir");
    let pg = start_on(&data);
    assert_eq!(socket_dir(&pg), first);
    pg.stop();

    // A name derived from the data directory could be taken by anyone
    // beforehand; a new cluster at the same place gets a new random one.
    std::fs::remove_dir_all(&data).unwrap();
    let pg = start_on(&data);
    let second = socket_dir(&pg);
    pg.stop();
    assert_ne!(first, second);
}

#[tokio::test]
async fn connecting_without_the_password_is_refused() {
    let pg = start_private_postgres("password");
    // Up and accepting connections (the socket appears a little earlier).
    connect_with_retry(&pg.url("postgres"))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let without_password = PgConnectOptions::new_without_pgpass()
        .socket(socket_dir(&pg))
        .username("herald")
        .database("postgres");
    let refused = PgConnection::connect_with(&without_password)
        .await
        .expect_err("no password, no connection");
    let code = refused
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("28P01"), "{refused}");
    // The URL the server hands out carries it.
    let mut conn = PgConnection::connect(&pg.url("postgres")).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();
    pg.stop();
}

/// `herald` with the embedded database in `dir` (no `DATABASE_URL`).
fn herald(dir: &Path, subcommand: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .arg(subcommand)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env_remove("HERALD__DATABASE__URL")
        .env("HERALD__DATABASE__EMBEDDED_DIR", dir)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD__LOG__FORMAT", "text")
        .env("NO_COLOR", "1");
    command
}

/// Ends `child` with SIGINT (as Ctrl-C would) and waits for it.
fn interrupt(child: &mut std::process::Child) -> std::process::ExitStatus {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "herald did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_while_serve_runs_uses_that_server_and_touches_none_of_its_files() {
    let dir = scratch_dir("migrate-beside-serve");
    let mut serve = herald(&dir, "serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = serve.stdout.take().unwrap();
    let (base_tx, base_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("Herald is listening on ") {
                let _ = base_tx.send(base.to_owned());
            }
        }
    });
    let base = base_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("herald serve starts");
    let data = dir.clone();
    let log_before = std::fs::read(data.join("server.log")).unwrap();
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    assert!(!log_before.is_empty());

    let migrate = herald(&dir, "migrate").output().unwrap();
    let said = String::from_utf8_lossy(&migrate.stderr).into_owned()
        + &String::from_utf8_lossy(&migrate.stdout);
    assert!(migrate.status.success(), "{said}");
    assert!(
        said.contains("using the private PostgreSQL already running"),
        "{said}"
    );
    assert!(!said.contains("starting a private PostgreSQL"), "{said}");
    assert!(said.contains("migrations applied"), "{said}");

    // The running server's files are as they were (its log only grew), and
    // it still serves.
    let log_after = std::fs::read(data.join("server.log")).unwrap();
    assert!(log_after.starts_with(&log_before), "the log was rewritten");
    assert_eq!(
        std::fs::read_to_string(data.join("postmaster.pid")).unwrap(),
        pid_file
    );
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(interrupt(&mut serve).success());
}
