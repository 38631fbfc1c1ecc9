//! AuthLayer behaviour: required/optional, per-route use, header strictness, where tokens are
//! (not) read from, the extractors and the rejection renderer.

mod common;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::*;
use http::StatusCode;
use portcullis::auth::{ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore, JwtAuthenticator};
use portcullis::{AuthLayer, Claims, Identity, Realm, Rejection, RenderRejectionLayer};
use serde::Deserialize;
use serde_json::json;

const API_KEY: &str = "pcl_test_0123456789abcdefghijklmnopqrstuvwxyz";

fn jwt() -> JwtAuthenticator {
    es256_jwt()
}

fn api_keys() -> ApiKeyAuthenticator {
    let store = InMemoryKeyStore::new();
    store
        .insert(
            API_KEY,
            ApiKeyGrant::new("key-1", "ci-bot").scopes(["read:items"]),
        )
        .unwrap();
    ApiKeyAuthenticator::new(store)
}

fn token() -> String {
    Signer::es256().sign(&claims("alice", "read:items"))
}

#[tokio::test]
async fn repeated_authorization_headers_are_a_bad_request() {
    let app = app(AuthLayer::required().with(jwt()));
    let token = token();
    let value = format!("Bearer {token}");
    let answer = send(
        &app,
        get_with(
            "/me",
            &[("authorization", &value), ("authorization", &value)],
        ),
    )
    .await;
    answer
        .problem(400, "invalid-request")
        .leaks_nothing_of(&token[20..]);
    assert!(answer.www_authenticate()[0].contains(r#"error="invalid_request""#));
}

#[tokio::test]
async fn malformed_authorization_headers_are_a_bad_request() {
    let app = app(AuthLayer::required().with(jwt()));
    let token = token();
    for value in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {token} {token}"),
        format!("Bearer {token},x"),
        format!("Bearer\t{token}"),
        format!("Bearer \"{token}\""),
    ] {
        let answer = send(&app, get_with("/me", &[("authorization", &value)])).await;
        answer.problem(400, "invalid-request");
    }
    // Non-ASCII bytes in the header.
    let request = http::Request::get("/me")
        .header(
            "authorization",
            http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    send(&app, request).await.problem(400, "invalid-request");
}

#[tokio::test]
async fn an_unsupported_scheme_is_refused_even_when_optional() {
    for layer in [AuthLayer::required(), AuthLayer::optional()] {
        let app = app(layer.with(jwt()));
        for path in ["/me", "/public"] {
            let answer = send(&app, get_with(path, &[("authorization", "Digest abc")])).await;
            answer.problem(401, "missing-credentials");
            assert_eq!(answer.www_authenticate(), [r#"Bearer realm="api""#]);
        }
    }
}

#[tokio::test]
async fn tokens_in_the_query_string_or_a_cookie_are_ignored() {
    let app = app(AuthLayer::required().with(jwt()));
    let token = token();
    let answer = send(&app, get_with(&format!("/me?access_token={token}"), &[])).await;
    answer
        .problem(401, "missing-credentials")
        .leaks_nothing_of(&token[20..]);
    let cookie = format!("access_token={token}; token={token}");
    let answer = send(&app, get_with("/me", &[("cookie", &cookie)])).await;
    answer
        .problem(401, "missing-credentials")
        .leaks_nothing_of(&token[20..]);
}

#[tokio::test]
async fn optional_layer_passes_anonymous_requests_without_identity() {
    let app = Router::new()
        .route(
            "/hello",
            get(|caller: Option<Identity>| async move {
                caller.map_or("anonymous".to_owned(), |i| i.subject().to_owned())
            }),
        )
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .layer(
            AuthLayer::optional()
                .realm(Realm::new("items").unwrap())
                .with(jwt())
                .with(api_keys()),
        );
    assert_eq!(send(&app, get_with("/hello", &[])).await.text, "anonymous");
    assert_eq!(
        send(&app, bearer_to("/hello", &token())).await.text,
        "alice"
    );
    // The Identity extractor answers 401 with the layer's realm and schemes.
    let answer = send(&app, get_with("/me", &[])).await;
    answer.problem(401, "missing-credentials");
    assert_eq!(
        answer.www_authenticate(),
        [r#"Bearer realm="items""#, r#"ApiKey realm="items""#]
    );
    // A bad credential is refused even though anonymous access is allowed.
    let answer = send(&app, bearer_to("/hello", "not.a.token")).await;
    answer.problem(401, "invalid-token");
    assert!(
        answer.www_authenticate()[0].starts_with(r#"Bearer realm="items", error="invalid_token""#)
    );
}

fn bearer_to(path: &str, token: &str) -> http::Request<axum::body::Body> {
    get_with(path, &[("authorization", &format!("Bearer {token}"))])
}

#[tokio::test]
async fn route_layer_protects_only_its_routes() {
    let app = Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .route_layer(AuthLayer::required().with(jwt()))
        .route("/health", get(|| async { "ok" }));
    assert_eq!(send(&app, get_with("/health", &[])).await.status, 200);
    send(&app, get_with("/me", &[]))
        .await
        .problem(401, "missing-credentials");
    assert_eq!(send(&app, bearer_to("/me", &token())).await.text, "alice");
    // Unknown routes stay 404 rather than 401 with route_layer.
    assert_eq!(
        send(&app, get_with("/nope", &[])).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_first_authenticator_that_finds_its_credential_decides() {
    let app = app(AuthLayer::required().with(jwt()).with(api_keys()));
    // Missing: both schemes are challenged, in order.
    let answer = send(&app, get_with("/me", &[])).await;
    assert_eq!(
        answer.www_authenticate(),
        [r#"Bearer realm="api""#, r#"ApiKey realm="api""#]
    );
    // API key alone works.
    let answer = send(&app, get_with("/me", &[("x-api-key", API_KEY)])).await;
    assert_eq!(answer.body["method"], "api_key");
    // Two credentials are refused whatever the order of authenticators: a bad bearer token is
    // not rescued by a valid API key, and a valid one does not hide a bad key.
    for app in [
        &app,
        &common::app(AuthLayer::required().with(api_keys()).with(jwt())),
    ] {
        for authorization in [
            "Bearer bad.token.here".to_owned(),
            format!("Bearer {}", token()),
        ] {
            let answer = send(
                app,
                get_with(
                    "/me",
                    &[("authorization", &authorization), ("x-api-key", API_KEY)],
                ),
            )
            .await;
            answer.problem(400, "invalid-request");
            let challenges = answer.www_authenticate();
            assert!(
                challenges
                    .iter()
                    .any(|c| c.contains(r#"Bearer realm="api", error="invalid_request""#))
            );
            assert!(challenges.iter().any(|c| c == r#"ApiKey realm="api""#));
        }
    }
}

#[derive(Deserialize)]
struct MyClaims {
    sub: String,
    tenant: String,
}

#[tokio::test]
async fn claims_extractor_deserializes_the_callers_own_type() {
    let app = Router::new()
        .route(
            "/tenant",
            get(|Claims(claims): Claims<MyClaims>| async move {
                format!("{}@{}", claims.sub, claims.tenant)
            }),
        )
        .layer(AuthLayer::optional().with(jwt()));
    let mut c = claims("alice", "");
    c["tenant"] = json!("acme");
    let answer = send(&app, bearer_to("/tenant", &Signer::es256().sign(&c))).await;
    assert_eq!(answer.text, "alice@acme");
    // Without the claim the token is valid, but not good enough for this handler.
    send(&app, bearer_to("/tenant", &token()))
        .await
        .problem(403, "forbidden");
    // Anonymous.
    send(&app, get_with("/tenant", &[]))
        .await
        .problem(401, "missing-credentials");
}

#[tokio::test]
async fn require_scope_answers_insufficient_scope() {
    let app = Router::new()
        .route(
            "/admin",
            get(|identity: Identity| async move {
                identity.require_scope("admin")?;
                Ok::<_, Rejection>("welcome")
            }),
        )
        .layer(AuthLayer::required().with(jwt()));
    let answer = send(&app, bearer_to("/admin", &token())).await;
    answer.problem(403, "insufficient-scope");
    assert_eq!(
        answer.www_authenticate(),
        [
            r#"Bearer error="insufficient_scope", error_description="The access token does not carry a required scope.", scope="admin""#
        ]
    );
}

#[tokio::test]
async fn the_renderer_gives_rejections_the_apps_own_shape() {
    fn render(rejection: &Rejection) -> Response {
        (
            rejection.status(),
            axum::Json(
                json!({ "error": { "code": rejection.reason(), "message": rejection.detail() } }),
            ),
        )
            .into_response()
    }
    let app = app(AuthLayer::required().with(jwt())).layer(RenderRejectionLayer::new(render));
    let answer = send(&app, get_with("/me", &[])).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.body["error"]["code"], "missing_credentials");
    // Protocol headers survive the custom shape.
    assert_eq!(answer.www_authenticate(), [r#"Bearer realm="api""#]);
    // Successful responses are untouched.
    assert_eq!(send(&app, bearer(&token())).await.status, 200);
}

#[test]
fn realm_must_be_quotable() {
    for bad in ["", "a\"b", "a\\b", "caf\u{e9}", "line\nbreak"] {
        assert!(Realm::new(bad).is_err(), "{bad:?}");
    }
    assert!(Realm::new(&"a".repeat(129)).is_err());
    assert!(Realm::new(&"a".repeat(128)).is_ok());
    assert!(Realm::new("My API v2").is_ok());
}

#[tokio::test]
async fn challenges_name_the_layers_own_schemes() {
    use portcullis::auth::{BasicAuthenticator, BasicUser, hash_password};
    let basic = BasicAuthenticator::builder()
        .user(BasicUser::new("ops", &hash_password("pw").unwrap()).unwrap())
        .build()
        .unwrap();
    let app = common::app(AuthLayer::required().with(basic));
    // A malformed Authorization header on a Basic-only layer is not answered with a Bearer
    // challenge.
    let answer = send(&app, get_with("/me", &[("authorization", "Basic a b")])).await;
    answer.problem(400, "invalid-request");
    assert_eq!(
        answer.www_authenticate(),
        [r#"Basic realm="api", charset="UTF-8""#]
    );

    // A layer without authenticators refuses everything, still with a challenge.
    let empty = common::app(AuthLayer::required());
    let answer = send(&empty, get_with("/me", &[])).await;
    answer.problem(401, "missing-credentials");
    assert_eq!(answer.www_authenticate(), [r#"Bearer realm="api""#]);
}

/// A custom authenticator: checks `X-Ticket` asynchronously and rejects without naming a scheme.
struct Ticket;

impl portcullis::auth::Authenticator for Ticket {
    fn scheme(&self) -> portcullis::Scheme {
        portcullis::Scheme::ApiKey
    }

    fn credential_header(&self) -> Option<&http::HeaderName> {
        static NAME: http::HeaderName = http::HeaderName::from_static("x-ticket");
        Some(&NAME)
    }

    fn authenticate(&self, request: &http::request::Parts) -> portcullis::auth::Authentication {
        use portcullis::auth::Authentication;
        let Some(ticket) = request.headers.get("x-ticket") else {
            return Authentication::NotPresent;
        };
        let ticket = ticket.as_bytes().to_vec();
        Authentication::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            if ticket == b"valid" {
                Ok(Identity::builder("ticket-holder", portcullis::AuthMethod::ApiKey).build())
            } else {
                Err(Rejection::new(
                    portcullis::RejectionKind::InvalidCredentials,
                ))
            }
        }))
    }
}

#[tokio::test]
async fn custom_async_authenticators_plug_in() {
    let app = common::app(
        AuthLayer::required()
            .realm(Realm::new("tickets").unwrap())
            .with(Ticket),
    );
    let answer = send(&app, get_with("/me", &[("x-ticket", "valid")])).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["sub"], "ticket-holder");
    let answer = send(&app, get_with("/me", &[("x-ticket", "forged")])).await;
    answer.problem(401, "invalid-credentials");
    // The rejection named no scheme; the layer adds its own so the 401 carries a challenge.
    assert_eq!(answer.www_authenticate(), [r#"ApiKey realm="tickets""#]);
    let answer = send(
        &app,
        get_with(
            "/me",
            &[("x-ticket", "valid"), ("authorization", "Bearer x")],
        ),
    )
    .await;
    answer.problem(400, "invalid-request");
}
