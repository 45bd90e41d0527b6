//! The REST test shim (`outpost_sync::shim`, feature `shim`: a loopback stand-in for PostgREST,
//! which cannot be installed here), started with the test's anon key and JWT secret.

/// A running shim.
pub struct Shim {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    inner: outpost_sync::shim::Shim,
}

impl Shim {
    /// Starts a shim in front of the database at `db_url` (a superuser URL).
    pub async fn start(db_url: &str) -> std::io::Result<Self> {
        let inner =
            outpost_sync::shim::Shim::start(db_url, super::LOCAL_ANON_KEY, super::LOCAL_JWT_SECRET)
                .await?;
        Ok(Self {
            url: inner.url.clone(),
            inner,
        })
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.inner.requests()
    }
}
