//! Where a store is: the data dir's SQLite file (the default) or a PostgreSQL database,
//! chosen by `--db`, then nova.conf's `[database] connection`, then the data dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use novanet_core::config::Config;
use novanet_core::{Error, Result};

use crate::{PgStore, SqliteStore, Store};

/// The SQLite store's file inside a data dir.
pub const SQLITE_FILE: &str = "state.sqlite";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `state.sqlite` under this directory.
    DataDir(PathBuf),
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

/// Whether `s` names a PostgreSQL database (`postgres://`, `postgresql://`, SQLAlchemy's
/// `postgresql+driver://`).
pub fn is_postgres_url(s: &str) -> bool {
    postgres_url(s).is_some()
}

fn postgres_url(s: &str) -> Option<String> {
    novanet_core::config::Database {
        connection: s.to_string(),
    }
    .postgres_url()
}

impl Location {
    /// `--db` first, then the configuration's `[database] connection`, then the data dir.
    pub fn choose(db: Option<&str>, cfg: &Config, data_dir: &Path) -> Result<Location> {
        if let Some(url) = db {
            return postgres_url(url).map(Location::Postgres).ok_or_else(|| {
                Error::invalid(
                    "db",
                    format!(
                        "{url:?} is not a PostgreSQL URL (postgres://user@host/dbname); \
                         the SQLite store is chosen with --data-dir"
                    ),
                )
            });
        }
        if let Some(url) = cfg.database.as_ref().and_then(|d| d.postgres_url()) {
            return Ok(Location::Postgres(url));
        }
        Ok(Location::DataDir(data_dir.to_path_buf()))
    }

    /// Opens the store (creating or upgrading its schema).
    pub fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            Location::DataDir(d) => Arc::new(SqliteStore::open_dir(d)?),
            Location::Postgres(url) => Arc::new(PgStore::open(url)?),
        })
    }

    /// Whether a store is there already (a PostgreSQL database is asked when opened).
    pub fn exists(&self) -> bool {
        match self {
            Location::DataDir(d) => d.join(SQLITE_FILE).is_file(),
            Location::Postgres(_) => true,
        }
    }

    /// For messages: the directory, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::DataDir(d) => d.display().to_string(),
            Location::Postgres(url) => match url.split_once("://") {
                Some((scheme, rest)) => match rest.split_once('@') {
                    Some((user, host)) => {
                        let user = user.split(':').next().unwrap_or(user);
                        format!("{scheme}://{user}@{host}")
                    }
                    None => url.clone(),
                },
                None => url.clone(),
            },
        }
    }
}
