//! The ordered event log, with waits on a condition variable.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::model::ServerEvent;
use crate::wire::parse_request;

/// An event as the log keeps it. A daemon's `command` (the one event a
/// benchmark produces by the hundred thousand) keeps its envelope as JSON
/// text, shared with the per-cluster history, and becomes a
/// [`ServerEvent::Command`] only when read: recording it costs one
/// allocation instead of a parsed payload and two deep copies.
#[derive(Debug)]
pub(crate) enum Logged {
    Event(Box<ServerEvent>),
    Command {
        conn: u64,
        cluster: Arc<str>,
        /// `{"requestId","command"[,"payload"]}`, see [`crate::wire::parse_envelope`].
        json: Arc<str>,
    },
}

impl Logged {
    fn event(&self) -> Cow<'_, ServerEvent> {
        match self {
            Logged::Event(e) => Cow::Borrowed(&**e),
            Logged::Command {
                conn,
                cluster,
                json,
            } => Cow::Owned(ServerEvent::Command {
                conn: *conn,
                cluster: cluster.to_string(),
                request: parse_request(json),
            }),
        }
    }
}

/// Everything the server saw, in order, each event numbered from 0.
/// Holds at most `limit` events (the oldest are dropped).
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
    cond: Condvar,
}

#[derive(Debug)]
struct Inner {
    /// Sequence number of `events[0]`.
    first: u64,
    events: VecDeque<Logged>,
    limit: usize,
    closed: bool,
}

impl EventLog {
    pub(crate) fn new(limit: usize) -> Self {
        EventLog {
            inner: Mutex::new(Inner {
                first: 0,
                events: VecDeque::new(),
                limit: limit.max(1),
                closed: false,
            }),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn extend(&self, batch: &mut Vec<Logged>) {
        if batch.is_empty() {
            return;
        }
        let mut g = self.inner.lock();
        for e in batch.drain(..) {
            if g.events.len() == g.limit {
                g.events.pop_front();
                g.first += 1;
            }
            g.events.push_back(e);
        }
        drop(g);
        self.cond.notify_all();
    }

    pub(crate) fn close(&self) {
        self.inner.lock().closed = true;
        self.cond.notify_all();
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        let g = self.inner.lock();
        g.first + g.events.len() as u64
    }

    /// The events numbered `from` and later that are still kept.
    pub fn since(&self, from: u64) -> Vec<(u64, ServerEvent)> {
        let g = self.inner.lock();
        let start = from.saturating_sub(g.first) as usize;
        g.events
            .iter()
            .enumerate()
            .skip(start)
            .map(|(i, e)| (g.first + i as u64, e.event().into_owned()))
            .collect()
    }

    /// Waits until an event numbered `from` or later matches, or `deadline`
    /// passes (then `None`). Returns its number and a copy.
    pub fn wait_for(
        &self,
        from: u64,
        deadline: Instant,
        mut matcher: impl FnMut(&ServerEvent) -> bool,
    ) -> Option<(u64, ServerEvent)> {
        let mut g = self.inner.lock();
        let mut next = from;
        loop {
            let start = next.saturating_sub(g.first) as usize;
            for (i, e) in g.events.iter().enumerate().skip(start) {
                let e = e.event();
                if matcher(&e) {
                    return Some((g.first + i as u64, e.into_owned()));
                }
            }
            next = g.first + g.events.len() as u64;
            if g.closed || self.cond.wait_until(&mut g, deadline).timed_out() {
                // One last look at what arrived with the timeout.
                let start = next.saturating_sub(g.first) as usize;
                return g
                    .events
                    .iter()
                    .enumerate()
                    .skip(start)
                    .map(|(i, e)| (g.first + i as u64, e.event()))
                    .find(|(_, e)| matcher(e))
                    .map(|(i, e)| (i, e.into_owned()));
            }
        }
    }
}
