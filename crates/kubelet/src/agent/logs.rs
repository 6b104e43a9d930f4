//! Container logs as `kubectl logs` reads them: the CRI log files the runtime writes
//! (`<logs-root>/<ns>_<pod>_<uid>/<container>/<restart>.log`, one line per write:
//! `<RFC 3339 time> <stream> <P|F>[:tags] <text>`), turned back into the container's
//! output with the options of `PodLogOptions`: `tailLines`, `limitBytes`,
//! `timestamps`, `sinceSeconds`/`sinceTime`, `previous` and `follow`.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: Timestamp,
    /// The time as the runtime wrote it (what `timestamps=true` prints).
    pub time_text: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Whether more of the same line follows in the next record (`P`).
    pub partial: bool,
    pub text: String,
}

/// Parses one line of a CRI log file (without its newline); `None` if malformed.
pub fn parse_line(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let time_text = parts.next()?;
    let stream = parts.next()?;
    let tags = parts.next()?;
    let text = parts.next().unwrap_or("");
    let time: Timestamp = time_text.parse().ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let partial = match tags.split(':').next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(Record {
        time,
        time_text: time_text.to_owned(),
        stream: stream.to_owned(),
        partial,
        text: text.to_owned(),
    })
}

/// What the client asked for (`PodLogOptions`, as the agent receives it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
}

impl Options {
    /// Reads the query string of a `containerLogs` request; a malformed number is an
    /// error naming the parameter.
    pub fn from_query(query: &str, now: Timestamp) -> Result<Self, String> {
        let mut o = Options::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let v = percent_decode(v);
            let flag = || v.is_empty() || v == "true" || v == "1";
            let number = |name: &str| -> Result<u64, String> {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(|n| n as u64)
                    .ok_or_else(|| format!("{name}: invalid value {v:?}: must be a non-negative integer"))
            };
            match k {
                "follow" => o.follow = flag(),
                "previous" => o.previous = flag(),
                "timestamps" => o.timestamps = flag(),
                "tailLines" => o.tail_lines = Some(number("tailLines")?),
                "limitBytes" => o.limit_bytes = Some(number("limitBytes")?),
                "sinceSeconds" => {
                    let secs = number("sinceSeconds")?;
                    o.since = Some(now - jiff::SignedDuration::from_secs(secs as i64));
                }
                "sinceTime" => {
                    o.since = Some(
                        v.parse().map_err(|_| format!("sinceTime: invalid value {v:?}: want RFC 3339"))?,
                    )
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Decodes a query value (`%XX` and `+`).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The log files of one container, oldest first: `<n>.log` by restart count `n`.
pub fn container_log_files(pod_log_dir: &Path, container: &str) -> Vec<PathBuf> {
    let dir = pod_log_dir.join(container);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_suffix(".log")?.parse::<u64>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Turns records into output lines: joins partial records, applies `since` and
/// `timestamps`. Returns the finished lines; an unfinished partial line stays in `pending`.
fn render(
    records: impl IntoIterator<Item = Record>,
    opts: &Options,
    pending: &mut Option<(Record, String)>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for r in records {
        let (first, mut text) = pending.take().unwrap_or_else(|| (r.clone(), String::new()));
        text.push_str(&r.text);
        if r.partial {
            *pending = Some((first, text));
            continue;
        }
        if opts.since.is_some_and(|since| first.time < since) {
            continue;
        }
        let line =
            if opts.timestamps { format!("{} {text}\n", first.time_text) } else { format!("{text}\n") };
        lines.push(line);
    }
    lines
}

/// Sends `lines` to `out`, honouring `limitBytes` (counted in `sent`). Returns false
/// when the output is finished (limit reached or the client went away).
async fn emit(lines: Vec<String>, opts: &Options, sent: &mut u64, out: &mpsc::Sender<bytes::Bytes>) -> bool {
    for line in lines {
        let mut bytes = bytes::Bytes::from(line);
        if let Some(limit) = opts.limit_bytes {
            let left = limit.saturating_sub(*sent);
            if left == 0 {
                return false;
            }
            if (bytes.len() as u64) > left {
                bytes.truncate(left as usize);
            }
        }
        *sent += bytes.len() as u64;
        if out.send(bytes).await.is_err() {
            return false;
        }
    }
    opts.limit_bytes.is_none_or(|l| *sent < l)
}

/// Streams the log file `path` into `out` as the options say. With `follow`, keeps
/// reading what the container writes until `done()` says the container will write no
/// more (it exited, or a newer log file replaced this one) and the file is drained.
pub async fn stream<F>(
    path: PathBuf,
    opts: Options,
    out: mpsc::Sender<bytes::Bytes>,
    mut done: F,
) -> std::io::Result<()>
where
    F: FnMut() -> bool + Send,
{
    let file = tokio::fs::File::open(&path).await?;
    let mut reader = BufReader::new(file);
    let mut pending = None;
    let mut sent = 0u64;
    // The existing content: all of it, or its last `tailLines` lines.
    let mut existing = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        if !line.ends_with('\n') {
            // A record being written; read it again when it is complete.
            let back = line.len() as i64;
            reader.seek(SeekFrom::Current(-back)).await?;
            break;
        }
        if let Some(r) = parse_line(line.trim_end_matches('\n')) {
            existing.push(r);
        }
    }
    let mut lines = render(existing, &opts, &mut pending);
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n as usize);
        lines.drain(..skip);
    }
    if !emit(lines, &opts, &mut sent, &out).await || !opts.follow {
        return Ok(());
    }
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await?;
        if n > 0 && line.ends_with('\n') {
            if let Some(r) = parse_line(line.trim_end_matches('\n')) {
                let lines = render([r], &opts, &mut pending);
                if !emit(lines, &opts, &mut sent, &out).await {
                    return Ok(());
                }
            }
            continue;
        }
        if n > 0 {
            let back = n as i64;
            reader.seek(SeekFrom::Current(-back)).await?;
        }
        if out.is_closed() {
            return Ok(());
        }
        if done() {
            // One more read: what was written just before the container stopped.
            line.clear();
            let mut rest = Vec::new();
            while reader.read_line(&mut line).await? > 0 {
                if let Some(r) = parse_line(line.trim_end_matches('\n')) {
                    rest.push(r);
                }
                line.clear();
            }
            let lines = render(rest, &opts, &mut pending);
            emit(lines, &opts, &mut sent, &out).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_parse() {
        let r = parse_line("2026-11-25T10:00:00.123456789Z stdout F hello world").unwrap();
        assert_eq!((r.stream.as_str(), r.partial, r.text.as_str()), ("stdout", false, "hello world"));
        assert_eq!(r.time_text, "2026-11-25T10:00:00.123456789Z");
        let r = parse_line("2026-11-25T10:00:00Z stderr P:x part").unwrap();
        assert!(r.partial);
        assert_eq!(parse_line("2026-11-25T10:00:00Z stdout F ").unwrap().text, "");
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("2026-11-25T10:00:00Z other F x").is_none());
    }

    #[test]
    fn options_come_from_the_query() {
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let o = Options::from_query("follow=true&tailLines=5&timestamps=true&sinceSeconds=60", now).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.since, Some("2026-11-25T09:59:00Z".parse().unwrap()));
        let o = Options::from_query("sinceTime=2026-11-25T09%3A00%3A00Z&limitBytes=10", now).unwrap();
        assert_eq!(o.since, Some("2026-11-25T09:00:00Z".parse().unwrap()));
        assert_eq!(o.limit_bytes, Some(10));
        let e = Options::from_query("tailLines=-1", now).unwrap_err();
        assert!(e.starts_with("tailLines:"), "{e}");
    }

    fn write_log(dir: &Path, container: &str, n: u32, lines: &[&str]) -> PathBuf {
        let d = dir.join(container);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("{n}.log"));
        let mut body = lines.join("\n");
        body.push('\n');
        std::fs::write(&p, body).unwrap();
        p
    }

    async fn collect(path: PathBuf, opts: Options) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(stream(path, opts, tx, || true));
        let mut out = String::new();
        while let Some(b) = rx.recv().await {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        task.await.unwrap().unwrap();
        out
    }

    const LINES: &[&str] = &[
        "2026-11-25T10:00:00Z stdout F one",
        "2026-11-25T10:00:01Z stderr P tw",
        "2026-11-25T10:00:01.5Z stderr F o",
        "2026-11-25T10:00:02Z stdout F three",
    ];

    #[tokio::test]
    async fn logs_join_partial_lines_and_honour_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_log(dir.path(), "c", 0, LINES);
        assert_eq!(collect(p.clone(), Options::default()).await, "one\ntwo\nthree\n");
        let tail = Options { tail_lines: Some(2), ..Default::default() };
        assert_eq!(collect(p.clone(), tail).await, "two\nthree\n");
        let ts = Options { timestamps: true, tail_lines: Some(1), ..Default::default() };
        assert_eq!(collect(p.clone(), ts).await, "2026-11-25T10:00:02Z three\n");
        let since = Options { since: Some("2026-11-25T10:00:01Z".parse().unwrap()), ..Default::default() };
        assert_eq!(collect(p.clone(), since).await, "two\nthree\n");
        let limit = Options { limit_bytes: Some(6), ..Default::default() };
        assert_eq!(collect(p.clone(), limit).await, "one\ntw");
        assert_eq!(collect(p, Options { tail_lines: Some(0), ..Default::default() }).await, "");
    }

    #[tokio::test]
    async fn following_streams_new_lines_until_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_log(dir.path(), "c", 0, &LINES[..1]);
        let (tx, mut rx) = mpsc::channel(16);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let opts = Options { follow: true, ..Default::default() };
        let task =
            tokio::spawn(stream(p.clone(), opts, tx, move || flag.load(std::sync::atomic::Ordering::SeqCst)));
        assert_eq!(rx.recv().await.unwrap(), "one\n");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"2026-11-25T10:00:05Z stdout F later\n").unwrap();
        assert_eq!(rx.recv().await.unwrap(), "later\n");
        std::io::Write::write_all(&mut f, b"2026-11-25T10:00:06Z stdout F last\n").unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(rx.recv().await.unwrap(), "last\n");
        assert!(rx.recv().await.is_none(), "the stream ends once the container stopped");
        task.await.unwrap().unwrap();
    }

    #[test]
    fn log_files_are_ordered_by_restart_count() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), "c", 10, LINES);
        write_log(dir.path(), "c", 2, LINES);
        let files = container_log_files(dir.path(), "c");
        let names: Vec<_> =
            files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["2.log", "10.log"]);
        assert!(container_log_files(dir.path(), "other").is_empty());
    }
}
