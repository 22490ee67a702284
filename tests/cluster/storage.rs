//! openraft's own storage test suite against the durable store.

use meridian_region::raft::state::StateMachine;
use meridian_region::raft::store::{self, LogStore};
use meridian_region::raft::{NodeId, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct DurableBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for DurableBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let db = store::open(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        let sm = StateMachine::open(db.clone(), None)?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(DurableBuilder) {
        panic!("storage suite: {e}");
    }
}

#[tokio::test]
async fn the_log_survives_a_reopen() {
    use openraft::storage::RaftLogStorage;
    use openraft::{RaftLogReader, Vote};
    let dir = tempfile::tempdir().unwrap();
    {
        let db = store::open(dir.path()).unwrap();
        let mut log = LogStore::new(db);
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        let entries = (1..=5).map(|i| openraft::testing::blank_ent::<TypeConfig>(1, 1, i));
        openraft::storage::RaftLogStorageExt::blocking_append(&mut log, entries).await.unwrap();
    }
    let db = store::open(dir.path()).unwrap();
    let mut log = LogStore::new(db);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let got = log.try_get_log_entries(1..6).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(log.get_log_state().await.unwrap().last_log_id.unwrap().index, 5);
}
