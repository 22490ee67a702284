//! Durable storage of a region member: the Raft log, the vote, the committed
//! index and the latest snapshot, in one redb database in the data directory.
//!
//! Why redb rather than a segmented log of our own: it is a maintained,
//! pure-Rust embedded store whose commits are atomic and fsynced
//! (`Durability::Immediate`), and whose commit slots carry checksums, so a
//! write torn by a crash is detected on open and the previous commit is used
//! instead of applying garbage. A log of our own would need the same
//! checksumming, fsync ordering and recovery code, all of which redb already
//! has and tests. Purged entries are deleted, so the file's live data stays
//! bounded by the snapshot policy; redb reuses the freed pages.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, SnapshotMeta, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{bincode_config, NodeId, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("cannot open {file}: {source}")]
    Database { file: String, source: redb::Error },
}

/// Open (or create) the database of a member in `dir`.
pub fn open(dir: &Path) -> Result<Arc<Database>, OpenError> {
    std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir { dir: dir.display().to_string(), source })?;
    let file = dir.join("raft.redb");
    let err = |source: redb::Error| OpenError::Database { file: file.display().to_string(), source };
    let db = Database::create(&file).map_err(|e| err(e.into()))?;
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    {
        txn.open_table(LOGS).map_err(|e| err(e.into()))?;
        txn.open_table(META).map_err(|e| err(e.into()))?;
    }
    txn.commit().map_err(|e| err(e.into()))?;
    Ok(Arc::new(db))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(v, bincode_config())
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(b, bincode_config()).map(|(v, _)| v)
}

fn read_meta<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StorageIOError<NodeId>> {
    let txn = db.begin_read().map_err(|e| StorageIOError::read(&redb::Error::from(e)))?;
    let table = txn.open_table(META).map_err(|e| StorageIOError::read(&redb::Error::from(e)))?;
    let Some(v) = table.get(key).map_err(|e| StorageIOError::read(&redb::Error::from(e)))? else {
        return Ok(None);
    };
    decode(v.value()).map(Some).map_err(|e| StorageIOError::read(&e))
}

/// Run a write transaction off the async threads: commits fsync.
async fn write_txn<F>(db: &Arc<Database>, durability: Durability, f: F) -> Result<(), StorageIOError<NodeId>>
where
    F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
{
    let db = db.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(durability).map_err(redb::Error::from)?;
        f(&txn)?;
        txn.commit()?;
        Ok(())
    })
    .await;
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StorageIOError::write(&e)),
        Err(join) => Err(StorageIOError::write(&join)),
    }
}

/// The Raft log and vote. Clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// Last committed index seen (for status; `u64::MAX` = none).
    committed: Arc<AtomicU64>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Self {
        Self { db, committed: Arc::new(AtomicU64::new(u64::MAX)) }
    }

    /// The committed index last reported by Raft, if any.
    pub fn committed_index(&self) -> Option<u64> {
        let v = self.committed.load(Ordering::Relaxed);
        (v != u64::MAX).then_some(v)
    }

    pub fn committed_handle(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let bounds: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
        let read = || -> Result<Vec<Entry<TypeConfig>>, StorageIOError<NodeId>> {
            let txn = self.db.begin_read().map_err(|e| StorageIOError::read_logs(&redb::Error::from(e)))?;
            let table = txn.open_table(LOGS).map_err(|e| StorageIOError::read_logs(&redb::Error::from(e)))?;
            let mut out = Vec::new();
            for item in table.range::<u64>(bounds).map_err(|e| StorageIOError::read_logs(&redb::Error::from(e)))? {
                let (_, v) = item.map_err(|e| StorageIOError::read_logs(&redb::Error::from(e)))?;
                out.push(decode(v.value()).map_err(|e| StorageIOError::read_logs(&e))?);
            }
            Ok(out)
        };
        Ok(read()?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = read_meta(&self.db, KEY_PURGED)?;
        let last = {
            let txn = self.db.begin_read().map_err(|e| StorageIOError::read_logs(&redb::Error::from(e)))?;
            let table = txn.open_table(LOGS).map_err(|e| StorageIOError::read_logs(&redb::Error::from(e)))?;
            let last = table.last().map_err(|e| StorageIOError::read_logs(&redb::Error::from(e)))?;
            let id = match last {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> = decode(v.value()).map_err(|e| StorageIOError::read_logs(&e))?;
                    Some(e.log_id)
                }
                None => None,
            };
            id
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        write_txn(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(META)?.insert(KEY_VOTE, bytes.as_slice())?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(read_meta(&self.db, KEY_VOTE)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        if let Some(c) = committed {
            self.committed.store(c.index, Ordering::Relaxed);
        }
        let bytes = encode(&committed).map_err(|e| StorageIOError::write(&e))?;
        // Not fsynced on its own: the next append's commit makes it durable.
        // Losing it in a crash only means re-learning it from the leader.
        write_txn(&self.db, Durability::None, move |txn| {
            txn.open_table(META)?.insert(KEY_COMMITTED, bytes.as_slice())?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let c: Option<Option<LogId<NodeId>>> = read_meta(&self.db, KEY_COMMITTED)?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            let bytes = encode(&e).map_err(|err| StorageIOError::write_log_entry(e.log_id, &err))?;
            encoded.push((e.log_id.index, bytes));
        }
        let result = write_txn(&self.db, Durability::Immediate, move |txn| {
            let mut table = txn.open_table(LOGS)?;
            for (index, bytes) in &encoded {
                table.insert(*index, bytes.as_slice())?;
            }
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        write_txn(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(LOGS)?.retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let bytes = encode(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        write_txn(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(META)?.insert(KEY_PURGED, bytes.as_slice())?;
            txn.open_table(LOGS)?.retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

/// The latest snapshot, as stored.
pub struct StoredSnapshot {
    pub meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub data: Vec<u8>,
}

/// Persist `snapshot` as the current one (fsynced).
pub async fn save_snapshot(
    db: &Arc<Database>,
    meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
) -> StorageResult<()> {
    let sig = Some(meta.signature());
    let meta_bytes = encode(meta).map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
    write_txn(db, Durability::Immediate, move |txn| {
        let mut t = txn.open_table(META)?;
        t.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
        t.insert(KEY_SNAPSHOT_DATA, data.as_slice())?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// The current snapshot, if one was ever built or installed.
pub fn load_snapshot(db: &Database) -> StorageResult<Option<StoredSnapshot>> {
    let Some(meta) = read_meta::<SnapshotMeta<NodeId, openraft::BasicNode>>(db, KEY_SNAPSHOT_META)? else {
        return Ok(None);
    };
    let txn = db.begin_read().map_err(|e| StorageIOError::read_snapshot(None, &redb::Error::from(e)))?;
    let table = txn.open_table(META).map_err(|e| StorageIOError::read_snapshot(None, &redb::Error::from(e)))?;
    let data = table
        .get(KEY_SNAPSHOT_DATA)
        .map_err(|e| StorageIOError::read_snapshot(None, &redb::Error::from(e)))?
        .map(|v| v.value().to_vec())
        .unwrap_or_default();
    Ok(Some(StoredSnapshot { meta, data }))
}
