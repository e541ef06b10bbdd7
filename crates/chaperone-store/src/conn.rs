//! The connection a change runs on: sqlx's, or, for SQLite, one the committer drives on its
//! own thread.
//!
//! sqlx runs every SQLite connection on a worker thread of its own and hands it each
//! statement through a channel, so a batch of changes is a chain of thread hand-offs, one
//! per statement, that every queued request waits for. The committer therefore opens its
//! SQLite connection itself (rusqlite, on the same bundled SQLite library) and runs the
//! statements where it is. The changes are written once, against sqlx's query API: [`Conn`]
//! is an sqlx [`Executor`] for both, so the same `sqlx::query(..).bind(..)` code runs on
//! either.
//!
//! The SQLite side builds sqlx's `Any` rows and results itself. Their fields are public but
//! exempt from sqlx's semantic versioning, which is why `sqlx-core` is pinned to one exact
//! version: an upgrade that changes them fails to build rather than misbehaves.

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::AnyConnection;
use sqlx::any::{AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::{Any, Either, Execute, Executor};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

/// A connection changes run on.
pub(crate) enum Conn<'a> {
    /// A sqlx connection (PostgreSQL, or a pooled one for reads).
    Any(&'a mut AnyConnection),
    /// The committer's own SQLite connection, inside its batch transaction.
    Sqlite(&'a mut rusqlite::Connection),
}

impl Conn<'_> {
    /// Whether a transaction is open. Only SQLite can end one by itself (on some errors);
    /// a sqlx connection is taken to be in the transaction its caller began.
    pub(crate) fn in_transaction(&self) -> bool {
        match self {
            Conn::Any(_) => true,
            Conn::Sqlite(conn) => !conn.is_autocommit(),
        }
    }

    /// The same connection, borrowed for a shorter time (a change gets its own).
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Any(conn) => Conn::Any(conn),
            Conn::Sqlite(conn) => Conn::Sqlite(conn),
        }
    }
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Any(_) => "Conn::Any",
            Conn::Sqlite(_) => "Conn::Sqlite",
        })
    }
}

impl<'c, 'a: 'c> Executor<'c> for &'c mut Conn<'a> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Any(conn) => (&mut **conn).fetch_many(query),
            Conn::Sqlite(conn) => {
                let items: Vec<Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> =
                    match run(conn, query) {
                        Ok((result, rows)) => rows
                            .into_iter()
                            .map(|row| Ok(Either::Right(row)))
                            .chain(std::iter::once(Ok(Either::Left(result))))
                            .collect(),
                        Err(e) => vec![Err(e)],
                    };
                futures_util::stream::iter(items).boxed()
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Any(conn) => (&mut **conn).fetch_optional(query),
            Conn::Sqlite(conn) => {
                let row = run(conn, query).map(|(_, rows)| rows.into_iter().next());
                futures_util::future::ready(row).boxed()
            }
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<sqlx::any::AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Conn::Any(conn) => (&mut **conn).prepare_with(sql, parameters),
            Conn::Sqlite(_) => futures_util::future::ready(Err(unsupported("prepare"))).boxed(),
        }
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Conn::Any(conn) => (&mut **conn).describe(sql),
            Conn::Sqlite(_) => futures_util::future::ready(Err(unsupported("describe"))).boxed(),
        }
    }
}

fn unsupported(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "{what} is not offered on the committer's connection"
    ))
}

/// Runs one statement with its `$N` arguments; returns its result and rows.
fn run<'q>(
    conn: &rusqlite::Connection,
    mut query: impl Execute<'q, Any>,
) -> Result<(AnyQueryResult, Vec<AnyRow>), sqlx::Error> {
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    let values = arguments.map(|a| a.values.0).unwrap_or_default();
    let sql = query.sql();
    // One statement per call, as PostgreSQL's extended protocol allows: SQLite would
    // prepare the first and silently leave the rest. (No statement here quotes a `;`.)
    if sql.trim_end().trim_end_matches(';').contains(';') {
        return Err(sqlx::Error::Protocol("one statement per query".into()));
    }
    let mut statement = conn.prepare_cached(sql).map_err(failure)?;
    for index in 1..=statement.parameter_count() {
        // Parameters are `$N` (as PostgreSQL writes them), bound by number, not position.
        let number = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| sqlx::Error::Protocol("parameters must be written $N".into()))?;
        let value = values
            .get(number.wrapping_sub(1))
            .ok_or_else(|| sqlx::Error::Protocol(format!("no argument bound for ${number}")))?;
        bind(&mut statement, index, value).map_err(failure)?;
    }
    let names: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let read_only = statement.readonly();
    let mut values: Vec<Vec<AnyValue>> = Vec::new();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(failure)? {
        let mut out = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            out.push(AnyValue {
                kind: value_of(row.get_ref(i).map_err(failure)?)?,
            });
        }
        values.push(out);
    }
    drop(rows);
    drop(statement);
    let result = AnyQueryResult {
        rows_affected: if read_only { 0 } else { conn.changes() },
        last_insert_id: None,
    };
    let columns: Vec<AnyColumn> = names
        .iter()
        .enumerate()
        .map(|(ordinal, name)| AnyColumn {
            ordinal,
            name: UStr::new(name),
            type_info: AnyTypeInfo {
                kind: values
                    .first()
                    .map_or(AnyTypeInfoKind::Null, |row| kind_of(&row[ordinal].kind)),
            },
        })
        .collect();
    let column_names: Arc<sqlx_core::HashMap<UStr, usize>> = Arc::new(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| (UStr::new(name), i))
            .collect(),
    );
    let rows = values
        .into_iter()
        .map(|values| AnyRow {
            column_names: Arc::clone(&column_names),
            columns: columns.clone(),
            values,
        })
        .collect();
    Ok((result, rows))
}

fn bind(
    statement: &mut rusqlite::CachedStatement<'_>,
    index: usize,
    value: &AnyValueKind<'_>,
) -> rusqlite::Result<()> {
    match value {
        AnyValueKind::Null(_) => statement.raw_bind_parameter(index, rusqlite::types::Null),
        AnyValueKind::Bool(b) => statement.raw_bind_parameter(index, i64::from(*b)),
        AnyValueKind::SmallInt(n) => statement.raw_bind_parameter(index, i64::from(*n)),
        AnyValueKind::Integer(n) => statement.raw_bind_parameter(index, i64::from(*n)),
        AnyValueKind::BigInt(n) => statement.raw_bind_parameter(index, *n),
        AnyValueKind::Real(n) => statement.raw_bind_parameter(index, f64::from(*n)),
        AnyValueKind::Double(n) => statement.raw_bind_parameter(index, *n),
        AnyValueKind::Text(text) => statement.raw_bind_parameter(index, text.as_ref()),
        AnyValueKind::Blob(blob) => statement.raw_bind_parameter(index, blob.as_ref()),
        _ => Err(rusqlite::Error::InvalidParameterName(format!(
            "an argument of an unsupported type for parameter {index}"
        ))),
    }
}

/// A column value as sqlx's SQLite driver hands it to `Any`: integers as `BigInt`, reals as
/// `Double`.
fn value_of(value: rusqlite::types::ValueRef<'_>) -> Result<AnyValueKind<'static>, sqlx::Error> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(n) => AnyValueKind::BigInt(n),
        ValueRef::Real(n) => AnyValueKind::Double(n),
        ValueRef::Text(text) => AnyValueKind::Text(Cow::Owned(
            String::from_utf8(text.to_vec()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        )),
        ValueRef::Blob(blob) => AnyValueKind::Blob(Cow::Owned(blob.to_vec())),
    })
}

fn kind_of(value: &AnyValueKind<'_>) -> AnyTypeInfoKind {
    match value {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

/// A SQLite error as sqlx reports database errors, constraint kinds kept.
#[derive(Debug)]
struct SqliteFailure {
    message: String,
    constraint: Option<Constraint>,
}

#[derive(Clone, Copy, Debug)]
enum Constraint {
    Unique,
    ForeignKey,
    NotNull,
    Check,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.constraint {
            Some(Constraint::Unique) => ErrorKind::UniqueViolation,
            Some(Constraint::ForeignKey) => ErrorKind::ForeignKeyViolation,
            Some(Constraint::NotNull) => ErrorKind::NotNullViolation,
            Some(Constraint::Check) => ErrorKind::CheckViolation,
            None => ErrorKind::Other,
        }
    }
}

/// A rusqlite error as an sqlx one.
pub(crate) fn failure(e: rusqlite::Error) -> sqlx::Error {
    use rusqlite::ffi;
    let constraint = match &e {
        rusqlite::Error::SqliteFailure(code, _) => match code.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                Some(Constraint::Unique)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Constraint::ForeignKey),
            ffi::SQLITE_CONSTRAINT_NOTNULL => Some(Constraint::NotNull),
            ffi::SQLITE_CONSTRAINT_CHECK => Some(Constraint::Check),
            _ => None,
        },
        _ => None,
    };
    sqlx::Error::Database(Box::new(SqliteFailure {
        message: e.to_string(),
        constraint,
    }))
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    fn memory() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, data BLOB, \
             n INTEGER)",
        )
        .unwrap();
        conn
    }

    #[tokio::test]
    async fn arguments_bind_by_number_and_rows_read_as_sqlx_reads_them() {
        let mut raw = memory();
        let mut conn = Conn::Sqlite(&mut raw);
        // `$2` comes first in the text: binding is by number, not position.
        let row = sqlx::query("INSERT INTO t (n, name, data) VALUES ($2, $1, $3) RETURNING *")
            .bind("a")
            .bind(7_i64)
            .bind(vec![1_u8, 2])
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>("name").unwrap(), "a");
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 7);
        assert_eq!(row.try_get::<Vec<u8>, _>("data").unwrap(), [1, 2]);
        let done = sqlx::query("INSERT INTO t (name) VALUES ($1)")
            .bind("b")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        let row = sqlx::query("SELECT data, n FROM t WHERE name = $1")
            .bind("b")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.try_get::<Option<Vec<u8>>, _>("data").unwrap(), None);
        assert_eq!(row.try_get::<Option<i64>, _>("n").unwrap(), None);
        // A read changes nothing, whatever the last write changed.
        let read = sqlx::query("SELECT * FROM t")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(read.rows_affected(), 0);
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM t ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(names, ["a", "b"]);
        let none = sqlx::query("SELECT * FROM t WHERE name = $1")
            .bind("c")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        assert!(none.is_none());
    }

    #[tokio::test]
    async fn errors_keep_their_kind_and_bad_statements_are_refused() {
        let mut raw = memory();
        let mut conn = Conn::Sqlite(&mut raw);
        for _ in 0..2 {
            let _ = sqlx::query("INSERT INTO t (name) VALUES ($1)")
                .bind("same")
                .execute(&mut conn)
                .await;
        }
        let err = sqlx::query("INSERT INTO t (name) VALUES ($1)")
            .bind("same")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let sqlx::Error::Database(e) = err else {
            panic!("{err}")
        };
        assert!(e.is_unique_violation());
        // Positional `?` parameters, a missing argument and two statements are refused.
        let refused = [
            sqlx::query("SELECT * FROM t WHERE name = ?").bind("x"),
            sqlx::query("SELECT * FROM t WHERE name = $2").bind("x"),
            sqlx::query("SELECT 1; SELECT 2"),
        ];
        for query in refused {
            assert!(query.execute(&mut conn).await.is_err());
        }
    }
}
