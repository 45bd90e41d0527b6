//! JWTs in the stand-in: signing access tokens as Supabase Auth does (HS256 with the project's
//! secret, or ES256 with a signing key and its `kid`), and verifying bearer tokens as PostgREST
//! does (`src/library/PostgREST/Auth/Jwt.hs`): the signature with the key the token's algorithm
//! and `kid` name, then the `exp`, `nbf` and `iat` claims with a 30-second clock skew.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use super::ShimError;

/// PostgREST's `allowedSkewSeconds` (Auth/Jwt.hs).
pub const ALLOWED_SKEW_SECONDS: u64 = 30;

/// An ES256 signing key: its `kid` and its private key as PKCS#8 PEM.
#[derive(Clone)]
pub struct Es256Key {
    /// The key id, written in each token's header and in the JWKS.
    pub kid: String,
    /// `-----BEGIN PRIVATE KEY-----…` (P-256).
    pub private_pem: String,
}

/// Signs access tokens.
pub(super) struct Signer {
    header: Header,
    key: EncodingKey,
}

impl Signer {
    pub(super) fn new(secret: &str, es256: Option<&Es256Key>) -> Result<Self, ShimError> {
        Ok(match es256 {
            None => Self {
                header: Header::new(Algorithm::HS256),
                key: EncodingKey::from_secret(secret.as_bytes()),
            },
            Some(k) => {
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some(k.kid.clone());
                Self {
                    header,
                    key: EncodingKey::from_ec_pem(k.private_pem.as_bytes())
                        .map_err(|e| ShimError::Key(format!("ES256 signing key: {e}")))?,
                }
            }
        })
    }

    pub(super) fn sign(&self, claims: &Value) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
    }
}

/// Why PostgREST refused a token: `PGRST301` (it cannot be decoded or verified) or `PGRST303`
/// (a claim fails its check), with PostgREST's message and details.
#[derive(Debug)]
pub(super) enum JwtError {
    Decode {
        message: String,
        details: Option<String>,
    },
    Claims(&'static str),
}

impl JwtError {
    pub(super) fn code(&self) -> &'static str {
        match self {
            JwtError::Decode { .. } => "PGRST301",
            JwtError::Claims(_) => "PGRST303",
        }
    }

    pub(super) fn message(&self) -> &str {
        match self {
            JwtError::Decode { message, .. } => message.as_str(),
            JwtError::Claims(m) => m,
        }
    }

    pub(super) fn details(&self) -> Option<&str> {
        match self {
            JwtError::Decode { details, .. } => details.as_deref(),
            JwtError::Claims(_) => None,
        }
    }
}

fn decode_error(message: &str) -> JwtError {
    JwtError::Decode {
        message: message.to_string(),
        details: None,
    }
}

/// Verifies bearer tokens with the HS256 secret and the JWKS's public keys.
pub(super) struct Verifier {
    secret: DecodingKey,
    /// `(kid, algorithm, key)` of each usable JWKS key.
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
}

impl Verifier {
    pub(super) fn new(secret: &str, jwks: Option<&Value>) -> Result<Self, ShimError> {
        let mut keys = Vec::new();
        if let Some(jwks) = jwks {
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone())
                .map_err(|e| ShimError::Key(format!("JWKS: {e}")))?;
            for jwk in &set.keys {
                let alg = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| ShimError::Key(format!("JWKS key: {e}")))?;
                keys.push((jwk.common.key_id.clone(), alg, key));
            }
        }
        Ok(Self {
            secret: DecodingKey::from_secret(secret.as_bytes()),
            keys,
        })
    }

    /// The claims of `token` if PostgREST would accept it at Unix time `now`.
    pub(super) fn verify(&self, token: &str, now: i64, skew: i64) -> Result<Value, JwtError> {
        let claims = self.decode(token)?;
        check_claims(&claims, now, skew)?;
        Ok(claims)
    }

    /// The claims of `token` if its signature is good (with the secret for HS256, else the
    /// JWKS key of its algorithm and `kid`); no claim is checked.
    pub(super) fn decode(&self, token: &str) -> Result<Value, JwtError> {
        if token.is_empty() {
            return Err(decode_error("Empty JWT is sent in Authorization header"));
        }
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(decode_error(&format!(
                "Expected 3 parts in JWT; got {parts}"
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| decode_error("JWT cryptographic operation failed"))?;
        // The keys that can check this token: the secret for HS256; for the others, the JWKS
        // keys of the token's algorithm, that of its `kid` if it names one.
        let candidates: Vec<&DecodingKey> = if header.alg == Algorithm::HS256 {
            vec![&self.secret]
        } else {
            self.keys
                .iter()
                .filter(|(kid, alg, _)| {
                    *alg == header.alg
                        && (header.kid.is_none() || kid.is_none() || *kid == header.kid)
                })
                .map(|(_, _, k)| k)
                .collect()
        };
        if candidates.is_empty() {
            return Err(JwtError::Decode {
                message: "No suitable key or wrong key type".into(),
                details: Some(format!("no key for the token's algorithm {:?}", header.alg)),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut claims = None;
        for key in candidates {
            if let Ok(data) = jsonwebtoken::decode::<Value>(token, key, &validation) {
                claims = Some(data.claims);
                break;
            }
        }
        let claims = claims.ok_or_else(|| decode_error("JWT cryptographic operation failed"))?;
        if !claims.is_object() {
            return Err(JwtError::Claims("Parsing claims failed"));
        }
        Ok(claims)
    }
}

/// PostgREST's `checkForErrors`: the first failing of `exp` (in the past by more than the
/// skew), `nbf` and `iat` (in the future by more than the skew); a present claim that is not a
/// number fails too. (`aud` is checked only when PostgREST has `jwt-aud`; Supabase sets none.)
fn check_claims(claims: &Value, now: i64, skew: i64) -> Result<(), JwtError> {
    let number = |key: &str, not_number: &'static str| -> Result<Option<i64>, JwtError> {
        match claims.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(
                n.as_i64()
                    .or_else(|| n.as_f64().map(|f| f.floor() as i64))
                    .unwrap_or(0),
            )),
            Some(_) => Err(JwtError::Claims(not_number)),
        }
    };
    if let Some(exp) = number("exp", "The JWT 'exp' claim must be a number")? {
        if now - skew > exp {
            return Err(JwtError::Claims("JWT expired"));
        }
    }
    if let Some(nbf) = number("nbf", "The JWT 'nbf' claim must be a number")? {
        if now + skew < nbf {
            return Err(JwtError::Claims("JWT not yet valid"));
        }
    }
    if let Some(iat) = number("iat", "The JWT 'iat' claim must be a number")? {
        if now + skew < iat {
            return Err(JwtError::Claims("JWT issued at future"));
        }
    }
    Ok(())
}

/// A JWT for `user` (role `authenticated`), signed with `secret` as Supabase signs them, that
/// expires in 2100.
///
/// # Errors
/// Signing errors.
pub fn sign_jwt(user: &str, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = json!({
        "sub": user, "role": "authenticated", "aud": "authenticated", "exp": 4_102_444_800u64
    });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}
