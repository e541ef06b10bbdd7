//! `/api/v1/auth/...`: login, enrolment, step-up verification and the caller's own tokens.
//!
//! Brute force: every failed password, TOTP or recovery code counts against the account and
//! the client address. Each failure is answered after a delay that doubles with the count;
//! at the threshold (default 10 in 15 minutes) logins are refused until the window passes or
//! an admin unlocks the account. Unknown accounts cost the same Argon2id work and get the
//! same answers as wrong passwords, so answers do not reveal which accounts exist.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use chaperone_core::policy::{Role, Standing};
use chaperone_core::{Timestamp, parse_duration};
use chaperone_crypto::password::{
    self, Password, check_new_password, code_hash, dummy_password_hash, hash_password,
    verify_password,
};
use chaperone_crypto::token::ApiToken;
use chaperone_crypto::totp::{self, TotpSecret};
use chaperone_crypto::{Keyring, random_bytes};
use chaperone_store::{DecidedOn, PersonRecord, TokenKind, TokenRecord};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::ApiJson;
use super::ApiPath;
use crate::auth::{Caller, RuleBody, client_ip, network_allowed};
use crate::record::{Record, RequestInfo};
use crate::{ApiError, AppState};
use chaperone_ledger::entry::{Actor, Outcome};

/// What a TOTP secret is sealed for (its owner is the person's id).
pub(crate) const TOTP_PURPOSE: &str = "totp";

/// Name shown by authenticator apps.
const ISSUER: &str = "Chaperone";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    pub(crate) user: String,
    #[schema(value_type = String)]
    pub(crate) password: Zeroizing<String>,
    pub(crate) totp: Option<String>,
    #[schema(value_type = Option<String>)]
    pub(crate) recovery_code: Option<Zeroizing<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LoginResponse {
    pub(crate) token: String,
    pub(crate) token_id: String,
    pub(crate) expires_time: String,
    pub(crate) person: String,
    pub(crate) role: String,
}

/// A login that passed every check: the session to store and the answer to give once it is.
struct Session {
    person: PersonRecord,
    record: TokenRecord,
    second_factor: &'static str,
    response: LoginResponse,
    /// The account's lockout subject and the network it logged in from with every factor
    /// it has, to remember as familiar ([`login_subjects`]).
    network: Option<(String, String)>,
}

/// A refused login, and which credential was wrong when one was. The answer's code is
/// `invalid_credentials` for each; the ledger entry also names the factor, since a right
/// password with a wrong second factor means someone else may know the password (the
/// anomaly watch raises `password_known` for one from a new network). Security decision:
/// the answer's message still says which factor was wrong. A login without a code must be
/// told `mfa_required` once its password is right, so the password's correctness is learnt
/// either way; the lockout bounds how many passwords can be tried.
struct Refusal {
    error: ApiError,
    /// The factor that was wrong (`password`, `totp`, `recovery_code`), recorded.
    wrong: Option<&'static str>,
    /// Whether the password was right (the login was refused for something else: a second
    /// factor missing, the account or network): recorded, so that the anomaly watch hears
    /// of a right password from a network the person was not seen acting from.
    password_right: bool,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            wrong: None,
            password_right: false,
        }
    }
}

impl Refusal {
    /// A refusal after the password was verified right.
    fn after_password(error: ApiError) -> Self {
        Self {
            error,
            wrong: None,
            password_right: true,
        }
    }
}

impl From<chaperone_store::StoreError> for Refusal {
    fn from(error: chaperone_store::StoreError) -> Self {
        ApiError::from(error).into()
    }
}

/// Checks a login with a password and, where the role needs it, a TOTP or recovery code.
/// The session is not stored yet: it is stored with its ledger entry.
async fn login_inner(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: LoginRequest,
) -> Result<Session, Refusal> {
    let keyring = unsealed(state)?;
    let ip = client_ip(
        headers,
        Some(peer.ip()),
        &state.settings.auth.trusted_proxies,
    );
    let (subjects, network) = login_subjects(state, &keyring, &body.user, ip).await?;
    let attempt = state.begin_attempt(subjects).await?;
    let password = Password::new(body.password.to_string());
    let person = state
        .store
        .person(&body.user)
        .await?
        .filter(|p| p.name == body.user);
    let hash = person
        .as_ref()
        .and_then(|p| p.password_hash.as_deref())
        .unwrap_or(dummy_password_hash());
    let hash = hash.to_owned();
    let password_ok = state
        .password_work_for(&attempt, move || verify_password(&password, &hash))
        .await?;
    let Some(person) = person.filter(|p| password_ok && p.password_hash.is_some()) else {
        return Err(Refusal {
            error: state.fail(&attempt, "invalid user name or password").await,
            wrong: Some("password"),
            password_right: false,
        });
    };
    let standing = state.standing(&person).await?;
    if standing.person == Standing::Inactive || standing.vendor == Some(Standing::Inactive) {
        // The password was right, so saying why is no help to a guesser.
        return Err(Refusal::after_password(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_inactive",
            "the account or its vendor is not active",
        )));
    }
    if !network_allowed(&standing.networks, ip) {
        return Err(Refusal::after_password(ApiError::new(
            StatusCode::FORBIDDEN,
            "network_not_allowed",
            "logins from this network are not allowed for the account",
        )));
    }
    let role: Role = person
        .role
        .parse()
        .map_err(|e: String| ApiError::bad_request("invalid_request", e))?;
    let now = state.clock.now();
    let mut verified_at = None;
    let mut second_factor = "none";
    if let Some(code) = &body.totp {
        if !state.check_totp(&person, code).await? {
            return Err(Refusal {
                error: state
                    .fail(&attempt, "the TOTP code is wrong or was already used")
                    .await,
                wrong: Some("totp"),
                password_right: false,
            });
        }
        verified_at = Some(now);
        second_factor = "totp";
    } else if let Some(code) = &body.recovery_code {
        if !state
            .store
            .use_recovery_code(&person.id, &code_hash(code), now)
            .await?
        {
            return Err(Refusal {
                error: state
                    .fail(&attempt, "the recovery code is wrong or was already used")
                    .await,
                wrong: Some("recovery_code"),
                password_right: false,
            });
        }
        tracing::warn!(person = %person.name, "logged in with a recovery code");
        second_factor = "recovery_code";
    } else if state.settings.auth.mfa_roles.contains(&role) {
        return Err(Refusal::after_password(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "mfa_required",
            "this account needs a TOTP code (or a recovery code) to log in",
        )));
    }
    // Without a second factor, only an account that has none proved everything.
    let proven_all = second_factor != "none" || person.totp_secret.is_none();
    state.succeed(&attempt, proven_all).await?;
    // Remembered once the session is stored (a reset committed meanwhile forgot them).
    let network = network
        .filter(|_| proven_all)
        .map(|network| (account_subject(&keyring, &person.name), network));
    let ttl = state.settings.auth.session_ttl_secs;
    let (token, record) = new_token(
        &person.name,
        Some(&person),
        role,
        TokenKind::Session,
        now,
        ttl,
        None,
    );
    let record = TokenRecord {
        mfa_verified_at: verified_at,
        ..record
    };
    let response = LoginResponse {
        token: token.expose().to_owned(),
        token_id: record.id.clone(),
        expires_time: now.plus_secs(ttl).to_rfc3339(),
        person: person.name.clone(),
        role: role.to_string(),
    };
    Ok(Session {
        person,
        record,
        second_factor,
        response,
        network,
    })
}

#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest, responses((status = 200, body = LoginResponse), (status = 401, body = super::ErrorBody), (status = 429, description = "locked", body = super::ErrorBody)))]
/// Logs in with a password and, where the role needs it, a TOTP or recovery code. Every
/// success and failure is recorded in the ledger before the answer; a success's session is
/// stored in the same transaction as its entry.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let (response, _) = perform_login(&state, &info, peer, &headers, body).await?;
    Ok(Json(response))
}

/// The most API tokens (Vault child tokens included) a person may hold that are not revoked
/// or expired.
///
/// Security decision: every token is a row, a cache entry once used and a ledger entry, and
/// a token holder makes them as fast as the server answers (a contractor made ten thousand
/// in ten seconds): bounded per person. Sessions are not counted: each needs a login with
/// a fresh TOTP code.
const MAX_LIVE_TOKENS: i64 = 1_000;

/// A login through either API: checked, recorded (success or failure) and, on success, the
/// session stored in the same transaction as its entry. Also who logged in, as the ledger
/// names them, with the new session.
///
/// It runs to its end ([`super::to_the_end`]).
pub(crate) async fn perform_login(
    state: &Arc<AppState>,
    info: &RequestInfo,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: LoginRequest,
) -> Result<(LoginResponse, Actor), ApiError> {
    let (task_state, info, headers) = (Arc::clone(state), info.clone(), headers.clone());
    super::to_the_end(state, "the login", async move {
        login_to_the_end(&task_state, &info, peer, &headers, body).await
    })
    .await
}

async fn login_to_the_end(
    state: &AppState,
    info: &RequestInfo,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: LoginRequest,
) -> Result<(LoginResponse, Actor), ApiError> {
    let user = body.user.clone();
    let (error, wrong, password_right) = match login_inner(state, peer, headers, body).await {
        Ok(session) => {
            let person = &session.person;
            let actor = Actor {
                person: Some(person.id.clone()),
                vendor: person.vendor_id.clone(),
                token: Some(session.record.id.clone()),
            };
            let mut record = Record::new("auth.login", &person.name, Outcome::Success);
            record
                .details
                .insert("second_factor".into(), session.second_factor.into());
            let event = state.event(info, actor.clone(), record);
            // Stored only if the password verified is still the account's: a reset that
            // committed meanwhile revoked every session, and this one must not outlive it.
            let decided_on = DecidedOn::Password(person.password_hash.clone().unwrap_or_default());
            match state
                .store
                .insert_token_decided(&session.record, &[event], decided_on)
                .await
            {
                Ok(()) => {
                    // The login stands without it: the network stays unfamiliar.
                    if let Some((account, network)) = &session.network
                        && let Err(error) = state
                            .store
                            .remember_login_network(
                                account,
                                network,
                                &session.record.id,
                                state.clock.now(),
                            )
                            .await
                    {
                        tracing::warn!(%error, "could not remember the login's network");
                    }
                    tracing::info!(person = %person.name, token = %session.record.id, "logged in");
                    return Ok((session.response, actor));
                }
                Err(e) => (ApiError::from(e), None, false),
            }
        }
        Err(refusal) => (refusal.error, refusal.wrong, refusal.password_right),
    };
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(error);
    }
    // An attempt refused by the lockout (or with every password check slot taken) checked
    // no credential and costs its sender nothing:
    // like a request with no credential, it is recorded within its address's budget (the
    // first ones show the burst to the watch), and the rest counted (`auth.suppressed`).
    if matches!(error.code, "locked" | "busy")
        && !state
            .anonymous_refusals
            .admit(state, &Actor::default(), info.client_ip)
    {
        state.metrics.login_failed();
        return Err(error);
    }
    // The resource is the account when it exists, else a MAC of the name: a password typed
    // into the user field must not reach the ledger.
    let keyring = unsealed(state)?;
    let person = state.store.person(&user).await?.filter(|p| p.name == user);
    let actor = Actor {
        person: person.as_ref().map(|p| p.id.clone()),
        vendor: person.as_ref().and_then(|p| p.vendor_id.clone()),
        token: None,
    };
    let resource = person
        .as_ref()
        .map_or_else(|| account_subject(&keyring, &user), |p| p.name.clone());
    state.metrics.login_failed();
    let mut record = Record::new("auth.login", &resource, Outcome::Denied);
    record.reasons.push(error.code.to_owned());
    if let Some(wrong) = wrong {
        record.details.insert("wrong".into(), wrong.into());
    }
    if password_right {
        record.details.insert("password".into(), "right".into());
    }
    state.record(info, actor, record).await?;
    Err(error)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollRequest {
    #[schema(value_type = String)]
    code: Zeroizing<String>,
    #[schema(value_type = String)]
    password: Zeroizing<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EnrollResponse {
    person: String,
    totp_secret: String,
    otpauth_uri: String,
    recovery_codes: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/auth/enroll", request_body = EnrollRequest, responses((status = 200, body = EnrollResponse), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)))]
/// Uses an enrolment code: sets the password and returns the new TOTP secret and recovery
/// codes, once. A completed enrolment is recorded (`auth.enroll`) in the same transaction.
pub(crate) async fn enroll(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    // The attempt is counted before the code is checked: to its end.
    let task_state = Arc::clone(&state);
    super::to_the_end(
        &state,
        "the enrolment",
        enroll_to_the_end(task_state, info, peer, headers, body),
    )
    .await
}

async fn enroll_to_the_end(
    state: Arc<AppState>,
    info: RequestInfo,
    peer: SocketAddr,
    headers: HeaderMap,
    body: EnrollRequest,
) -> Result<Json<EnrollResponse>, ApiError> {
    let keyring = unsealed(&state)?;
    let ip = client_ip(
        &headers,
        Some(peer.ip()),
        &state.settings.auth.trusted_proxies,
    );
    let attempt = match state.begin_attempt(vec![address_subject(ip)]).await {
        Ok(attempt) => attempt,
        Err(error) => {
            // Refused by the address's lockout without a look at the code: recorded as a
            // refused login is, within the address's budget, and counted past it.
            if error.code == "locked"
                && state
                    .anonymous_refusals
                    .admit(&state, &Actor::default(), info.client_ip)
            {
                let mut record = Record::new("auth.enroll", "", Outcome::Denied);
                record.reasons.push("locked".into());
                state.record(&info, Actor::default(), record).await?;
            }
            return Err(error);
        }
    };
    let now = state.clock.now();
    let code = code_hash(&body.code);
    let unusable = "the enrolment code is unknown, used or expired";
    // Who the code is for, to describe the enrolment; using the code decides whether it
    // happens (the code may be used or expired), and records it only if it does. The code
    // is looked at before the password is hashed: a made-up code costs no hashing.
    let Some(person_for) = state.store.enrolment_person(&code).await? else {
        return Err(enrol_failed(&state, &info, &attempt, None, unusable).await);
    };
    let password = Password::new(body.password.to_string());
    if let Err(e) = check_new_password(&password) {
        // Refused before anything was checked against it: not an attempt.
        state.withdraw(&attempt).await?;
        return Err(ApiError::bad_request("weak_password", e.to_string()));
    }
    let phc = state
        .password_work_for(&attempt, move || hash_password(&password))
        .await?;
    let secret = TotpSecret::generate();
    let codes = password::recovery_codes(10);
    let hashes: Vec<[u8; 32]> = codes.iter().map(|c| code_hash(c)).collect();
    let actor = Actor {
        person: Some(person_for.id.clone()),
        vendor: person_for.vendor_id.clone(),
        token: None,
    };
    let event = state.event(
        &info,
        actor,
        Record::new("auth.enroll", &person_for.name, Outcome::Success),
    );
    let sealing = secret.clone();
    let person = state
        .store
        .complete_enrolment(
            &code,
            now,
            &phc,
            move |id| keyring.seal_field(TOTP_PURPOSE, id, sealing.expose()),
            &hashes,
            &[event],
        )
        .await?;
    let Some(person) = person else {
        return Err(enrol_failed(&state, &info, &attempt, Some(&person_for), unusable).await);
    };
    state.succeed(&attempt, true).await?;
    tracing::info!(person = %person.name, "enrolled");
    Ok(Json(EnrollResponse {
        otpauth_uri: secret.otpauth_uri(ISSUER, &person.name).to_string(),
        totp_secret: secret.to_base32().to_string(),
        recovery_codes: codes.iter().map(|c| c.to_string()).collect(),
        person: person.name,
    }))
}

/// A failed enrolment: recorded (`auth.enroll`, denied; under the account's name for a code
/// issued to it but used, expired, or of a disabled account, under no name for a code never
/// issued; the code itself never), then answered after the failure delay.
async fn enrol_failed(
    state: &AppState,
    info: &RequestInfo,
    attempt: &Attempt,
    person: Option<&chaperone_store::PersonRecord>,
    message: &str,
) -> ApiError {
    let actor = Actor {
        person: person.map(|p| p.id.clone()),
        vendor: person.and_then(|p| p.vendor_id.clone()),
        token: None,
    };
    let resource = person.map_or("", |p| p.name.as_str());
    let mut record = Record::new("auth.enroll", resource, Outcome::Denied);
    record.reasons.push("invalid_credentials".into());
    if let Err(error) = state.record(info, actor, record).await {
        return error;
    }
    state.fail(attempt, message).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    totp: String,
}

#[utoipa::path(post, path = "/api/v1/auth/verify", request_body = VerifyRequest, responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 429, description = "locked", body = super::ErrorBody)), security(("bearer" = [])))]
/// Verifies a TOTP code on the calling session, for step-up. Every success and failure is
/// recorded (`auth.verify`) before the answer; a success's verification is stored in the
/// same transaction as its entry.
pub(crate) async fn verify(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<StatusCode, ApiError> {
    // The code is counted before it is checked: to its end.
    let task_state = Arc::clone(&state);
    super::to_the_end(
        &state,
        "the verification",
        verify_to_the_end(caller, task_state, info, body),
    )
    .await
}

async fn verify_to_the_end(
    caller: Caller,
    state: Arc<AppState>,
    info: RequestInfo,
    body: VerifyRequest,
) -> Result<StatusCode, ApiError> {
    let Some(person_id) = &caller.person_id else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "this token belongs to no person",
        ));
    };
    // Security decision: a step-up is made on a login session only. An API token or a
    // token made from a session (the Vault API's children) that could verify a code would
    // carry the verification past its session: a ten-minute child would mint a month-long
    // token that outlives the logout, and a token minted for a script would read
    // step-up data. Refused (403, recorded by the authorisation layer) before any code is
    // checked, so such a token cannot spend the person's step-up attempts either.
    if caller.kind != TokenKind::Session {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "session_required",
            "a step-up is made on a login session, not with a token: log in \
             (`chaperone login`) and run `chaperone verify` there",
        ));
    }
    let person = state
        .store
        .person(person_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such person"))?;
    unsealed(&state)?;
    let checked = async {
        // Security decision: step-up codes count under a subject of their own, which only a
        // session of this person can reach. Under the account's login subject, anyone who
        // knows the account's name could lock it with wrong passwords and so keep a
        // signed-in person from every step-up (reading confidential data, minting tokens).
        // Guessing stays bounded all the same: ten wrong codes in the window lock step-up,
        // whatever the address, and a login with the password alone clears nothing here.
        let attempt = state
            .begin_attempt(vec![step_up_subject(&person.id)])
            .await?;
        if !state.check_totp(&person, &body.totp).await? {
            return Err(state
                .fail(&attempt, "the TOTP code is wrong or was already used")
                .await);
        }
        state.succeed(&attempt, true).await
    }
    .await;
    if let Err(error) = checked {
        // A wrong code on a stolen session is what this entry is for: the guesses show in
        // the ledger, the reports and the watch's bursts.
        if error.status != StatusCode::SERVICE_UNAVAILABLE {
            let mut record = Record::new("auth.verify", &person.name, Outcome::Denied);
            record.reasons.push(error.code.to_owned());
            state.record(&info, caller.actor(), record).await?;
        }
        return Err(error);
    }
    let event = state.event(
        &info,
        caller.actor(),
        Record::new("auth.verify", &person.name, Outcome::Success),
    );
    state
        .store
        .mark_token_verified(&caller.token_id, state.clock.now(), &[event])
        .await?;
    tracing::info!(person = %person.name, token = %caller.token_id, "step-up verified");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SelfResponse {
    token_id: String,
    kind: &'static str,
    /// The person's name, if the token belongs to one.
    person: Option<String>,
    /// The person's id, as the ledger names them.
    person_id: Option<String>,
    role: String,
}

#[utoipa::path(get, path = "/api/v1/auth/self", responses((status = 200, body = SelfResponse), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Who the token belongs to.
pub(crate) async fn whoami(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<SelfResponse>, ApiError> {
    let person = match &caller.person_id {
        Some(id) => state.store.person(id).await?.map(|p| p.name),
        None => None,
    };
    Ok(Json(SelfResponse {
        token_id: caller.token_id,
        kind: caller.kind.as_str(),
        person,
        person_id: caller.person_id,
        role: caller.principal.role.to_string(),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenInfo {
    id: String,
    name: String,
    kind: &'static str,
    created_time: String,
    expires_time: String,
    revoked: bool,
    scope: Option<serde_json::Value>,
    /// The token this one was made from through the Vault API; revoking it revokes this one.
    parent: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/auth/tokens", responses((status = 200, body = Vec<TokenInfo>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// The caller's tokens (never their values).
pub(crate) async fn list_tokens(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let tokens = state.store.list_tokens(caller.person_id.as_deref()).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                name: t.name,
                kind: t.kind.as_str(),
                created_time: t.created_at.to_rfc3339(),
                expires_time: t.expires_at.map(|e| e.to_rfc3339()).unwrap_or_default(),
                revoked: t.revoked_at.is_some(),
                scope: t.scope.and_then(|s| serde_json::from_str(&s).ok()),
                parent: t.parent_id,
            })
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenRequest {
    name: Option<String>,
    /// A duration such as `8h`; required, tokens always expire.
    ttl: String,
    scope: Option<Vec<RuleBody>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreateTokenResponse {
    token: String,
    id: String,
    expires_time: String,
}

#[utoipa::path(post, path = "/api/v1/auth/tokens", request_body = CreateTokenRequest, responses((status = 200, body = CreateTokenResponse), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Makes an API token for the caller, acting with the caller's role, optionally scoped.
pub(crate) async fn create_token(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> Result<Json<CreateTokenResponse>, ApiError> {
    let ttl = parse_duration(&body.ttl).map_err(|e| ApiError::bad_request("invalid_request", e))?;
    let scope = match &body.scope {
        Some(rules) => {
            for rule in rules {
                rule.to_rule(None)?;
            }
            Some(serde_json::to_string(rules).expect("rules serialise"))
        }
        None => None,
    };
    let name = body.name.unwrap_or_else(|| "api token".to_owned());
    let minting = Minting {
        scope,
        ..Minting::default()
    };
    let (token, record) = mint_token(&state, &caller, &info, &name, ttl, minting).await?;
    Ok(Json(CreateTokenResponse {
        token: token.expose().to_owned(),
        id: record.id,
        expires_time: record
            .expires_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
    }))
}

/// Makes an API token for the caller, with the caller's role, expiring after `ttl` seconds
/// (at most the server's maximum), recorded in the same transaction. Shared by the native
/// and the Vault API.
///
/// With a `parent` (the Vault API's token tree), the token is revoked with it and expires
/// no later than it. Native tokens have none: they are made to outlive the login session
/// that made them (a CI token), and end with their owner's account or on their own.
/// What a minted token carries besides its name and lifetime.
#[derive(Default)]
pub(crate) struct Minting<'a> {
    /// Its scope as JSON, for a scoped token.
    pub(crate) scope: Option<String>,
    /// The token it is made from (Vault's token tree); `None` for an orphan.
    pub(crate) parent: Option<&'a TokenRecord>,
    /// Its labels (Vault's token `meta`).
    pub(crate) meta: std::collections::BTreeMap<String, String>,
}

/// Whether `caller` verified a TOTP code recently enough to mint a token, or to approve
/// access to a level with step-up. A person's token needs a recent TOTP verification: a
/// token (scoped ones skip step-up) must not be obtainable with a password alone. Tokens of
/// no person (the initial admin token's) have no second factor to ask for.
pub(crate) fn may_mint(state: &AppState, caller: &Caller) -> bool {
    let window = state
        .settings
        .auth
        .step_up_secs
        .saturating_mul(1_000_000_000);
    caller.person_id.is_none()
        || chaperone_core::policy::verified_within(
            caller.principal.mfa_verified_at,
            state.clock.now(),
            window,
        )
}

/// Whether `caller` may mint a token without a parent (Vault's orphan): an admin only, as
/// only root or sudo may in Vault. An orphan outlives the session it was made with and that
/// session's revocation.
pub(crate) fn may_orphan(caller: &Caller) -> bool {
    caller.principal.role == Role::Admin
}

pub(crate) async fn mint_token(
    state: &AppState,
    caller: &Caller,
    info: &RequestInfo,
    name: &str,
    ttl: i64,
    minting: Minting<'_>,
) -> Result<(ApiToken, TokenRecord), ApiError> {
    let Minting {
        scope,
        parent,
        meta,
    } = minting;
    // A token's name is shown in others' lists (an admin's `token list`).
    super::check_text("name", name, 200)?;
    if ttl > state.settings.auth.max_token_ttl_secs {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "ttl is longer than the {} an API token may live",
                super::access::human_duration(state.settings.auth.max_token_ttl_secs)
            ),
        ));
    }
    if !may_mint(state, caller) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "step_up_required",
            "creating a token needs a recent TOTP verification: run `chaperone verify`",
        ));
    }
    let person = match &caller.person_id {
        Some(id) => state.store.person(id).await?,
        None => None,
    };
    let now = state.clock.now();
    let (token, mut record) = new_token(
        name,
        person.as_ref(),
        caller.principal.role,
        TokenKind::Api,
        now,
        ttl,
        scope,
    );
    record.meta = meta;
    if let Some(parent) = parent {
        record.parent_id = Some(parent.id.clone());
        record.expires_at = match (record.expires_at, parent.expires_at) {
            (Some(own), Some(theirs)) => Some(own.min(theirs)),
            (own, theirs) => own.or(theirs),
        };
    }
    let mut event = Record::new("token.create", &record.id, Outcome::Success);
    event.details = token_details(&record);
    let event = state.event(info, caller.actor(), event);
    // Stored only while the token that asked for it is live: one revoked meanwhile (by a
    // reset, a disable, a logout) makes nothing. A person's live tokens are bounded.
    let decided_on = DecidedOn::TokenAtMost {
        by: caller.token_id.clone(),
        live: MAX_LIVE_TOKENS,
    };
    match state
        .store
        .insert_token_decided(&record, &[event], decided_on)
        .await
    {
        Err(chaperone_store::StoreError::Conflict(message))
            if message.starts_with(chaperone_store::TOKEN_QUOTA) =>
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "token_quota",
                "you hold 1,000 live tokens (API tokens and Vault child tokens): revoke some \
                 first, or make them shorter-lived",
            )
            .refusal());
        }
        other => other?,
    }
    tracing::info!(by = %caller.token_id, token = %record.id, "token created");
    Ok((token, record))
}

#[utoipa::path(delete, path = "/api/v1/auth/tokens/{id}", params(("id" = String, Path)), responses((status = 204), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)), security(("bearer" = [])))]
/// Revokes one of the caller's tokens (an admin may revoke any).
pub(crate) async fn revoke_token(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let token = state.store.token_by_id(&id).await?;
    let Some(token) = token.filter(|t| may_manage_token(&caller, t)) else {
        // Someone else's token (or none): answered alike, and recorded as refused.
        return Err(ApiError::not_found("no such token").refusal());
    };
    revoke(&state, &caller, &info, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `caller` may see or revoke `token`: their own, or any for an admin.
pub(crate) fn may_manage_token(caller: &Caller, token: &TokenRecord) -> bool {
    token.person_id == caller.person_id || caller.principal.role == Role::Admin
}

/// Revokes `token` and the tokens made from it (Vault's token tree), one `token.revoke`
/// entry each, recorded in the same transaction; a descendant's entry names the token whose
/// revocation took it (`revoked_with`). Revoking a revoked token changes and records
/// nothing. Shared by the native and the Vault API.
pub(crate) async fn revoke(
    state: &AppState,
    caller: &Caller,
    info: &RequestInfo,
    token: &TokenRecord,
) -> Result<(), ApiError> {
    let id = token.id.clone();
    let base = state.event(
        info,
        caller.actor(),
        Record::new("token.revoke", "", Outcome::Success),
    );
    let root = id.clone();
    let event_for = move |t: &TokenRecord| {
        let mut event = base.clone();
        event.resource = t.id.clone();
        event.details.insert("kind".into(), t.kind.as_str().into());
        if let Some(owner) = &t.person_id {
            event
                .details
                .insert("person_id".into(), owner.clone().into());
        }
        if t.id != root {
            event
                .details
                .insert("revoked_with".into(), root.clone().into());
        }
        event
    };
    let revoked = state
        .store
        .revoke_token(&id, state.clock.now(), event_for)
        .await?;
    if !revoked.is_empty() {
        let with = revoked.len() - 1;
        tracing::info!(by = %caller.token_id, token = %id, with, "token revoked");
    }
    Ok(())
}

/// The ledger details of a new token: what it may do, never its value. The token's id is the
/// event's resource.
fn token_details(token: &TokenRecord) -> BTreeMap<String, serde_json::Value> {
    let mut details = BTreeMap::new();
    details.insert("name".into(), token.name.clone().into());
    details.insert("kind".into(), token.kind.as_str().into());
    details.insert("role".into(), token.role.clone().into());
    if let Some(expires) = token.expires_at {
        details.insert("expires_time".into(), expires.to_rfc3339().into());
    }
    if let Some(scope) = &token.scope {
        let scope = serde_json::from_str(scope).unwrap_or_else(|_| scope.clone().into());
        details.insert("scope".into(), scope);
    }
    if let Some(parent) = &token.parent_id {
        details.insert("parent_id".into(), parent.clone().into());
    }
    details
}

/// A new token and its record.
pub(crate) fn new_token(
    name: &str,
    person: Option<&PersonRecord>,
    role: Role,
    kind: TokenKind,
    now: Timestamp,
    ttl_secs: i64,
    scope: Option<String>,
) -> (ApiToken, TokenRecord) {
    let token = ApiToken::generate();
    let record = TokenRecord {
        id: new_id("tok"),
        hash: token.hash(),
        name: name.to_owned(),
        role: role.to_string(),
        created_at: now,
        expires_at: Some(now.plus_secs(ttl_secs)),
        revoked_at: None,
        person_id: person.map(|p| p.id.clone()),
        kind,
        scope,
        mfa_verified_at: None,
        parent_id: None,
        last_used_at: None,
        meta: Default::default(),
    };
    (token, record)
}

/// A public identifier: `PREFIX_` and 16 hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    random_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

fn unsealed(state: &AppState) -> Result<Arc<chaperone_crypto::Keyring>, ApiError> {
    state.keyring().ok_or_else(ApiError::sealed)
}

/// How long a network an account completed a login from stays familiar to it.
pub(crate) const FAMILIAR_FOR_SECS: i64 = 90 * 86_400;

/// The lockout subjects of a login to `user` from `ip`: the account's and the address's.
/// Also the account's network, to remember if the login proves every factor.
///
/// Security decision: an account's failed logins are counted in two buckets, one for the
/// networks (the address, or the /64 for IPv6) it completed a login from with every factor
/// it has in the last 90 days, and one for every other network. Guesses from elsewhere lock
/// only the second, so whoever knows an account's name cannot lock its owner out where they
/// usually log in. The price: a guesser gets the threshold a window in each bucket, and in
/// the familiar one only from a network the owner logged in from; each address has its own
/// counter besides. A network becomes familiar only through a login with the password and
/// the second factor, and a credentials reset forgets the account's networks. The lookup
/// is the same query for a name that is no account. What it tells: once the account is
/// locked for other networks, whoever can send from a network learns by one attempt whether
/// the owner logged in from it (401 against 429), which sending from it mostly tells them
/// already.
async fn login_subjects(
    state: &AppState,
    keyring: &Keyring,
    user: &str,
    ip: Option<IpAddr>,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let account = account_subject(keyring, user);
    let network = ip.map(ip_subject);
    let familiar = match &network {
        Some(network) => {
            let since = state.clock.now().plus_secs(-FAMILIAR_FOR_SECS);
            state
                .store
                .login_network_known(&account, network, since)
                .await?
        }
        None => false,
    };
    let account = if familiar {
        familiar_subject(&account)
    } else {
        account
    };
    Ok((vec![account, address_subject(ip)], network))
}

/// The lockout subject of an account's failures from the networks it logs in from, given
/// its subject for every other network (see [`login_subjects`]).
pub(crate) fn familiar_subject(account: &str) -> String {
    format!("{account}/familiar")
}

/// The lockout subjects of an account: from networks it logs in from, and from the rest.
pub(crate) fn account_subjects(keyring: &Keyring, user: &str) -> [String; 2] {
    let account = account_subject(keyring, user);
    [familiar_subject(&account), account]
}

/// The lockout subject of a person's step-up codes (see `verify`).
pub(crate) fn step_up_subject(person_id: &str) -> String {
    format!("step-up:{person_id}")
}

/// The lockout subject of a client's address; clients whose address is unknown (a garbled
/// `X-Forwarded-For` from behind a trusted proxy) share one, so that hiding the address does
/// not lift the per-address limit.
pub(crate) fn address_subject(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "ip:unknown".to_owned(), ip_subject)
}

/// The lockout subject of an account name, also the ledger resource of a login to an
/// account that does not exist: an HMAC under the keyring's MAC key, because people sometimes
/// type their password into the user-name field, and failures are stored and recorded. An
/// unkeyed hash of a password could be reversed by guessing.
pub(crate) fn account_subject(keyring: &Keyring, user: &str) -> String {
    let mac = keyring.mac("account-subject", user.as_bytes());
    format!("account:{}", hex::encode(&mac[..16]))
}

/// The lockout subject of a client address: the address for IPv4, the /64 for IPv6 (an
/// attacker usually holds a whole /64).
pub(crate) fn ip_subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// One authentication attempt. It is counted before the credentials are checked, so that
/// guesses sent in parallel count as much as guesses sent one after another.
pub(crate) struct Attempt {
    subjects: Vec<String>,
    at: Timestamp,
    failures: u64,
}

impl AppState {
    /// Counts an attempt for every subject; 429 when any subject is past the threshold
    /// within the window, counting this one (attempts sent together all count).
    ///
    /// An attempt on a subject already past the threshold is refused without being counted:
    /// the lockout holds until the window has passed over the attempts that reached it, and
    /// whoever keeps trying while locked gets no more guesses a window than the threshold
    /// either way, while adding nothing to the database.
    pub(crate) async fn begin_attempt(&self, subjects: Vec<String>) -> Result<Attempt, ApiError> {
        let auth = &self.settings.auth;
        let at = self.clock.now();
        let since = at.plus_secs(-auth.lockout_window_secs);
        // Which counter is past the threshold is said: an address's lockout is lifted
        // differently from an account's, and whoever is refused learns only that their own
        // address, or the name they gave, had too many failures.
        let locked = |subject: &str| {
            let message = match subject.strip_prefix("ip:") {
                Some("unknown") => "too many failed attempts from clients whose address is \
                                    unknown; try again later"
                    .to_owned(),
                Some(address) => format!(
                    "too many failed attempts from this address ({address}); try again later \
                     or ask an administrator to lift it (chaperone user unlock --ip)"
                ),
                None if subject.starts_with("account:") || subject.starts_with("step-up:") => {
                    "too many failed attempts; try \
                     again later or ask an administrator to unlock the account"
                        .to_owned()
                }
                None => "too many failed attempts; try again later".to_owned(),
            };
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "locked", message)
        };
        for subject in &subjects {
            if self.store.auth_failures_since(subject, since).await? > auth.lockout_threshold {
                return Err(locked(subject));
            }
        }
        self.store.record_auth_failure(&subjects, at).await?;
        let mut failures = 0;
        let mut worst = "";
        for subject in &subjects {
            let count = self.store.auth_failures_since(subject, since).await?;
            if count > failures {
                (failures, worst) = (count, subject.as_str());
            }
        }
        if failures > auth.lockout_threshold {
            return Err(locked(worst));
        }
        Ok(Attempt {
            subjects,
            at,
            failures,
        })
    }

    /// The attempt failed: it stays counted; answer after a delay that doubles with the
    /// failures (at most eight seconds).
    pub(crate) async fn fail(&self, attempt: &Attempt, message: &str) -> ApiError {
        let delay = self
            .settings
            .auth
            .failure_delay_ms
            .saturating_mul(1 << attempt.failures.saturating_sub(1).min(10))
            .min(8_000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        tracing::info!(failures = attempt.failures, "authentication failed");
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
    }

    /// The attempt checked nothing (the server was too busy to): it does not count, so that
    /// someone retrying while others flood the server does not lock themselves out.
    pub(crate) async fn withdraw(&self, attempt: &Attempt) -> Result<(), ApiError> {
        self.store
            .forget_auth_failure(&attempt.subjects, attempt.at)
            .await?;
        Ok(())
    }

    /// Runs `work` in [`AppState::password_work`] for `attempt`; when it cannot run now, the
    /// attempt is withdrawn and the error returned.
    pub(crate) async fn password_work_for<T: Send + 'static>(
        &self,
        attempt: &Attempt,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        match self.password_work(work).await {
            Ok(out) => Ok(out),
            Err(error) => {
                self.withdraw(attempt).await?;
                Err(error)
            }
        }
    }

    /// The attempt succeeded: it no longer counts. The account's earlier failures are
    /// forgiven only when it proved every factor the account has (`proven_all`: the
    /// password and a TOTP or recovery code, or a TOTP code for a session's step-up); the
    /// address's never are. Security decision: a login with the password alone, which
    /// roles without mandatory MFA may make, does not forgive earlier wrong TOTP codes, or
    /// whoever knows a password could log in between every few guesses of the second factor
    /// and never reach the lockout.
    pub(crate) async fn succeed(
        &self,
        attempt: &Attempt,
        proven_all: bool,
    ) -> Result<(), ApiError> {
        self.store
            .forget_auth_failure(&attempt.subjects, attempt.at)
            .await?;
        if !proven_all {
            return Ok(());
        }
        for subject in attempt
            .subjects
            .iter()
            .filter(|s| s.starts_with("account:") || s.starts_with("step-up:"))
        {
            self.store.clear_auth_failures(subject).await?;
        }
        Ok(())
    }

    /// Checks a TOTP code for `person` and consumes its step. `false` if wrong or reused.
    pub(crate) async fn check_totp(
        &self,
        person: &PersonRecord,
        code: &str,
    ) -> Result<bool, ApiError> {
        let keyring = self.keyring().ok_or_else(ApiError::sealed)?;
        let Some(sealed) = &person.totp_secret else {
            return Ok(false);
        };
        let secret = TotpSecret::from_bytes(
            keyring
                .open_field(TOTP_PURPOSE, &person.id, sealed)?
                .expose()
                .to_vec(),
        );
        let last = person.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let Some(step) = totp::verify(&secret, code, self.clock.now().unix_secs(), last) else {
            return Ok(false);
        };
        Ok(self
            .store
            .accept_totp_step(&person.id, i64::try_from(step).unwrap_or(i64::MAX))
            .await?)
    }
}
