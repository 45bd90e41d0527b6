//! Sync against a real PostgreSQL + pgvector with Supabase's auth emulated, through both
//! transports: direct Postgres, and REST through the test shim (see `common/shim.rs`).

mod common;

use common::{shim::Shim, user, Db, Device, TestResult};
use outpost_sync::Central;

/// Each transport, each for a user of its own, against `db`; the shim must outlive its transport.
async fn transports(db: &Db) -> Result<Vec<(Central, Option<Shim>)>, Box<dyn std::error::Error>> {
    let shim = Shim::start(&db.url).await?;
    let rest = common::rest(&shim.url, &user());
    Ok(vec![(db.pg(&user()), None), (rest, Some(shim))])
}

#[tokio::test]
async fn two_devices_and_the_central_store_converge() -> TestResult {
    let db = Db::new(true).await?;
    for (central, _shim) in transports(&db).await? {
        let mut a = Device::new()?;
        let mut b = Device::new()?;
        let doc = a.put(
            "notes/tides.md",
            "Tides are caused by the moon.\n\nSpring tides are the strongest.",
        )?;
        b.put("notes/bees.md", "Bees communicate by dancing.")?;
        let conv = b.store.create_conversation("chat")?;
        b.store
            .add_message(&conv.id, "user", "what causes tides?", None)?;
        a.sync(&central).await?;
        b.sync(&central).await?;
        // Pulls see only rows older than every running transaction (docs/SYNC.md).
        common::settle(&db).await?;
        a.sync(&central).await?;
        assert_eq!(a.store.outbox_depth()?, 0);
        assert!(
            a.verify(&central).await?.equal,
            "{:?}",
            a.verify(&central).await?
        );
        assert!(b.verify(&central).await?.equal);
        assert_eq!(a.store.checksums()?, b.store.checksums()?);
        assert_eq!(b.store.get_document(&doc)?.chunks.len(), 2);
        // The pulled vectors search like local ones.
        assert_eq!(b.store.stats()?.collections[0].chunks, 3);
    }
    Ok(())
}
