//! Who a device is at the central store: the user id (a UUID) that rows are written as, and the
//! `sub` claim of the user's JWT it is usually read from.
//!
//! Kept apart from [`crate::config`] so that the transports, which check and report the user,
//! do not depend on the configuration that opens them.

/// The `sub` claim of a JWT, read without verifying it (the server verifies).
pub fn jwt_subject(jwt: &str) -> Option<String> {
    jwt_claims(jwt)?.get("sub")?.as_str().map(str::to_string)
}

/// What a session needs of an access token's claims: who (`sub`), until when (`exp`) and since
/// when (`iat`, if present), read without verifying the token (the server verifies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user id (`sub`).
    pub subject: String,
    /// When the token expires, Unix seconds by the server's clock (`exp`).
    pub expires_at: i64,
    /// When it was issued, Unix seconds by the server's clock (`iat`), if the token says.
    pub issued_at: Option<i64>,
}

/// The `sub`, `exp` and `iat` claims of an access token; `None` when it is not a JWT or has
/// no `sub` or no numeric `exp`.
pub fn access_claims(jwt: &str) -> Option<AccessClaims> {
    let v = jwt_claims(jwt)?;
    let number = |k: &str| {
        v.get(k)
            .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
    };
    Some(AccessClaims {
        subject: v.get("sub")?.as_str()?.to_string(),
        expires_at: number("exp")?,
        issued_at: number("iat"),
    })
}

/// The payload of a JWT as JSON, unverified.
fn jwt_claims(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `s` looks like a UUID (8-4-4-4-12 hex digits).
pub(crate) fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_of_a_jwt_is_read() {
        // {"alg":"HS256"} . {"sub":"0190f0f0-0000-7000-8000-000000000001"} . sig
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwMTkwZjBmMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDEifQ.x";
        assert_eq!(
            jwt_subject(jwt).as_deref(),
            Some("0190f0f0-0000-7000-8000-000000000001")
        );
        assert_eq!(jwt_subject("not-a-jwt"), None);
    }

    fn jwt(claims: &str) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    #[test]
    fn an_access_token_says_who_until_when_and_since_when() {
        let claims = access_claims(&jwt(
            r#"{"sub":"0190f0f0-0000-7000-8000-000000000001","exp":1800003600,"iat":1800000000}"#,
        ));
        assert_eq!(
            claims,
            Some(AccessClaims {
                subject: "0190f0f0-0000-7000-8000-000000000001".into(),
                expires_at: 1_800_003_600,
                issued_at: Some(1_800_000_000),
            })
        );
        // `iat` is optional; `sub` and `exp` are not.
        let no_iat = access_claims(&jwt(r#"{"sub":"u","exp":5}"#));
        assert_eq!(no_iat.map(|c| c.issued_at), Some(None));
        assert_eq!(access_claims(&jwt(r#"{"sub":"u"}"#)), None);
        assert_eq!(access_claims(&jwt(r#"{"exp":5}"#)), None);
        assert_eq!(access_claims("not-a-jwt"), None);
    }

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid("0190f0f0-0000-7000-8000-000000000001"));
        assert!(!is_uuid("0190f0f0-0000-7000-8000-00000000000"));
        assert!(!is_uuid("0190f0f0-0000-7000-8000-00000000000g"));
        assert!(!is_uuid("alice"));
    }
}
