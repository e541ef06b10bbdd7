//! The native API under `/api/v1`: routes, the JSON body extractor, and the OpenAPI
//! document generated from the handlers' annotations.

pub(crate) mod access;
mod admin;
pub(crate) mod auth;
mod deliverables;
pub(crate) mod findings;
pub(crate) mod governance;
pub(crate) mod ledger;
pub(crate) mod offboard;
mod reports;
pub(crate) mod rotation;
pub(crate) mod shares;

pub(crate) use ledger::{checkpoints, new_ledger_key};
pub(crate) mod secrets;
pub(crate) mod sys;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter};
use chaperone_core::policy::Action;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use crate::{ApiError, AppState};

/// What a route's authorisation looks at besides the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum On {
    /// The secret path in the route's `{*path}` parameter.
    Secret,
    /// A listing (the root or a folder).
    Listing,
    /// Nothing in particular: server-wide administration or the caller's own things.
    System,
}

/// One method on one path, with the action the policy decides on (`None`: public).
#[derive(Clone, Debug)]
pub(crate) struct RouteSpec {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) action: Option<Action>,
    pub(crate) on: On,
    /// A check the handler makes itself, beyond the decision on `action`.
    pub(crate) guard: Option<Guard>,
}

/// A check a route's handler makes of its own, beyond the policy's decision on the route's
/// action. It is kept on the route so that `sys/capabilities-self` answers what the handler
/// would do, from the functions the handler calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Minting a token: a person's token needs a recent step-up (`auth::may_mint`).
    Mint,
    /// Minting a token without a parent: an admin's (`auth::may_orphan`), as for `Mint`.
    MintOrphan,
}

impl Guard {
    /// Whether the handler's own check lets `caller` through now.
    pub(crate) fn allows(self, state: &AppState, caller: &crate::auth::Caller) -> bool {
        match self {
            Guard::Mint => auth::may_mint(state, caller),
            Guard::MintOrphan => auth::may_orphan(caller) && auth::may_mint(state, caller),
        }
    }
}

/// One route-table entry: the route's spec and its handler.
pub(crate) fn route<H, T>(
    method: Method,
    path: &'static str,
    action: Option<Action>,
    on: On,
    handler: H,
) -> (RouteSpec, MethodRouter<Arc<AppState>>)
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    (
        RouteSpec {
            method,
            path,
            action,
            on,
            guard: None,
        },
        axum::routing::on(filter, handler),
    )
}

/// A route-table entry whose handler makes the check `guard` of its own.
pub(crate) fn guarded(
    guard: Guard,
    (spec, handler): (RouteSpec, MethodRouter<Arc<AppState>>),
) -> (RouteSpec, MethodRouter<Arc<AppState>>) {
    (
        RouteSpec {
            guard: Some(guard),
            ..spec
        },
        handler,
    )
}

/// Every route, native (`/api/v1`) and Vault-compatible (`/v1`): the one table both the
/// router and the authorisation middleware are built from. A route cannot be added without
/// saying who may call it.
fn routes() -> Vec<(RouteSpec, MethodRouter<Arc<AppState>>)> {
    use Action::*;
    use Method as M;
    const DATA: &str = "/api/v1/secrets/data/{*path}";
    const META: &str = "/api/v1/secrets/metadata/{*path}";
    vec![
        route(M::GET, "/api/v1/health", None, On::System, sys::health),
        route(
            M::GET,
            "/api/v1/ready",
            None,
            On::System,
            crate::observe::ready,
        ),
        route(
            M::GET,
            "/metrics",
            None,
            On::System,
            crate::observe::metrics,
        ),
        route(
            M::GET,
            "/api/v1/openapi.json",
            None,
            On::System,
            openapi_json,
        ),
        route(
            M::GET,
            "/api/v1/sys/seal-status",
            None,
            On::System,
            sys::seal_status,
        ),
        route(M::POST, "/api/v1/sys/unseal", None, On::System, sys::unseal),
        route(
            M::POST,
            "/api/v1/sys/rekey",
            Some(ManageKeys),
            On::System,
            crate::keys::rekey,
        ),
        route(
            M::POST,
            "/api/v1/sys/rekey/verify",
            Some(ManageKeys),
            On::System,
            crate::keys::rekey_verify,
        ),
        route(
            M::POST,
            "/api/v1/sys/backup",
            Some(Backup),
            On::System,
            ledger::sign_backup,
        ),
        route(
            M::POST,
            "/api/v1/sys/rotate",
            Some(ManageKeys),
            On::System,
            crate::keys::rotate,
        ),
        route(
            M::GET,
            "/api/v1/sys/rotate",
            Some(ManageKeys),
            On::System,
            crate::keys::rotation_status,
        ),
        route(
            M::POST,
            "/api/v1/sys/seal",
            Some(Seal),
            On::System,
            sys::seal,
        ),
        route(M::GET, DATA, Some(SecretRead), On::Secret, secrets::read),
        route(M::PUT, DATA, Some(SecretWrite), On::Secret, secrets::write),
        route(
            M::POST,
            DATA,
            Some(SecretWrite),
            On::Secret,
            secrets::write_post,
        ),
        route(
            M::DELETE,
            DATA,
            Some(SecretDelete),
            On::Secret,
            secrets::delete_latest,
        ),
        route(
            M::GET,
            META,
            Some(SecretList),
            On::Secret,
            secrets::metadata,
        ),
        route(
            M::PUT,
            META,
            Some(SecretMetadataWrite),
            On::Secret,
            secrets::update_metadata,
        ),
        route(
            M::DELETE,
            META,
            Some(SecretDestroy),
            On::Secret,
            secrets::delete_secret,
        ),
        route(
            M::POST,
            "/api/v1/secrets/delete/{*path}",
            Some(SecretDelete),
            On::Secret,
            secrets::delete_versions,
        ),
        route(
            M::POST,
            "/api/v1/secrets/undelete/{*path}",
            Some(SecretDelete),
            On::Secret,
            secrets::undelete_versions,
        ),
        route(
            M::POST,
            "/api/v1/secrets/destroy/{*path}",
            Some(SecretDestroy),
            On::Secret,
            secrets::destroy_versions,
        ),
        route(
            M::GET,
            "/api/v1/secrets/list",
            Some(SecretList),
            On::Listing,
            secrets::list_root,
        ),
        route(
            M::GET,
            "/api/v1/secrets/list/{*prefix}",
            Some(SecretList),
            On::Listing,
            secrets::list,
        ),
        route(M::POST, "/api/v1/auth/login", None, On::System, auth::login),
        route(
            M::POST,
            "/api/v1/auth/enroll",
            None,
            On::System,
            auth::enroll,
        ),
        route(
            M::POST,
            "/api/v1/auth/verify",
            Some(OwnTokens),
            On::System,
            auth::verify,
        ),
        route(
            M::GET,
            "/api/v1/auth/self",
            Some(SelfToken),
            On::System,
            auth::whoami,
        ),
        route(
            M::GET,
            "/api/v1/auth/tokens",
            Some(OwnTokens),
            On::System,
            auth::list_tokens,
        ),
        guarded(
            Guard::Mint,
            route(
                M::POST,
                "/api/v1/auth/tokens",
                Some(OwnTokens),
                On::System,
                auth::create_token,
            ),
        ),
        route(
            M::DELETE,
            "/api/v1/auth/tokens/{id}",
            Some(OwnTokens),
            On::System,
            auth::revoke_token,
        ),
        route(
            M::GET,
            "/api/v1/people",
            Some(ManagePeople),
            On::System,
            admin::list_people,
        ),
        route(
            M::POST,
            "/api/v1/people",
            Some(ManagePeople),
            On::System,
            admin::add_person,
        ),
        route(
            M::POST,
            "/api/v1/people/{name}/disable",
            Some(ManagePeople),
            On::System,
            admin::disable_person,
        ),
        route(
            M::POST,
            "/api/v1/people/{name}/enable",
            Some(ManagePeople),
            On::System,
            admin::enable_person,
        ),
        route(
            M::POST,
            "/api/v1/people/{name}/unlock",
            Some(ManagePeople),
            On::System,
            admin::unlock_person,
        ),
        route(
            M::POST,
            "/api/v1/auth/unlock-address",
            Some(ManagePeople),
            On::System,
            admin::unlock_address,
        ),
        route(
            M::POST,
            "/api/v1/people/{name}/reset",
            Some(ManagePeople),
            On::System,
            admin::reset_person,
        ),
        route(
            M::PUT,
            "/api/v1/people/{name}/networks",
            Some(ManagePeople),
            On::System,
            admin::set_person_networks,
        ),
        route(
            M::POST,
            "/api/v1/vendors",
            Some(ManageGovernance),
            On::System,
            governance::add_vendor,
        ),
        route(
            M::GET,
            "/api/v1/vendors",
            Some(ReadGovernance),
            On::System,
            governance::list_vendors,
        ),
        route(
            M::GET,
            "/api/v1/vendors/{name}",
            Some(ReadGovernance),
            On::System,
            governance::show_vendor,
        ),
        route(
            M::PUT,
            "/api/v1/vendors/{name}",
            Some(ManageGovernance),
            On::System,
            governance::update_vendor,
        ),
        route(
            M::POST,
            "/api/v1/vendors/{name}/agreements",
            Some(ManageGovernance),
            On::System,
            governance::add_agreement,
        ),
        route(
            M::GET,
            "/api/v1/vendors/{name}/agreements",
            Some(ReadGovernance),
            On::System,
            governance::list_agreements,
        ),
        route(
            M::POST,
            "/api/v1/agreements/{id}/terminate",
            Some(ManageGovernance),
            On::System,
            governance::terminate_agreement,
        ),
        route(
            M::POST,
            "/api/v1/vendors/{name}/evidence",
            Some(ManageGovernance),
            On::System,
            governance::add_evidence,
        ),
        route(
            M::GET,
            "/api/v1/vendors/{name}/evidence",
            Some(ReadGovernance),
            On::System,
            governance::list_evidence,
        ),
        route(
            M::POST,
            "/api/v1/evidence/{id}/revoke",
            Some(ManageGovernance),
            On::System,
            governance::revoke_evidence,
        ),
        route(
            M::PUT,
            "/api/v1/documents/{id}",
            Some(ManageGovernance),
            On::System,
            governance::put_document,
        ),
        route(
            M::GET,
            "/api/v1/documents/{id}",
            Some(ReadGovernance),
            On::System,
            governance::get_document,
        ),
        route(
            M::POST,
            "/api/v1/policies",
            Some(ManageGovernance),
            On::System,
            governance::publish_policy,
        ),
        route(
            M::GET,
            "/api/v1/policies",
            Some(RequestAccess),
            On::System,
            governance::list_policies,
        ),
        route(
            M::POST,
            "/api/v1/policies/{name}/acknowledge",
            Some(RequestAccess),
            On::System,
            governance::acknowledge_policy,
        ),
        route(
            M::GET,
            "/api/v1/levels",
            Some(ReadGovernance),
            On::System,
            governance::list_levels,
        ),
        route(
            M::PUT,
            "/api/v1/levels/{name}",
            Some(ManageClassification),
            On::System,
            governance::put_level,
        ),
        route(
            M::POST,
            "/api/v1/requests",
            Some(RequestAccess),
            On::System,
            access::create_request,
        ),
        route(
            M::GET,
            "/api/v1/requests",
            Some(RequestAccess),
            On::System,
            access::list_requests,
        ),
        route(
            M::POST,
            "/api/v1/requests/{id}/approve",
            Some(ApproveAccess),
            On::System,
            access::approve_request,
        ),
        route(
            M::POST,
            "/api/v1/requests/{id}/deny",
            Some(ApproveAccess),
            On::System,
            access::deny_request,
        ),
        route(
            M::POST,
            "/api/v1/requests/{id}/cancel",
            Some(RequestAccess),
            On::System,
            access::cancel_request,
        ),
        route(
            M::GET,
            "/api/v1/auth/grants",
            Some(OwnTokens),
            On::System,
            access::my_grants,
        ),
        route(
            M::GET,
            "/api/v1/grants",
            Some(ManageGrants),
            On::System,
            access::list_grants,
        ),
        route(
            M::POST,
            "/api/v1/grants",
            Some(BreakGlass),
            On::System,
            access::break_glass,
        ),
        route(
            M::DELETE,
            "/api/v1/grants/{id}",
            Some(ManageGrants),
            On::System,
            access::revoke_grant,
        ),
        route(
            M::POST,
            "/api/v1/grants/{id}/extend",
            Some(RequestAccess),
            On::System,
            access::extend_grant,
        ),
        route(
            M::POST,
            "/api/v1/grants/{id}/review",
            Some(ManageGrants),
            On::System,
            access::review_grant,
        ),
        route(
            M::POST,
            "/api/v1/reviews",
            Some(ManageGovernance),
            On::System,
            access::create_campaign,
        ),
        route(
            M::GET,
            "/api/v1/reviews",
            Some(ReadGovernance),
            On::System,
            access::list_campaigns,
        ),
        route(
            M::GET,
            "/api/v1/reviews/{id}",
            Some(ReadGovernance),
            On::System,
            access::show_campaign,
        ),
        route(
            M::POST,
            "/api/v1/reviews/{id}/items/{item}",
            Some(ReviewAccess),
            On::System,
            access::decide_item,
        ),
        route(
            M::GET,
            "/api/v1/notifications",
            Some(RequestAccess),
            On::System,
            access::list_notifications,
        ),
        route(
            M::POST,
            "/api/v1/vendors/{name}/offboard",
            Some(ManageGovernance),
            On::System,
            offboard::offboard_vendor,
        ),
        route(
            M::POST,
            "/api/v1/vendors/{name}/attestation",
            Some(ManageGovernance),
            On::System,
            offboard::reissue_attestation,
        ),
        route(
            M::POST,
            "/api/v1/people/{name}/offboard",
            Some(ManagePeople),
            On::System,
            offboard::offboard_person,
        ),
        route(
            M::POST,
            "/api/v1/attestations/info",
            None,
            On::System,
            offboard::show_attestation,
        ),
        route(
            M::POST,
            "/api/v1/attestations/sign",
            None,
            On::System,
            offboard::submit_attestation,
        ),
        route(
            M::GET,
            "/api/v1/findings",
            Some(TrackFindings),
            On::System,
            findings::list_findings,
        ),
        route(
            M::GET,
            "/api/v1/findings/{id}",
            Some(TrackFindings),
            On::System,
            findings::show_finding,
        ),
        route(
            M::POST,
            "/api/v1/findings/{id}",
            Some(TrackFindings),
            On::System,
            findings::update_finding,
        ),
        route(
            M::POST,
            "/api/v1/shares",
            Some(Share),
            On::System,
            shares::create_share,
        ),
        route(
            M::GET,
            "/api/v1/shares",
            Some(Share),
            On::System,
            shares::list_shares,
        ),
        route(
            M::PUT,
            SHARE_CONTENT,
            Some(Share),
            On::System,
            shares::put_share_content,
        ),
        route(
            M::DELETE,
            "/api/v1/shares/{id}",
            Some(Share),
            On::System,
            shares::revoke_share,
        ),
        route(
            M::POST,
            "/api/v1/shares/{id}/info",
            None,
            On::System,
            shares::share_info,
        ),
        route(
            M::POST,
            "/api/v1/shares/{id}/open",
            None,
            On::System,
            shares::open_share,
        ),
        route(
            M::POST,
            "/api/v1/secret-requests/{*path}",
            Some(SecretWrite),
            On::Secret,
            shares::create_secret_request,
        ),
        route(
            M::GET,
            "/api/v1/request-links",
            Some(OwnTokens),
            On::System,
            shares::list_request_links,
        ),
        route(
            M::DELETE,
            "/api/v1/request-links/{id}",
            Some(OwnTokens),
            On::System,
            shares::revoke_request_link,
        ),
        route(
            M::POST,
            "/api/v1/request-links/info",
            None,
            On::System,
            shares::show_secret_request,
        ),
        route(
            M::POST,
            REQUEST_SUBMIT,
            None,
            On::System,
            shares::submit_secret_request,
        ),
        route(M::GET, "/s/{id}", None, On::System, crate::pages::share),
        route(M::GET, "/r", None, On::System, crate::pages::request),
        route(M::GET, "/a", None, On::System, crate::pages::attest),
        // Links made before their token moved to the fragment: the page takes it from the
        // path once and then clears the address bar.
        route(
            M::GET,
            "/r/{token}",
            None,
            On::System,
            crate::pages::request,
        ),
        route(M::GET, "/a/{token}", None, On::System, crate::pages::attest),
        route(
            M::GET,
            "/static/chaperone.js",
            None,
            On::System,
            crate::pages::script,
        ),
        route(M::GET, "/ui", None, On::System, crate::pages::console),
        route(
            M::GET,
            "/static/console.js",
            None,
            On::System,
            crate::pages::console_script,
        ),
        route(
            M::GET,
            "/static/chaperone.css",
            None,
            On::System,
            crate::pages::style,
        ),
        route(
            M::GET,
            "/api/v1/secrets/stale",
            Some(SecretList),
            On::Listing,
            rotation::stale,
        ),
        // A rotation policy is a control over those who hold a secret, not a setting of the
        // secret: set by security, never by a grant that may write there.
        route(
            M::PUT,
            "/api/v1/rotation/{*path}",
            Some(ManageGovernance),
            On::System,
            rotation::set_policy,
        ),
        route(
            M::POST,
            DELIVERABLES,
            Some(SubmitDeliverable),
            On::System,
            deliverables::submit,
        ),
        route(
            M::GET,
            "/api/v1/deliverables",
            Some(Deliverables),
            On::System,
            deliverables::list,
        ),
        route(
            M::GET,
            "/api/v1/deliverables/{id}",
            Some(Deliverables),
            On::System,
            deliverables::show,
        ),
        route(
            M::GET,
            "/api/v1/classifications",
            Some(SecretList),
            On::Listing,
            admin::list_classifications,
        ),
        route(
            M::PUT,
            "/api/v1/classifications",
            Some(ManageClassification),
            On::System,
            admin::set_classification,
        ),
        route(
            M::DELETE,
            "/api/v1/classifications/{*prefix}",
            Some(ManageClassification),
            On::System,
            admin::remove_classification,
        ),
        route(M::GET, "/api/v1/ledger/key", None, On::System, ledger::key),
        route(
            M::GET,
            "/api/v1/ledger/checkpoint",
            Some(ReadLedger),
            On::System,
            ledger::checkpoint,
        ),
        route(
            M::GET,
            "/api/v1/ledger/entries",
            Some(ReadLedger),
            On::System,
            ledger::entries,
        ),
        route(
            M::GET,
            "/api/v1/ledger/proof/inclusion",
            Some(ReadLedger),
            On::System,
            ledger::inclusion,
        ),
        route(
            M::GET,
            "/api/v1/ledger/search",
            Some(ReadLedger),
            On::System,
            ledger::search,
        ),
        route(
            M::GET,
            "/api/v1/ledger/tile/{*path}",
            Some(AuditLedger),
            On::System,
            ledger::tile,
        ),
        route(
            M::GET,
            "/api/v1/reports",
            Some(AuditLedger),
            On::System,
            reports::report,
        ),
        route(
            M::GET,
            "/api/v1/ledger/proof/consistency",
            Some(ReadLedger),
            On::System,
            ledger::consistency,
        ),
    ]
    .into_iter()
    .chain(crate::vault::routes())
    .collect()
}

/// The route table: method, path pattern and action (`None` for public routes).
pub fn route_table() -> Vec<(Method, &'static str, Option<Action>)> {
    routes()
        .into_iter()
        .map(|(spec, _)| (spec.method, spec.path, spec.action))
        .collect()
}

/// The route table, as the authorisation middleware consults it.
#[derive(Clone, Debug)]
pub(crate) struct RouteTable(Arc<Vec<RouteSpec>>);

impl RouteTable {
    /// The entry of the route `path` (a pattern, as matched) for `method`.
    ///
    /// axum answers HEAD with the GET handler, without the body. That is kept for public
    /// routes (health, pages); on a route that needs a credential HEAD finds nothing, so
    /// it is refused with 405 before anything runs: the handler would read a secret or a
    /// report, record it as given, and send nothing.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&RouteSpec> {
        if method == Method::HEAD {
            return self
                .0
                .iter()
                .find(|spec| spec.method == Method::GET && spec.path == path)
                .filter(|spec| spec.action.is_none());
        }
        self.0
            .iter()
            .find(|spec| spec.method == method && spec.path == path)
    }

    /// Whether `path` (a pattern, as matched) is a route for some method.
    pub(crate) fn knows(&self, path: &str) -> bool {
        self.0.iter().any(|spec| spec.path == path)
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.max_request_bytes;
    let (specs, handlers): (Vec<RouteSpec>, Vec<_>) = routes().into_iter().unzip();
    let router = specs
        .iter()
        .zip(handlers)
        .fold(Router::new(), |router, (spec, handler)| {
            // Share links carry files up to 25 MiB, read in upload slots of their own. Routes
            // anyone may call take small bodies, but for the secret a request link brings.
            // Every other body keeps the server's limit, and one over `SMALL_BODY` is read
            // within the body budget.
            let handler = match large_body(spec.path) {
                Some(max) => handler.layer(DefaultBodyLimit::max(max)),
                // Read before anyone is known: a budget of its own, which whoever fills
                // it takes from request links alone.
                None if spec.path == REQUEST_SUBMIT => {
                    within_budget(handler, &state.submit_budget, limit)
                }
                None if spec.action.is_none() => handler.layer(DefaultBodyLimit::max(SMALL_BODY)),
                // No handler of a GET or HEAD reads a body: none is buffered to count.
                None if matches!(spec.method, Method::GET | Method::HEAD) => handler,
                None => within_budget(handler, &state.body_budget, limit),
            };
            router.route(spec.path, handler)
        });
    let table = RouteTable(Arc::new(specs));
    let state_for_vault = Arc::clone(&state);
    let router: Router = router
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), table),
            crate::auth::authorize,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                // A declared length over the limit is refused before any of the body is read.
                let limit = if is_share_content(request.uri().path()) {
                    limit.max(shares::MAX_SEALED_BYTES)
                } else if request.uri().path() == DELIVERABLES {
                    limit.max(deliverables::MAX_DELIVERABLE_BYTES)
                } else {
                    limit
                };
                let declared = request
                    .headers()
                    .get(axum::http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok());
                // The API is never a page: a browser's request to it from another site (an
                // image or a link there, with a token a gateway adds) is refused whatever its
                // method; the pages themselves may be linked to from anywhere.
                let path = request.uri().path();
                let api = path.starts_with("/api/") || path.starts_with("/v1/");
                let elsewhere =
                    (api || !matches!(
                        *request.method(),
                        Method::GET | Method::HEAD | Method::OPTIONS
                    )) && from_elsewhere(request.headers());
                async move {
                    if elsewhere {
                        return cross_site().into_response();
                    }
                    if declared.is_some_and(|n| n > limit) {
                        return body_too_large().into_response();
                    }
                    next.run(request).await
                }
            },
        ))
        .with_state(state);
    // The Vault layer must see requests before routing (it rewrites `LIST`), so it wraps
    // the whole router rather than its routes.
    Router::new()
        .fallback_service(router)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state_for_vault),
            crate::vault::compat,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state_for_vault,
            crate::observe::layer,
        ))
}

/// The route that takes a share link's sealed content.
const SHARE_CONTENT: &str = "/api/v1/shares/{id}/content";
/// The route that takes the secret a request link asks for, from anyone holding the link.
const REQUEST_SUBMIT: &str = "/api/v1/request-links/submit";

/// The largest body of a route anyone may call without a token (logins, enrolment,
/// unsealing, unwrapping, share passphrases, attestations), and the size up to which any
/// body is read without the body budget.
///
/// Security decision: such a body is read before anyone is known, and a client may send it
/// slowly, holding it for the request timeout: 16 KiB (a password, a code, a token, a signed
/// statement) times the connection limit (4,096) bounds what anonymous clients hold at about
/// 64 MiB. Larger bodies (up to `max_request_bytes`) come with a token, or with a request
/// link, and are read within [`body_budget`].
pub(crate) const SMALL_BODY: usize = 16 * 1024;

/// The bytes of bodies over [`SMALL_BODY`] read or handled at once: 64 MiB, or four of the
/// largest, whichever is more (at most 4 GiB, what one body's permits can count). Request
/// links' submissions, read before anyone is known, have a quarter of that of their own.
pub(crate) fn body_budget_bytes(max_request_bytes: usize) -> usize {
    let most = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
    (64 * 1024 * 1024)
        .max(max_request_bytes.saturating_mul(4))
        .min(most)
}

/// `handler` with its body taken from `budget` ([`body_budget`]) for as long as it runs.
fn within_budget(
    handler: MethodRouter<Arc<AppState>>,
    budget: &Arc<BodyBudget>,
    limit: usize,
) -> MethodRouter<Arc<AppState>> {
    let budget = Arc::clone(budget);
    handler.layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| {
            // Who sends it: known by their token (the authorisation layer ran), else by their
            // address (a request link's submission).
            let who = match request.extensions().get::<crate::auth::Caller>() {
                Some(caller) => sender(caller),
                None => auth::address_subject(
                    request
                        .extensions()
                        .get::<crate::record::RequestInfo>()
                        .and_then(|info| info.client_ip),
                ),
            };
            let permit = body_budget(&budget, who, request.headers(), limit);
            async move {
                match permit {
                    Ok(permit) => {
                        let response = next.run(request).await;
                        drop(permit);
                        response
                    }
                    Err(error) => error.into_response(),
                }
            }
        },
    ))
}

/// Takes a request's body size from `budget` before its body is read: the declared length,
/// or `limit` when the body comes in chunks. A body of [`SMALL_BODY`] or less takes nothing.
/// None left is `429 busy`: without the budget, clients sending bodies of up to
/// `max_request_bytes` slowly on every connection they may open would hold gigabytes.
fn body_budget(
    budget: &Arc<BodyBudget>,
    who: String,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Option<BodyPermit>, ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let size = match declared {
        Some(n) => n.min(limit),
        None if headers.contains_key(axum::http::header::TRANSFER_ENCODING) => limit,
        None => 0,
    };
    if size <= SMALL_BODY {
        return Ok(None);
    }
    budget.take(who, size).map(Some)
}

/// Bytes of request bodies being read or handled at once, in all and by each sender.
///
/// Security decision: a body is charged as declared, before it arrives (what it would take
/// if sent), and a sender may send it as slowly as the request timeout allows; so one sender
/// (anyone holding a token, or an address where no token is asked) may hold a quarter of the
/// budget at most, or one largest body, and cannot take the rest from everyone else.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    total: Arc<tokio::sync::Semaphore>,
    held: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    share: usize,
}

impl BodyBudget {
    /// A budget of `bytes` in all, of which a sender may hold a quarter, or `largest`.
    pub(crate) fn new(bytes: usize, largest: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(tokio::sync::Semaphore::new(bytes)),
            held: std::sync::Mutex::default(),
            share: (bytes / 4).max(largest),
        })
    }

    /// `size` bytes for `who`, or `429 busy` when they or everyone hold too much already.
    fn take(self: &Arc<Self>, who: String, size: usize) -> Result<BodyPermit, ApiError> {
        let busy = |message: &str| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", message.to_owned())
        };
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = held.get(&who).copied().unwrap_or(0);
        if mine.saturating_add(size) > self.share {
            return Err(busy(
                "your requests are sending as many large bodies at once as one sender may; \
                 try again when they are done",
            ));
        }
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.total)
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                busy(
                    "the server is reading as many large request bodies as it takes at once; \
                     try again shortly",
                )
            })?;
        *held.entry(who.clone()).or_default() += size;
        Ok(BodyPermit {
            budget: Arc::clone(self),
            who,
            size,
            _permit: permit,
        })
    }
}

/// A body's share of a [`BodyBudget`], given back when dropped.
pub(crate) struct BodyPermit {
    budget: Arc<BodyBudget>,
    who: String,
    size: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let mut held = self
            .budget
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mine) = held.get_mut(&self.who) {
            *mine = mine.saturating_sub(self.size);
            if *mine == 0 {
                held.remove(&self.who);
            }
        }
    }
}
/// The route that takes deliverables.
const DELIVERABLES: &str = "/api/v1/deliverables";

/// The body limit of the routes that take files, above the server's usual limit.
fn large_body(route: &str) -> Option<usize> {
    match route {
        SHARE_CONTENT => Some(shares::MAX_SEALED_BYTES),
        DELIVERABLES => Some(deliverables::MAX_DELIVERABLE_BYTES),
        _ => None,
    }
}

fn is_share_content(path: &str) -> bool {
    path.strip_prefix("/api/v1/shares/")
        .and_then(|rest| rest.strip_suffix("/content"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Checks free text a person writes for others to read (a reason, a comment, a note, a
/// label, a signed statement): at most `max` characters, and none of the characters that
/// change how text is shown (`chaperone_scan::output::is_hidden`: control characters,
/// direction controls, invisible ones) but line breaks and tabs.
///
/// Security decision: such text reaches other people's terminals (the CLI's lists), pages
/// and mail. An escape sequence in it could move the cursor and overwrite what a list
/// shows (a request for `destroy` on one path shown as one for `read` on another), and a
/// direction override could reorder it. It is refused rather than stored, so that no
/// client has to be trusted to make it harmless. Line breaks stay (a reason typed in a
/// text box); the CLI prints them escaped, one item per line.
pub(crate) fn check_text(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.chars().count() > max {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`{field}` is at most {max} characters"),
        ));
    }
    let hidden = |c: char| chaperone_scan::output::is_hidden(c) && !matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(hidden) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "`{field}` may not contain control characters (such as terminal escape \
                 sequences), text direction controls or invisible characters"
            ),
        ));
    }
    Ok(())
}

/// [`check_text`] for each key and value of a map of labels (a secret's custom metadata, a
/// token's `meta`): whoever may write them is often not who reads them. Their lengths are
/// bounded apart (`chaperone_core::secret::check_custom_metadata`).
pub(crate) fn check_labels(
    field: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
    labels.iter().try_for_each(|(key, value)| {
        check_text(field, key, usize::MAX)?;
        check_text(field, value, usize::MAX)
    })
}

/// Lowercase hex SHA-256 of `bytes` (documents, policy texts, link tokens, deliverables).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is larger than this route accepts (16 KiB on routes anyone may \
         call; elsewhere the server's max_request_bytes, 1 MiB unless configured)",
    )
}

async fn not_found(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
) -> ApiError {
    // Vault's clients are told what OpenBao tells them of a route it does not serve: that
    // it is sealed, then that the token does not let them in, and only to a valid token
    // that the route does not exist.
    if request.uri().path().starts_with("/v1/")
        && let Err(refused) = crate::auth::check_unknown_route(&state, request).await
    {
        return refused;
    }
    ApiError::not_found("no such route; the API is described at /api/v1/openapi.json")
}

/// The answer to a route that does not exist.
pub(crate) fn not_found_response() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    ApiError::not_found("no such route; the API is described at /api/v1/openapi.json")
        .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chaperone API",
        description = "Native API of Chaperone. Authenticate with `Authorization: Bearer <token>`."
    ),
    paths(
        sys::health,
        crate::observe::ready,
        crate::keys::rekey,
        crate::keys::rekey_verify,
        ledger::sign_backup,
        crate::keys::rotate,
        crate::keys::rotation_status,
        openapi_json,
        sys::seal_status,
        sys::unseal,
        sys::seal,
        secrets::read,
        secrets::write,
        secrets::write_post,
        secrets::delete_latest,
        secrets::metadata,
        secrets::update_metadata,
        secrets::delete_secret,
        secrets::delete_versions,
        secrets::undelete_versions,
        secrets::destroy_versions,
        secrets::list,
        secrets::list_root,
        auth::login,
        auth::enroll,
        auth::verify,
        auth::whoami,
        auth::list_tokens,
        auth::create_token,
        auth::revoke_token,
        admin::add_person,
        admin::list_people,
        admin::disable_person,
        admin::enable_person,
        admin::unlock_person,
        admin::unlock_address,
        admin::reset_person,
        admin::set_person_networks,
        governance::add_vendor,
        governance::list_vendors,
        governance::show_vendor,
        governance::update_vendor,
        governance::add_agreement,
        governance::list_agreements,
        governance::terminate_agreement,
        governance::add_evidence,
        governance::list_evidence,
        governance::revoke_evidence,
        reports::report,
        governance::put_document,
        governance::get_document,
        governance::publish_policy,
        governance::list_policies,
        governance::acknowledge_policy,
        governance::list_levels,
        governance::put_level,
        access::create_request,
        access::list_requests,
        access::approve_request,
        access::deny_request,
        access::cancel_request,
        access::list_grants,
        access::break_glass,
        access::revoke_grant,
        access::extend_grant,
        access::my_grants,
        access::review_grant,
        access::create_campaign,
        access::list_campaigns,
        access::show_campaign,
        access::decide_item,
        access::list_notifications,
        deliverables::submit,
        deliverables::list,
        deliverables::show,
        rotation::stale,
        rotation::set_policy,
        shares::create_share,
        shares::list_shares,
        shares::put_share_content,
        shares::revoke_share,
        shares::share_info,
        shares::open_share,
        shares::create_secret_request,
        shares::list_request_links,
        shares::revoke_request_link,
        shares::show_secret_request,
        shares::submit_secret_request,
        offboard::offboard_vendor,
        offboard::reissue_attestation,
        offboard::offboard_person,
        offboard::show_attestation,
        offboard::submit_attestation,
        findings::list_findings,
        findings::show_finding,
        findings::update_finding,
        admin::list_classifications,
        admin::set_classification,
        admin::remove_classification,
        ledger::key,
        ledger::checkpoint,
        ledger::entries,
        ledger::inclusion,
        ledger::consistency,
        ledger::tile,
        ledger::search,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of the native API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi_document())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The token of a link for someone without an account (a request-a-secret or attestation
/// link). Links carry it after `#`, which browsers never send, and the page posts it in the
/// body: a token in a URL path would reach proxy logs and browser history.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkToken {
    token: String,
}

/// The error envelope of every failed request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// One error.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable machine-readable code, e.g. `cas_mismatch`, `sealed`, `invalid_path`.
    code: String,
    /// What went wrong, for people.
    message: String,
}

/// Whether JSON text holds the escape `\u0000` (a NUL character in a string): a `\u0000`
/// preceded by an odd run of backslashes, so that an escaped backslash followed by the
/// letters `u0000` is not one.
fn has_nul_escape(json: &[u8]) -> bool {
    json.windows(6).enumerate().any(|(i, w)| {
        w == br"\u0000" && json[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

/// A slot of `slots`, taken before an upload's body is read so that the bodies held in
/// memory at once are bounded; none free is `429 busy`, with `message`.
pub(crate) fn upload_slot(
    slots: &Arc<tokio::sync::Semaphore>,
    message: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    Arc::clone(slots)
        .try_acquire_owned()
        .map_err(|_| ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", message.to_owned()))
}

/// Runs `work` to its end in a task of its own, whatever becomes of the request: a client
/// that hangs up, or the request timeout, drops the request's handler, and an attempt at a
/// password, code or passphrase is counted (towards a lockout) before it is checked, so it
/// must not stay counted without its ledger entry. A server that stops waits for such work
/// before its last entries ([`crate::state::Unfinished`]). `what` names it in the error of a
/// task that did not finish (it panicked).
pub(crate) async fn to_the_end<T: Send + 'static>(
    state: &AppState,
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    use tracing::Instrument as _;
    let running = state.unfinished.enter();
    let task = async move {
        let out = work.await;
        drop(running);
        out
    };
    tokio::spawn(task.in_current_span()).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what} did not run to its end; try again"),
        )
    })?
}

/// Who sends a request, for what one sender may hold at once: a vendor (its people
/// together), else a person, else a token of no person.
fn sender(caller: &crate::auth::Caller) -> String {
    match (&caller.vendor_id, &caller.person_id) {
        (Some(vendor), _) => format!("vendor:{vendor}"),
        (None, Some(person)) => format!("person:{person}"),
        (None, None) => format!("token:{}", caller.token_id),
    }
}

/// An upload in progress by one uploader ([`sender`]). Ends when dropped.
///
/// Security decision: uploads hold their bodies for as long as the client takes to send
/// them (up to the request timeout) in a few slots shared by everyone; without this, one
/// contractor (or a vendor's few) sending slowly on several connections would hold every
/// slot, and nobody else could upload.
pub(crate) struct Uploading<'a> {
    uploading: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    who: String,
}

impl<'a> Uploading<'a> {
    /// Starts `caller`'s upload, or `429 busy` while one of theirs is in progress.
    pub(crate) fn start(
        uploading: &'a std::sync::Mutex<std::collections::HashSet<String>>,
        caller: &crate::auth::Caller,
    ) -> Result<Self, ApiError> {
        let who = sender(caller);
        let mut set = uploading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !set.insert(who.clone()) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "another upload of yours (or of your company's) is in progress; send one at a \
                 time",
            ));
        }
        Ok(Self { uploading, who })
    }
}

impl Drop for Uploading<'_> {
    fn drop(&mut self) {
        self.uploading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.who);
    }
}

/// Whether a browser says the request comes from a page of another site.
///
/// Security decision: a page on any site can make a visitor's browser send a "simple"
/// cross-origin POST (a form: text/plain or no type, no preflight), and the browser adds
/// what it holds for this server on its own: cookies (none here) and HTTP authentication
/// (`Basic`, `Negotiate`) for a proxy in front, which may also pass a token of its own on
/// (`Authorization: Bearer`). That would let any page seal the server, reset unseal
/// progress, spend an account's lockout attempts or use up a wrapping through the browsers
/// of the people who visit it (and, through a gateway that adds a token, have a page's images
/// read secrets in someone's name). So every request to the API (`/api/`, `/v1/`), and every
/// other one but a GET, HEAD or OPTIONS, that the browser says comes from another site
/// (`Sec-Fetch-Site`, which every current browser sends and no other client does) is refused
/// before anything else looks at it, token or not: a page elsewhere can send a token header
/// only after a CORS preflight, never granted, so nothing legitimate is refused. A browser too old to send `Sec-Fetch-Site` still names the page's
/// origin in `Origin` on a cross-origin POST: one that is not this server's host is
/// elsewhere (checked only then, so that a proxy that rewrites `Host` does not lock out
/// current browsers).
pub(crate) fn from_elsewhere(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let foreign_origin = fetch_site.is_none()
        && headers
            .get(axum::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|origin| {
                let host = headers
                    .get(axum::http::header::HOST)
                    .and_then(|v| v.to_str().ok());
                origin.split_once("://").map(|(_, rest)| rest) != host
            });
    foreign_origin || fetch_site.is_some_and(|v| !matches!(v, "same-origin" | "none"))
}

fn cross_site() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site",
        "requests from pages of other sites are refused",
    )
}

/// On the native routes, a body sent without a token must say it is JSON, which a page
/// elsewhere cannot do without the server's CORS consent, never given (a belt to
/// [`from_elsewhere`]'s braces, for clients that send neither header). A token
/// (`Authorization: Bearer`, `X-Vault-Token`) lifts this: the CLI sends some bodies as bytes.
/// The Vault-compatible routes keep Vault's leniency on content types for its clients.
fn require_json(headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "));
    if bearer || headers.contains_key("x-vault-token") {
        return Ok(());
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if path.starts_with("/api/") && !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON, with Content-Type: application/json",
        ));
    }
    Ok(())
}

/// Path parameters (`axum::extract::Path`), with rejections in the API's error format
/// (axum's own are plain text): a segment that is not UTF-8 is 400 `invalid_path`.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            // A route whose pattern does not give the handler its parameters: a bug here.
            Err(rejection) if rejection.status().is_server_error() => {
                tracing::error!(%rejection, "path parameters");
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not read this route's parameters",
                ))
            }
            Err(rejection) => Err(ApiError::bad_request("invalid_path", rejection.body_text())),
        }
    }
}

/// Query parameters (`axum::extract::Query`), with rejections in the API's error format: a
/// parameter given twice or of the wrong type is 400 `invalid_query`, naming it.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
    }
}

/// A JSON request body, with rejections in the API's error format.
///
/// serde's messages for a wrong type or value quote the offending value (`invalid type:
/// string "hunter2"`), which may be a secret; only messages that name a field (missing or
/// unknown) are passed on, the others are replaced by their position.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers(), req.uri().path())?;
        let native = req.uri().path().starts_with("/api/");
        let vault = req.uri().path().starts_with("/v1/");
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    body_too_large()
                }
                other => ApiError::bad_request("invalid_body", other.body_text()),
            })?;
        // PostgreSQL's text refuses U+0000 where SQLite takes it: a name or a reason with one
        // would be stored on one backend and a storage error on the other. The native API
        // refuses it on both (the Vault routes keep Vault's rules).
        if native && has_nul_escape(&bytes) {
            return Err(ApiError::bad_request(
                "invalid_body",
                "text may not contain NUL characters (\\u0000)",
            ));
        }
        // A Vault client's empty body (`curl -X POST` without `-d`, sent with a length of 0
        // or chunked) is `{}`, as OpenBao reads it: a lookup then looks up the caller's
        // token, a metadata write changes nothing, and a route that needs a field says which.
        if vault && bytes.iter().all(u8::is_ascii_whitespace) {
            return parse_body(b"{}").map(ApiJson);
        }
        parse_body(&bytes).map(ApiJson)
    }
}

/// Reads a JSON request body. A value of the wrong type is named by its field (`options.cas`,
/// `versions[1]`) and position, never quoted: serde's own message would repeat the value,
/// and a value in the wrong place may be a secret.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let parsed = match serde_path_to_error::deserialize(&mut reader) {
        Ok(value) => reader
            .end()
            .map(|()| value)
            .map_err(|e| (".".to_owned(), e)),
        Err(err) => Err((err.path().to_string(), err.into_inner())),
    };
    parsed.map_err(|(field, err)| {
        let message = match err.classify() {
            serde_json::error::Category::Data => {
                let text = err.to_string();
                if text.starts_with("missing field") || text.starts_with("unknown field") {
                    text
                } else if field == "." {
                    format!(
                        "a value has the wrong type or is out of range at line {} column {}",
                        err.line(),
                        err.column()
                    )
                } else {
                    format!(
                        "`{field}` has the wrong type or is out of range (line {}, column {})",
                        err.line(),
                        err.column()
                    )
                }
            }
            _ => format!("the request body is not valid JSON: {err}"),
        };
        ApiError::bad_request("invalid_body", message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_keeps_line_breaks_and_refuses_what_would_disguise_it() {
        for fine in [
            "migrate the billing database",
            "line one\r\nline two\tand a tab",
            "ünïcödé, 日本語, emoji 🔑",
        ] {
            assert!(check_text("reason", fine, 100).is_ok(), "{fine:?}");
        }
        for (refused, why) in [
            ("\u{1b}[2Kread the notes", "control characters"),
            ("bell\u{7}", "control characters"),
            ("c1 \u{9b}31m", "control characters"),
            ("\u{202e}daer", "direction"),
            ("\u{2066}isolate\u{2069}", "direction"),
            (&"x".repeat(101), "at most 100 characters"),
        ] {
            let error = check_text("reason", refused, 100).unwrap_err();
            assert!(
                error.message.contains(why),
                "{refused:?}: {}",
                error.message
            );
            assert!(!error.message.contains(refused), "the text is not quoted");
        }
    }

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        // The Vault-compatible routes (`/v1/`) are described by Vault's API documentation.
        for (method, path, _) in route_table()
            .into_iter()
            .filter(|(_, p, _)| p.starts_with("/api/"))
        {
            let path = path
                .replace("{*path}", "{path}")
                .replace("{*prefix}", "{prefix}");
            let entry = &doc["paths"][&path];
            // The `POST` alias of a write is the same operation as `PUT`.
            let method = method.as_str().to_lowercase();
            let documented = entry.get(&method).is_some()
                || (method == "post"
                    && path.starts_with("/api/v1/secrets/data/")
                    && entry.get("put").is_some());
            assert!(documented, "{method} {path} is not in the OpenAPI document");
        }
    }

    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_is_not_one() {
        assert!(super::has_nul_escape(br#"{"name":"a\u0000b"}"#));
        assert!(super::has_nul_escape(br#"{"name":"\\\u0000"}"#));
        assert!(!super::has_nul_escape(br#"{"name":"\\u0000"}"#));
        assert!(!super::has_nul_escape(br#"{"name":"u0000"}"#));
    }
}
