//! Helper of the SQLite durability test: creates keys `/crash/000000`, `/crash/000001`, ...
//! in the database given as the first argument, with several writers at once, and prints
//! `acked KEY REVISION` on stdout after each write the store acknowledged. The test kills
//! it with SIGKILL mid-way and then checks that every acknowledged key survived.
//!
//! Usage: `store-crash-writer DB_PATH COUNT`

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use store::Store;
use store::sqlite::SqliteStore;

/// Concurrent writers, so that acknowledged writes come from group commits too.
const WRITERS: usize = 8;

/// The value the test expects under `key`.
fn value_of(key: &str) -> Bytes {
    Bytes::from(format!("value of {key}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), Some(count)) = (args.next(), args.next()) else {
        return Err("usage: store-crash-writer DB_PATH COUNT".into());
    };
    let path = PathBuf::from(path);
    let count: usize =
        count.to_str().ok_or("COUNT is not UTF-8")?.parse().map_err(|e| format!("COUNT: {e}"))?;
    let store = Arc::new(SqliteStore::open(&path).await?);
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (writer..count).step_by(WRITERS) {
                let key = format!("/crash/{i:06}");
                let kv = store.create(&key, value_of(&key)).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "acked {key} {}", kv.mod_revision)?;
                out.flush()?;
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
