//! A Supabase Auth session that the APP owns, held in memory: the app signed the user in with
//! its own client (supabase-kt, supabase-swift, supabase-js) and hands Outpost the token pair;
//! Outpost refreshes it as it needs to and hands every rotation back.
//!
//! - **Who and until when** come from the access token's claims (`sub`, `exp`, `iat`; read
//!   unverified, the server verifies), so the app passes only the two tokens.
//! - **Refreshed as the file-backed session is** ([`crate::session::SessionTokens`]): ahead of
//!   expiry by the same [`refresh_margin`], and once when the server rejects the token
//!   ([`TokenProvider::refresh_rejected`]). One refresh at a time: callers wait on the refresh
//!   in flight and use its result instead of spending the same refresh token twice, which the
//!   server would take for token theft.
//! - **Rotations go to the app first.** A refresh rotates the refresh token (single use). The
//!   new pair is handed to the listener *before* the new access token is used, so that the
//!   app stores the new refresh token before anything relies on the old one being forgotten;
//!   if the app crashes before storing it, GoTrue still accepts the old one once (it answers
//!   the active child of a revoked parent).
//! - **Signed out** is [`Error::SignedOut`], from the same classification of GoTrue's refresh
//!   errors as the file-backed session ([`crate::auth::SIGNED_OUT_CODES`]): once the server says
//!   the session is gone (`refresh_token_already_used`, `refresh_token_not_found`, …), every
//!   later call gets the same error without asking it again, until the app sets a new session.
//! - **Never printed.** `Debug` of [`AppSession`] and [`TokenPair`] masks the tokens.
//!
//! The app and Outpost must not both refresh the same session: the app should leave the
//! refreshing to Outpost while it has handed the session over (or hand it over again after
//! every refresh of its own), since two clients spending one refresh token revoke it.

use std::time::Duration;

use crate::auth::{AuthClient, TokenResponse};
use crate::claims::access_claims;
use crate::error::{Error, Result};
use crate::session::{now_s, refresh_margin, TokenProvider};
use crate::transport::BoxFuture;

/// A token pair the server issued, as the app should store it. `Debug` masks the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// The new access token (a JWT).
    pub access_token: String,
    /// The new refresh token; the one it replaces is spent.
    pub refresh_token: String,
    /// When the access token expires, Unix seconds by the server's clock (its `exp`, as
    /// supabase-kt's and supabase-swift's `expiresAt`).
    pub expires_at: i64,
    /// Its lifetime in seconds (the answer's `expires_in`).
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .field("expires_at", &self.expires_at)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What is told each rotated pair, before its access token is used.
pub type RotationListener = Box<dyn Fn(TokenPair) + Send + Sync>;

/// The session as it stands.
struct State {
    access_token: String,
    refresh_token: String,
    /// When the access token expires, Unix seconds by this device's clock where it was
    /// received here (`now + expires_in`), else its `exp`.
    expires_at: i64,
    /// Its lifetime in seconds, for the refresh margin.
    lifetime: u64,
    /// Set once the server said the session is gone: (code, what it said).
    ended: Option<(String, String)>,
}

impl State {
    fn needs_refresh(&self, now: i64) -> bool {
        let margin = refresh_margin(Duration::from_secs(self.lifetime)).as_secs() as i64;
        now.saturating_add(margin) >= self.expires_at
    }
}

/// A session the app owns, as a [`TokenProvider`] for the REST transport: refreshed in memory
/// through `auth`, every rotation handed to the listener first.
pub struct AppSession {
    auth: AuthClient,
    user_id: String,
    listener: Option<RotationListener>,
    /// Held across a refresh: one refresh at a time.
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for AppSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSession")
            .field("url", &self.auth.url())
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl AppSession {
    /// The session of `access_token` and `refresh_token` (as the app's Supabase client holds
    /// them), refreshed through `auth` (the project URL and its anon or publishable key);
    /// `listener` is told each rotated pair. An expired access token is fine: it is refreshed
    /// before the first call.
    ///
    /// # Errors
    /// [`Error::Config`] when the access token is not a JWT with `sub` and `exp`, or either
    /// token is empty or cannot be a header.
    pub fn new(
        auth: AuthClient,
        access_token: &str,
        refresh_token: &str,
        listener: Option<RotationListener>,
    ) -> Result<Self> {
        let header_safe =
            |t: &str| !t.is_empty() && reqwest::header::HeaderValue::from_str(t).is_ok();
        if !header_safe(access_token) || !header_safe(refresh_token) {
            return Err(Error::Config(
                "the session's access or refresh token is empty or has characters a header cannot carry"
                    .into(),
            ));
        }
        let claims = access_claims(access_token).ok_or_else(|| {
            Error::Config(
                "the session's access token is not a JWT with `sub` and `exp` claims (pass the access token, not the refresh token or the anon key)"
                    .into(),
            )
        })?;
        // Without `iat`, the token counts as an hour-long one (Supabase's default): a minute's
        // margin.
        let lifetime = claims
            .issued_at
            .map_or(3600, |iat| (claims.expires_at - iat).max(1) as u64);
        Ok(Self {
            auth,
            user_id: claims.subject,
            listener,
            state: tokio::sync::Mutex::new(State {
                access_token: access_token.to_string(),
                refresh_token: refresh_token.to_string(),
                expires_at: claims.expires_at,
                lifetime,
                ended: None,
            }),
        })
    }

    /// The project URL.
    pub fn url(&self) -> &str {
        self.auth.url()
    }

    /// When the current access token expires, Unix seconds (it is refreshed before then).
    pub async fn expires_at(&self) -> i64 {
        self.state.lock().await.expires_at
    }

    fn signed_out(&self, code: &str, detail: &str) -> Error {
        Error::SignedOut {
            endpoint: self.auth.url().to_string(),
            code: code.to_string(),
            detail: detail.to_string(),
        }
    }

    /// A token to use now; `rejected`: the server refused this one, refresh even if it looks
    /// valid (unless a refresh meanwhile already replaced it).
    async fn token(&self, rejected: Option<&str>) -> Result<String> {
        let mut state = self.state.lock().await;
        if let Some((code, detail)) = &state.ended {
            return Err(self.signed_out(code, detail));
        }
        let stale = state.needs_refresh(now_s()) || rejected == Some(state.access_token.as_str());
        if !stale {
            return Ok(state.access_token.clone());
        }
        match self.auth.refresh(&state.refresh_token).await {
            Ok(answer) => {
                let pair = self.pair(&answer)?;
                // The app stores the new refresh token before the new access token is used.
                if let Some(listener) = &self.listener {
                    let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        listener(pair.clone())
                    }));
                    if told.is_err() {
                        // The server has rotated already: the old token is spent, so the new
                        // pair is kept and used all the same.
                        tracing::warn!(
                            "the session listener panicked; the new tokens are used all the same"
                        );
                    }
                }
                *state = State {
                    expires_at: now_s().saturating_add(answer.expires_in as i64),
                    lifetime: answer.expires_in,
                    access_token: pair.access_token,
                    refresh_token: pair.refresh_token,
                    ended: None,
                };
                tracing::debug!(expires_in = answer.expires_in, "app session refreshed");
                Ok(state.access_token.clone())
            }
            Err(Error::SignedOut { code, detail, .. }) => {
                tracing::warn!(%code, "the app's session has ended");
                let e = self.signed_out(&code, &detail);
                state.ended = Some((code, detail));
                state.access_token.clear();
                state.refresh_token.clear();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The pair a refresh answer stands for, checked to be the same user's.
    fn pair(&self, answer: &TokenResponse) -> Result<TokenPair> {
        if answer.user.id != self.user_id {
            return Err(Error::BadResponse {
                endpoint: self.auth.url().to_string(),
                what: "session refresh".into(),
                detail: "the refreshed session is for another user".into(),
            });
        }
        let expires_at = access_claims(&answer.access_token)
            .map(|c| c.expires_at)
            .or(answer.expires_at)
            .unwrap_or_else(|| now_s().saturating_add(answer.expires_in as i64));
        Ok(TokenPair {
            access_token: answer.access_token.clone(),
            refresh_token: answer.refresh_token.clone(),
            expires_at,
            expires_in: answer.expires_in,
        })
    }
}

impl TokenProvider for AppSession {
    fn user_id(&self) -> &str {
        &self.user_id
    }

    fn access_token(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(self.token(None))
    }

    fn refresh_rejected<'a>(&'a self, rejected: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move { self.token(Some(rejected)).await.map(Some) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::State as AxumState;
    use axum::http::StatusCode;
    use axum::Json;
    use serde_json::{json, Value};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    const USER: &str = "0190f0f0-0000-7000-8000-000000000001";

    /// An unsigned JWT for `sub`, issued `age` seconds ago and living `ttl` seconds; each one
    /// different (`jti`).
    fn jwt(sub: &str, ttl: i64, age: i64) -> String {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        use base64::Engine as _;
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let iat = now_s() - age;
        format!(
            "{}.{}.sig",
            b64(&json!({"alg": "HS256"})),
            b64(&json!({"sub": sub, "iat": iat, "exp": iat + ttl,
                        "jti": SERIAL.fetch_add(1, Ordering::SeqCst)}))
        )
    }

    /// A token endpoint: refresh token `rN` is answered with `r{N+1}` and a fresh hour-long
    /// access token, once (slowly, to let callers pile up); a spent one with
    /// `refresh_token_already_used`, as GoTrue does after the reuse interval.
    #[derive(Default)]
    struct FakeAuth {
        refreshes: AtomicUsize,
        spent: Mutex<Vec<String>>,
    }

    async fn token(
        AxumState(fake): AxumState<Arc<FakeAuth>>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let presented = body["refresh_token"].as_str().unwrap_or("").to_string();
        let already_used = {
            let mut spent = fake.spent.lock().unwrap_or_else(|p| p.into_inner());
            let used = spent.contains(&presented);
            spent.push(presented.clone());
            used
        };
        if already_used {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"code": 400, "error_code": "refresh_token_already_used",
                            "msg": "Invalid Refresh Token: Already Used"}),
                ),
            );
        }
        fake.refreshes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n: u32 = presented.trim_start_matches('r').parse().unwrap_or(0);
        (
            StatusCode::OK,
            Json(json!({
                "access_token": jwt(USER, 3600, 0),
                "token_type": "bearer",
                "expires_in": 3600,
                "expires_at": now_s() + 3600,
                "refresh_token": format!("r{}", n + 1),
                "user": {"id": USER},
            })),
        )
    }

    async fn fake_auth() -> std::io::Result<(AuthClient, Arc<FakeAuth>)> {
        let fake = Arc::new(FakeAuth::default());
        let app = axum::Router::new()
            .route("/auth/v1/token", axum::routing::post(token))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let auth = AuthClient::new(&url, "anon", Duration::from_secs(5))
            .map_err(std::io::Error::other)?
            .with_retry(crate::backoff::Backoff::none());
        Ok((auth, fake))
    }

    /// A listener that records the pairs it is given.
    fn recorder() -> (RotationListener, Arc<Mutex<Vec<TokenPair>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let listener: RotationListener =
            Box::new(move |pair| into.lock().unwrap_or_else(|p| p.into_inner()).push(pair));
        (listener, seen)
    }

    fn pairs(seen: &Mutex<Vec<TokenPair>>) -> Vec<TokenPair> {
        seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    #[tokio::test]
    async fn a_fresh_token_is_used_as_it_is_and_its_claims_say_who() -> TestResult {
        let (auth, fake) = fake_auth().await?;
        let access = jwt(USER, 3600, 0);
        let session = AppSession::new(auth, &access, "r0", None)?;
        assert_eq!(session.user_id(), USER);
        assert_eq!(session.access_token().await?, access);
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_token_within_the_margin_is_refreshed_and_the_app_told_first() -> TestResult {
        let (auth, fake) = fake_auth().await?;
        // An hour-long token with 30 s left: inside the one-minute margin.
        let (listener, seen) = recorder();
        let session = AppSession::new(auth, &jwt(USER, 3600, 3570), "r0", Some(listener))?;
        let fresh = session.access_token().await?;
        let told = pairs(&seen);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].access_token, fresh);
        assert_eq!(told[0].refresh_token, "r1");
        assert_eq!(told[0].expires_in, 3600);
        assert!((told[0].expires_at - (now_s() + 3600)).abs() <= 2);
        // Fresh now: no second refresh.
        assert_eq!(session.access_token().await?, fresh);
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 1);
        // A 30-second token is refreshed only in its last quarter, not before every call.
        let (auth, _) = fake_auth().await?;
        let short = jwt(USER, 30, 20);
        let session = AppSession::new(auth, &short, "r0", None)?;
        assert_eq!(session.access_token().await?, short);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_rejected_token_is_refreshed_once_and_concurrent_callers_share_it() -> TestResult {
        let (auth, fake) = fake_auth().await?;
        let (listener, seen) = recorder();
        let access = jwt(USER, 3600, 0);
        let session = Arc::new(AppSession::new(auth, &access, "r0", Some(listener))?);
        // Eight calls find their (valid-looking) token rejected at once: one refresh.
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (session, access) = (session.clone(), access.clone());
                tokio::spawn(async move { session.refresh_rejected(&access).await })
            })
            .collect();
        let mut tokens = Vec::new();
        for call in calls {
            tokens.push(call.await??.ok_or("no token")?);
        }
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 1);
        assert!(tokens.iter().all(|t| *t == tokens[0] && *t != access));
        assert_eq!(pairs(&seen).len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_listener_that_panics_does_not_lose_the_new_tokens() -> TestResult {
        let (auth, fake) = fake_auth().await?;
        let listener: RotationListener = Box::new(|_| panic!("the app's storage failed"));
        let session = AppSession::new(auth, &jwt(USER, 3600, 4000), "r0", Some(listener))?;
        // r0 is spent at the server: the new pair is the only one that works now.
        let fresh = session.access_token().await?;
        assert_eq!(session.access_token().await?, fresh);
        assert_eq!(session.state.lock().await.refresh_token, "r1");
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_spent_refresh_token_signs_out_for_good() -> TestResult {
        let (auth, fake) = fake_auth().await?;
        // Another client already spent r0.
        fake.spent.lock().map_err(|_| "poisoned")?.push("r0".into());
        let (listener, seen) = recorder();
        let session = AppSession::new(auth, &jwt(USER, 3600, 4000), "r0", Some(listener))?;
        let e = session.access_token().await.err().ok_or("refreshed")?;
        assert!(
            matches!(&e, Error::SignedOut { code, .. } if code == "refresh_token_already_used"),
            "{e}"
        );
        assert!(!e.is_retryable());
        // Later calls get the same answer without asking the server again.
        let asked = fake.spent.lock().map_err(|_| "poisoned")?.len();
        let again = session.access_token().await.err().ok_or("refreshed")?;
        assert_eq!(again.kind(), crate::error::ErrorKind::SignedOut);
        assert_eq!(fake.spent.lock().map_err(|_| "poisoned")?.len(), asked);
        assert!(pairs(&seen).is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn offline_keeps_the_session_for_the_next_try() -> TestResult {
        // Nothing listens on port 9 of loopback.
        let auth = AuthClient::new("http://127.0.0.1:9", "anon", Duration::from_secs(2))?
            .with_retry(crate::backoff::Backoff::none());
        let session = AppSession::new(auth, &jwt(USER, 3600, 4000), "r0", None)?;
        let e = session
            .access_token()
            .await
            .err()
            .ok_or("refreshed offline")?;
        assert!(e.is_retryable(), "{e}");
        assert_eq!(session.state.lock().await.refresh_token, "r0");
        Ok(())
    }

    #[tokio::test]
    async fn tokens_that_are_not_a_session_are_refused_and_never_printed() -> TestResult {
        let (auth, _) = fake_auth().await?;
        for (access, refresh) in [("", "r0"), ("not-a-jwt", "r0"), ("a.b.c", "")] {
            let e = AppSession::new(auth.clone(), access, refresh, None)
                .err()
                .ok_or("accepted")?;
            assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{e}");
        }
        let access = jwt(USER, 3600, 0);
        let session = AppSession::new(auth, &access, "secret-refresh", None)?;
        let shown = format!("{session:?}");
        assert!(
            !shown.contains(&access) && !shown.contains("secret-refresh"),
            "{shown}"
        );
        let pair = TokenPair {
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
            expires_at: 1,
            expires_in: 1,
        };
        assert!(!format!("{pair:?}").contains("secret"));
        Ok(())
    }
}
