//! Where the central store is and who we are there, from flags and `OUTPOST_*` variables.
//!
//! - Direct Postgres: `--central postgres://...` (or `OUTPOST_CENTRAL_URL`), acting as the user
//!   whose id is `OUTPOST_CENTRAL_USER`, or the `sub` of `OUTPOST_SUPABASE_JWT`.
//! - Supabase REST: `OUTPOST_SUPABASE_URL` + `OUTPOST_SUPABASE_ANON_KEY` (a legacy anon key or
//!   an `sb_publishable_…` key) + `OUTPOST_SUPABASE_JWT`, a fixed token that is never refreshed;
//!   or, without `OUTPOST_SUPABASE_JWT`, the session `outpost login` stored
//!   ([`crate::session`]), refreshed as it expires. A fixed JWT wins over a stored session.
//!
//! Secrets are never printed: [`CentralConfig::describe`] masks them.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::AuthClient;
use crate::session::{SessionStore, SessionTokens};

use crate::central::Central;
use crate::claims::is_uuid;
// Re-exported: this was its public path before it moved down to `claims`.
pub use crate::claims::jwt_subject;
use crate::error::{Error, Result};
#[cfg(feature = "postgres")]
use crate::pg::PgTransport;
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
    /// Supabase REST API as the user of the stored session, refreshed as it expires.
    RestSession {
        /// Project URL.
        url: String,
        /// The project's anon (publishable) key.
        anon_key: String,
        /// Where the session is stored.
        store: SessionStore,
        /// Who (for descriptions; the session file is authoritative).
        user: String,
    },
}

impl std::fmt::Debug for CentralConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `postgres://user:secret@host/db?password=secret` → `postgres://user:***@host/db?password=***`:
/// any query parameter naming a password (libpq's `password`, `sslpassword`), then the password
/// of the user information (up to the last '@', so a password holding '@' or '?' is masked
/// whole).
fn mask_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    let mut first = true;
    // The query parameters (or, without a '?', the whole URL as one piece).
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&mask_param(&rest[..i], first));
        out.push_str(&rest[i..=i]);
        rest = &rest[i + 1..];
        first = false;
    }
    out.push_str(&mask_param(rest, first));
    match (out.find("://"), out.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &out[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &out[..scheme + 3], &out[at..]),
                None => out,
            }
        }
        _ => out,
    }
}

/// `key=value` with the value masked if the key names a password; the URL's start as it is.
fn mask_param(piece: &str, first: bool) -> String {
    match piece.split_once('=') {
        Some((k, _)) if !first && k.to_ascii_lowercase().contains("password") => {
            format!("{k}=***")
        }
        _ => piece.to_string(),
    }
}

/// The settings a central store is configured from, wherever they came from (flags, the
/// environment, the agent's configuration file). Empty values count as unset.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CentralSettings {
    /// Direct Postgres URL (`OUTPOST_CENTRAL_URL`).
    pub central_url: Option<String>,
    /// The user id to act as over direct Postgres (`OUTPOST_CENTRAL_USER`).
    pub central_user: Option<String>,
    /// Supabase project URL (`OUTPOST_SUPABASE_URL`).
    pub supabase_url: Option<String>,
    /// The project's anon key (`OUTPOST_SUPABASE_ANON_KEY`).
    pub supabase_anon_key: Option<String>,
    /// The user's JWT (`OUTPOST_SUPABASE_JWT`).
    pub supabase_jwt: Option<String>,
}

impl std::fmt::Debug for CentralSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(&self.masked()).unwrap_or_default())
    }
}

impl CentralSettings {
    /// The `OUTPOST_*` variables.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            central_url: env("OUTPOST_CENTRAL_URL"),
            central_user: env("OUTPOST_CENTRAL_USER"),
            supabase_url: env("OUTPOST_SUPABASE_URL"),
            supabase_anon_key: env("OUTPOST_SUPABASE_ANON_KEY"),
            supabase_jwt: env("OUTPOST_SUPABASE_JWT"),
        }
    }

    /// `self` with every setting that `over` has replaced by `over`'s.
    #[must_use]
    pub fn overlay(self, over: Self) -> Self {
        let pick = |a: Option<String>, b: Option<String>| {
            b.filter(|v| !v.trim().is_empty())
                .or(a.filter(|v| !v.trim().is_empty()))
        };
        Self {
            central_url: pick(self.central_url, over.central_url),
            central_user: pick(self.central_user, over.central_user),
            supabase_url: pick(self.supabase_url, over.supabase_url),
            supabase_anon_key: pick(self.supabase_anon_key, over.supabase_anon_key),
            supabase_jwt: pick(self.supabase_jwt, over.supabase_jwt),
        }
    }

    /// True when no setting is given: sync is off.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The same with secrets masked (passwords in URLs, the anon key, the JWT), for printing.
    #[must_use]
    pub fn masked(&self) -> Self {
        let hide = |v: &Option<String>| v.as_ref().map(|_| "***".to_string());
        Self {
            central_url: self.central_url.as_deref().map(mask_url),
            central_user: self.central_user.clone(),
            supabase_url: self.supabase_url.clone(),
            supabase_anon_key: hide(&self.supabase_anon_key),
            supabase_jwt: hide(&self.supabase_jwt),
        }
    }
}

impl CentralConfig {
    /// From a `--central` URL if given, else the environment.
    ///
    /// # Errors
    /// [`Error::Config`] when nothing, or not enough, is configured.
    pub fn resolve(central: Option<&str>) -> Result<Self> {
        Self::resolve_with_session(central, None)
    }

    /// As [`CentralConfig::resolve`], falling back on the session stored in `session` when no
    /// JWT is set.
    ///
    /// # Errors
    /// [`Error::Config`] when nothing, or not enough, is configured; [`Error::Session`] for a
    /// session file that cannot be read.
    pub fn resolve_with_session(
        central: Option<&str>,
        session: Option<&SessionStore>,
    ) -> Result<Self> {
        let flag = CentralSettings {
            central_url: central.map(str::to_string),
            ..Default::default()
        };
        Self::from_settings_with_session(&CentralSettings::from_env().overlay(flag), session)
    }

    /// From settings: direct Postgres if `central_url` is set, else the REST API.
    ///
    /// # Errors
    /// [`Error::Config`] when nothing, or not enough, is configured.
    pub fn from_settings(s: &CentralSettings) -> Result<Self> {
        Self::from_settings_with_session(s, None)
    }

    /// As [`CentralConfig::from_settings`]; without a JWT, the session stored in `session`
    /// (if there is one) is the REST API's user, and direct Postgres acts as its user id.
    ///
    /// # Errors
    /// [`Error::Config`] when nothing, or not enough, is configured, or the session is for
    /// another project; [`Error::Session`] for a session file that cannot be read.
    pub fn from_settings_with_session(
        s: &CentralSettings,
        session: Option<&SessionStore>,
    ) -> Result<Self> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let stored = match session {
            Some(store) if set(&s.supabase_jwt).is_none() => {
                store.load()?.map(|session| (store.clone(), session))
            }
            _ => None,
        };
        if let Some(url) = set(&s.central_url) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::Config(format!(
                    "--central takes a postgres:// URL (got '{}'); for the REST API set OUTPOST_SUPABASE_URL",
                    mask_url(&url)
                )));
            }
            let user_id = set(&s.central_user)
                .or_else(|| set(&s.supabase_jwt).and_then(|j| jwt_subject(&j)))
                .or_else(|| stored.as_ref().map(|(_, session)| session.user_id.clone()))
                .ok_or_else(|| {
                    Error::Config(
                        "direct Postgres needs the user to act as: set OUTPOST_CENTRAL_USER (a user id) or OUTPOST_SUPABASE_JWT, or run outpost login".into(),
                    )
                })?;
            if !is_uuid(&user_id) {
                return Err(Error::Config(format!(
                    "the central user '{user_id}' is not a UUID"
                )));
            }
            return Ok(CentralConfig::Postgres { url, user_id });
        }
        if let Some((store, session)) = stored {
            let url = set(&s.supabase_url).unwrap_or_else(|| session.url.clone());
            if url.trim_end_matches('/') != session.url.trim_end_matches('/') {
                return Err(Error::Config(format!(
                    "the stored session is for {} but OUTPOST_SUPABASE_URL is {url}; run outpost login again (or outpost logout)",
                    session.url
                )));
            }
            let anon_key = set(&s.supabase_anon_key).ok_or_else(|| {
                Error::Config(
                    "the Supabase REST API also needs OUTPOST_SUPABASE_ANON_KEY (the project's anon or publishable key)".into(),
                )
            })?;
            let user = session.email.clone().unwrap_or(session.user_id.clone());
            return Ok(CentralConfig::RestSession {
                url,
                anon_key,
                store,
                user,
            });
        }
        match (set(&s.supabase_url), set(&s.supabase_anon_key), set(&s.supabase_jwt)) {
            (Some(url), Some(anon_key), Some(jwt)) => Ok(CentralConfig::Rest { url, anon_key, jwt }),
            (None, None, None) => Err(Error::Config(
                "no central store configured: pass --central postgres://... or set OUTPOST_SUPABASE_URL and OUTPOST_SUPABASE_ANON_KEY and run outpost login (or set OUTPOST_SUPABASE_JWT)".into(),
            )),
            (url, key, jwt) => {
                let missing: Vec<&str> = [
                    ("OUTPOST_SUPABASE_URL", url.is_none()),
                    ("OUTPOST_SUPABASE_ANON_KEY", key.is_none()),
                    (
                        "OUTPOST_SUPABASE_JWT (or a session: outpost login)",
                        jwt.is_none(),
                    ),
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
            CentralConfig::RestSession { url, user, .. } => {
                format!("supabase REST {url} as {user} (signed in)")
            }
        }
    }

    /// The session store behind this configuration, if it is a signed-in one.
    pub fn session_store(&self) -> Option<&SessionStore> {
        match self {
            CentralConfig::RestSession { store, .. } => Some(store),
            _ => None,
        }
    }

    /// Opens the transport (connections are made lazily, on the first call; a session is read
    /// now and refreshed on the first call if it must be).
    ///
    /// # Errors
    /// [`Error::Config`]; [`Error::SignedOut`] when no session is stored or it has ended.
    pub fn open(&self, timeout: Duration) -> Result<Central> {
        self.open_with_session(timeout).map(|(central, _)| central)
    }

    /// As [`CentralConfig::open`], also handing out the session the transport refreshes (for a
    /// signed-in configuration), so that a long-running process can keep it fresh between
    /// syncs through the same tokens.
    ///
    /// # Errors
    /// As [`CentralConfig::open`].
    pub fn open_with_session(
        &self,
        timeout: Duration,
    ) -> Result<(Central, Option<Arc<SessionTokens>>)> {
        Ok(match self {
            #[cfg(feature = "postgres")]
            CentralConfig::Postgres { url, user_id } => (
                Central::new(PgTransport::new(url, user_id, timeout)?),
                None,
            ),
            #[cfg(not(feature = "postgres"))]
            CentralConfig::Postgres { .. } => {
                return Err(Error::Config(
                    "this build of Outpost has no direct Postgres transport (cargo feature `postgres`); use the Supabase REST API".into(),
                ))
            }
            CentralConfig::Rest { url, anon_key, jwt } => (
                Central::new(RestTransport::new(url, anon_key, jwt, timeout)?),
                None,
            ),
            CentralConfig::RestSession {
                url,
                anon_key,
                store,
                ..
            } => {
                let auth = AuthClient::new(url, anon_key, timeout)?;
                let tokens = Arc::new(SessionTokens::open(store.clone(), auth)?);
                let transport = RestTransport::with_tokens(url, anon_key, tokens.clone(), timeout)?;
                (Central::new(transport), Some(tokens))
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
        // A password as a parameter, and passwords holding '@' or '?'.
        assert_eq!(
            mask_url("postgres://app@db/x?sslmode=require&password=s3cret"),
            "postgres://app@db/x?sslmode=require&password=***"
        );
        assert_eq!(
            mask_url("postgres://db/x?PASSWORD=a@b&user=app"),
            "postgres://db/x?PASSWORD=***&user=app"
        );
        assert_eq!(
            mask_url("postgres://app:p?a@ss@db/x?sslpassword=k"),
            "postgres://app:***@db/x?sslpassword=***"
        );
    }

    fn stored(dir: &std::path::Path) -> std::result::Result<SessionStore, Error> {
        let store = SessionStore::new(dir);
        store.lock()?.save(&crate::session::Session {
            url: "https://p.supabase.co".into(),
            user_id: "0190f0f0-0000-7000-8000-000000000001".into(),
            email: Some("ada@example.com".into()),
            access_token: "access".into(),
            expires_at: 0,
            expires_in: 3600,
            refresh_token: "refresh".into(),
            signed_out: None,
        })?;
        Ok(store)
    }

    #[test]
    fn a_stored_session_is_used_when_no_jwt_is_set(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = stored(dir.path())?;
        let settings = CentralSettings {
            supabase_url: Some("https://p.supabase.co".into()),
            supabase_anon_key: Some("sb_publishable_x".into()),
            ..Default::default()
        };
        let c = CentralConfig::from_settings_with_session(&settings, Some(&store))?;
        assert!(matches!(c, CentralConfig::RestSession { .. }), "{c:?}");
        assert_eq!(
            c.describe(),
            "supabase REST https://p.supabase.co as ada@example.com (signed in)"
        );
        assert!(!format!("{c:?}").contains("access") && !format!("{c:?}").contains("refresh"));
        // The URL may come from the session alone.
        let no_url = CentralSettings {
            supabase_url: None,
            ..settings.clone()
        };
        assert!(
            CentralConfig::from_settings_with_session(&no_url, Some(&store))?
                .session_store()
                .is_some()
        );
        // A fixed JWT wins (backwards compatible), and no session store means none.
        let with_jwt = CentralSettings {
            supabase_jwt: Some("a.b.c".into()),
            ..settings.clone()
        };
        let c = CentralConfig::from_settings_with_session(&with_jwt, Some(&store))?;
        assert!(matches!(c, CentralConfig::Rest { .. }), "{c:?}");
        assert!(CentralConfig::from_settings(&settings).is_err());
        // A session of another project is refused, naming the way out.
        let other = CentralSettings {
            supabase_url: Some("https://q.supabase.co".into()),
            ..settings.clone()
        };
        let e = CentralConfig::from_settings_with_session(&other, Some(&store))
            .err()
            .ok_or("accepted")?;
        assert!(e.to_string().contains("outpost login"), "{e}");
        // Direct Postgres acts as the session's user.
        let pg = CentralSettings {
            central_url: Some("postgres://h/db".into()),
            ..Default::default()
        };
        match CentralConfig::from_settings_with_session(&pg, Some(&store))? {
            CentralConfig::Postgres { user_id, .. } => {
                assert_eq!(user_id, "0190f0f0-0000-7000-8000-000000000001")
            }
            c => return Err(format!("{c:?}").into()),
        }
        Ok(())
    }
}
