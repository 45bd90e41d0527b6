//! The stand-in (`outpost_sync::shim`) checked against the documented behaviour of what it stands
//! in for: Supabase's API gateway, Supabase Auth's token endpoint (supabase/auth, "GoTrue") and
//! PostgREST. Each test names, in a comment, the source it follows (URL and the sentence or code
//! it reproduces). These tests need the local target (a database of their own and a stand-in
//! in front of it); against a real Supabase project they say so and pass without running.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{local_only, Db, Device, TestResult};
use outpost_sync::shim::{Es256Key, Shim, ShimConfig};
use serde_json::{json, Value};

/// The local target's anon key (the stand-in's default configuration accepts it).
fn anon() -> &'static str {
    common::anon_key()
}

/// A P-256 key made for these tests (never used anywhere else), its JWK coordinates and kid.
const TEST_EC_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4IlEqY9bjbuX6/WE
DB8CaTuLUUh8V+rXni1znCLeTCmhRANCAAR62QMleQF0uQsULlcis14Az3MRzBab
jYIHw8K4/LPA7JmtjN78f/yX8jLCHkcgl0iqI7gwkuzQEkmihLclYL49
-----END PRIVATE KEY-----
";
const TEST_EC_X: &str = "etkDJXkBdLkLFC5XIrNeAM9zEcwWm42CB8PCuPyzwOw";
const TEST_EC_Y: &str = "ma2M3vx__JfyMsIeRyCXSKojuDCS7NASSaKEtyVgvj0";
const TEST_EC_KID: &str = "standin-test-key-1";

/// An HTTP answer: status, headers, JSON body (`null` if not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// `POST url` with `headers` and `body` (raw bytes).
async fn post_raw(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Answer, Box<dyn std::error::Error>> {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await?;
    Ok(Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Result<Answer, Box<dyn std::error::Error>> {
    post_raw(url, headers, body.to_string().into_bytes()).await
}

/// A fresh migrated database, a helper function or two for the tests, and a stand-in with
/// `configure` applied to its default configuration.
async fn standin(
    configure: impl FnOnce(&mut ShimConfig),
) -> Result<(Db, Shim), Box<dyn std::error::Error>> {
    let db = Db::new(true).await?;
    db.admin()
        .await?
        .batch_execute(
            "create function public.whoami() returns jsonb language sql stable
               as $$ select jsonb_build_object('uid', auth.uid(), 'role', auth.role(),
                                               'claims', auth.jwt()) $$;
             create function public.setting(name text) returns text language sql stable
               as $$ select current_setting(name) $$;",
        )
        .await?;
    let mut config = db.standin_config();
    configure(&mut config);
    let shim = Shim::start_with(config).await?;
    Ok((db, shim))
}

/// Signs in with a password through the stand-in's token endpoint.
async fn sign_in(
    shim: &Shim,
    email: &str,
    password: &str,
) -> Result<Answer, Box<dyn std::error::Error>> {
    post(
        &format!("{}/auth/v1/token?grant_type=password", shim.url),
        &[("apikey", anon())],
        json!({ "email": email, "password": password }),
    )
    .await
}

/// Refreshes a session through the stand-in's token endpoint.
async fn refresh(shim: &Shim, token: &str) -> Result<Answer, Box<dyn std::error::Error>> {
    post(
        &format!("{}/auth/v1/token?grant_type=refresh_token", shim.url),
        &[("apikey", anon())],
        json!({ "refresh_token": token }),
    )
    .await
}

/// Calls `public.<function>` through the stand-in's REST API with `bearer` (if any).
async fn rpc(
    shim: &Shim,
    function: &str,
    bearer: Option<&str>,
    args: Value,
) -> Result<Answer, Box<dyn std::error::Error>> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("apikey", anon())];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    post(
        &format!("{}/rest/v1/rpc/{function}", shim.url),
        &headers,
        args,
    )
    .await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The claims of an access token, checked with the test secret.
fn claims_of(token: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["authenticated"]);
    Ok(jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(common::jwt_secret().as_bytes()),
        &v,
    )?
    .claims)
}

/// An HS256 token with `claims`, signed with the test secret.
fn hs256(claims: &Value) -> Result<String, Box<dyn std::error::Error>> {
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(common::jwt_secret().as_bytes()),
    )?)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

// --- Auth: the password grant -----------------------------------------------------------------

#[tokio::test]
async fn a_password_sign_in_answers_a_session_as_supabase_auth_does() -> TestResult {
    if local_only("a_password_sign_in", "it signs in to the stand-in") {
        return Ok(());
    }
    let (db, shim) = standin(|c| c.access_ttl = Duration::from_secs(30)).await?;
    let id = db.create_user("ada@example.com", "correct horse").await?;
    let answer = sign_in(&shim, "Ada@Example.com", "correct horse").await?;

    // https://github.com/supabase/auth/blob/master/internal/tokens/service.go —
    // `AccessTokenResponse{Token, TokenType: "bearer", ExpiresIn: int(expiresAt -
    // s.now().Unix()), ExpiresAt, RefreshToken, User}`, sent with `sendJSON(w,
    // http.StatusOK, token)` (internal/api/token.go, ResourceOwnerPasswordGrant); the e-mail is
    // looked up with `LOWER(email) = ?` (models.FindUserByEmailAndAudience).
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = &answer.body;
    assert_eq!(str_of(body, "token_type"), "bearer");
    assert_eq!(body["expires_in"], 30);
    let expires_at = body["expires_at"].as_i64().unwrap_or(0);
    assert!((expires_at - now() - 30).abs() <= 2, "{body}");
    // `crypto.SecureAlphanumeric(12)`: 12 lowercase base32 characters.
    let refresh_token = str_of(body, "refresh_token");
    assert_eq!(refresh_token.len(), 12);
    assert!(refresh_token
        .chars()
        .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
    let user = &body["user"];
    assert_eq!(str_of(user, "id"), id);
    assert_eq!(str_of(user, "email"), "ada@example.com");
    assert_eq!(str_of(user, "aud"), "authenticated");
    assert_eq!(str_of(user, "role"), "authenticated");
    assert_eq!(user["app_metadata"]["provider"], "email");
    assert!(user["last_sign_in_at"].is_string(), "{user}");

    // service.go GenerateAccessToken: `Subject: user.ID, Audience: {user.Aud}, IssuedAt,
    // ExpiresAt: issuedAt + config.JWT.Exp, Email, Phone, AppMetaData, UserMetaData, Role,
    // SessionId, AuthenticatorAssuranceLevel, AuthenticationMethodReference, IsAnonymous`,
    // signed HS256 with the secret; `jwt.MarshalSingleStringAsArray = false` ("this serializes
    // the aud claim to a string").
    let claims = claims_of(str_of(body, "access_token"))?;
    assert_eq!(str_of(&claims, "sub"), id);
    assert_eq!(str_of(&claims, "role"), "authenticated");
    assert_eq!(str_of(&claims, "aud"), "authenticated");
    assert_eq!(str_of(&claims, "email"), "ada@example.com");
    assert_eq!(claims["exp"].as_i64(), Some(expires_at));
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        30
    );
    assert_eq!(str_of(&claims, "aal"), "aal1");
    assert_eq!(claims["amr"][0]["method"], "password");
    assert_eq!(claims["is_anonymous"], false);
    let session = str_of(&claims, "session_id").to_string();
    assert_eq!(
        db.scalar(&format!(
            "select count(*) from auth.sessions where id = '{session}' and user_id = '{id}'"
        ))
        .await?,
        "1"
    );

    // The access token is the user's on the REST API: auth.uid() and auth.jwt() see it.
    let who = rpc(
        &shim,
        "whoami",
        Some(str_of(body, "access_token")),
        json!({}),
    )
    .await?;
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(str_of(&who.body, "uid"), id);
    assert_eq!(str_of(&who.body, "role"), "authenticated");
    assert_eq!(str_of(&who.body["claims"], "session_id"), session);
    Ok(())
}

#[tokio::test]
async fn failed_sign_ins_answer_supabase_auths_errors() -> TestResult {
    if local_only("failed_sign_ins", "it signs in to the stand-in") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    db.create_user("bob@example.com", "right password").await?;

    // internal/api/token.go: `return apierrors.NewBadRequestError(
    // apierrors.ErrorCodeInvalidCredentials, InvalidLoginMessage)` for a wrong password and an
    // unknown e-mail alike; internal/api/errors.go sends an HTTPError as `{"code": <status>,
    // "error_code": ..., "msg": ...}` with the `x-sb-error-code` header.
    for (email, password) in [
        ("bob@example.com", "wrong password"),
        ("nobody@example.com", "right password"),
    ] {
        let answer = sign_in(&shim, email, password).await?;
        assert_eq!(answer.status, 400);
        assert_eq!(
            answer.body,
            json!({ "code": 400, "error_code": "invalid_credentials",
                    "msg": "Invalid login credentials" })
        );
        assert_eq!(answer.header("x-sb-error-code"), "invalid_credentials");
    }

    // internal/api/errors.go: with `X-Supabase-Api-Version` 2024-01-01 or later (what
    // supabase-js sends) the body is `HTTPErrorResponse20240101{Code: e.ErrorCode, Message:
    // e.Message}` and the version is echoed.
    let answer = post(
        &format!("{}/auth/v1/token?grant_type=password", shim.url),
        &[("apikey", anon()), ("x-supabase-api-version", "2024-01-01")],
        json!({ "email": "bob@example.com", "password": "nope" }),
    )
    .await?;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body,
        json!({ "code": "invalid_credentials", "message": "Invalid login credentials" })
    );
    assert_eq!(answer.header("x-supabase-api-version"), "2024-01-01");

    // token.go: `if params.Email != "" && !user.IsConfirmed() { return
    // NewBadRequestError(ErrorCodeEmailNotConfirmed, "Email not confirmed") }`, checked after
    // the password.
    db.admin()
        .await?
        .batch_execute("update auth.users set email_confirmed_at = null")
        .await?;
    let answer = sign_in(&shim, "bob@example.com", "right password").await?;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error_code"], "email_not_confirmed");
    assert_eq!(answer.body["msg"], "Email not confirmed");

    // token.go: no e-mail and no phone is `ErrorCodeValidationFailed, "missing email or
    // phone"`; a grant type it does not know is `ErrorCodeInvalidCredentials,
    // "unsupported_grant_type"`; a body that is not JSON is `ErrorCodeBadJSON` (helpers.go,
    // retrieveRequestParams).
    let answer = post(
        &format!("{}/auth/v1/token?grant_type=password", shim.url),
        &[("apikey", anon())],
        json!({ "password": "x" }),
    )
    .await?;
    assert_eq!(answer.body["error_code"], "validation_failed");
    assert_eq!(answer.body["msg"], "missing email or phone");
    let answer = post(
        &format!("{}/auth/v1/token?grant_type=magic", shim.url),
        &[("apikey", anon())],
        json!({}),
    )
    .await?;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["msg"], "unsupported_grant_type");
    let answer = post_raw(
        &format!("{}/auth/v1/token?grant_type=password", shim.url),
        &[("apikey", anon())],
        b"{not json".to_vec(),
    )
    .await?;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error_code"], "bad_json");
    Ok(())
}

#[tokio::test]
async fn the_gateway_wants_a_project_key_legacy_or_publishable() -> TestResult {
    if local_only("the_gateway_wants_a_project_key", "it starts a stand-in") {
        return Ok(());
    }
    let publishable = "sb_publishable_standintestkey0123456789";
    let (db, shim) = standin(|c| c.anon_keys.push(publishable.to_string())).await?;
    db.create_user("cy@example.com", "pw-cy-123").await?;
    let token_url = format!("{}/auth/v1/token?grant_type=password", shim.url);
    let credentials = json!({ "email": "cy@example.com", "password": "pw-cy-123" });

    // Kong's key-auth plugin, in front of every Supabase API: a request without a key is
    // `401 {"message":"No API key found in request"}`, one with an unknown key
    // `401 {"message":"Invalid API key"}` (https://supabase.com/docs/guides/api/api-keys:
    // "Every request to your Supabase project carries an API key").
    let answer = post(&token_url, &[], credentials.clone()).await?;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["message"], "No API key found in request");
    let answer = post(
        &token_url,
        &[("apikey", "sb_publishable_other")],
        credentials.clone(),
    )
    .await?;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["message"], "Invalid API key");

    // https://supabase.com/docs/guides/api/api-keys: the legacy `anon` key works "Exactly like
    // the publishable key"; both sign in.
    for key in [anon(), publishable] {
        let answer = post(&token_url, &[("apikey", key)], credentials.clone()).await?;
        assert_eq!(answer.status, 200, "{key}: {}", answer.body);
    }

    // Same page: "You cannot send a publishable or secret key in the `Authorization: Bearer
    // ...` header, except if the value exactly equals the `apikey` header." Then there is no
    // user: the `anon` role ("Publishable key | No [user] | anon").
    let rpc_url = format!("{}/rest/v1/rpc/whoami", shim.url);
    let bearer = format!("Bearer {publishable}");
    let answer = post(
        &rpc_url,
        &[("apikey", publishable), ("authorization", &bearer)],
        json!({}),
    )
    .await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["role"], "anon");
    assert_eq!(answer.body["uid"], Value::Null);
    let answer = post(
        &rpc_url,
        &[("apikey", anon()), ("authorization", &bearer)],
        json!({}),
    )
    .await?;
    assert_eq!(answer.status, 401);
    Ok(())
}

// --- Auth: the refresh-token grant ------------------------------------------------------------

#[tokio::test]
async fn refresh_tokens_are_single_use_and_rotate_within_one_session() -> TestResult {
    if local_only("refresh_tokens_rotate", "it signs in to the stand-in") {
        return Ok(());
    }
    let (db, shim) = standin(|c| c.access_ttl = Duration::from_secs(5)).await?;
    let id = db.create_user("dee@example.com", "pw-dee-123").await?;
    let first = sign_in(&shim, "dee@example.com", "pw-dee-123").await?.body;
    let a = str_of(&first, "refresh_token").to_string();
    let session = str_of(&claims_of(str_of(&first, "access_token"))?, "session_id").to_string();

    // internal/tokens/service.go RefreshTokenGrant → models.GrantRefreshTokenSwap: "swaps a
    // refresh token for a new one, revoking the provided token"; the new token keeps the
    // session (`token.SessionId = oldToken.SessionId`) and names its parent.
    let second = refresh(&shim, &a).await?;
    assert_eq!(second.status, 200, "{}", second.body);
    let b = str_of(&second.body, "refresh_token").to_string();
    assert_ne!(a, b);
    let claims = claims_of(str_of(&second.body, "access_token"))?;
    assert_eq!(str_of(&claims, "sub"), id);
    assert_eq!(str_of(&claims, "session_id"), session);
    assert_eq!(second.body["expires_in"], 5);
    assert_eq!(
        db.scalar(&format!(
            "select string_agg(token || ':' || revoked || ':' || coalesce(parent, '-'), ',' \
             order by id) from auth.refresh_tokens where session_id = '{session}'"
        ))
        .await?,
        format!("{a}:true:-,{b}:false:{a}")
    );

    // service.go: "Token was revoked, but it's the parent of the currently active one. This
    // indicates that the client was not able to store the result when it refreshed token. This
    // case is allowed, provided we return back the active refresh token instead of creating a
    // new one."
    let again = refresh(&shim, &a).await?;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(str_of(&again.body, "refresh_token"), b);

    // Concurrent refreshes of the same token (GoTrue locks the token's row `forUpdate`): each
    // gets the one child.
    let (x, y) = tokio::join!(refresh(&shim, &b), refresh(&shim, &b));
    let (x, y) = (x?, y?);
    assert_eq!((x.status, y.status), (200, 200), "{} {}", x.body, y.body);
    let c = str_of(&x.body, "refresh_token").to_string();
    assert_eq!(str_of(&y.body, "refresh_token"), c);

    // service.go: a revoked token that is not the active one's parent may be reused within the
    // reuse interval ("For a revoked refresh token to be reused, it has to fall within the reuse
    // interval"): it is swapped again.
    let late = refresh(&shim, &a).await?;
    assert_eq!(late.status, 200, "{}", late.body);
    assert!(![a.as_str(), b.as_str(), c.as_str()].contains(&str_of(&late.body, "refresh_token")));

    // service.go: `if params.RefreshToken == "" { return NewOAuthError("invalid_request",
    // "refresh_token required") }`; a token that does not exist is
    // `ErrorCodeRefreshTokenNotFound, "Invalid Refresh Token: Refresh Token Not Found"`.
    let answer = refresh(&shim, "").await?;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body,
        json!({ "error": "invalid_request", "error_description": "refresh_token required" })
    );
    let answer = refresh(&shim, "nosuchtoken2").await?;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body,
        json!({ "code": 400, "error_code": "refresh_token_not_found",
                "msg": "Invalid Refresh Token: Refresh Token Not Found" })
    );
    Ok(())
}

#[tokio::test]
async fn a_token_reused_after_the_reuse_interval_ends_the_session() -> TestResult {
    if local_only(
        "a_token_reused_after_the_interval",
        "it signs in to the stand-in",
    ) {
        return Ok(());
    }
    let (db, shim) = standin(|c| c.reuse_interval = Duration::from_secs(1)).await?;
    db.create_user("eve@example.com", "pw-eve-123").await?;
    let first = sign_in(&shim, "eve@example.com", "pw-eve-123").await?.body;
    let a = str_of(&first, "refresh_token").to_string();
    let b = str_of(&refresh(&shim, &a).await?.body, "refresh_token").to_string();
    let c = str_of(&refresh(&shim, &b).await?.body, "refresh_token").to_string();
    assert!(!c.is_empty());

    // internal/tokens/service.go: once `s.now().After(reuseUntil)` ("not OK to reuse this
    // token"), with rotation on (the default) `models.RevokeTokenFamily(tx, token)` revokes
    // every token of the session, and the request fails with
    // `ErrorCodeRefreshTokenAlreadyUsed, "Invalid Refresh Token: Already Used"`, committed
    // (`storage.NewCommitWithError`).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let answer = refresh(&shim, &a).await?;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({ "code": 400, "error_code": "refresh_token_already_used",
                "msg": "Invalid Refresh Token: Already Used" })
    );
    assert_eq!(
        db.scalar("select count(*) filter (where not revoked) from auth.refresh_tokens")
            .await?,
        "0"
    );
    // The active token went with its family: once its own interval has passed it is refused.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let answer = refresh(&shim, &c).await?;
    assert_eq!(answer.body["error_code"], "refresh_token_already_used");
    // Only a new sign-in brings a session back.
    let again = sign_in(&shim, "eve@example.com", "pw-eve-123").await?;
    assert_eq!(again.status, 200);
    Ok(())
}

// --- REST: JWT verification -------------------------------------------------------------------

#[tokio::test]
async fn postgrest_checks_exp_with_a_30_second_skew_and_answers_pgrst303() -> TestResult {
    if local_only("postgrest_checks_exp", "it starts a stand-in") {
        return Ok(());
    }
    let (_db, shim) = standin(|_| {}).await?;
    let user = common::user();
    let token = |exp: i64| {
        hs256(
            &json!({ "sub": user, "role": "authenticated", "aud": "authenticated",
                       "iat": exp - 60, "exp": exp }),
        )
    };

    // https://github.com/PostgREST/postgrest/blob/main/src/library/PostgREST/Auth/Jwt.hs:
    // `allowedSkewSeconds = 30`, `inThePast = checkTime ((now - allowedSkewSeconds) >)`: a
    // token expired 10 s ago is still accepted, one expired 40 s ago is not.
    let answer = rpc(&shim, "whoami", Some(&token(now() - 10)?), json!({})).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(str_of(&answer.body, "uid"), user);

    // src/library/PostgREST/Error.hs: `status JwtClaimsErr{} = HTTP.unauthorized401`, `code
    // (JwtClaimsErr _) = "PGRST303"`, `JWTExpired -> "JWT expired"`, and the header
    // `("WWW-Authenticate", "Bearer error=\"invalid_token\", " <> "error_description=" <>
    // encodeUtf8 (show m))`. https://docs.postgrest.org/en/stable/references/errors.html lists
    // PGRST303 "JWT claims validation or parsing failed".
    let answer = rpc(&shim, "whoami", Some(&token(now() - 40)?), json!({})).await?;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.body,
        json!({ "code": "PGRST303", "message": "JWT expired", "details": null, "hint": null })
    );
    assert_eq!(
        answer.header("www-authenticate"),
        "Bearer error=\"invalid_token\", error_description=\"JWT expired\""
    );
    assert_eq!(answer.header("proxy-status"), "PostgREST; error=PGRST303");

    // Jwt.hs: `claim "iat" IatClaimNotNumber $ inTheFuture JWTIssuedAtFuture`, and a claim that
    // is not a number fails its parse ("The JWT 'exp' claim must be a number").
    let future = hs256(&json!({ "sub": user, "role": "authenticated", "iat": now() + 120 }))?;
    let answer = rpc(&shim, "whoami", Some(&future), json!({})).await?;
    assert_eq!(answer.body["message"], "JWT issued at future");
    let text_exp = hs256(&json!({ "sub": user, "role": "authenticated", "exp": "tomorrow" }))?;
    let answer = rpc(&shim, "whoami", Some(&text_exp), json!({})).await?;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.body["message"],
        "The JWT 'exp' claim must be a number"
    );
    Ok(())
}

#[tokio::test]
async fn a_malformed_or_forged_token_answers_pgrst301() -> TestResult {
    if local_only("a_malformed_or_forged_token", "it starts a stand-in") {
        return Ok(());
    }
    let (_db, shim) = standin(|_| {}).await?;
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": common::user(), "role": "service_role", "exp": now() + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-project-secret-not-the-project"),
    )?;
    // src/library/PostgREST/Error.hs: `status JwtDecodeErr{} = HTTP.unauthorized401`, `code
    // (JwtDecodeErr _) = "PGRST301"`, `UnexpectedParts n -> "Expected 3 parts in JWT; got " <>
    // show n`, `BadCrypto -> "JWT cryptographic operation failed"`, with the `invalid_token`
    // WWW-Authenticate header.
    for (token, message) in [
        ("not-a-jwt", "Expected 3 parts in JWT; got 1"),
        (forged.as_str(), "JWT cryptographic operation failed"),
    ] {
        let answer = rpc(&shim, "whoami", Some(token), json!({})).await?;
        assert_eq!(answer.status, 401, "{}", answer.body);
        assert_eq!(answer.body["code"], "PGRST301");
        assert_eq!(answer.body["message"], message);
        assert!(answer
            .header("www-authenticate")
            .starts_with("Bearer error=\"invalid_token\""));
    }
    // src/library/PostgREST/ApiRequest.hs: `userBearerAuth req = extractBearerAuth =<< lookup
    // hAuthorization (requestHeaders req)` (wai-extra: the scheme `bearer` in any case): an
    // empty one is `EmptyAuthHeader -> "Empty JWT is sent in Authorization header"`, another
    // scheme is no token, and no token at all is the anon role (Auth/Jwt.hs: "role defaults to
    // anon if not specified in jwt").
    let url = format!("{}/rest/v1/rpc/whoami", shim.url);
    let answer = post(
        &url,
        &[("apikey", anon()), ("authorization", "Bearer")],
        json!({}),
    )
    .await?;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.body["message"],
        "Empty JWT is sent in Authorization header"
    );
    for authorization in [None, Some("Basic dXNlcjpwYXNz")] {
        let mut headers = vec![("apikey", anon())];
        headers.extend(authorization.map(|a| ("authorization", a)));
        let answer = post(&url, &headers, json!({})).await?;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["role"], "anon");
    }
    Ok(())
}

#[tokio::test]
async fn es256_tokens_are_signed_with_the_key_and_verified_with_the_jwks() -> TestResult {
    if local_only("es256_tokens", "it signs in to the stand-in") {
        return Ok(());
    }
    let jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": TEST_EC_X, "y": TEST_EC_Y,
                                   "kid": TEST_EC_KID, "alg": "ES256", "use": "sig" }] });
    let (db, shim) = standin(|c| {
        c.jwks = Some(jwks.clone());
        c.signing_key = Some(Es256Key {
            kid: TEST_EC_KID.into(),
            private_pem: TEST_EC_PEM.into(),
        });
    })
    .await?;
    let id = db.create_user("fay@example.com", "pw-fay-123").await?;
    let session = sign_in(&shim, "fay@example.com", "pw-fay-123").await?;
    assert_eq!(session.status, 200, "{}", session.body);
    let access = str_of(&session.body, "access_token");

    // https://github.com/supabase/auth/blob/master/internal/tokens/service.go SignJWT: the
    // signing key's algorithm, and `token.Header["kid"] = kid` when the key has one.
    let header = jsonwebtoken::decode_header(access)?;
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(TEST_EC_KID));
    // https://supabase.com/docs/guides/auth/signing-keys: the public keys are published at
    // `/auth/v1/.well-known/jwks.json`.
    let published: Value = reqwest::get(format!("{}/auth/v1/.well-known/jwks.json", shim.url))
        .await?
        .json()
        .await?;
    assert_eq!(published, jwks);

    // PostgREST verifies with a JWKS (https://docs.postgrest.org/en/stable/references/auth.html,
    // "JWKS"): the ES256 token is the user's, and the legacy HS256 secret still works beside it.
    let answer = rpc(&shim, "whoami", Some(access), json!({})).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(str_of(&answer.body, "uid"), id);
    let legacy = hs256(&json!({ "sub": id, "role": "authenticated", "exp": now() + 60 }))?;
    assert_eq!(
        rpc(&shim, "whoami", Some(&legacy), json!({})).await?.status,
        200
    );
    // A token whose signature is not the key's: PGRST301.
    let mut tampered = access.to_string();
    let last = tampered
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    tampered.push(last);
    let answer = rpc(&shim, "whoami", Some(&tampered), json!({})).await?;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["code"], "PGRST301");
    Ok(())
}

// --- REST: role settings, timeouts, read-only functions, argument names ------------------------

#[tokio::test]
async fn each_request_runs_with_its_roles_statement_timeout() -> TestResult {
    if local_only(
        "statement_timeout",
        "it sets role settings in its own database",
    ) {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    let user_token = common::jwt(&common::user());

    // https://supabase.com/docs/guides/database/postgres/timeouts: "The default role timeouts
    // are: anon: 3s, authenticated: 8s" (sync/tests/sql/supabase_auth_emulation.sql sets them).
    // https://docs.postgrest.org/en/stable/references/transactions.html#impersonated-role-settings:
    // "PostgREST applies the impersonated roles settings as transaction-scoped settings."
    let as_user = rpc(
        &shim,
        "setting",
        Some(&user_token),
        json!({ "name": "statement_timeout" }),
    )
    .await?;
    assert_eq!(as_user.body, json!("8s"));
    let as_anon = rpc(
        &shim,
        "setting",
        None,
        json!({ "name": "statement_timeout" }),
    )
    .await?;
    assert_eq!(as_anon.body, json!("3s"));

    db.admin()
        .await?
        .batch_execute(&format!(
            "alter role authenticated in database {} set statement_timeout = '500ms';
             create function public.nap(seconds float) returns int language sql
               as $$ select 1 from pg_sleep(seconds) $$;
             create function public.long_nap(seconds float) returns int language sql
               set statement_timeout = '5s'
               as $$ select 1 from pg_sleep(seconds) $$;",
            db.url.rsplit('/').next().unwrap_or_default()
        ))
        .await?;
    let quick = rpc(&shim, "nap", Some(&user_token), json!({ "seconds": 0.05 })).await?;
    assert_eq!(quick.status, 200, "{}", quick.body);

    // src/library/PostgREST/Error.hs mapSQLtoHTTP: `'5':'7':_ -> HTTP.status500 -- operator
    // intervention`, so 57014 (statement timeout) is 500 with PostgreSQL's message, and
    // https://docs.postgrest.org/en/stable/references/errors.html#proxy-status-header: "HTTP/1.1
    // 500 Internal Server Error / Proxy-Status: PostgREST; error=57014".
    let slow = rpc(&shim, "nap", Some(&user_token), json!({ "seconds": 2 })).await?;
    assert_eq!(slow.status, 500, "{}", slow.body);
    assert_eq!(slow.body["code"], "57014");
    assert_eq!(
        slow.body["message"],
        "canceling statement due to statement timeout"
    );
    assert_eq!(slow.header("proxy-status"), "PostgREST; error=57014");

    // transactions.rst, "Hoisted Function Settings": "When calling the above function, the
    // statement timeout will be 4 seconds." — a function's own statement_timeout overrides the
    // role's.
    let hoisted = rpc(
        &shim,
        "long_nap",
        Some(&user_token),
        json!({ "seconds": 1 }),
    )
    .await?;
    assert_eq!(hoisted.status, 200, "{}", hoisted.body);
    Ok(())
}

#[tokio::test]
async fn stable_functions_run_in_a_read_only_transaction() -> TestResult {
    if local_only("stable_functions_read_only", "it creates functions") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    db.admin()
        .await?
        .batch_execute(
            "create sequence public.callcounter_count start 1;
             grant usage on sequence public.callcounter_count to authenticated;
             create function public.sneaky_count() returns bigint language sql stable
               as $$ select nextval('public.callcounter_count') $$;
             create function public.honest_count() returns bigint language sql volatile
               as $$ select nextval('public.callcounter_count') $$;",
        )
        .await?;
    let token = common::jwt(&common::user());
    // https://docs.postgrest.org/en/stable/references/transactions.html#access-mode-on-functions:
    // POST on a STABLE or IMMUTABLE function is READ ONLY, VOLATILE is READ WRITE ("HTTP/1.1
    // 405 Method Not Allowed {"code":"25006",...,"message":"cannot execute nextval() in a
    // read-only transaction"}"); Error.hs: `"25006" -> HTTP.status405`.
    let answer = rpc(&shim, "sneaky_count", Some(&token), json!({})).await?;
    assert_eq!(answer.status, 405, "{}", answer.body);
    assert_eq!(answer.body["code"], "25006");
    assert_eq!(
        answer.body["message"],
        "cannot execute nextval() in a read-only transaction"
    );
    let answer = rpc(&shim, "honest_count", Some(&token), json!({})).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!(1));
    Ok(())
}

#[tokio::test]
async fn the_bodys_keys_choose_the_function_or_say_why_not() -> TestResult {
    if local_only("rpc_argument_names", "it creates functions") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    db.admin()
        .await?
        .batch_execute(
            "create function public.pick(a int) returns text language sql
               as $$ select 'one' $$;
             create function public.pick(a int, b int default 0) returns text language sql
               as $$ select 'two' $$;
             create function public.only_b(b int) returns int language sql
               as $$ select b $$;",
        )
        .await?;
    let token = common::jwt(&common::user());
    // src/library/PostgREST/Error.hs: `NoRpc` is 404 `PGRST202`, "Could not find the function
    // public.only_b(a, c) in the schema cache", details "Searched for the function public.only_b
    // with parameters a, c or with a single unnamed json/jsonb parameter, but no matches were
    // found in the schema cache."
    let answer = rpc(&shim, "only_b", Some(&token), json!({ "c": 1, "a": 2 })).await?;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body["code"], "PGRST202");
    assert_eq!(
        answer.body["message"],
        "Could not find the function public.only_b(a, c) in the schema cache"
    );
    assert_eq!(
        answer.body["details"],
        "Searched for the function public.only_b with parameters a, c or with a single unnamed \
         json/jsonb parameter, but no matches were found in the schema cache."
    );
    // Error.hs: `AmbiguousRpc` is 300 `PGRST203`, "Could not choose the best candidate function
    // between: ...", hint "Try renaming the parameters or the function itself in the database
    // so function overloading can be resolved".
    let answer = rpc(&shim, "pick", Some(&token), json!({ "a": 1 })).await?;
    assert_eq!(answer.status, 300, "{}", answer.body);
    assert_eq!(answer.body["code"], "PGRST203");
    assert!(str_of(&answer.body, "message")
        .starts_with("Could not choose the best candidate function between: public.pick("));
    // With both keys only the second fits.
    let answer = rpc(&shim, "pick", Some(&token), json!({ "a": 1, "b": 2 })).await?;
    assert_eq!(answer.body, json!("two"));
    let answer = rpc(&shim, "only_b", Some(&token), json!({ "b": 7 })).await?;
    assert_eq!(answer.body, json!(7));
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() -> TestResult {
    if local_only("body_limit", "it starts a stand-in") {
        return Ok(());
    }
    let (_db, shim) = standin(|c| c.max_body_bytes = 1024).await?;
    let big = json!({ "name": "x".repeat(4096) });
    // Kong's request-size-limiting plugin (https://docs.konghq.com/hub/kong-inc/request-size-limiting/):
    // "Block incoming requests whose body is greater than a specific size", answered `413
    // {"message":"Request size limit exceeded"}`; it runs after key-auth, so a request without
    // a key is still a 401.
    let token = common::jwt(&common::user());
    let answer = rpc(&shim, "setting", Some(&token), big.clone()).await?;
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.body,
        json!({ "message": "Request size limit exceeded" })
    );
    let answer = post(
        &format!("{}/auth/v1/token?grant_type=password", shim.url),
        &[("apikey", anon())],
        json!({ "email": "x@example.com", "password": "x".repeat(4096) }),
    )
    .await?;
    assert_eq!(answer.status, 413);
    let answer = post(&format!("{}/rest/v1/rpc/setting", shim.url), &[], big).await?;
    assert_eq!(answer.status, 401);
    // Under the limit all is as usual.
    let answer = rpc(&shim, "setting", Some(&token), json!({ "name": "role" })).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Ok(())
}

// --- REST: tables and views -------------------------------------------------------------------

/// A table of notes under row-level security as the central tables have it (owner =
/// `auth.uid()`, granted to `authenticated` only), with three notes of `alice` and one of `bob`.
async fn notes(db: &Db, alice: &str, bob: &str) -> TestResult {
    db.admin()
        .await?
        .batch_execute(&format!(
            "create table public.notes (owner uuid not null default auth.uid(), id int not null,
                                        title text not null, stars int, primary key (owner, id));
             alter table public.notes enable row level security;
             create policy notes_select on public.notes for select to authenticated
               using (owner = (select auth.uid()));
             revoke all on table public.notes from public, anon, authenticated;
             grant select on table public.notes to authenticated;
             insert into public.notes values
               ('{alice}', 1, 'otters, hands held', 5), ('{alice}', 2, 'owls at night', null),
               ('{alice}', 3, 'otters again', 2), ('{bob}', 4, 'otters of bob', 4);"
        ))
        .await?;
    Ok(())
}

/// `GET /rest/v1/<path_and_query>` with the anon key and `bearer` (if any) and `extra` headers.
async fn read(
    shim: &Shim,
    path_and_query: &str,
    bearer: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<Answer, Box<dyn std::error::Error>> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("apikey", anon())];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    headers.extend_from_slice(extra);
    get(&format!("{}/rest/v1/{path_and_query}", shim.url), &headers).await
}

#[tokio::test]
async fn a_table_reads_as_the_callers_role_under_row_level_security() -> TestResult {
    if local_only("table_reads_rls", "it creates a table") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    let (alice, bob) = (common::user(), common::user());
    notes(&db, &alice, &bob).await?;

    // https://docs.postgrest.org/en/stable/references/api/tables_views.html: "All tables and
    // views of the exposed schema and accessible by the active database role are available
    // for querying", `GET /people?select=first_name,age` returns the rows as a JSON array;
    // https://docs.postgrest.org/en/stable/references/auth.html: the request runs as the JWT's
    // `role` with its claims, so row-level security (here `owner = auth.uid()`) picks the rows.
    let answer = read(
        &shim,
        "notes?select=id,title",
        Some(&common::jwt(&alice)),
        &[],
    )
    .await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut ids: Vec<i64> = answer
        .body
        .as_array()
        .ok_or("not an array")?
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(
        answer.body[0].as_object().map(|o| o.len()),
        Some(2),
        "only the selected columns: {}",
        answer.body
    );
    let answer = read(&shim, "notes", Some(&common::jwt(&bob)), &[]).await?;
    assert_eq!(
        answer.body,
        json!([{ "owner": bob, "id": 4, "title": "otters of bob", "stars": 4 }])
    );

    // Without a token the request is the anon role, which has no SELECT on the table:
    // Error.hs `mapSQLtoHTTP`: "42501" is 401 without a JWT (403 with one), with
    // `WWW-Authenticate: Bearer`.
    let answer = read(&shim, "notes", None, &[]).await?;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body["code"], "42501");
    assert_eq!(answer.body["message"], "permission denied for table notes");
    assert_eq!(answer.header("www-authenticate"), "Bearer");
    // The token is checked as for an RPC (Auth/Jwt.hs): expired 40 s ago is 401 PGRST303.
    let stale = hs256(&json!({ "sub": alice, "role": "authenticated", "exp": now() - 40 }))?;
    let answer = read(&shim, "notes", Some(&stale), &[]).await?;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["code"], "PGRST303");

    // transactions.rst, "Access Mode": GET runs in a READ ONLY transaction, so a view that
    // writes fails with 25006, 405 (Error.hs).
    db.admin()
        .await?
        .batch_execute(
            "create sequence public.views_seen;
             grant usage on sequence public.views_seen to authenticated;
             create view public.counting as select nextval('public.views_seen') as n;
             grant select on public.counting to authenticated;",
        )
        .await?;
    let answer = read(&shim, "counting", Some(&common::jwt(&alice)), &[]).await?;
    assert_eq!(answer.status, 405, "{}", answer.body);
    assert_eq!(answer.body["code"], "25006");
    Ok(())
}

#[tokio::test]
async fn filters_order_and_limits_read_as_postgrest_reads_them() -> TestResult {
    if local_only("table_read_filters", "it creates a table") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    let (alice, bob) = (common::user(), common::user());
    notes(&db, &alice, &bob).await?;
    let token = common::jwt(&alice);
    let ids = |a: &Answer| -> Vec<i64> {
        a.body
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["id"].as_i64()).collect())
            .unwrap_or_default()
    };

    // https://docs.postgrest.org/en/stable/references/api/tables_views.html#operators: `eq`
    // "=", `gt` ">", `neq` "<> or !=", `like` "LIKE operator (to avoid URL encoding you can use
    // * as an alias of the percent sign % for the pattern)", `in` "one of a list of values, e.g.
    // ?a=in.(1,2,3) – also supports commas in quoted strings like ?a=in.("hi,there","yes,you")",
    // `is` "checking for exact equality (null,not_null,true,false,unknown)", `not` "negates
    // another operator"; several filters are ANDed. A value is bound, never spliced.
    let read_ids = |q: &'static str| read(&shim, q, Some(&token), &[]);
    assert_eq!(ids(&read_ids("notes?id=eq.2").await?), [2]);
    assert_eq!(ids(&read_ids("notes?stars=gt.2&order=id").await?), [1]);
    assert_eq!(ids(&read_ids("notes?id=neq.2&order=id").await?), [1, 3]);
    assert_eq!(
        ids(&read_ids("notes?title=like.otters*&order=id").await?),
        [1, 3]
    );
    assert_eq!(
        ids(
            &read_ids("notes?title=in.(%22otters,%20hands%20held%22,owls%20at%20night)&order=id")
                .await?
        ),
        [1, 2]
    );
    assert_eq!(ids(&read_ids("notes?stars=is.null").await?), [2]);
    assert_eq!(
        ids(&read_ids("notes?stars=not.is.null&order=id").await?),
        [1, 3]
    );
    assert_eq!(
        ids(&read_ids("notes?title=eq.x%27%20or%20true--").await?),
        Vec::<i64>::new()
    );
    // tables_views.rst, "Ordering": `order=age.desc,height.asc`, "you can also specify
    // nullsfirst or nullslast"; pagination_count.rst: `limit=15&offset=30`.
    assert_eq!(
        ids(&read_ids("notes?order=stars.desc.nullslast").await?),
        [1, 3, 2]
    );
    assert_eq!(
        ids(&read_ids("notes?order=stars.desc.nullsfirst").await?),
        [2, 1, 3]
    );
    assert_eq!(
        ids(&read_ids("notes?order=id.desc&limit=1&offset=1").await?),
        [2]
    );
    // tables_views.rst, "Renaming Columns": `select=fullName:full_name`.
    let answer = read_ids("notes?select=heading:title&id=eq.3").await?;
    assert_eq!(answer.body, json!([{ "heading": "otters again" }]));
    Ok(())
}

#[tokio::test]
async fn an_exact_count_comes_back_in_content_range() -> TestResult {
    if local_only("table_read_count", "it creates a table") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    let (alice, bob) = (common::user(), common::user());
    notes(&db, &alice, &bob).await?;
    let token = common::jwt(&alice);

    // https://docs.postgrest.org/en/stable/references/api/pagination_count.html: "Every
    // response contains the current range and, if requested, the total number of results"
    // (`Content-Range: 0-14/*`); with `Prefer: count=exact` "the server will respond with the
    // selected range and total", `HTTP/1.1 206 Partial Content`, `Content-Range: 0-24/3573458`.
    let answer = read(&shim, "notes?order=id&limit=2", Some(&token), &[]).await?;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-range"), "0-1/*");
    let exact = [("prefer", "count=exact")];
    let answer = read(&shim, "notes?order=id&limit=2", Some(&token), &exact).await?;
    assert_eq!(answer.status, 206);
    assert_eq!(answer.header("content-range"), "0-1/3");
    let answer = read(&shim, "notes?offset=1", Some(&token), &exact).await?;
    assert_eq!(answer.header("content-range"), "1-2/3");
    // All of it is 200; none of it is `*/<total>`.
    let answer = read(&shim, "notes", Some(&token), &exact).await?;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-range"), "0-2/3");
    let answer = read(&shim, "notes?id=eq.4", Some(&token), &exact).await?;
    assert_eq!(answer.header("content-range"), "*/0");
    assert_eq!(answer.body, json!([]));

    // supabase-js's `select('*', { count: 'exact', head: true })` is a HEAD: the headers, no
    // body (RFC 9110 §9.3.2).
    let response = reqwest::Client::new()
        .head(format!("{}/rest/v1/notes", shim.url))
        .header("apikey", anon())
        .header("authorization", format!("Bearer {token}"))
        .header("prefer", "count=exact")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("0-2/3")
    );
    assert!(response.bytes().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn unknown_tables_columns_and_schemas_answer_postgrests_errors() -> TestResult {
    if local_only("table_read_errors", "it creates a table") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    let (alice, bob) = (common::user(), common::user());
    notes(&db, &alice, &bob).await?;
    let token = common::jwt(&alice);

    // src/PostgREST/Error.hs: `TableNotFound` is 404 `PGRST205`, "Could not find the table
    // '<schema>.<table>' in the schema cache"; only the exposed schema's tables and views are
    // there (auth.users is not).
    let answer = read(&shim, "nowhere", Some(&token), &[]).await?;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body["code"], "PGRST205");
    assert_eq!(
        answer.body["message"],
        "Could not find the table 'public.nowhere' in the schema cache"
    );
    assert_eq!(answer.header("proxy-status"), "PostgREST; error=PGRST205");
    assert_eq!(
        read(&shim, "users", Some(&token), &[]).await?.body["code"],
        "PGRST205"
    );
    // An unknown column is Postgres's own error on PostgREST's table-qualified column, 42703,
    // which Error.hs `mapSQLtoHTTP` leaves at its default, 400.
    for query in [
        "notes?select=id,nope",
        "notes?nope=eq.1",
        "notes?order=nope",
    ] {
        let answer = read(&shim, query, Some(&token), &[]).await?;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert_eq!(answer.body["code"], "42703");
        assert_eq!(answer.body["message"], "column notes.nope does not exist");
    }
    // Error.hs: a value that is not of the column's type is Postgres's 22P02, also 400.
    let answer = read(&shim, "notes?id=eq.two", Some(&token), &[]).await?;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["code"], "22P02");
    // Error.hs: `UnacceptableSchema` is 406 `PGRST106`, "Invalid schema: <schema>", hint "Only
    // the following schemas are exposed: <schemas>" (Supabase exposes `public`);
    // https://docs.postgrest.org/en/stable/references/api/schemas.html: `Accept-Profile`
    // chooses the schema of a GET.
    let answer = read(&shim, "notes", Some(&token), &[("accept-profile", "auth")]).await?;
    assert_eq!(answer.status, 406);
    assert_eq!(answer.body["code"], "PGRST106");
    assert_eq!(
        answer.body["hint"],
        "Only the following schemas are exposed: public"
    );
    let answer = read(
        &shim,
        "notes",
        Some(&token),
        &[("accept-profile", "public")],
    )
    .await?;
    assert_eq!(answer.status, 200);
    // Error.hs: `QueryParamError` is 400 `PGRST100` (an operator PostgREST does not know).
    let answer = read(&shim, "notes?id=between.1", Some(&token), &[]).await?;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["code"], "PGRST100");
    // What the stand-in does not reproduce (its module docs) it refuses the same way, rather
    // than answer in a shape the client did not ask for: a single object, a Range header, an
    // embedded resource.
    for (query, header) in [
        (
            "notes?id=eq.1",
            ("accept", "application/vnd.pgrst.object+json"),
        ),
        ("notes", ("range", "0-1")),
        (
            "notes?select=id,documents(id)",
            ("accept", "application/json"),
        ),
    ] {
        let answer = read(&shim, query, Some(&token), &[header]).await?;
        assert_eq!(answer.status, 400, "{query} {header:?}");
        assert_eq!(answer.body["code"], "PGRST100");
    }
    Ok(())
}

// --- Sessions and sync ------------------------------------------------------------------------

#[tokio::test]
async fn a_device_syncs_with_a_signed_in_users_access_token() -> TestResult {
    if local_only(
        "a_device_syncs_with_a_session",
        "it signs in to the stand-in",
    ) {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    let id = db.create_user("gil@example.com", "pw-gil-123").await?;
    let session = sign_in(&shim, "gil@example.com", "pw-gil-123").await?.body;
    let central = outpost_sync::Central::new(outpost_sync::rest::RestTransport::new(
        &shim.url,
        anon(),
        str_of(&session, "access_token"),
        Duration::from_secs(10),
    )?);
    let mut device = Device::new()?;
    device.put("notes/otters.md", "Otters hold hands while they sleep.")?;
    device.sync(&central).await?;
    // The rows belong to the signed-in user (row-level security by auth.uid()).
    assert_eq!(
        db.scalar(&format!(
            "select count(*) from public.outpost_documents where owner = '{id}'"
        ))
        .await?,
        "1"
    );
    Ok(())
}

/// `GET url` with `headers`.
async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Answer, Box<dyn std::error::Error>> {
    let mut request = reqwest::Client::new().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await?;
    Ok(Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

#[tokio::test]
async fn signing_out_ends_sessions_and_their_refresh_tokens() -> TestResult {
    if local_only("signing_out", "it signs in to the stand-in") {
        return Ok(());
    }
    let (db, shim) = standin(|_| {}).await?;
    let id = db.create_user("hal@example.com", "pw-hal-123").await?;
    let laptop = sign_in(&shim, "hal@example.com", "pw-hal-123").await?.body;
    let phone = sign_in(&shim, "hal@example.com", "pw-hal-123").await?.body;
    let bearer = |s: &Value| format!("Bearer {}", str_of(s, "access_token"));
    let user_url = format!("{}/auth/v1/user", shim.url);

    // https://github.com/supabase/auth/blob/master/internal/api/user.go UserGet: `return
    // sendJSON(w, http.StatusOK, user)` for the user of the access token.
    let me = get(
        &user_url,
        &[("apikey", anon()), ("authorization", &bearer(&laptop))],
    )
    .await?;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(str_of(&me.body, "id"), id);
    assert_eq!(str_of(&me.body, "email"), "hal@example.com");

    // internal/api/logout.go: `case "local": return models.LogoutSession(tx, s.ID)` and
    // `w.WriteHeader(http.StatusNoContent)`; the session's refresh tokens go with it
    // (`refresh_tokens.session_id ... on delete cascade`, migrations/20220811173540), so its
    // refresh token is then not found, and its access token's session no longer exists
    // (internal/api/auth.go: `ErrorCodeSessionNotFound, "Session from session_id claim in JWT
    // does not exist"`, 403).
    let out = post(
        &format!("{}/auth/v1/logout?scope=local", shim.url),
        &[("apikey", anon()), ("authorization", &bearer(&laptop))],
        json!({}),
    )
    .await?;
    assert_eq!(out.status, 204);
    let answer = refresh(&shim, str_of(&laptop, "refresh_token")).await?;
    assert_eq!(answer.body["error_code"], "refresh_token_not_found");
    let me = get(
        &user_url,
        &[("apikey", anon()), ("authorization", &bearer(&laptop))],
    )
    .await?;
    assert_eq!(me.status, 403);
    assert_eq!(me.body["error_code"], "session_not_found");
    // The phone's session is untouched.
    let answer = refresh(&shim, str_of(&phone, "refresh_token")).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let phone = answer.body;

    // logout.go: the default scope is global ("log out everywhere", `models.Logout(tx, u.ID)`).
    let out = post(
        &format!("{}/auth/v1/logout", shim.url),
        &[("apikey", anon()), ("authorization", &bearer(&phone))],
        json!({}),
    )
    .await?;
    assert_eq!(out.status, 204);
    let answer = refresh(&shim, str_of(&phone, "refresh_token")).await?;
    assert_eq!(answer.body["error_code"], "refresh_token_not_found");
    assert_eq!(
        db.scalar(&format!(
            "select count(*) from auth.sessions where user_id = '{id}'"
        ))
        .await?,
        "0"
    );

    // auth.go extractBearerToken: no bearer is 401 `ErrorCodeNoAuthorization, "This endpoint
    // requires a valid Bearer token"`; parseJWTClaims: a token the parser refuses (here
    // expired: golang-jwt allows no leeway unless told to, unlike PostgREST's 30 s) is 403
    // `ErrorCodeBadJWT, "invalid JWT: unable to parse or verify signature, %v"`.
    let me = get(&user_url, &[("apikey", anon())]).await?;
    assert_eq!(me.status, 401);
    assert_eq!(me.body["error_code"], "no_authorization");
    let stale = hs256(
        &json!({ "sub": id, "role": "authenticated", "aud": "authenticated",
                               "exp": now() - 5 }),
    )?;
    let me = get(
        &user_url,
        &[
            ("apikey", anon()),
            ("authorization", &format!("Bearer {stale}")),
        ],
    )
    .await?;
    assert_eq!(me.status, 403);
    assert_eq!(me.body["error_code"], "bad_jwt");
    assert!(
        str_of(&me.body, "msg").ends_with("token is expired"),
        "{}",
        me.body
    );
    // PostgREST still takes it (30 s skew).
    assert_eq!(
        rpc(&shim, "whoami", Some(&stale), json!({})).await?.status,
        200
    );
    Ok(())
}

#[tokio::test]
async fn sessions_live_in_the_database_and_outlast_the_server() -> TestResult {
    if local_only("sessions_outlast_the_server", "it restarts the stand-in") {
        return Ok(());
    }
    let (db, shim) = standin(|c| {
        c.access_ttl = Duration::from_secs(2);
        c.jwt_clock_skew = Duration::ZERO;
    })
    .await?;
    db.create_user("ivy@example.com", "pw-ivy-123").await?;
    let session = sign_in(&shim, "ivy@example.com", "pw-ivy-123").await?.body;
    let access = str_of(&session, "access_token").to_string();
    assert_eq!(
        rpc(&shim, "whoami", Some(&access), json!({})).await?.status,
        200
    );

    // GoTrue keeps sessions and refresh tokens in Postgres (`auth.sessions`,
    // `auth.refresh_tokens`), so a restarted Auth server honours them.
    let config = {
        let mut c = db.standin_config();
        c.access_ttl = Duration::from_secs(2);
        c.jwt_clock_skew = Duration::ZERO;
        c
    };
    drop(shim);
    let shim = Shim::start_with(config).await?;
    // With no skew (a test setting; PostgREST allows 30 s) the 2-second token is refused once
    // past its `exp`: 401 PGRST303, and a refresh brings a working one.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let answer = rpc(&shim, "whoami", Some(&access), json!({})).await?;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body["code"], "PGRST303");
    let renewed = refresh(&shim, str_of(&session, "refresh_token")).await?;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let access = str_of(&renewed.body, "access_token");
    assert_eq!(
        rpc(&shim, "whoami", Some(access), json!({})).await?.status,
        200
    );
    Ok(())
}
