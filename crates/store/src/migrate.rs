//! `novanet manage db migrate`: copies an SQLite store into an empty PostgreSQL database,
//! table by table with the same ids, in one transaction that checks every table's row
//! count before it commits. The SQLite file is only read.

use std::path::Path;

use ::postgres::types::{ToSql, Type};
use ::postgres::{Client, NoTls};
use novanet_core::{Error, Result};
use rusqlite::types::Value;

use crate::postgres::TABLES;
use crate::{PgStore, SqliteStore};

/// One table's rows in the source and in the target after the copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

/// Rows a table counts for the check: what the engines keep alike. The per-host instance
/// counts are rebuilt by the target's trigger, which keeps no host at zero.
fn counted(table: &str) -> String {
    match table {
        "host_instance_counts" => format!("SELECT count(*) FROM {table} WHERE instances > 0"),
        // The schema version is each engine's own.
        "meta" => format!("SELECT count(*) FROM {table} WHERE key <> 'schema'"),
        _ => format!("SELECT count(*) FROM {table}"),
    }
}

fn pg(e: ::postgres::Error) -> Error {
    Error::Store(match e.as_db_error() {
        Some(d) => format!("postgres: {}", d.message()),
        None => format!("postgres: {e}"),
    })
}

fn lite(e: rusqlite::Error) -> Error {
    Error::Store(format!("sqlite: {e}"))
}

/// One SQLite value as the parameter PostgreSQL's column takes.
fn param(v: Value, ty: &Type, table: &str, column: &str) -> Result<Box<dyn ToSql + Sync>> {
    let bad = || {
        Error::Store(format!(
            "{table}.{column}: a value SQLite holds does not fit PostgreSQL's {ty}"
        ))
    };
    Ok(match (v, ty) {
        (Value::Null, t) if *t == Type::BOOL => Box::new(None::<bool>),
        (Value::Null, t) if *t == Type::INT4 => Box::new(None::<i32>),
        (Value::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (Value::Null, _) => Box::new(None::<String>),
        (Value::Integer(i), t) if *t == Type::BOOL => Box::new(i != 0),
        (Value::Integer(i), t) if *t == Type::INT4 => {
            Box::new(i32::try_from(i).map_err(|_| bad())?)
        }
        (Value::Integer(i), t) if *t == Type::INT8 => Box::new(i),
        (Value::Integer(i), _) => Box::new(i.to_string()),
        (Value::Text(s), t) if *t == Type::INT8 => Box::new(s.parse::<i64>().map_err(|_| bad())?),
        (Value::Text(s), t) if *t == Type::INT4 => Box::new(s.parse::<i32>().map_err(|_| bad())?),
        (Value::Text(s), _) => Box::new(s),
        _ => return Err(bad()),
    })
}

/// Copies the SQLite store at `sqlite` (a `state.sqlite` file) into the PostgreSQL database
/// at `url`, which must hold no state yet (its schema is made if missing). Returns each
/// table's counts; nothing is committed unless every table's match.
pub fn sqlite_to_postgres(sqlite: &Path, url: &str) -> Result<Vec<TableCount>> {
    if !sqlite.is_file() {
        return Err(Error::Store(format!(
            "no SQLite store at {}",
            sqlite.display()
        )));
    }
    // Opening brings each schema up to date (the SQLite one with its own migrations).
    drop(SqliteStore::open(sqlite)?);
    drop(PgStore::open(url)?);
    let src =
        rusqlite::Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(lite)?;
    let mut dst = Client::connect(url, NoTls).map_err(pg)?;
    let mut tx = dst.transaction().map_err(pg)?;
    // Nothing else writes the target while it is filled.
    for (table, _) in TABLES {
        tx.batch_execute(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"))
            .map_err(pg)?;
    }
    let generation: String = tx
        .query_one("SELECT value FROM meta WHERE key = 'generation'", &[])
        .map_err(pg)?
        .get(0);
    for (table, _) in TABLES.iter().filter(|(t, _)| *t != "meta") {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .map_err(pg)?
            .get(0);
        if n > 0 || generation != "0" {
            return Err(Error::conflict(format!(
                "the target database already holds novanet state ({table} has {n} rows, \
                 generation {generation}); migrate into an empty database"
            )));
        }
    }
    // Instance counts as each instance arrives, so that the counts are checked below.
    tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE; DELETE FROM meta WHERE key <> 'schema'")
        .map_err(pg)?;
    for (table, columns) in TABLES {
        // Rebuilt by the trigger from the instances.
        if *table == "host_instance_counts" {
            continue;
        }
        let select: Vec<&str> = columns
            .iter()
            .map(|c| {
                if *table == "keypairs" && *c == "id" {
                    "rowid"
                } else {
                    c
                }
            })
            .collect();
        let skip_schema = if *table == "meta" {
            " WHERE key <> 'schema'"
        } else {
            ""
        };
        let mut read = src
            .prepare(&format!(
                "SELECT {} FROM {table}{skip_schema}",
                select.join(", ")
            ))
            .map_err(lite)?;
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {table}({}) VALUES ({})",
                columns.join(", "),
                placeholders.join(", ")
            ))
            .map_err(pg)?;
        let types: Vec<Type> = insert.params().to_vec();
        let mut rows = read.query([]).map_err(lite)?;
        while let Some(row) = rows.next().map_err(lite)? {
            let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(columns.len());
            for (i, (column, ty)) in columns.iter().zip(&types).enumerate() {
                let v: Value = row.get(i).map_err(lite)?;
                values.push(param(v, ty, table, column)?);
            }
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
            tx.execute(&insert, &refs).map_err(pg)?;
        }
        if columns.first() == Some(&"id") && types.first() == Some(&Type::INT8) {
            // New rows continue after the copied ids, and after the ids SQLite gave rows
            // since deleted where it never reuses them (AUTOINCREMENT: instances).
            let given: i64 = src
                .query_row(
                    "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     greatest(coalesce((SELECT max(id) FROM {table}), 0), $1) + 1, false)"
                ),
                &[&given],
            )
            .map_err(pg)?;
        }
    }
    let mut counts = Vec::new();
    for (table, _) in TABLES {
        let source: i64 = src
            .query_row(&counted(table), [], |r| r.get(0))
            .map_err(lite)?;
        let target: i64 = tx.query_one(&counted(table), &[]).map_err(pg)?.get(0);
        counts.push(TableCount {
            table,
            source,
            target,
        });
    }
    let wrong: Vec<String> = counts
        .iter()
        .filter(|c| c.source != c.target)
        .map(|c| format!("{}: {} in SQLite, {} copied", c.table, c.source, c.target))
        .collect();
    if !wrong.is_empty() {
        return Err(Error::Store(format!(
            "the copy does not match its source, nothing was committed: {}",
            wrong.join("; ")
        )));
    }
    tx.commit().map_err(pg)?;
    Ok(counts)
}
