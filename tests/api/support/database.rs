//! Where test databases live: one private PostgreSQL per test binary (or
//! the server of `DATABASE_URL`), and a fresh database per test cloned from
//! a template migrated once.

use std::path::PathBuf;
use std::sync::OnceLock;

use herald::app::embedded_pg::{EmbeddedPostgres, Options, connect_with_retry};
use sqlx::Connection;

/// The server every test database lives on: `base_url` + database name.
struct Server {
    base: String,
    query: String,
}

impl Server {
    fn url(&self, db: &str) -> String {
        format!("{}/{db}{}", self.base, self.query)
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            let pg = start_private_postgres("shared");
            let url = pg.url("postgres");
            // Never stopped: it dies with this process (parent-death signal).
            std::mem::forget(pg);
            url
        });
        let (path, query) = url.split_at(url.find('?').unwrap_or(url.len()));
        let (base, _db) = path
            .rsplit_once('/')
            .expect("the database URL names a database");
        Server {
            base: base.to_owned(),
            query: query.to_owned(),
        }
    })
}

/// A private PostgreSQL in a fresh directory of this test process.
pub fn start_private_postgres(name: &str) -> EmbeddedPostgres {
    EmbeddedPostgres::start(Options {
        data_dir: scratch_dir(name),
        fsync: false,
        max_connections: 400,
    })
    .expect("private PostgreSQL starts")
}

pub fn scratch_dir(name: &str) -> PathBuf {
    remove_stale_scratch_dirs();
    let dir = scratch_dir_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

/// Where `scratch_dir(name)` lives, without clearing it.
pub fn scratch_dir_path(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("herald-test-{}", std::process::id()))
        .join(name)
}

/// Scratch directories of test processes that are gone.
fn remove_stale_scratch_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("herald-test-")) else {
                continue;
            };
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// A new database with the schema, cloned from a template migrated once.
pub async fn fresh_database() -> String {
    static TEMPLATE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let server = server();
    TEMPLATE
        .get_or_init(|| async {
            let mut admin = connect_with_retry(&server.url("postgres")).await.unwrap();
            sqlx::query("DROP DATABASE IF EXISTS herald_template")
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::query("CREATE DATABASE herald_template")
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
            let mut conn = sqlx::PgConnection::connect(&server.url("herald_template"))
                .await
                .unwrap();
            herald::db::MIGRATOR.run(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        })
        .await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = connect_with_retry(&server.url("postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE herald_template"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    server.url(&name)
}
