//! Fresh databases for storage tests: a SQLite file in a temporary folder, and a PostgreSQL
//! database with a unique name on the local server, dropped afterwards.
//!
//! PostgreSQL is found at `RATCHET_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `.ci/run` starts the server when it is down.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use ratchet_storage::Store;
use sea_orm::{ConnectionTrait, Database};

pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Runs `case` once against a fresh SQLite database and once against a fresh PostgreSQL one.
/// The PostgreSQL database is dropped even when the case fails.
pub async fn on_each_backend<F, Fut>(case: F)
where
    F: Fn(Store, &'static str) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let sqlite = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(sqlite.path()).await.expect("SQLite opens");
    let outcome = tokio::spawn(case(store.clone(), "sqlite")).await;
    store.close().await;
    resume(outcome);

    let postgres = PostgresDatabase::create().await;
    let store = Store::connect(&postgres.url).await.expect("the test database opens");
    let outcome = tokio::spawn(case(store.clone(), "postgres")).await;
    store.close().await;
    postgres.drop().await;
    resume(outcome);
}

/// Like [`on_each_backend`], but hands the case the database URL, for cases that need several
/// connections (several nodes) to one database.
pub async fn on_each_database<F, Fut>(case: F)
where
    F: Fn(String, &'static str) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let sqlite = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", sqlite.path().join("ratchet.db").display());
    resume(tokio::spawn(case(url, "sqlite")).await);

    let postgres = PostgresDatabase::create().await;
    let outcome = tokio::spawn(case(postgres.url.clone(), "postgres")).await;
    postgres.drop().await;
    resume(outcome);
}

/// Runs `case` against a fresh PostgreSQL database, handed over as its URL; the database is
/// dropped even when the case fails.
pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let postgres = PostgresDatabase::create().await;
    let outcome = tokio::spawn(case(postgres.url.clone())).await;
    postgres.drop().await;
    resume(outcome);
}

fn resume(outcome: Result<(), tokio::task::JoinError>) {
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the test case was cancelled: {error}"),
        }
    }
}

/// A database created for one test.
pub struct PostgresDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl PostgresDatabase {
    pub async fn create() -> PostgresDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin = std::env::var("RATCHET_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.into());
        let name = format!(
            "ratchet_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            fastrand_suffix()
        );
        let connection = Database::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}); start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 or set RATCHET_TEST_POSTGRES"
            )
        });
        connection.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
        let _ = connection.close().await;
        let mut url = url::Url::parse(&admin).expect("RATCHET_TEST_POSTGRES is a URL");
        url.set_path(&name);
        PostgresDatabase { url: url.to_string(), admin, name }
    }

    pub async fn drop(self) {
        if let Ok(connection) = Database::connect(&self.admin).await {
            let _ = connection
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .await;
            let _ = connection.close().await;
        }
    }
}

fn fastrand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}
