//! The agent's web page: one HTML file, its script and its style sheet, compiled into the
//! binary (`include_str!`) and served with no build step and nothing fetched from elsewhere.
//!
//! `GET /` is the page, `GET /ui/app.js` and `GET /ui/style.css` what it loads. The files hold
//! no secret, so they are served without the token; the page asks for the token itself and
//! sends it as `Authorization: Bearer` on its API calls. Every response carries a strict
//! `Content-Security-Policy` (only this origin; no inline script or style, no frames, no
//! plugins) and `Cache-Control: no-cache`, so a new binary's page is picked up at once.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page.
const INDEX_HTML: &str = include_str!("web/index.html");
/// Its script.
const APP_JS: &str = include_str!("web/app.js");
/// Its style sheet.
const STYLE_CSS: &str = include_str!("web/style.css");

/// What the page may load and do: its own origin only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; object-src 'none'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";

/// The paths served here, which need no token.
pub const PATHS: &[&str] = &["/", "/ui/app.js", "/ui/style.css"];

/// Whether `path` is one of the page's files (served without the token).
pub fn is_page(path: &str) -> bool {
    PATHS.contains(&path)
}

/// A static file with its content type and the page's headers.
fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`: its script.
async fn app_js() -> Response {
    file("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`: its style sheet.
async fn style_css() -> Response {
    file("text/css; charset=utf-8", STYLE_CSS)
}

/// The page's routes, for any router state (they use none).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style_css))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(INDEX_HTML.contains(r#"src="/ui/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/ui/style.css""#));
        // Nothing inline that the policy would block, nothing from elsewhere.
        for needle in ["<script>", "style=", "http://", "https://", "onclick"] {
            assert!(!INDEX_HTML.contains(needle), "index.html has {needle}");
        }
        assert!(!APP_JS.contains("innerHTML"), "app.js must not write HTML");
        assert!(CSP.starts_with("default-src 'self'"));
        assert!(PATHS.iter().all(|p| is_page(p)));
        assert!(!is_page("/v1/search"));
    }
}
