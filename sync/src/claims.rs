//! Who a device is at the central store: the user id (a UUID) that rows are written as, and the
//! `sub` claim of the user's JWT it is usually read from.
//!
//! Kept apart from [`crate::config`] so that the transports, which check and report the user,
//! do not depend on the configuration that opens them.

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

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid("0190f0f0-0000-7000-8000-000000000001"));
        assert!(!is_uuid("0190f0f0-0000-7000-8000-00000000000"));
        assert!(!is_uuid("0190f0f0-0000-7000-8000-00000000000g"));
        assert!(!is_uuid("alice"));
    }
}
