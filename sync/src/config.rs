//! Where the central store is and who we are there, from flags and `OUTPOST_*` variables.
//!
//! - Direct Postgres: `--central postgres://...` (or `OUTPOST_CENTRAL_URL`), acting as the user
//!   whose id is `OUTPOST_CENTRAL_USER`, or the `sub` of `OUTPOST_SUPABASE_JWT`.
//! - Supabase REST: `OUTPOST_SUPABASE_URL` + `OUTPOST_SUPABASE_ANON_KEY` + `OUTPOST_SUPABASE_JWT`.
//!
//! Secrets are never printed: [`CentralConfig::describe`] masks them.

use std::time::Duration;

use crate::central::Central;
use crate::error::{Error, Result};
use crate::pg::{is_uuid, PgTransport};
use crate::rest::RestTransport;

/// A configured central store.
#[derive(Clone)]
pub enum CentralConfig {
    /// Direct Postgres.
    Postgres {
        /// Connection URL (may hold a password).
        url: String,
        /// The Supabase user id rows are written as.
        user_id: String,
    },
    /// Supabase REST API.
    Rest {
        /// Project URL.
        url: String,
        /// The project's anon (publishable) key.
        anon_key: String,
        /// The user's JWT.
        jwt: String,
    },
}

impl std::fmt::Debug for CentralConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The `sub` claim of a JWT, read without verifying it (the server verifies).
pub fn jwt_subject(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sub")?.as_str().map(str::to_string)
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn mask_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl CentralConfig {
    /// From a `--central` URL if given, else the environment.
    ///
    /// # Errors
    /// [`Error::Config`] when nothing, or not enough, is configured.
    pub fn resolve(central: Option<&str>) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let pg_url = central
            .map(str::to_string)
            .or_else(|| env("OUTPOST_CENTRAL_URL"));
        if let Some(url) = pg_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::Config(format!(
                    "--central takes a postgres:// URL (got '{}'); for the REST API set OUTPOST_SUPABASE_URL",
                    mask_url(&url)
                )));
            }
            let user_id = env("OUTPOST_CENTRAL_USER")
                .or_else(|| env("OUTPOST_SUPABASE_JWT").and_then(|j| jwt_subject(&j)))
                .ok_or_else(|| {
                    Error::Config(
                        "direct Postgres needs the user to act as: set OUTPOST_CENTRAL_USER (a user id) or OUTPOST_SUPABASE_JWT".into(),
                    )
                })?;
            if !is_uuid(&user_id) {
                return Err(Error::Config(format!(
                    "the central user '{user_id}' is not a UUID"
                )));
            }
            return Ok(CentralConfig::Postgres { url, user_id });
        }
        match (
            env("OUTPOST_SUPABASE_URL"),
            env("OUTPOST_SUPABASE_ANON_KEY"),
            env("OUTPOST_SUPABASE_JWT"),
        ) {
            (Some(url), Some(anon_key), Some(jwt)) => Ok(CentralConfig::Rest { url, anon_key, jwt }),
            (None, None, None) => Err(Error::Config(
                "no central store configured: pass --central postgres://... or set OUTPOST_SUPABASE_URL, OUTPOST_SUPABASE_ANON_KEY and OUTPOST_SUPABASE_JWT".into(),
            )),
            (url, key, jwt) => {
                let missing: Vec<&str> = [
                    ("OUTPOST_SUPABASE_URL", url.is_none()),
                    ("OUTPOST_SUPABASE_ANON_KEY", key.is_none()),
                    ("OUTPOST_SUPABASE_JWT", jwt.is_none()),
                ]
                .into_iter()
                .filter_map(|(k, m)| m.then_some(k))
                .collect();
                Err(Error::Config(format!("the Supabase REST API also needs {}", missing.join(", "))))
            }
        }
    }

    /// A one-line description with secrets masked.
    pub fn describe(&self) -> String {
        match self {
            CentralConfig::Postgres { url, user_id } => {
                format!("postgres {} as user {user_id}", mask_url(url))
            }
            CentralConfig::Rest { url, .. } => {
                format!("supabase REST {url} (anon key and JWT set)")
            }
        }
    }

    /// Opens the transport (connections are made lazily, on the first call).
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn open(&self, timeout: Duration) -> Result<Central> {
        Ok(match self {
            CentralConfig::Postgres { url, user_id } => {
                Central::Postgres(PgTransport::new(url, user_id, timeout)?)
            }
            CentralConfig::Rest { url, anon_key, jwt } => {
                Central::Rest(RestTransport::new(url, anon_key, jwt, timeout)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db.example:5432/postgres"),
            "postgres://app:***@db.example:5432/postgres"
        );
        assert_eq!(mask_url("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[test]
    fn the_subject_of_a_jwt_is_read() {
        // {"alg":"HS256"} . {"sub":"0190f0f0-0000-7000-8000-000000000001"} . sig
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwMTkwZjBmMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDEifQ.x";
        assert_eq!(
            jwt_subject(jwt).as_deref(),
            Some("0190f0f0-0000-7000-8000-000000000001")
        );
    }
}
