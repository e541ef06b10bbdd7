//! The HTML Chaperone serves. Three pages for people who may have no account: opening a
//! share link (`/s/<id>#<key>`), answering a request for a secret (`/r#<token>`) and signing
//! an offboarding attestation (`/a#<token>`), from one static page and one script. And the
//! console (`/ui`), where people with an account sign in to decide access requests, read
//! what they may read and follow vendors, findings and the ledger; it calls the same
//! `/api/v1` routes as the CLI, so every decision and ledger entry is the API's.
//!
//! Every page answer carries a strict Content-Security-Policy (this origin's script and
//! style only, no inline code, no framing, no forms posting elsewhere), `no-referrer` (the
//! link's path never leaks to another site) and `no-store`. A share's key and a request or
//! attestation link's token stay in the URL fragment, which browsers never send; the script
//! reads them, removes them from the address bar and sends a token only in a POST body.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("chaperone.js");
const CONSOLE: &str = include_str!("console.html");
const CONSOLE_SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("chaperone.css");

/// The Content-Security-Policy of every page.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn page(kind: &str) -> Response {
    html(PAGE.replace("{{PAGE}}", kind))
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
            // A page of another site that opened this one keeps no handle on it (it could
            // send the tab to a look-alike sign-in page later).
            (
                header::HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ],
        body,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The share link page.
pub(crate) async fn share() -> Response {
    page("share")
}

/// The request-a-secret page.
pub(crate) async fn request() -> Response {
    page("request")
}

/// The attestation page.
pub(crate) async fn attest() -> Response {
    page("attest")
}

/// The console.
pub(crate) async fn console() -> Response {
    html(CONSOLE.to_owned())
}

/// The console's script.
pub(crate) async fn console_script() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_SCRIPT)
}

/// The pages' script.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The pages' style sheet.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
