//! Sync against the central store of the test target (`common`: a real PostgreSQL + pgvector with
//! Supabase's auth emulated, or a real Supabase project), through both transports: direct
//! Postgres, and REST.

mod common;

use common::{user, Db, Device, RestApi, TestResult};
use outpost_sync::Central;

/// Each transport, each for a user of its own, against `db`; the REST API must outlive its
/// transport.
async fn transports(
    db: &Db,
) -> Result<Vec<(Central, Option<RestApi>)>, Box<dyn std::error::Error>> {
    let api = db.rest_api().await?;
    let rest = api.central(&user());
    Ok(vec![(db.pg(&user()), None), (rest, Some(api))])
}

#[tokio::test]
async fn two_devices_and_the_central_store_converge() -> TestResult {
    let db = Db::new(true).await?;
    for (central, _api) in transports(&db).await? {
        let mut a = Device::new()?;
        let mut b = Device::new()?;
        let doc = a.put(
            "notes/tides.md",
            "Tides are caused by the moon.\n\nSpring tides are the strongest.",
        )?;
        b.put("notes/bees.md", "Bees communicate by dancing.")?;
        let conv = b.engine.create_conversation("chat")?;
        b.engine
            .add_message_with_vector(&conv.id, "user", "what causes tides?", None)?;
        a.sync(&central).await?;
        b.sync(&central).await?;
        // Pulls see only rows older than every running transaction (docs/SYNC.md).
        common::settle(&db).await?;
        a.sync(&central).await?;
        assert_eq!(a.engine.outbox_depth()?, 0);
        assert!(
            a.verify(&central).await?.equal,
            "{:?}",
            a.verify(&central).await?
        );
        assert!(b.verify(&central).await?.equal);
        assert_eq!(a.engine.checksums()?, b.engine.checksums()?);
        assert_eq!(b.engine.get_document(&doc)?.chunks.len(), 2);
        // The pulled vectors search like local ones.
        assert_eq!(b.engine.stats()?.collections[0].chunks, 3);
    }
    Ok(())
}
