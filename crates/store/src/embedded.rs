use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::api::{KeyValue, LeaseId, RangePage, Store, StoreError, Txn, TxnResult, Watch};
use crate::local::{Batch, Durable, Engine, Snapshot};
use crate::mem::engine_store;

// Keys as bytes: redb compares them on every lookup, and &str would be
// UTF-8-validated at each comparison.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LEASES: TableDefinition<i64, u64> = TableDefinition::new("leases");
const HEADER: usize = 32;

/// The single-node store: the engine's map kept in a redb file, every
/// acknowledged batch committed (fsynced) before it is answered or visible.
pub struct EmbeddedStore {
    engine: Engine,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.lease.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<KeyValue, StoreError> {
    if raw.len() < HEADER {
        return Err(StoreError::Corrupt(format!(
            "record for {key:?} is truncated"
        )));
    }
    let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let lease = word(3) as i64;
    Ok(KeyValue {
        key: key.to_string(),
        create_revision: word(0),
        mod_revision: word(1),
        version: word(2),
        lease: (lease != 0).then_some(lease),
        value: raw[HEADER..].to_vec(),
    })
}

/// Creates `dir` (0700 from the start) and sets the modes of `dir` (0700) and,
/// once it exists, `file` (0600), tightening an older store.
fn private(dir: &Path, file: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    if file.exists() {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

struct Redb(Database);

impl Durable for Redb {
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let records: Vec<(&[u8], Vec<u8>)> = batch
            .puts
            .iter()
            .map(|(k, v)| (k.as_bytes(), encode(v)))
            .collect();
        let tx = self.0.begin_write().map_err(io)?;
        {
            let mut kv = tx.open_table(KV).map_err(io)?;
            for k in &batch.deletes {
                kv.remove(k.as_bytes()).map_err(io)?;
            }
            for (k, v) in &records {
                kv.insert(*k, v.as_slice()).map_err(io)?;
            }
            let mut meta = tx.open_table(META).map_err(io)?;
            meta.insert("revision", batch.revision).map_err(io)?;
            meta.insert("next_lease", batch.next_lease as u64)
                .map_err(io)?;
            let mut leases = tx.open_table(LEASES).map_err(io)?;
            for id in &batch.lease_deletes {
                leases.remove(*id).map_err(io)?;
            }
            for (id, ttl) in &batch.lease_puts {
                leases.insert(*id, ttl.as_millis() as u64).map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `dir` (file `store.redb`).
    /// It holds every tenant's secrets: the directory is made 0700 and the
    /// file 0600, readable by the server's user alone.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        let file = dir.join("store.redb");
        private(dir, &file)?;
        let db = Database::create(&file).map_err(io)?;
        private(dir, &file)?;
        // Make sure every table exists before the first read transaction.
        let tx = db.begin_write().map_err(io)?;
        tx.open_table(KV).map_err(io)?;
        tx.open_table(META).map_err(io)?;
        tx.open_table(LEASES).map_err(io)?;
        tx.commit().map_err(io)?;

        let mut snap = Snapshot::default();
        {
            let rtx = db.begin_read().map_err(io)?;
            let meta = rtx.open_table(META).map_err(io)?;
            snap.revision = meta.get("revision").map_err(io)?.map_or(0, |v| v.value());
            snap.next_lease = meta.get("next_lease").map_err(io)?.map_or(1, |v| v.value()) as i64;
            let kv = rtx.open_table(KV).map_err(io)?;
            for item in kv.iter().map_err(io)? {
                let (k, v) = item.map_err(io)?;
                let key = std::str::from_utf8(k.value())
                    .map_err(|_| StoreError::Corrupt("a key is not UTF-8".into()))?;
                snap.kvs.push(decode(key, v.value())?);
            }
            let leases = rtx.open_table(LEASES).map_err(io)?;
            for item in leases.iter().map_err(io)? {
                let (id, ttl) = item.map_err(io)?;
                snap.leases
                    .push((id.value(), Duration::from_millis(ttl.value())));
            }
        }
        Ok(EmbeddedStore {
            engine: Engine::start(snap, Box::new(Redb(db))),
        })
    }
}

engine_store!(EmbeddedStore);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_store_is_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        drop(EmbeddedStore::open(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store.redb")), 0o600);
        // An older, readable store is tightened when it is opened again.
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(&dir, open.clone()).unwrap();
        std::fs::set_permissions(dir.join("store.redb"), open).unwrap();
        drop(EmbeddedStore::open(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store.redb")), 0o600);
    }

    proptest! {
        #[test]
        fn records_round_trip(create in any::<u64>(), m in any::<u64>(), v in any::<u64>(),
                              lease in proptest::option::of(1i64..), value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let kv = KeyValue { key: "k".into(), value, create_revision: create, mod_revision: m, version: v, lease };
            prop_assert_eq!(decode("k", &encode(&kv)).unwrap(), kv);
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode("k", &raw);
        }
    }
}
