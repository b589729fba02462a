//! The engine behind the in-memory and embedded backends: an ordered map,
//! one global revision, a bounded event history for watches and TTL leases.
//!
//! Writes go through one writer thread that batches whatever transactions are
//! waiting (group commit): it evaluates them in order against the state plus
//! the batch's own changes, makes the batch durable with one commit of the
//! [`Durable`] backend, then publishes it (state, history, watchers) and
//! answers. Readers never see a change before it is durable.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{mpsc as std_mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::api::{
    Compare, Event, EventKind, KeyValue, LeaseId, Op, RangePage, StoreError, Txn, TxnResult, Watch,
};

/// Events kept for watches that resume from an older revision.
const HISTORY_LIMIT: usize = 100_000;
/// Transactions committed together at most.
const MAX_BATCH: usize = 1024;
/// How often the writer checks for expired leases when idle.
const LEASE_TICK: Duration = Duration::from_millis(50);

/// What a batch changed, for the durable backend to write in one commit.
#[derive(Default)]
pub(crate) struct Batch {
    pub revision: u64,
    pub next_lease: LeaseId,
    pub puts: BTreeMap<String, KeyValue>,
    pub deletes: BTreeSet<String>,
    pub lease_puts: BTreeMap<LeaseId, Duration>,
    pub lease_deletes: BTreeSet<LeaseId>,
}

/// Durable persistence of batches (a no-op for the in-memory backend).
pub(crate) trait Durable: Send + 'static {
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
}

/// What a backend loaded at open.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub revision: u64,
    pub next_lease: LeaseId,
    pub kvs: Vec<KeyValue>,
    pub leases: Vec<(LeaseId, Duration)>,
}

struct LeaseState {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct Watcher {
    prefix: String,
    tx: mpsc::UnboundedSender<Result<Event, StoreError>>,
}

struct State {
    kv: BTreeMap<String, KeyValue>,
    revision: u64,
    next_lease: LeaseId,
    leases: HashMap<LeaseId, LeaseState>,
    history: VecDeque<(u64, Event)>,
    /// Highest revision whose events are no longer all in `history`.
    compacted: u64,
    watchers: Vec<Watcher>,
}

enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnResult, StoreError>>),
    Grant(Duration, oneshot::Sender<Result<LeaseId, StoreError>>),
    Revoke(LeaseId, oneshot::Sender<Result<(), StoreError>>),
}

pub(crate) struct Engine {
    state: Arc<RwLock<State>>,
    writer: Option<std_mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Engine {
    /// Stops the writer and waits for it, so the backend (e.g. the redb file
    /// lock) is released when the store is dropped.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Engine {
    pub fn start(snapshot: Snapshot, durable: Box<dyn Durable>) -> Engine {
        let now = Instant::now();
        let mut leases: HashMap<LeaseId, LeaseState> = snapshot
            .leases
            .iter()
            .map(|&(id, ttl)| {
                // Leases survive a restart with a fresh TTL: their holders get
                // one TTL to reconnect, as with etcd after a leader change.
                (
                    id,
                    LeaseState {
                        ttl,
                        deadline: now + ttl,
                        keys: BTreeSet::new(),
                    },
                )
            })
            .collect();
        let mut kv = BTreeMap::new();
        for item in snapshot.kvs {
            if let Some(l) = item.lease.and_then(|id| leases.get_mut(&id)) {
                l.keys.insert(item.key.clone());
            }
            kv.insert(item.key.clone(), item);
        }
        let state = Arc::new(RwLock::new(State {
            kv,
            revision: snapshot.revision,
            next_lease: snapshot.next_lease.max(1),
            leases,
            history: VecDeque::new(),
            compacted: snapshot.revision,
            watchers: Vec::new(),
        }));
        let (writer, rx) = std_mpsc::channel();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("yunhan-store-writer".into())
            .spawn(move || writer_loop(st, rx, durable))
            .expect("spawn store writer thread");
        Engine {
            state,
            writer: Some(writer),
            thread: Some(thread),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.read().kv.get(key).cloned()
    }

    pub fn range(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> RangePage {
        use std::ops::Bound;
        let st = self.read();
        let lower = match start_after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let mut kvs = Vec::new();
        let mut more = false;
        for (k, v) in st.kv.range((lower, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if limit != 0 && kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(v.clone());
        }
        RangePage {
            kvs,
            more,
            revision: st.revision,
        }
    }

    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store closed".into()))?
            .send(make(tx))
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        for op in txn.success.iter().chain(&txn.failure) {
            if op.key().is_empty() {
                return Err(StoreError::Invalid("empty key".into()));
            }
        }
        self.request(|tx| Request::Txn(txn, tx)).await
    }

    pub async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        if ttl.is_zero() {
            return Err(StoreError::Invalid("lease TTL must be positive".into()));
        }
        self.request(|tx| Request::Grant(ttl, tx)).await
    }

    pub async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.request(|tx| Request::Revoke(id, tx)).await
    }

    pub fn lease_keepalive(&self, id: LeaseId) -> Result<(), StoreError> {
        let mut st = self.write();
        let now = Instant::now();
        match st.leases.get_mut(&id) {
            Some(l) if l.deadline > now => {
                l.deadline = now + l.ttl;
                Ok(())
            }
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    pub fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let mut st = self.write();
        if revision > st.revision {
            return Err(StoreError::Invalid(format!(
                "cannot compact to future revision {revision} (current {})",
                st.revision
            )));
        }
        while st.history.front().is_some_and(|(rev, _)| *rev <= revision) {
            st.history.pop_front();
        }
        st.compacted = st.compacted.max(revision);
        Ok(())
    }

    pub fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        let mut st = self.write();
        let (tx, watch) = Watch::channel();
        if from_revision != 0 {
            if from_revision <= st.compacted {
                return Err(StoreError::Compacted {
                    requested: from_revision,
                    oldest: st.compacted + 1,
                });
            }
            for (rev, ev) in &st.history {
                if *rev >= from_revision && ev.kv.key.starts_with(prefix) {
                    let _ = tx.send(Ok(ev.clone()));
                }
            }
        }
        st.watchers.retain(|w| !w.tx.is_closed());
        st.watchers.push(Watcher {
            prefix: prefix.to_string(),
            tx,
        });
        Ok(watch)
    }
}

/// A batch being evaluated: the state as seen through the batch's changes.
struct Pending<'a> {
    st: &'a State,
    batch: Batch,
    /// Latest view of each key the batch touched (None = deleted).
    view: HashMap<String, Option<KeyValue>>,
    /// Lease → keys, as changed by the batch (None = lease gone).
    lease_view: HashMap<LeaseId, Option<(Duration, BTreeSet<String>)>>,
    events: Vec<(u64, Event)>,
}

impl<'a> Pending<'a> {
    fn new(st: &'a State) -> Self {
        Pending {
            st,
            batch: Batch {
                revision: st.revision,
                next_lease: st.next_lease,
                ..Batch::default()
            },
            view: HashMap::new(),
            lease_view: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn current(&self, key: &str) -> Option<KeyValue> {
        match self.view.get(key) {
            Some(v) => v.clone(),
            None => self.st.kv.get(key).cloned(),
        }
    }

    fn lease(&self, id: LeaseId) -> Option<(Duration, BTreeSet<String>)> {
        match self.lease_view.get(&id) {
            Some(v) => v.clone(),
            None => self.st.leases.get(&id).map(|l| (l.ttl, l.keys.clone())),
        }
    }

    fn detach_from_lease(&mut self, kv: &KeyValue) {
        if let Some(id) = kv.lease {
            if let Some((ttl, mut keys)) = self.lease(id) {
                keys.remove(&kv.key);
                self.lease_view.insert(id, Some((ttl, keys)));
            }
        }
    }

    fn put(&mut self, rev: u64, key: &str, value: &[u8], lease: Option<LeaseId>) {
        let old = self.current(key);
        if let Some(o) = &old {
            self.detach_from_lease(o);
        }
        let kv = KeyValue {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision: old.as_ref().map_or(rev, |o| o.create_revision),
            mod_revision: rev,
            version: old.as_ref().map_or(1, |o| o.version + 1),
            lease,
        };
        if let Some(id) = lease {
            if let Some((ttl, mut keys)) = self.lease(id) {
                keys.insert(key.to_string());
                self.lease_view.insert(id, Some((ttl, keys)));
            }
        }
        self.batch.deletes.remove(key);
        self.batch.puts.insert(key.to_string(), kv.clone());
        self.view.insert(key.to_string(), Some(kv.clone()));
        self.events.push((
            rev,
            Event {
                kind: EventKind::Put,
                kv,
            },
        ));
    }

    fn delete(&mut self, rev: u64, key: &str) -> bool {
        let Some(old) = self.current(key) else {
            return false;
        };
        self.detach_from_lease(&old);
        self.batch.puts.remove(key);
        self.batch.deletes.insert(key.to_string());
        self.view.insert(key.to_string(), None);
        let kv = KeyValue {
            key: key.to_string(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: None,
        };
        self.events.push((
            rev,
            Event {
                kind: EventKind::Delete,
                kv,
            },
        ));
        true
    }

    fn txn(&mut self, txn: &Txn) -> Result<TxnResult, StoreError> {
        let ok = txn.compares.iter().all(|c| match c {
            Compare::ModRevision(key, rev) => {
                self.current(key).map_or(0, |kv| kv.mod_revision) == *rev
            }
        });
        let ops = if ok { &txn.success } else { &txn.failure };
        for op in ops {
            if let Op::Put {
                lease: Some(id), ..
            } = op
            {
                if self.lease(*id).is_none() {
                    return Err(StoreError::LeaseNotFound(*id));
                }
            }
        }
        let rev = self.batch.revision + 1;
        let mut changed = false;
        for op in ops {
            changed |= match op {
                Op::Put { key, value, lease } => {
                    self.put(rev, key, value, *lease);
                    true
                }
                Op::Delete { key } => self.delete(rev, key),
            };
        }
        if changed {
            self.batch.revision = rev;
        }
        Ok(TxnResult {
            succeeded: ok,
            revision: self.batch.revision,
        })
    }

    fn revoke(&mut self, id: LeaseId) -> Result<(), StoreError> {
        let (_, keys) = self.lease(id).ok_or(StoreError::LeaseNotFound(id))?;
        let rev = self.batch.revision + 1;
        let mut changed = false;
        for k in &keys {
            changed |= self.delete(rev, k);
        }
        if changed {
            self.batch.revision = rev;
        }
        self.lease_view.insert(id, None);
        self.batch.lease_puts.remove(&id);
        self.batch.lease_deletes.insert(id);
        Ok(())
    }

    fn grant(&mut self, ttl: Duration) -> LeaseId {
        let id = self.batch.next_lease;
        self.batch.next_lease += 1;
        self.lease_view.insert(id, Some((ttl, BTreeSet::new())));
        self.batch.lease_puts.insert(id, ttl);
        id
    }
}

enum Reply {
    Txn(
        oneshot::Sender<Result<TxnResult, StoreError>>,
        Result<TxnResult, StoreError>,
    ),
    Grant(oneshot::Sender<Result<LeaseId, StoreError>>, LeaseId),
    Revoke(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

fn writer_loop(
    state: Arc<RwLock<State>>,
    rx: std_mpsc::Receiver<Request>,
    mut durable: Box<dyn Durable>,
) {
    loop {
        let mut requests = Vec::new();
        match rx.recv_timeout(LEASE_TICK) {
            Ok(r) => requests.push(r),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while requests.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => requests.push(r),
                Err(_) => break,
            }
        }

        // Evaluate under the read lock: readers keep going, and this thread is
        // the only writer, so the state cannot move underneath.
        let (batch, events, lease_view, replies) = {
            let st = state.read().unwrap_or_else(|e| e.into_inner());
            let mut p = Pending::new(&st);
            let now = Instant::now();
            let expired: Vec<LeaseId> = st
                .leases
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                let _ = p.revoke(id);
            }
            let mut replies = Vec::with_capacity(requests.len());
            for r in requests {
                replies.push(match r {
                    Request::Txn(t, tx) => {
                        let res = p.txn(&t);
                        Reply::Txn(tx, res)
                    }
                    Request::Grant(ttl, tx) => {
                        let id = p.grant(ttl);
                        Reply::Grant(tx, id)
                    }
                    Request::Revoke(id, tx) => {
                        let res = p.revoke(id);
                        Reply::Revoke(tx, res)
                    }
                });
            }
            (p.batch, p.events, p.lease_view, replies)
        };
        let dirty = batch.revision != state.read().unwrap_or_else(|e| e.into_inner()).revision
            || !batch.lease_puts.is_empty()
            || !batch.lease_deletes.is_empty();
        if !dirty && replies.is_empty() {
            continue;
        }

        if dirty {
            if let Err(e) = durable.commit(&batch) {
                tracing::error!(error = %e, "store commit failed");
                for r in replies {
                    match r {
                        Reply::Txn(tx, _) => drop(tx.send(Err(e.clone()))),
                        Reply::Grant(tx, _) => drop(tx.send(Err(e.clone()))),
                        Reply::Revoke(tx, _) => drop(tx.send(Err(e.clone()))),
                    }
                }
                continue;
            }
            publish(&state, batch, events, lease_view);
        }
        for r in replies {
            match r {
                Reply::Txn(tx, res) => drop(tx.send(res)),
                Reply::Grant(tx, id) => drop(tx.send(Ok(id))),
                Reply::Revoke(tx, res) => drop(tx.send(res)),
            }
        }
    }
}

fn publish(
    state: &RwLock<State>,
    batch: Batch,
    events: Vec<(u64, Event)>,
    lease_view: HashMap<LeaseId, Option<(Duration, BTreeSet<String>)>>,
) {
    let mut st = state.write().unwrap_or_else(|e| e.into_inner());
    for k in &batch.deletes {
        st.kv.remove(k);
    }
    for (k, v) in batch.puts {
        st.kv.insert(k, v);
    }
    let now = Instant::now();
    for (id, v) in lease_view {
        match v {
            None => {
                st.leases.remove(&id);
            }
            Some((ttl, keys)) => {
                let l = st.leases.entry(id).or_insert(LeaseState {
                    ttl,
                    deadline: now + ttl,
                    keys: BTreeSet::new(),
                });
                l.keys = keys;
            }
        }
    }
    st.revision = batch.revision;
    st.next_lease = batch.next_lease;
    st.watchers.retain(|w| !w.tx.is_closed());
    for (rev, ev) in events {
        for w in &st.watchers {
            if ev.kv.key.starts_with(&w.prefix) {
                let _ = w.tx.send(Ok(ev.clone()));
            }
        }
        st.history.push_back((rev, ev));
    }
    if st.history.len() > HISTORY_LIMIT {
        while st.history.len() > HISTORY_LIMIT {
            if let Some((rev, _)) = st.history.pop_front() {
                st.compacted = rev;
            }
        }
        // Never keep half of a revision's events.
        while st
            .history
            .front()
            .is_some_and(|(rev, _)| *rev == st.compacted)
        {
            st.history.pop_front();
        }
    }
}
