use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as ECompare, CompareOp, EventType, GetOptions, PutOptions, Txn as ETxn, TxnOp,
    WatchOptions,
};

use crate::api::{
    prefix_end, Compare, Event, EventKind, KeyValue, LeaseId, Op, RangePage, Store, StoreError,
    Txn, TxnResult, Watch,
};

/// A real etcd cluster (v3 API). Multi-node control planes use this.
pub struct EtcdStore {
    client: Client,
}

fn err(e: etcd_client::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("lease not found") {
        // The caller maps this to the lease it asked about.
        StoreError::LeaseNotFound(0)
    } else {
        StoreError::Unavailable(format!("etcd: {text}"))
    }
}

fn lease_err(id: LeaseId) -> impl Fn(etcd_client::Error) -> StoreError {
    move |e| match err(e) {
        StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(id),
        other => other,
    }
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision() as u64,
        mod_revision: kv.mod_revision() as u64,
        version: kv.version() as u64,
        lease: (kv.lease() != 0).then_some(kv.lease()),
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> u64 {
    h.map_or(0, |h| h.revision() as u64)
}

fn ops(ops: &[Op]) -> Vec<TxnOp> {
    ops.iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => TxnOp::put(
                key.as_str(),
                value.clone(),
                lease.map(|l| PutOptions::new().with_lease(l)),
            ),
            Op::Delete { key } => TxnOp::delete(key.as_str(), None),
        })
        .collect()
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`), failing fast when none answers.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, StoreError> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(opts)).await.map_err(err)?;
        let store = EtcdStore { client };
        store.current_revision().await?;
        Ok(store)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self.client.kv_client().get(key, None).await.map_err(err)?;
        Ok(resp.kvs().first().map(convert))
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangePage, StoreError> {
        let start = match start_after {
            Some(a) if a >= prefix => {
                let mut k = a.as_bytes().to_vec();
                k.push(0);
                k
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let mut opts = GetOptions::new().with_range(prefix_end(prefix));
        if limit > 0 {
            opts = opts.with_limit(limit as i64);
        }
        let resp = self
            .client
            .kv_client()
            .get(start, Some(opts))
            .await
            .map_err(err)?;
        Ok(RangePage {
            kvs: resp.kvs().iter().map(convert).collect(),
            more: resp.more(),
            revision: header_revision(resp.header()),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let compares = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision(key, rev) => {
                    ECompare::mod_revision(key.as_str(), CompareOp::Equal, *rev as i64)
                }
            })
            .collect::<Vec<_>>();
        let t = ETxn::new()
            .when(compares)
            .and_then(ops(&txn.success))
            .or_else(ops(&txn.failure));
        let resp = self.client.kv_client().txn(t).await.map_err(err)?;
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision: header_revision(resp.header()),
        })
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        let mut opts = WatchOptions::new().with_range(prefix_end(prefix));
        if from_revision > 0 {
            opts = opts.with_start_revision(from_revision as i64);
        }
        let (watcher, mut stream) = self
            .client
            .watch_client()
            .watch(prefix, Some(opts))
            .await
            .map_err(err)?;
        let (tx, watch) = Watch::channel();
        tokio::spawn(async move {
            // The watcher must live as long as the stream: dropping it cancels.
            let _watcher = watcher;
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    _ = tx.closed() => return,
                };
                match msg {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 {
                            let _ = tx.send(Err(StoreError::Compacted {
                                requested: from_revision,
                                oldest: resp.compact_revision() as u64 + 1,
                            }));
                            return;
                        }
                        if resp.canceled() {
                            let _ = tx.send(Err(StoreError::Unavailable(format!(
                                "etcd cancelled the watch: {}",
                                resp.cancel_reason()
                            ))));
                            return;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let kind = match ev.event_type() {
                                EventType::Put => EventKind::Put,
                                EventType::Delete => EventKind::Delete,
                            };
                            if tx
                                .send(Ok(Event {
                                    kind,
                                    kv: convert(kv),
                                }))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(err(e)));
                        return;
                    }
                }
            }
        });
        Ok(watch)
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        if ttl.is_zero() {
            return Err(StoreError::Invalid("lease TTL must be positive".into()));
        }
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let resp = self
            .client
            .lease_client()
            .grant(secs, None)
            .await
            .map_err(err)?;
        Ok(resp.id())
    }

    async fn lease_keepalive(&self, id: LeaseId) -> Result<(), StoreError> {
        let (mut keeper, mut stream) = self
            .client
            .lease_client()
            .keep_alive(id)
            .await
            .map_err(lease_err(id))?;
        keeper.keep_alive().await.map_err(lease_err(id))?;
        match stream.message().await.map_err(lease_err(id))? {
            Some(r) if r.ttl() > 0 => Ok(()),
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.client
            .lease_client()
            .revoke(id)
            .await
            .map_err(lease_err(id))?;
        Ok(())
    }

    async fn current_revision(&self) -> Result<u64, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get("\0", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(err)?;
        Ok(header_revision(resp.header()))
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.client
            .kv_client()
            .compact(revision as i64, None)
            .await
            .map_err(err)?;
        Ok(())
    }
}
