//! Metering in the store (model: `model/src/metering.rs`; design: docs/metering.md). Keys:
//! `/yunhan/metering/ledgers/<project id>` (the project's [`Ledger`]: cursors and the open
//! hour) and `/yunhan/metering/usage/<project id>/<hour start, unix seconds, 12 digits>`
//! (a closed hour's [`UsageRecord`], in time order), written together by [`Metering::commit`]
//! in one transaction guarded by the ledger's revision: a pass that lost a race (a deposed
//! leader, a pass before a restart) writes nothing, so no second is counted twice. The
//! price list is one document at [`PRICE_LIST_KEY`].

use std::collections::BTreeMap;
use std::sync::Arc;

use yunhan_model::{merge, Ledger, Pass, PriceList, UsageRecord};

use crate::{Compare, Op, Store, StoreError, Txn};

pub const LEDGERS_PREFIX: &str = "/yunhan/metering/ledgers/";
pub const USAGE_PREFIX: &str = "/yunhan/metering/usage/";
pub const PRICE_LIST_KEY: &str = "/yunhan/settings/price-list";

#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored metering document {key} is unreadable: {why}")]
    Corrupt { key: String, why: String },
}

/// The ledger key of `project`.
pub fn ledger_key(project: &str) -> String {
    format!("{LEDGERS_PREFIX}{project}")
}

fn usage_prefix(project: &str) -> String {
    format!("{USAGE_PREFIX}{project}/")
}

/// The key of `project`'s record of the hour starting at `hour`.
pub fn usage_key(project: &str, hour: i64) -> String {
    format!("{}{:012}", usage_prefix(project), hour.max(0))
}

fn read<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, MeteringError> {
    serde_json::from_slice(value).map_err(|e| MeteringError::Corrupt {
        key: key.to_string(),
        why: e.to_string(),
    })
}

fn json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The stored ledgers ([`Metering::ledgers`]).
#[derive(Debug, Default)]
pub struct StoredLedgers {
    /// Ledger and revision by project id.
    pub ok: BTreeMap<String, (Ledger, u64)>,
    /// Why each unreadable one is, by project id.
    pub corrupt: BTreeMap<String, String>,
}

/// Reads and writes metering documents (cheap to create and share).
#[derive(Clone)]
pub struct Metering {
    store: Arc<dyn Store>,
}

impl Metering {
    pub fn new(store: Arc<dyn Store>) -> Metering {
        Metering { store }
    }

    /// Every project's ledger with its revision (the compare-and-swap token), by project
    /// id; the unreadable ones apart, with why (a pass leaves those projects alone).
    pub async fn ledgers(&self) -> Result<StoredLedgers, MeteringError> {
        let kvs = crate::StoreExt::range_all(self.store.as_ref(), LEDGERS_PREFIX).await?;
        let mut out = StoredLedgers::default();
        for kv in kvs {
            let project = kv.key[LEDGERS_PREFIX.len()..].to_string();
            match read::<Ledger>(&kv.key, &kv.value) {
                Ok(l) => {
                    out.ok.insert(project, (l, kv.mod_revision));
                }
                Err(e) => {
                    out.corrupt.insert(project, e.to_string());
                }
            }
        }
        Ok(out)
    }

    /// `project`'s ledger, if it has one.
    pub async fn ledger(&self, project: &str) -> Result<Option<Ledger>, MeteringError> {
        let key = ledger_key(project);
        let kv = self.store.get(&key).await?;
        kv.map(|kv| read(&key, &kv.value)).transpose()
    }

    /// Writes a pass of the project whose ledger was at `revision` (0: it had none): the
    /// new ledger and its closed hours merged into the stored records, in one transaction
    /// that happens only if the ledger is still at `revision`. False: it was not.
    pub async fn commit(&self, revision: u64, pass: &Pass) -> Result<bool, MeteringError> {
        let project = &pass.ledger.project;
        let key = ledger_key(project);
        let mut txn = Txn::new()
            .when(Compare::ModRevision(key.clone(), revision))
            .then(Op::put(key, json(&pass.ledger)));
        for addition in &pass.closed {
            let key = usage_key(project, addition.hour);
            let stored = match self.store.get(&key).await? {
                Some(kv) => Some(read(&key, &kv.value)?),
                None => None,
            };
            txn = txn.then(Op::put(key, json(&merge(stored, addition))));
        }
        Ok(self.store.txn(txn).await?.succeeded)
    }

    /// `project`'s closed hours starting in `[from, to)` (unix seconds), oldest first.
    pub async fn records(
        &self,
        project: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRecord>, MeteringError> {
        let prefix = usage_prefix(project);
        let mut after = (from > 0).then(|| usage_key(project, from - 1));
        let mut out = Vec::new();
        loop {
            let page = self.store.range(&prefix, after.as_deref(), 500).await?;
            after = page.kvs.last().map(|kv| kv.key.clone());
            for kv in &page.kvs {
                let r: UsageRecord = read(&kv.key, &kv.value)?;
                if r.hour >= to {
                    return Ok(out);
                }
                out.push(r);
            }
            if !page.more {
                return Ok(out);
            }
        }
    }

    /// The price list (all prices 0 until an admin sets one).
    pub async fn price_list(&self) -> Result<PriceList, MeteringError> {
        match self.store.get(PRICE_LIST_KEY).await? {
            Some(kv) => read(PRICE_LIST_KEY, &kv.value),
            None => Ok(PriceList::default()),
        }
    }

    pub async fn set_price_list(&self, prices: &PriceList) -> Result<(), MeteringError> {
        let put = Op::put(PRICE_LIST_KEY, json(prices));
        self.store.txn(Txn::new().then(put)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{roll_up, Meter, Metered, Meters, Span};

    fn vm(start: i64) -> Metered {
        Metered {
            id: "ins-1".into(),
            kind: "instances".into(),
            name: "web".into(),
            pool: None,
            rates: Meters::from([(Meter::VcpuSeconds, 1.0)]),
            billable: vec![Span { start, end: None }],
        }
    }

    #[tokio::test]
    async fn a_pass_is_written_once_and_records_merge() {
        let m = Metering::new(Arc::new(crate::MemStore::new()));
        let empty = Ledger {
            project: "prj-a".into(),
            ..Ledger::default()
        };
        let pass = roll_up(&empty, &[vm(3500)], 3700);
        assert!(m.commit(0, &pass).await.unwrap());
        // The same pass again (a deposed leader, a retry): refused.
        assert!(!m.commit(0, &pass).await.unwrap());
        let stored = m.ledgers().await.unwrap();
        assert!(stored.corrupt.is_empty());
        let (ledger, rev) = stored.ok["prj-a"].clone();
        assert_eq!(ledger, pass.ledger);
        // A late addition to the closed hour merges into its record.
        let mut late = roll_up(&ledger, &[], 3800);
        late.closed = pass.closed.clone();
        assert!(m.commit(rev, &late).await.unwrap());
        let records = m.records("prj-a", 0, 7200).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].hour, 0);
        assert_eq!(records[0].lines[0].seconds, 200);
        assert!(m.records("prj-a", 3600, 7200).await.unwrap().is_empty());
        assert!(m.records("prj-a", 0, 0).await.unwrap().is_empty());
        let open = m.ledger("prj-a").await.unwrap().unwrap().open;
        assert_eq!(
            open["ins-1"].seconds, 100,
            "the open hour stays in the ledger"
        );
    }

    #[tokio::test]
    async fn the_price_list_defaults_to_free() {
        let m = Metering::new(Arc::new(crate::MemStore::new()));
        assert_eq!(m.price_list().await.unwrap(), PriceList::default());
        let p = PriceList {
            vcpu_hour: 0.5,
            ..PriceList::default()
        };
        m.set_price_list(&p).await.unwrap();
        assert_eq!(m.price_list().await.unwrap(), p);
    }
}
