//! Embedded SQLite backend, the default: one database file in WAL mode holding a revision
//! log, with automatic compaction that keeps history, and the file, bounded.
//!
//! # Layout
//! Table `kv` has one row per write and its row id is the revision. A put row holds the
//! value; a delete row (a tombstone) has `deleted = 1`. Each row also names the row it
//! superseded (`prev_revision`), which gives watch events their previous value. So:
//! - the value of a key at revision `r` is its newest row with id `<= r`, unless that row
//!   is a tombstone;
//! - watch replay after `r` is the rows with id `> r`, in id order;
//! - table `meta` holds the revision counter (revisions never go back, even when the
//!   newest rows are compacted away) and the compacted revision, both persisted in the
//!   same transaction as the change they describe.
//!
//! # Compaction
//! Compacting at `c` deletes, for every key, all rows at or below `c` except the newest
//! one, and that one too when it is a tombstone. What stays is exactly what reads at `c`
//! or later and replays after `c` need (the previous value of every retained row is
//! retained). Automatic compaction (see [`Config::retain_revisions`] and
//! [`Config::retain_for`]) runs on the writer thread in short steps between write
//! batches. Freed pages are reused by new rows; when
//! many are free the file is shrunk with `incremental_vacuum`. The WAL is checkpointed
//! automatically and truncated to [`Config::wal_size_limit`] after each checkpoint.
//!
//! # Concurrency and durability
//! All writes go through one dedicated writer thread, which commits them in batches
//! (group commit: one `fsync` for all writes that queued up meanwhile), so revision order
//! is commit order. A write is acknowledged only after its batch committed with
//! `synchronous=FULL`, so it survives `kill -9` and power loss. Reads run on a small pool
//! of read connections through `spawn_blocking`; WAL lets them proceed during writes.
//! After a commit the writer publishes the events to live watchers under the same lock
//! that registers watchers, so replay (from the table) and live events meet without a
//! gap or duplicate. One process must own a database file at a time.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::fanout::{self, Hub, Page, ReplayFn};
use crate::{
    Error, Event, KeyValue, RangeOptions, RangeResult, Result, Revision, Store, WatchStream, effective_limit,
    prefix_end, range_start,
};

/// The schema this code writes; a file with another version is refused.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key_id ON kv (key, id);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

/// Upper bound for key ranges that have no prefix: 0xFF never occurs in UTF-8.
const ALL_KEYS_END: &[u8] = &[0xFF];

/// Events read per replay query of a watcher.
const REPLAY_PAGE: i64 = 1000;

/// How long automatic compaction rests after it failed.
const COMPACTION_BACKOFF: Duration = Duration::from_secs(10);

/// Tuning of a [`SqliteStore`]. `Config::default()` is what [`SqliteStore::open`] uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// Automatic compaction keeps at least this many of the newest revisions of history
    /// (watch replay and past reads reach back that far). Default: 10,000.
    ///
    /// With both this and [`Config::retain_for`] `None`, automatic compaction is off and
    /// history grows until [`Store::compact`] is called.
    pub retain_revisions: Option<i64>,
    /// Automatic compaction also keeps every revision committed within this long, so a
    /// watcher that reconnects within it can resume. History then grows with the write
    /// rate times this duration. Revisions from before the store was opened count as
    /// committed at the first write after opening. Default: `None` (no time bound).
    pub retain_for: Option<Duration>,
    /// Compaction proceeds in steps of at most this many revisions, each one short
    /// transaction, so writes wait at most one step. Automatic compaction starts when
    /// history exceeds `retain_revisions` by a step. Default: 1,000.
    pub compaction_step: i64,
    /// Events a watcher may have pending before its stream is ended with
    /// [`crate::WatchLagged`]. Default: 4,096.
    pub watch_buffer: usize,
    /// Most writes committed together in one transaction. Default: 256.
    pub max_batch: usize,
    /// Read connections; at most this many reads run at once (the others wait without
    /// blocking a thread). Default: 4.
    pub read_connections: usize,
    /// WAL pages after which SQLite checkpoints the WAL into the database. Default: 256
    /// (1 MiB with 4 KiB pages; SQLite's own default of 1,000 lets the WAL reach 4 MiB,
    /// and a short WAL also keeps reads fast).
    pub wal_autocheckpoint: u32,
    /// After a checkpoint the WAL file is truncated to at most this many bytes.
    /// Default: 1 MiB.
    pub wal_size_limit: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retain_revisions: Some(10_000),
            retain_for: None,
            compaction_step: 1_000,
            watch_buffer: 4_096,
            max_batch: 256,
            read_connections: 4,
            wal_autocheckpoint: 256,
            wal_size_limit: 1 << 20,
        }
    }
}

/// A [`Store`] in one SQLite file. See the module docs for the design.
///
/// Dropping the store stops the writer thread once queued writes are done; use
/// [`SqliteStore::close`] to wait for that (e.g. before reopening the file).
pub struct SqliteStore {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    readers: Arc<ReadPool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// State the writer thread publishes to everyone else.
struct Shared {
    hub: Mutex<Hub>,
    revision: AtomicI64,
    compacted: AtomicI64,
    path: PathBuf,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // Publishing to the hub has no intermediate states worth protecting.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Command {
    Write { op: WriteOp, reply: oneshot::Sender<Result<KeyValue>> },
    Compact { revision: Revision, reply: oneshot::Sender<Result<()>> },
}

enum WriteOp {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: Revision },
    Delete { key: String, expected: Option<Revision> },
}

impl WriteOp {
    fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// A failure that several callers share (a failed batch commit fails all its writes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SharedFailure(String);

fn sql_error(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::backend(context, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with [`Config::default`].
    ///
    /// Async because opening touches the disk (run through `spawn_blocking`); it also
    /// starts the writer thread. Must be called inside a tokio runtime.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Config::default()).await
    }

    /// Opens (creating if needed) the database at `path` with the given tuning.
    pub async fn open_with(path: &Path, config: Config) -> Result<Self> {
        let path = path.to_path_buf();
        let config = Config {
            compaction_step: config.compaction_step.max(1),
            max_batch: config.max_batch.max(1),
            ..config
        };
        let (conn, revision, compacted) = {
            let path = path.clone();
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_writer(&path, &config))
                .await
                .map_err(|e| Error::backend("opening the SQLite store", e))??
        };
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub::new(revision, config.watch_buffer)),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            path: path.clone(),
        });
        let (commands, rx) = mpsc::channel(config.max_batch * 4);
        let writer = Writer {
            conn,
            shared: shared.clone(),
            config: config.clone(),
            rx,
            compaction_paused_until: None,
            commit_times: VecDeque::new(),
            bucket_started: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("store-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::backend("starting the SQLite writer thread", e))?;
        Ok(SqliteStore {
            commands,
            shared,
            readers: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(config.read_connections.max(1))),
            }),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Stops the writer thread after the writes already queued and waits until it has
    /// closed the database. Watch streams end.
    pub async fn close(self) -> Result<()> {
        let handle = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(self.commands);
        self.readers.clear();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| Error::backend("waiting for the SQLite writer thread", e))?
                .map_err(|_| Error::backend("closing the SQLite store", "the writer thread had panicked"))?;
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Write { op, reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| writer_gone())
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.readers.clone().read(f).await
    }
}

fn writer_gone() -> Error {
    Error::backend("sending a command to the SQLite writer thread", "the writer thread has stopped")
}

fn open_writer(path: &Path, config: &Config) -> Result<(Connection, Revision, Revision)> {
    let at = path.display();
    let conn = Connection::open(path).map_err(sql_error(format!("opening {at}")))?;
    let setup = || -> rusqlite::Result<String> {
        conn.busy_timeout(Duration::from_secs(5))?;
        // Only takes effect on a new file (before the first table exists): lets
        // compaction return freed pages to the file system.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", config.wal_autocheckpoint)?;
        conn.pragma_update(None, "journal_size_limit", config.wal_size_limit)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?1)", [SCHEMA_VERSION])?;
        Ok(mode)
    };
    let mode = setup().map_err(sql_error(format!("preparing {at}")))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::backend(
            format!("preparing {at}"),
            format!("SQLite refused WAL mode (journal mode is {mode})"),
        ));
    }
    let schema = meta(&conn, "schema").map_err(sql_error(format!("reading {at}")))?;
    if schema != SCHEMA_VERSION {
        return Err(Error::backend(
            format!("opening {at}"),
            format!("the file has schema version {schema}, this build reads {SCHEMA_VERSION}"),
        ));
    }
    let read = || -> rusqlite::Result<(Revision, Revision)> {
        let counter = meta(&conn, "revision")?;
        let newest: Option<i64> = conn.query_row("SELECT MAX(id) FROM kv", [], |r| r.get(0))?;
        Ok((counter.max(newest.unwrap_or(0)), meta(&conn, "compacted")?))
    };
    let (revision, compacted) = read().map_err(sql_error(format!("reading {at}")))?;
    Ok((conn, revision, compacted))
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?.query_row([name], |r| r.get(0))
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?.execute(params![name, value])?;
    Ok(())
}

/// The newest row of a key.
struct Latest {
    kv: KeyValue,
    deleted: bool,
}

fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    conn.prepare_cached(
        "SELECT id, value, create_revision, deleted FROM kv WHERE key = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row([key.as_bytes()], |r| {
        Ok(Latest {
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                create_revision: r.get(2)?,
                mod_revision: r.get(0)?,
            },
            deleted: r.get(3)?,
        })
    })
    .optional()
}

fn insert(
    conn: &Connection,
    id: Revision,
    key: &str,
    value: &[u8],
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO kv (id, key, value, create_revision, prev_revision, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, key.as_bytes(), value, create_revision, prev_revision, deleted])?;
    Ok(())
}

/// Applies one write inside the batch transaction. The outer error is SQLite failing (the
/// batch is rolled back); the inner one is the write's own answer (nothing written).
fn apply(
    conn: &Connection,
    revision: &mut Revision,
    op: &WriteOp,
) -> rusqlite::Result<Result<(KeyValue, Event)>> {
    let key = op.key();
    let current = latest(conn, key)?.filter(|l| !l.deleted).map(|l| l.kv);
    let rev = *revision + 1;
    let answer = match (op, current) {
        (WriteOp::Create { .. }, Some(_)) => Err(Error::AlreadyExists { key: key.into() }),
        (WriteOp::Create { value, .. }, None) => {
            insert(conn, rev, key, value, rev, 0, false)?;
            let kv =
                KeyValue { key: key.into(), value: value.clone(), create_revision: rev, mod_revision: rev };
            Ok((kv.clone(), Event::Put { kv, prev: None }))
        }
        (WriteOp::Update { .. } | WriteOp::Delete { .. }, None) => Err(Error::NotFound { key: key.into() }),
        (WriteOp::Update { expected, .. }, Some(cur)) if cur.mod_revision != *expected => {
            Err(Error::Conflict { key: key.into(), current: Box::new(cur) })
        }
        (WriteOp::Delete { expected: Some(expected), .. }, Some(cur)) if cur.mod_revision != *expected => {
            Err(Error::Conflict { key: key.into(), current: Box::new(cur) })
        }
        (WriteOp::Update { value, .. }, Some(cur)) => {
            insert(conn, rev, key, value, cur.create_revision, cur.mod_revision, false)?;
            let kv = KeyValue {
                key: key.into(),
                value: value.clone(),
                create_revision: cur.create_revision,
                mod_revision: rev,
            };
            Ok((kv.clone(), Event::Put { kv, prev: Some(cur) }))
        }
        (WriteOp::Delete { .. }, Some(cur)) => {
            insert(conn, rev, key, &[], cur.create_revision, cur.mod_revision, true)?;
            let event = Event::Delete { prev: cur.clone(), revision: rev };
            Ok((cur, event))
        }
    };
    if answer.is_ok() {
        *revision = rev;
    }
    Ok(answer)
}

/// The writer thread: owns the only writing connection.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    config: Config,
    rx: mpsc::Receiver<Command>,
    compaction_paused_until: Option<Instant>,
    /// Coarse (commit time, revision) samples, oldest first, for [`Config::retain_for`].
    commit_times: VecDeque<(Instant, Revision)>,
    bucket_started: Instant,
}

impl Writer {
    fn run(mut self) {
        loop {
            let due = self.compaction_due();
            let first = if due {
                match self.rx.try_recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match self.rx.blocking_recv() {
                    Some(command) => Some(command),
                    None => break,
                }
            };
            if let Some(first) = first {
                self.handle(first);
            }
            if self.compaction_due() {
                self.auto_compact();
            }
        }
        tracing::debug!(path = %self.shared.path.display(), "SQLite writer stopped");
    }

    /// Handles `first` and whatever else is queued, committing runs of writes together.
    fn handle(&mut self, first: Command) {
        let mut writes = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write { op, reply } => writes.push((op, reply)),
                Command::Compact { revision, reply } => {
                    self.commit_writes(std::mem::take(&mut writes));
                    let _ = reply.send(self.compact(revision));
                }
            }
            if writes.len() < self.config.max_batch {
                next = self.rx.try_recv().ok();
            }
        }
        self.commit_writes(writes);
    }

    fn commit_writes(&mut self, writes: Vec<(WriteOp, oneshot::Sender<Result<KeyValue>>)>) {
        if writes.is_empty() {
            return;
        }
        let mut revision = 0;
        let outcome = (|| -> rusqlite::Result<Vec<Result<(KeyValue, Event)>>> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let start = meta(&tx, "revision")?.max(self.shared.revision.load(Ordering::SeqCst));
            revision = start;
            let mut answers = Vec::with_capacity(writes.len());
            for (op, _) in &writes {
                answers.push(apply(&tx, &mut revision, op)?);
            }
            if revision != start {
                set_meta(&tx, "revision", revision)?;
            }
            tx.commit()?;
            Ok(answers)
        })();
        match outcome {
            Ok(answers) => {
                let events: Vec<Event> =
                    answers.iter().filter_map(|a| a.as_ref().ok().map(|(_, e)| e.clone())).collect();
                if !events.is_empty() {
                    let mut hub = self.shared.hub();
                    self.shared.revision.store(revision, Ordering::SeqCst);
                    hub.publish(&events, revision);
                    drop(hub);
                    self.record_commit(revision);
                }
                for ((_, reply), answer) in writes.into_iter().zip(answers) {
                    let _ = reply.send(answer.map(|(kv, _)| kv));
                }
            }
            Err(e) => {
                let failure = e.to_string();
                tracing::error!(path = %self.shared.path.display(), error = %failure, "SQLite write batch failed");
                for (op, reply) in writes {
                    let _ = reply.send(Err(Error::backend(
                        format!("writing key {:?} to {}", op.key(), self.shared.path.display()),
                        SharedFailure(failure.clone()),
                    )));
                }
            }
        }
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        let current = self.shared.revision.load(Ordering::SeqCst);
        if revision > current {
            return Err(Error::FutureRevision { requested: revision, current });
        }
        while self.shared.compacted.load(Ordering::SeqCst) < revision {
            self.compact_step(revision).map_err(sql_error(format!(
                "compacting {} at revision {revision}",
                self.shared.path.display()
            )))?;
        }
        Ok(())
    }

    /// Remembers when revision `revision` was committed, coarsely, for
    /// [`Config::retain_for`].
    fn record_commit(&mut self, revision: Revision) {
        let Some(retain_for) = self.config.retain_for else {
            return;
        };
        let now = Instant::now();
        let granularity = (retain_for / 20).clamp(Duration::from_millis(10), Duration::from_secs(1));
        match self.commit_times.back_mut() {
            Some(last) if now.duration_since(self.bucket_started) < granularity => {
                *last = (now, revision);
            }
            _ => {
                self.commit_times.push_back((now, revision));
                self.bucket_started = now;
            }
        }
    }

    /// The newest revision committed at least [`Config::retain_for`] ago (as far as
    /// this process saw), or `Revision::MAX` without that bound.
    fn time_floor(&mut self) -> Revision {
        let Some(retain_for) = self.config.retain_for else {
            return Revision::MAX;
        };
        let Some(cutoff) = Instant::now().checked_sub(retain_for) else {
            return 0;
        };
        while self.commit_times.get(1).is_some_and(|(at, _)| *at <= cutoff) {
            self.commit_times.pop_front();
        }
        match self.commit_times.front() {
            Some((at, revision)) if *at <= cutoff => *revision,
            _ => 0,
        }
    }

    /// Where automatic compaction is heading, if it is on.
    fn auto_target(&mut self) -> Option<Revision> {
        if self.config.retain_revisions.is_none() && self.config.retain_for.is_none() {
            return None;
        }
        let current = self.shared.revision.load(Ordering::SeqCst);
        let by_count = self.config.retain_revisions.map_or(current, |r| current - r.max(0));
        Some(by_count.min(self.time_floor()))
    }

    fn compaction_due(&mut self) -> bool {
        if self.compaction_paused_until.is_some_and(|until| Instant::now() < until) {
            return false;
        }
        let Some(target) = self.auto_target() else {
            return false;
        };
        target - self.shared.compacted.load(Ordering::SeqCst) >= self.config.compaction_step
    }

    fn auto_compact(&mut self) {
        let Some(target) = self.auto_target() else {
            return;
        };
        if let Err(e) = self.compact_step(target) {
            tracing::warn!(
                path = %self.shared.path.display(),
                error = %e,
                "automatic compaction failed; retrying in {COMPACTION_BACKOFF:?}"
            );
            self.compaction_paused_until = Some(Instant::now() + COMPACTION_BACKOFF);
        }
    }

    /// Compacts up to one step towards `target` in its own transaction.
    fn compact_step(&mut self, target: Revision) -> rusqlite::Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let from = meta(&tx, "compacted")?;
        let to = target.min(from.saturating_add(self.config.compaction_step));
        if to <= from {
            return Ok(());
        }
        // The newest row at or below `to` of every key written in (from, to]. Keys not
        // written there were already reduced to one row by earlier steps.
        let mut newest: HashMap<Vec<u8>, (Revision, bool)> = HashMap::new();
        {
            let mut stmt =
                tx.prepare_cached("SELECT key, id, deleted FROM kv WHERE id > ?1 AND id <= ?2 ORDER BY id")?;
            let mut rows = stmt.query(params![from, to])?;
            while let Some(row) = rows.next()? {
                newest.insert(row.get(0)?, (row.get(1)?, row.get(2)?));
            }
        }
        {
            let mut older = tx.prepare_cached("DELETE FROM kv WHERE key = ?1 AND id < ?2")?;
            let mut tombstone = tx.prepare_cached("DELETE FROM kv WHERE id = ?1")?;
            for (key, (id, deleted)) in &newest {
                older.execute(params![key, id])?;
                if *deleted {
                    tombstone.execute([id])?;
                }
            }
        }
        set_meta(&tx, "compacted", to)?;
        tx.commit()?;
        self.shared.compacted.store(to, Ordering::SeqCst);
        self.shrink_if_mostly_free();
        Ok(())
    }

    /// Returns free pages to the file system when more than a quarter of the file is free
    /// (keeping some for reuse). A failure only costs disk space, so it is logged.
    fn shrink_if_mostly_free(&self) {
        let result = (|| -> rusqlite::Result<()> {
            let pages: i64 = self.conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
            let free: i64 = self.conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
            if free > 256 && free * 4 > pages {
                let release = free - pages / 10;
                // The pragma frees one page per step: run it to the end.
                let mut stmt = self.conn.prepare(&format!("PRAGMA incremental_vacuum({release})"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(path = %self.shared.path.display(), error = %e, "shrinking the SQLite file failed");
        }
    }
}

/// Read connections, opened on demand and kept for reuse.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: bounds open connections and blocking threads in use.
    permits: Arc<tokio::sync::Semaphore>,
}

impl ReadPool {
    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn clear(&self) {
        self.idle().clear();
    }

    fn take(&self) -> Result<Connection> {
        if let Some(conn) = self.idle().pop() {
            return Ok(conn);
        }
        let conn = Connection::open(&self.path)
            .map_err(sql_error(format!("opening {} for reading", self.path.display())))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.pragma_update(None, "query_only", true)?;
            Ok(())
        };
        setup().map_err(sql_error(format!("preparing {} for reading", self.path.display())))?;
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle();
        idle.push(conn);
    }

    /// Runs `f` on a read connection on a blocking thread.
    async fn read<T, F>(self: Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        // The permit travels with the blocking task: a cancelled caller does not free it
        // while the connection is still in use.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::backend("reading from the SQLite store", e))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = self.take()?;
            let result = f(&mut conn);
            self.put(conn);
            result
        })
        .await
        .map_err(|e| Error::backend("reading from the SQLite store", e))?
    }
}

fn key_string(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::backend("decoding a key read from SQLite", e))
}

fn range_in(conn: &mut Connection, prefix: &str, opts: &RangeOptions) -> Result<RangeResult> {
    let fail = || sql_error(format!("reading keys under {prefix:?}"));
    // One read transaction: the revision reported and the rows come from one snapshot.
    let tx = conn.transaction().map_err(fail())?;
    let current = meta(&tx, "revision").map_err(fail())?;
    let compacted = meta(&tx, "compacted").map_err(fail())?;
    let at = opts.revision.unwrap_or(current);
    if at < compacted {
        return Err(Error::Compacted { requested: at, compacted });
    }
    if at > current {
        return Err(Error::FutureRevision { requested: at, current });
    }
    let start = range_start(prefix, opts.start_after.as_deref());
    let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| ALL_KEYS_END.to_vec());
    let limit = effective_limit(opts.limit);
    let sql_limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX - 1) + 1);
    let rows: Vec<(Revision, Vec<u8>, Vec<u8>, Revision)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT k.id, k.key, k.value, k.create_revision FROM kv AS k
                 WHERE k.key >= ?1 AND k.key < ?2 AND k.deleted = 0
                   AND k.id = (SELECT MAX(m.id) FROM kv AS m WHERE m.key = k.key AND m.id <= ?3)
                 ORDER BY k.key LIMIT ?4",
            )
            .map_err(fail())?;
        let rows = stmt
            .query_map(params![start, end, at, sql_limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(fail())?;
        rows.collect::<rusqlite::Result<_>>().map_err(fail())?
    };
    let mut kvs = Vec::with_capacity(rows.len());
    for (id, key, value, create_revision) in rows {
        kvs.push(KeyValue {
            key: key_string(key)?,
            value: Bytes::from(value),
            create_revision,
            mod_revision: id,
        });
    }
    let more = limit.is_some_and(|l| kvs.len() > l);
    if let Some(l) = limit {
        kvs.truncate(l);
    }
    Ok(RangeResult { kvs, more, revision: at })
}

type EventRow =
    (Revision, Vec<u8>, Vec<u8>, Revision, bool, Option<Revision>, Option<Vec<u8>>, Option<Revision>);

fn replay_in(conn: &mut Connection, prefix: &str, after: Revision, up_to: Revision) -> Result<Page> {
    let fail = || sql_error(format!("replaying history under {prefix:?} after revision {after}"));
    let tx = conn.transaction().map_err(fail())?;
    let compacted = meta(&tx, "compacted").map_err(fail())?;
    if after < compacted {
        return Err(Error::Compacted { requested: after, compacted });
    }
    let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| ALL_KEYS_END.to_vec());
    let rows: Vec<EventRow> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT k.id, k.key, k.value, k.create_revision, k.deleted,
                        p.id, p.value, p.create_revision
                 FROM kv AS k LEFT JOIN kv AS p ON p.id = k.prev_revision
                 WHERE k.id > ?1 AND k.id <= ?2 AND k.key >= ?3 AND k.key < ?4
                 ORDER BY k.id LIMIT ?5",
            )
            .map_err(fail())?;
        let rows = stmt
            .query_map(params![after, up_to, prefix.as_bytes(), end, REPLAY_PAGE], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .map_err(fail())?;
        rows.collect::<rusqlite::Result<_>>().map_err(fail())?
    };
    let full_page = rows.len() as i64 == REPLAY_PAGE;
    let mut events = Vec::with_capacity(rows.len());
    for (id, key, value, create_revision, deleted, prev_id, prev_value, prev_create) in rows {
        let key = key_string(key)?;
        let prev = match (prev_id, prev_value, prev_create) {
            (Some(mod_revision), Some(value), Some(create_revision)) => {
                Some(KeyValue { key: key.clone(), value: Bytes::from(value), create_revision, mod_revision })
            }
            _ => None,
        };
        events.push(if deleted {
            let prev = prev.ok_or_else(|| {
                Error::backend(
                    format!("replaying the deletion of {key:?} at revision {id}"),
                    "the value before the deletion is missing from the history",
                )
            })?;
            Event::Delete { prev, revision: id }
        } else {
            Event::Put {
                kv: KeyValue { key, value: Bytes::from(value), create_revision, mod_revision: id },
                prev,
            }
        });
    }
    let read_up_to = match events.last() {
        Some(last) if full_page => last.revision(),
        _ => up_to,
    };
    Ok(Page { events, read_up_to })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |conn| {
            let found = latest(conn, &key).map_err(sql_error(format!("reading key {key:?}")))?;
            Ok(found.filter(|l| !l.deleted).map(|l| l.kv))
        })
        .await
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let prefix = prefix.to_owned();
        self.read(move |conn| range_in(conn, &prefix, &opts)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(WriteOp::Create { key: key.into(), value }).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.write(WriteOp::Update { key: key.into(), value, expected }).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteOp::Delete { key: key.into(), expected }).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (up_to, live) = {
            let mut hub = self.shared.hub();
            let compacted = self.shared.compacted.load(Ordering::SeqCst);
            if after < compacted {
                return Err(Error::Compacted { requested: after, compacted });
            }
            hub.subscribe(prefix)
        };
        let readers = self.readers.clone();
        let prefix: Arc<str> = prefix.into();
        let replay: ReplayFn = Box::new(move |after, up_to| {
            let readers = readers.clone();
            let prefix = prefix.clone();
            Box::pin(async move { readers.read(move |conn| replay_in(conn, &prefix, after, up_to)).await })
        });
        Ok(fanout::stream(replay, after, up_to, live))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Compact { revision, reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }
}
