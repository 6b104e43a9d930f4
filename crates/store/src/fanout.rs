//! Watch plumbing shared by the in-process backends: a hub that hands committed events to
//! live watchers through bounded buffers, and the stream that first replays history and
//! then switches to the live feed without a gap or a duplicate.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{Error, Event, Result, Revision, WatchLagged, WatchStream};

/// Live watchers and the revision up to which events have been published to them.
///
/// Backends keep the hub behind the same lock that publishes a commit, so a watcher
/// registered at [`Hub::revision`] `R` receives exactly the events above `R`, and all
/// events at or below `R` are already readable from the backend's history.
pub(crate) struct Hub {
    revision: Revision,
    buffer: usize,
    watchers: Vec<Watcher>,
}

struct Watcher {
    prefix: String,
    tx: mpsc::Sender<Result<Event>>,
}

impl Hub {
    /// A hub whose history ends at `revision`; each watcher buffers up to `buffer` events.
    pub(crate) fn new(revision: Revision, buffer: usize) -> Self {
        Hub { revision, buffer: buffer.max(1), watchers: Vec::new() }
    }

    /// Registers a live watcher for keys under `prefix`. It receives every event published
    /// after this call, i.e. with a revision above the returned one.
    pub(crate) fn subscribe(&mut self, prefix: &str) -> (Revision, mpsc::Receiver<Result<Event>>) {
        // One slot more than the buffer: the last slot carries the lag error.
        let (tx, rx) = mpsc::channel(self.buffer + 1);
        self.watchers.push(Watcher { prefix: prefix.to_owned(), tx });
        (self.revision, rx)
    }

    /// Hands committed events (ascending revisions) to the watchers and advances the
    /// published revision to `revision` (at least the last event's). Never blocks: a
    /// watcher whose buffer is full gets a [`WatchLagged`] error and is dropped.
    pub(crate) fn publish(&mut self, events: &[Event], revision: Revision) {
        let buffer = self.buffer;
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            for event in events.iter().filter(|e| e.key().starts_with(&w.prefix)) {
                if w.tx.capacity() <= 1 {
                    let lagged =
                        WatchLagged { prefix: w.prefix.clone(), buffer, resume_after: event.revision() - 1 };
                    let err = Error::backend(format!("watch on prefix {:?} ended", w.prefix), lagged);
                    // Capacity was checked just above and only the hub sends, under its
                    // lock, so this cannot fail for want of room.
                    let _ = w.tx.try_send(Err(err));
                    return false;
                }
                if w.tx.try_send(Ok(event.clone())).is_err() {
                    return false;
                }
            }
            true
        });
        self.revision = self.revision.max(revision);
    }

    /// How many watchers are registered (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.watchers.len()
    }
}

/// One page of history for a replaying watcher.
pub(crate) struct Page {
    /// Events of the watched prefix in ascending revision order.
    pub(crate) events: Vec<Event>,
    /// The revision up to which history has been read; the next page starts after it.
    pub(crate) read_up_to: Revision,
}

/// Reads history of one prefix: the events with revision in `(after, up_to]`, possibly
/// only the first part of them. Fails with [`Error::Compacted`] when part of that range
/// was compacted away.
pub(crate) type ReplayFn =
    Box<dyn FnMut(Revision, Revision) -> Pin<Box<dyn Future<Output = Result<Page>> + Send>> + Send>;

struct State {
    replay: Option<ReplayFn>,
    cursor: Revision,
    up_to: Revision,
    page: VecDeque<Event>,
    live: mpsc::Receiver<Result<Event>>,
    done: bool,
}

/// A watch stream that replays `(after, up_to]` with `replay`, then yields the live events
/// (all above `up_to`) from `live`. Ends after its first error.
pub(crate) fn stream(
    replay: ReplayFn,
    after: Revision,
    up_to: Revision,
    live: mpsc::Receiver<Result<Event>>,
) -> WatchStream {
    let state = State {
        replay: (after < up_to).then_some(replay),
        cursor: after,
        up_to,
        page: VecDeque::new(),
        live,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if let Some(event) = st.page.pop_front() {
                st.cursor = st.cursor.max(event.revision());
                return Some((Ok(event), st));
            }
            if let Some(replay) = st.replay.as_mut() {
                if st.cursor < st.up_to {
                    match replay(st.cursor, st.up_to).await {
                        Ok(page) => {
                            if page.read_up_to <= st.cursor && page.events.is_empty() {
                                // Looping on would spin forever; skipping would lose events.
                                st.done = true;
                                let err = Error::backend(
                                    format!("replaying history after revision {}", st.cursor),
                                    "the history reader made no progress",
                                );
                                return Some((Err(err), st));
                            }
                            st.cursor = st.cursor.max(page.read_up_to);
                            st.page.extend(page.events);
                            continue;
                        }
                        Err(e) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                }
                st.replay = None;
            }
            return match st.live.recv().await {
                // A watch from a future revision skips what comes before it.
                Some(Ok(event)) if event.revision() <= st.cursor => continue,
                Some(Ok(event)) => Some((Ok(event), st)),
                Some(Err(e)) => {
                    st.done = true;
                    Some((Err(e), st))
                }
                None => None,
            };
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyValue;
    use bytes::Bytes;

    fn put(key: &str, rev: Revision) -> Event {
        Event::Put {
            kv: KeyValue {
                key: key.into(),
                value: Bytes::from_static(b"v"),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        }
    }

    #[tokio::test]
    async fn a_full_buffer_ends_the_watcher_with_watch_lagged_and_keeps_the_others() {
        let mut hub = Hub::new(0, 2);
        let (_, mut slow) = hub.subscribe("/a/");
        let (_, mut other) = hub.subscribe("/b/");
        for rev in 1..=5 {
            hub.publish(&[put("/a/x", rev)], rev);
        }
        hub.publish(&[put("/b/x", 6)], 6);
        assert_eq!(hub.len(), 1);
        assert_eq!(slow.recv().await.unwrap().unwrap().revision(), 1);
        assert_eq!(slow.recv().await.unwrap().unwrap().revision(), 2);
        let err = slow.recv().await.unwrap().unwrap_err();
        assert_eq!(err.watch_lagged().unwrap().resume_after, 2);
        assert!(slow.recv().await.is_none());
        assert_eq!(other.recv().await.unwrap().unwrap().revision(), 6);
    }

    #[tokio::test]
    async fn the_stream_replays_then_continues_live_without_duplicates() {
        let mut hub = Hub::new(3, 8);
        let (up_to, live) = hub.subscribe("/a/");
        let history = [put("/a/1", 1), put("/a/2", 2), put("/a/3", 3)];
        let replay: ReplayFn = Box::new(move |after, up_to| {
            let events: Vec<Event> = history
                .iter()
                .filter(|e| e.revision() > after && e.revision() <= up_to)
                .take(2)
                .cloned()
                .collect();
            let read_up_to = events.last().map_or(up_to, |e| e.revision());
            Box::pin(async move { Ok(Page { events, read_up_to }) })
        });
        let mut s = stream(replay, 1, up_to, live);
        hub.publish(&[put("/a/4", 4)], 4);
        drop(hub);
        let mut seen = Vec::new();
        while let Some(item) = s.next().await {
            seen.push(item.unwrap().revision());
        }
        assert_eq!(seen, vec![2, 3, 4]);
    }
}
