//! The two database engines behind one small SQL interface: SQLite (embedded, the default)
//! and PostgreSQL (`database = "postgres://…"`, for several controllers on one registry).
//!
//! The store's modules write their SQL once, in the common subset, with SQLite's `?N`
//! placeholders; the interface mirrors rusqlite's (`prepare_cached`, `query_row`,
//! `query_map`, `params!`, `optional`), so a module reads the same on either engine. For
//! PostgreSQL each statement is rewritten once (placeholders `?N` -> `$N`, `AS INTEGER` ->
//! `AS BIGINT`) and prepared once per connection. The few SQLite functions the SQL uses
//! (`strftime`, `julianday`) exist in the PostgreSQL schema as functions of the same name and
//! meaning (see migrations.rs), so no module branches on the engine for them.
//!
//! Values cross as five kinds (null, integer, real, text, bytes), as SQLite stores them;
//! towards PostgreSQL an integer is encoded as whatever the statement's parameter is
//! (`BIGINT`, `INTEGER`, `BOOLEAN`, `NUMERIC`, `REAL`), and a column of any of those reads back
//! as an integer or real. So a `bool` written and read as an integer means the same on both.
//!
//! Transactions: a write holds the database's one write lock from its start (SQLite: `BEGIN
//! IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock, [`WRITE_LOCK`]), so a
//! read-then-write of one serial never interleaves with another, in one controller or across
//! several. A read is one snapshot (PostgreSQL: `REPEATABLE READ, READ ONLY`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The advisory lock every PostgreSQL write transaction takes first: the registry's writes
/// are serialised across controllers exactly as SQLite serialises them across processes.
/// (Its value: "pureboot" in ASCII, so it is recognisable in `pg_locks`.)
pub const WRITE_LOCK: i64 = 0x7075_7265_626f_6f74;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Not a `#[source]`: [`pg_message`] already says all the client's chain would.
    #[error("{}", pg_message(.0))]
    Postgres(postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
    #[error("parameter of type {ty}: {message}")]
    Param { ty: String, message: String },
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        Error::Postgres(e)
    }
}

/// PostgreSQL's own words: its message, detail and SQLSTATE (the client's `Display` says
/// only "db error").
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                m.push_str(&format!("; {detail}"));
            }
            m
        }
        None => match e.source() {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl Error {
    /// A statement stopped at its deadline: SQLite's progress handler or PostgreSQL's
    /// `statement_timeout`.
    pub fn is_cancelled(&self) -> bool {
        match self {
            Error::Sqlite(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted)
            }
            Error::Postgres(e) => e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED),
            _ => false,
        }
    }
}

/// rusqlite's `OptionalExtension`, for either engine: "no row" becomes `None`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) | Err(Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// A value as a statement's parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Int(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// What can be bound to a placeholder.
pub trait Param {
    fn value(&self) -> ValueRef<'_>;
}

macro_rules! int_params {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> ValueRef<'_> {
                ValueRef::Int(*self as i64)
            }
        }
    )*};
}
int_params!(i64, i32, u32, u16, u8);

impl Param for u64 {
    /// Past `i64::MAX` (never a count or a size here) it saturates, as a bound should.
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl Param for usize {
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl Param for bool {
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Int(*self as i64)
    }
}
impl Param for f64 {
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}
impl Param for str {
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}
impl Param for String {
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}
impl Param for [u8] {
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}
impl Param for Vec<u8> {
    fn value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> ValueRef<'_> {
        (**self).value()
    }
}
impl Param for Value {
    fn value(&self) -> ValueRef<'_> {
        self.as_ref()
    }
}
impl<T: Param> Param for Option<T> {
    fn value(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.value(),
            None => ValueRef::Null,
        }
    }
}

/// A statement's parameters: `params![a, b]`, `[a]`, `[a, b]` or `[]`.
pub trait Params {
    fn values(&self) -> Vec<ValueRef<'_>>;
}

impl Params for &[&dyn Param] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|p| p.value()).collect()
    }
}
impl Params for [&dyn Param; 0] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        Vec::new()
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: Param> Params for [T; $n] {
            fn values(&self) -> Vec<ValueRef<'_>> {
                self.iter().map(|p| p.value()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4);

/// rusqlite's `params!`, for either engine.
macro_rules! params {
    () => { &[] as &[&dyn $crate::store::db::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::db::Param),+] as &[&dyn $crate::store::db::Param] };
}
pub(crate) use params;

/// What can be read from a column.
pub trait FromColumn: Sized {
    fn from_value(v: Value) -> Result<Self, String>;
}

fn int_of(v: Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(i),
        other => Err(format!("{other:?} is not an integer")),
    }
}

macro_rules! int_columns {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_value(v: Value) -> Result<Self, String> {
                let i = int_of(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
int_columns!(i64, i32, u64, u32, u16, usize);

impl FromColumn for Value {
    fn from_value(v: Value) -> Result<Self, String> {
        Ok(v)
    }
}
impl FromColumn for bool {
    fn from_value(v: Value) -> Result<Self, String> {
        int_of(v).map(|i| i != 0)
    }
}
impl FromColumn for f64 {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Real(r) => Ok(r),
            Value::Int(i) => Ok(i as f64),
            other => Err(format!("{other:?} is not a number")),
        }
    }
}
impl FromColumn for String {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(format!("{other:?} is not text")),
        }
    }
}
impl FromColumn for Vec<u8> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            other => Err(format!("{other:?} is not bytes")),
        }
    }
}
impl<T: FromColumn> FromColumn for Option<T> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result, on either engine.
pub enum Row<'a> {
    Lite(&'a rusqlite::Row<'a>),
    Pg(&'a postgres::Row),
}

impl Row<'_> {
    pub fn get<T: FromColumn>(&self, index: usize) -> Result<T> {
        let value = match self {
            Row::Lite(r) => match r.get_ref(index)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                rusqlite::types::ValueRef::Real(f) => Value::Real(f),
                rusqlite::types::ValueRef::Text(t) => Value::Text(
                    std::str::from_utf8(t)
                        .map_err(|e| Error::Column {
                            index,
                            message: e.to_string(),
                        })?
                        .to_string(),
                ),
                rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            },
            Row::Pg(r) => r.try_get::<_, Value>(index)?,
        };
        T::from_value(value).map_err(|message| Error::Column { index, message })
    }
}

impl rusqlite::ToSql for ValueRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef as V;
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match *self {
            ValueRef::Null => V::Null,
            ValueRef::Int(i) => V::Integer(i),
            ValueRef::Real(f) => V::Real(f),
            ValueRef::Text(t) => V::Text(t.as_bytes()),
            ValueRef::Blob(b) => V::Blob(b),
        }))
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for ValueRef<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let mismatch = || -> BoxError { format!("{self:?} cannot be sent as {ty}").into() };
        match *self {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i).map_err(|_| mismatch())?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i).map_err(|_| mismatch())?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                Type::NUMERIC => {
                    numeric::encode(i, out);
                    Ok(IsNull::No)
                }
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(mismatch()),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(mismatch()),
            },
            ValueRef::Text(t) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    t.to_sql(&Type::TEXT, out)
                }
                _ => Err(mismatch()),
            },
            ValueRef::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(mismatch()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric::decode(raw)?,
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            _ => Value::Text(
                String::from_sql(&Type::TEXT, raw)
                    .map_err(|e| -> BoxError { format!("column of type {ty}: {e}").into() })?,
            ),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary `NUMERIC`: base-10000 digits, most significant first. Only what the
/// store needs: integers out (a parameter divided by a real is `NUMERIC` to PostgreSQL), and
/// integers or reals back (`SUM` of integers is `NUMERIC`).
mod numeric {
    use super::{BoxError, Value};
    use bytes::{BufMut, BytesMut};

    const NEGATIVE: u16 = 0x4000;

    pub fn encode(i: i64, out: &mut BytesMut) {
        let mut digits = Vec::new();
        let mut rest = i.unsigned_abs();
        while rest > 0 {
            digits.push((rest % 10_000) as i16);
            rest /= 10_000;
        }
        digits.reverse();
        out.put_i16(digits.len() as i16);
        out.put_i16(digits.len() as i16 - 1);
        out.put_u16(if i < 0 { NEGATIVE } else { 0 });
        out.put_u16(0);
        for d in digits {
            out.put_i16(d);
        }
    }

    pub fn decode(raw: &[u8]) -> Result<Value, BoxError> {
        let word = |i: usize| -> Result<i16, BoxError> {
            raw.get(i * 2..i * 2 + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "short NUMERIC".into())
        };
        let (n, weight, sign, scale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
        if sign & 0xC000 == 0xC000 {
            return Err("NUMERIC NaN or infinity".into());
        }
        let digits = (0..n.max(0) as usize)
            .map(|k| word(4 + k))
            .collect::<Result<Vec<_>, _>>()?;
        let negative = sign == NEGATIVE;
        if scale == 0 {
            // An integer: every digit is at or left of the point (weight >= index).
            let mut value: i128 = 0;
            for (k, d) in digits.iter().enumerate() {
                let exp = u32::try_from(i32::from(weight) - k as i32).unwrap_or(0);
                value += i128::from(*d) * 10_000i128.pow(exp.min(9));
            }
            let value = if negative { -value } else { value };
            if let Ok(i) = i64::try_from(value) {
                return Ok(Value::Int(i));
            }
        }
        let mut value = 0f64;
        for (k, d) in digits.iter().enumerate() {
            value += f64::from(*d) * 10_000f64.powi(i32::from(weight) - k as i32);
        }
        Ok(Value::Real(if negative { -value } else { value }))
    }
}

/// Which engine a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A PostgreSQL connection with its prepared statements, and what it needs to come back
/// after the server restarted.
pub struct PgConn {
    url: String,
    /// `None` only while [`PgConn`] drops.
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
}

/// Closing the client blocks on its runtime too (a store dropped inside the daemon's).
impl Drop for PgConn {
    fn drop(&mut self) {
        let client = self.client.take();
        outside_async(|| drop(client));
    }
}

impl PgConn {
    pub fn connect(url: &str) -> Result<PgConn> {
        Ok(PgConn {
            url: url.to_string(),
            client: Some(connect(url)?),
            statements: HashMap::new(),
        })
    }

    /// A new connection when the old one was closed (the server restarted, the network
    /// dropped it): the next transaction runs on it instead of failing for ever.
    /// The open client (see above) and its statements.
    #[allow(clippy::type_complexity)]
    fn open(
        &mut self,
    ) -> Result<(
        &mut postgres::Client,
        &mut HashMap<String, postgres::Statement>,
    )> {
        let client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => {
                log::warn!("database connection closed; connecting again");
                self.statements.clear();
                connect(&self.url)?
            }
        };
        Ok((self.client.insert(client), &mut self.statements))
    }
}

/// Runs `f`, which may block on PostgreSQL's client, from wherever the store is called: on a
/// worker of a multi-threaded tokio runtime (the daemon's request handlers) as blocking work
/// (`block_in_place`: the client starts a runtime of its own, which tokio refuses inside its
/// workers); elsewhere (the group writer's thread, the CLI) as it is.
pub fn outside_async<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Connects with a bounded wait: a controller whose database is down says so instead of
/// hanging at start.
fn connect(url: &str) -> Result<postgres::Client> {
    let mut config: postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("pureboot-controller");
    // Its notices ("already exists, skipping") are not the operator's business.
    config.options("-c client_min_messages=warning");
    Ok(config.connect(postgres::NoTls)?)
}

/// One database connection.
pub enum Conn {
    Lite(rusqlite::Connection),
    /// Boxed: the client with its statement cache is several times SQLite's handle.
    Pg(Box<PgConn>),
}

impl Conn {
    pub fn engine(&self) -> Engine {
        match self {
            Conn::Lite(_) => Engine::Sqlite,
            Conn::Pg(_) => Engine::Postgres,
        }
    }

    /// A write transaction, holding the write lock from its first statement.
    pub fn begin_write(&mut self) -> Result<DbTx<'_>> {
        match self {
            Conn::Lite(c) => Ok(DbTx::Lite(
                c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            )),
            Conn::Pg(c) => {
                let (client, statements) = c.open()?;
                let mut tx = client.transaction()?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
                Ok(DbTx::Pg(RefCell::new(PgTx { tx, statements })))
            }
        }
    }

    /// A read transaction: one snapshot of the last commit. With a deadline, every statement
    /// in it stops once the deadline has passed ([`Error::is_cancelled`]).
    pub fn begin_read(&mut self, deadline: Option<Instant>) -> Result<DbTx<'_>> {
        match self {
            Conn::Lite(c) => {
                if let Some(d) = deadline {
                    c.progress_handler(DEADLINE_CHECK_STEPS, Some(move || Instant::now() >= d));
                }
                Ok(DbTx::Lite(c.transaction()?))
            }
            Conn::Pg(c) => {
                let (client, statements) = c.open()?;
                let mut tx = client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                if let Some(d) = deadline {
                    let ms = d
                        .saturating_duration_since(Instant::now())
                        .as_millis()
                        .max(1);
                    tx.batch_execute(&format!("SET LOCAL statement_timeout = {ms}"))?;
                }
                Ok(DbTx::Pg(RefCell::new(PgTx { tx, statements })))
            }
        }
    }
}

impl Conn {
    /// Takes off the deadline a [`Conn::begin_read`] set (PostgreSQL's ended with its
    /// transaction).
    pub fn clear_deadline(&mut self) {
        if let Conn::Lite(c) = self {
            c.progress_handler(0, None::<fn() -> bool>);
        }
    }
}

/// SQLite virtual machine steps between two looks at a read's deadline.
const DEADLINE_CHECK_STEPS: i32 = 1000;

pub struct PgTx<'c> {
    tx: postgres::Transaction<'c>,
    statements: &'c mut HashMap<String, postgres::Statement>,
}

impl PgTx<'_> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.tx.prepare(&postgres_sql(sql))?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// A transaction on either engine.
pub enum DbTx<'c> {
    Lite(rusqlite::Transaction<'c>),
    Pg(RefCell<PgTx<'c>>),
}

impl<'c> DbTx<'c> {
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_, 'c>> {
        Ok(match self {
            DbTx::Lite(tx) => Statement::Lite(tx.prepare_cached(sql)?),
            DbTx::Pg(tx) => {
                let st = tx.borrow_mut().statement(sql)?;
                Statement::Pg { tx, st }
            }
        })
    }

    /// The same as [`DbTx::prepare_cached`] (PostgreSQL's are cached per connection).
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_, 'c>> {
        self.prepare_cached(sql)
    }

    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Statements without parameters, `;`-separated (savepoints, the schema).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            DbTx::Lite(tx) => Ok(tx.execute_batch(sql)?),
            DbTx::Pg(tx) => Ok(tx.borrow_mut().tx.batch_execute(sql)?),
        }
    }

    pub fn commit(self) -> Result<()> {
        match self {
            DbTx::Lite(tx) => Ok(tx.commit()?),
            DbTx::Pg(tx) => Ok(tx.into_inner().tx.commit()?),
        }
    }
}

/// A prepared statement of a transaction.
pub enum Statement<'t, 'c> {
    Lite(rusqlite::CachedStatement<'t>),
    Pg {
        tx: &'t RefCell<PgTx<'c>>,
        st: postgres::Statement,
    },
}

/// The PostgreSQL parameters of `values`, as the client takes them.
fn pg_params<'v>(values: &'v [ValueRef<'v>]) -> Vec<&'v (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Statement<'_, '_> {
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        let values = params.values();
        match self {
            Statement::Lite(st) => Ok(st.execute(rusqlite::params_from_iter(values.iter()))?),
            Statement::Pg { tx, st } => {
                let n = tx.borrow_mut().tx.execute(&*st, &pg_params(&values))?;
                Ok(n as usize)
            }
        }
    }

    /// Every row, mapped by `f` (collected: no cursor outlives the call).
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let values = params.values();
        let mut out = Vec::new();
        match self {
            Statement::Lite(st) => {
                let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Lite(r)));
                }
            }
            Statement::Pg { tx, st } => {
                let rows = tx.borrow_mut().tx.query(&*st, &pg_params(&values))?;
                out.extend(rows.iter().map(|r| f(&Row::Pg(r))));
            }
        }
        Ok(out.into_iter())
    }

    /// The first row, mapped by `f`; [`Error::NoRows`] when there is none.
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = params.values();
        match self {
            Statement::Lite(st) => {
                let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Lite(r)),
                    None => Err(Error::NoRows),
                }
            }
            Statement::Pg { tx, st } => {
                let row = tx.borrow_mut().tx.query_opt(&*st, &pg_params(&values))?;
                match row {
                    Some(r) => f(&Row::Pg(&r)),
                    None => Err(Error::NoRows),
                }
            }
        }
    }
}

/// The store's SQL, as PostgreSQL takes it: `?N` placeholders become `$N` (a bare `?` the
/// next number), `AS INTEGER` becomes `AS BIGINT` (SQLite's integers are 64-bit), "now"
/// ([`super::NOW`]) is written inline. Quoted text is left as it is.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next_bare = 1;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next_bare.to_string();
                    next_bare += 1;
                }
                out.push('$');
                out.push_str(&digits);
            }
            (None, c) => out.push(c),
        }
    }
    out.replace(" AS INTEGER)", " AS BIGINT)")
        .replace(super::NOW, POSTGRES_NOW)
}

/// [`super::NOW`] as PostgreSQL writes it, inline: the schema's `strftime` gives the same
/// text, but as a function call planned at each use it cost ~94 µs a call in the storm
/// bench (most writes stamp a time).
const POSTGRES_NOW: &str =
    "to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        assert_eq!(
            postgres_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(postgres_sql("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(
            postgres_sql("SELECT CAST(x AS INTEGER) FROM t"),
            "SELECT CAST(x AS BIGINT) FROM t"
        );
        assert_eq!(
            postgres_sql(&format!("VALUES ({})", super::super::NOW)),
            format!("VALUES ({POSTGRES_NOW})")
        );
    }

    #[test]
    fn numerics_round_trip_integers() {
        for i in [
            0i64,
            1,
            -1,
            9_999,
            10_000,
            86_400,
            -123_456_789,
            i64::MAX / 2,
        ] {
            let mut out = BytesMut::new();
            numeric::encode(i, &mut out);
            assert_eq!(numeric::decode(&out).unwrap(), Value::Int(i), "{i}");
        }
    }

    #[test]
    fn columns_convert_as_sqlite_stores_them() {
        assert_eq!(bool::from_value(Value::Int(1)), Ok(true));
        assert_eq!(<Option<u64>>::from_value(Value::Null), Ok(None));
        assert!(u64::from_value(Value::Int(-1)).is_err());
        assert!(String::from_value(Value::Int(3)).is_err());
    }
}
