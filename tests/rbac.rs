//! RbacLayer, route tables, guards and object-level checks through real routers.

mod common;

use std::time::Duration;

use axum::routing::{get, post};
use axum::{Extension, Router};
use common::*;
use http::Method;
use portcullis::rbac::{
    IssuedValue, Policy, PolicyRouter, RbacLayer, RequireRole, RequireScope, ResourcePolicy,
    RoleDef, RoleDocument, RoleModel, RouteTable, any_role, authenticated, check, max_auth_age,
    not, owner, permission, public, require_acr, require_amr, require_scope, same_claim,
};
use portcullis::{AuthMethod, Decision, Identity, Principal, PrincipalKind, Realm};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

fn identity(scopes: &[&str], roles: &[&str], claims: Value) -> Identity {
    let claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    Identity::builder("alice", AuthMethod::Jwt)
        .scopes(scopes.iter().copied())
        .roles(roles.iter().copied())
        .claims(claims)
        .build()
}

fn roles() -> RoleModel {
    RoleModel::builder()
        .role(RoleDef::new("viewer").grants(["items:read"]))
        .role(
            RoleDef::new("editor")
                .inherits(["viewer"])
                .grants(["items:write"]),
        )
        .role(
            RoleDef::new("admin")
                .inherits(["editor"])
                .grants(["items:delete"]),
        )
        .build()
        .unwrap()
}

/// A router whose only route answers "ok", behind `layer`, with `caller` injected as if an
/// AuthLayer had authenticated it.
fn guarded(layer: RbacLayer, caller: Option<Identity>) -> Router {
    let router = Router::new()
        .route("/thing", get(|| async { "ok" }))
        .layer(layer);
    match caller {
        Some(identity) => router.layer(Extension(identity)),
        None => router,
    }
}

#[tokio::test]
async fn combinators_decide_as_written() {
    let alice = || identity(&["read", "write"], &["editor"], json!({}));
    let cases: Vec<(Policy, bool)> = vec![
        (public(), true),
        (authenticated(), true),
        (require_scope("read"), true),
        (require_scope("admin"), false),
        (any_role(["admin", "editor"]), true),
        (any_role(["admin"]), false),
        (permission("items:read"), true),
        (permission("items:write"), true),
        (permission("items:delete"), false),
        (require_scope("read").and(any_role(["editor"])), true),
        (require_scope("read").and(any_role(["admin"])), false),
        (require_scope("admin").or(any_role(["editor"])), true),
        (require_scope("admin").or(any_role(["admin"])), false),
        (not(require_scope("admin")), true),
        (not(require_scope("read")), false),
        (not(not(permission("items:write"))), true),
        (
            require_scope("read").and(require_scope("write").or(any_role(["admin"]))),
            true,
        ),
    ];
    for (policy, allowed) in cases {
        let app = guarded(RbacLayer::new(policy.clone()).roles(roles()), Some(alice()));
        let answer = send(&app, get_with("/thing", &[])).await;
        assert_eq!(answer.status == 200, allowed, "{policy}: {}", answer.text);
        if !allowed {
            assert_eq!(answer.status, 403, "{policy}");
        }
    }
}

#[tokio::test]
async fn anonymous_callers_get_401_and_signed_in_ones_403() {
    let policy = require_scope("read:items");
    let answer = send(
        &guarded(RbacLayer::new(policy.clone()), None),
        get_with("/thing", &[]),
    )
    .await;
    answer.problem(401, "missing-credentials");
    assert_eq!(answer.www_authenticate(), [r#"Bearer"#]);

    let app = guarded(
        RbacLayer::new(policy),
        Some(identity(&["other"], &[], json!({}))),
    );
    let answer = send(&app, get_with("/thing", &[])).await;
    answer.problem(403, "insufficient-scope");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("read:items")
    );
    assert_eq!(
        answer.www_authenticate(),
        [
            r#"Bearer error="insufficient_scope", error_description="This requires the scope `read:items`.", scope="read:items""#
        ]
    );

    let app = guarded(
        RbacLayer::new(any_role(["admin"])),
        Some(identity(&[], &["viewer"], json!({}))),
    );
    let answer = send(&app, get_with("/thing", &[])).await;
    answer.problem(403, "forbidden");
    assert_eq!(answer.body["detail"], "This requires any role of [admin].");

    // Public and `not(authenticated())` let anonymous callers in.
    for policy in [public(), public().or(authenticated())] {
        let answer = send(
            &guarded(RbacLayer::new(policy), None),
            get_with("/thing", &[]),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
}

#[tokio::test]
async fn details_can_be_hidden() {
    let app = guarded(
        RbacLayer::new(any_role(["admin"]).or(permission("secret:thing"))).hide_details(),
        Some(identity(&[], &["viewer"], json!({}))),
    );
    let answer = send(&app, get_with("/thing", &[])).await;
    answer.problem(403, "forbidden");
    assert_eq!(answer.body["detail"], "You are not allowed to do this.");
    answer
        .leaks_nothing_of("admin")
        .leaks_nothing_of("secret:thing");
    // Nor does a reason tell a policy refusal from a route the table does not list.
    assert!(answer.body.get("reason").is_none(), "{}", answer.text);
    let table = RouteTable::builder()
        .route(Method::GET, "/listed", authenticated())
        .build()
        .unwrap();
    let unlisted = guarded(
        RbacLayer::table(table).hide_details(),
        Some(identity(&[], &["viewer"], json!({}))),
    );
    let answer = send(&unlisted, get_with("/thing", &[])).await;
    answer.problem(403, "forbidden");
    assert!(answer.body.get("reason").is_none(), "{}", answer.text);
    assert_eq!(answer.body["detail"], "You are not allowed to do this.");
}

#[tokio::test]
async fn step_up_rules_answer_rfc_9470_challenges() {
    let now = now();
    let weak = identity(
        &[],
        &[],
        json!({ "amr": ["pwd"], "acr": "urn:loa:1", "auth_time": now - 3600 }),
    );
    let strong = identity(
        &[],
        &[],
        json!({ "amr": ["pwd", "mfa"], "acr": "urn:loa:2", "auth_time": now - 10 }),
    );
    let cases = [
        (require_amr("mfa"), None),
        (
            require_acr(["urn:loa:2", "urn:loa:3"]),
            Some(r#"acr_values="urn:loa:2 urn:loa:3""#),
        ),
        (
            max_auth_age(Duration::from_secs(300)),
            Some(r#"max_age="300""#),
        ),
    ];
    for (policy, param) in cases {
        let answer = send(
            &guarded(RbacLayer::new(policy.clone()), Some(weak.clone())),
            get_with("/thing", &[]),
        )
        .await;
        answer.problem(401, "insufficient-user-authentication");
        let challenge = &answer.www_authenticate()[0];
        assert!(
            challenge.starts_with(r#"Bearer error="insufficient_user_authentication""#),
            "{challenge}"
        );
        if let Some(param) = param {
            assert!(challenge.contains(param), "{challenge}");
        }
        let answer = send(
            &guarded(RbacLayer::new(policy), Some(strong.clone())),
            get_with("/thing", &[]),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    // Step-up is reported ahead of a plain denial in `or`, and sign-in ahead of both.
    let policy = any_role(["admin"]).or(require_amr("mfa"));
    let answer = send(
        &guarded(RbacLayer::new(policy.clone()), Some(weak)),
        get_with("/thing", &[]),
    )
    .await;
    answer.problem(401, "insufficient-user-authentication");
    let answer = send(
        &guarded(RbacLayer::new(policy), None),
        get_with("/thing", &[]),
    )
    .await;
    answer.problem(401, "missing-credentials");
}

fn items_table() -> RouteTable {
    RouteTable::builder()
        .route(Method::GET, "/health", public())
        .route(Method::GET, "/items", require_scope("read:items"))
        .route(Method::POST, "/items", require_scope("write:items"))
        .route(Method::GET, "/items/{id}", require_scope("read:items"))
        .route(Method::DELETE, "/items/{id}", permission("items:delete"))
        .route(
            Method::GET,
            "/api/v1/orders/{order}/lines/{line}",
            authenticated(),
        )
        .build()
        .unwrap()
}

fn table_app(table: RouteTable, caller: Option<Identity>) -> Router {
    let orders = Router::new().route("/orders/{order}/lines/{line}", get(|| async { "line" }));
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/items",
            get(|| async { "list" })
                .post(|| async { "created" })
                .put(|| async { "replaced" }),
        )
        .route(
            "/items/{id}",
            get(|| async { "item" }).delete(|| async { "deleted" }),
        )
        .route("/unlisted", get(|| async { "forgotten" }))
        .nest("/api/v1", orders)
        .layer(RbacLayer::table(table).roles(roles()));
    match caller {
        Some(identity) => router.layer(Extension(identity)),
        None => router,
    }
}

#[tokio::test]
async fn the_table_matches_route_patterns_and_nested_routers() {
    let reader = identity(&["read:items"], &["viewer"], json!({}));
    let app = table_app(items_table(), Some(reader.clone()));
    assert_eq!(send(&app, get_with("/items", &[])).await.text, "list");
    assert_eq!(send(&app, get_with("/items/42", &[])).await.text, "item");
    assert_eq!(
        send(&app, get_with("/api/v1/orders/7/lines/3", &[]))
            .await
            .text,
        "line"
    );
    let post = http::Request::post("/items")
        .body(axum::body::Body::empty())
        .unwrap();
    send(&app, post).await.problem(403, "insufficient-scope");
    let delete = http::Request::delete("/items/42")
        .body(axum::body::Body::empty())
        .unwrap();
    send(&app, delete).await.problem(403, "forbidden");
    // Admin inherits items:delete through editor and viewer.
    let admin = identity(&[], &["admin"], json!({}));
    let delete = http::Request::delete("/items/42")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        send(&table_app(items_table(), Some(admin)), delete)
            .await
            .text,
        "deleted"
    );
    // Public route for anonymous callers; protected ones answer 401.
    let anonymous = table_app(items_table(), None);
    assert_eq!(send(&anonymous, get_with("/health", &[])).await.status, 200);
    send(&anonymous, get_with("/items", &[]))
        .await
        .problem(401, "missing-credentials");
}

/// Routes declared with their policies: the router and the table come from the same lines, so a
/// typo in one cannot leave a route without a row or a row without its route.
#[tokio::test]
async fn a_policy_router_declares_each_route_with_its_policy() {
    #[derive(Clone)]
    struct Notes(&'static str);
    let (router, table) =
        PolicyRouter::<Notes>::new()
            .get("/health", || async { "ok" }, public())
            .get(
                "/notes",
                |axum::extract::State(notes): axum::extract::State<Notes>| async move { notes.0 },
                require_scope("notes:read"),
            )
            .post(
                "/notes",
                || async { "created" },
                require_scope("notes:write"),
            )
            .delete(
                "/notes/{id}",
                |axum::extract::Path(id): axum::extract::Path<u64>| async move {
                    format!("deleted {id}")
                },
                require_scope("notes:write").and(any_role(["admin"])),
            )
            .build()
            .unwrap();
    assert_eq!(table.inventory().len(), 4);
    let app = |caller: Option<Identity>| {
        let router = router
            .clone()
            .layer(RbacLayer::table(table.clone()))
            .with_state(Notes("[]"));
        match caller {
            Some(identity) => router.layer(Extension(identity)),
            None => router,
        }
    };
    let reader = app(Some(identity(&["notes:read"], &[], json!({}))));
    assert_eq!(send(&reader, get_with("/notes", &[])).await.text, "[]");
    let head = http::Request::head("/notes")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(send(&reader, head).await.status, 200);
    let post = || {
        http::Request::post("/notes")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    send(&reader, post())
        .await
        .problem(403, "insufficient-scope");
    let put = http::Request::put("/notes")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = send(&reader, put).await;
    answer.problem(405, "method-not-allowed");
    assert_eq!(answer.headers["allow"], "GET, HEAD, POST");
    let delete = || {
        http::Request::delete("/notes/7")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let writer = app(Some(identity(&["notes:write"], &[], json!({}))));
    assert_eq!(send(&writer, post()).await.text, "created");
    send(&writer, delete()).await.problem(403, "forbidden");
    let admin = app(Some(identity(&["notes:write"], &["admin"], json!({}))));
    assert_eq!(send(&admin, delete()).await.text, "deleted 7");
    let anonymous = app(None);
    assert_eq!(send(&anonymous, get_with("/health", &[])).await.status, 200);
    send(&anonymous, get_with("/notes", &[]))
        .await
        .problem(401, "missing-credentials");
    // What `Router::route` would panic on, and a duplicate row, are errors.
    let mistakes: [(&str, PolicyRouter); 5] = [
        (
            "no slash",
            PolicyRouter::new().get("notes", || async { "" }, public()),
        ),
        (
            "0.7 syntax",
            PolicyRouter::new().get("/notes/:id", || async { "" }, public()),
        ),
        (
            "twice",
            PolicyRouter::new()
                .get("/notes", || async { "" }, public())
                .get("/notes", || async { "" }, authenticated()),
        ),
        (
            "HEAD next to GET",
            PolicyRouter::new()
                .get("/notes", || async { "" }, public())
                .route(Method::HEAD, "/notes", || async { "" }, public()),
        ),
        (
            "a method axum cannot route",
            PolicyRouter::new().route(
                Method::from_bytes(b"PROPFIND").unwrap(),
                "/notes",
                || async { "" },
                public(),
            ),
        ),
    ];
    for (what, routes) in mistakes {
        assert!(routes.build().is_err(), "{what} was accepted");
    }
}

#[tokio::test]
async fn unlisted_routes_are_denied_unless_allowed() {
    let reader = identity(&["read:items"], &[], json!({}));
    let answer = send(
        &table_app(items_table(), Some(reader.clone())),
        get_with("/unlisted", &[]),
    )
    .await;
    answer.problem(403, "forbidden");
    assert_eq!(answer.body["detail"], "No access policy covers this route.");
    let open = RouteTable::builder()
        .route(Method::GET, "/items", require_scope("read:items"))
        .allow_unlisted()
        .build()
        .unwrap();
    assert_eq!(
        send(&table_app(open, Some(reader)), get_with("/unlisted", &[]))
            .await
            .text,
        "forgotten"
    );
}

#[tokio::test]
async fn unknown_methods_on_known_routes_get_405_with_allow() {
    let reader = identity(&["read:items"], &[], json!({}));
    let app = table_app(items_table(), Some(reader));
    // PUT is routed by axum but not listed in the table.
    let put = http::Request::put("/items")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = send(&app, put).await;
    answer.problem(405, "method-not-allowed");
    assert_eq!(answer.headers["allow"], "GET, HEAD, POST");
    // HEAD follows GET.
    let head = http::Request::head("/items")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(send(&app, head).await.status, 200);
    // Unknown routes keep answering 404.
    send(&app, get_with("/nowhere", &[]))
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn requests_without_a_route_pattern_get_404() {
    // axum's fallback and the inside of a nested service carry no MatchedPath: no row can
    // describe them, so the table answers 404 instead of guessing.
    let inner = Router::new().route("/users", get(|| async { "secret users" }));
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .nest_service("/admin", inner)
        .fallback(|| async { "spa" })
        .layer(RbacLayer::table(
            RouteTable::builder()
                .route(Method::GET, "/health", public())
                .route(Method::GET, "/admin", public())
                .build()
                .unwrap(),
        ));
    assert_eq!(send(&app, get_with("/health", &[])).await.text, "ok");
    send(&app, get_with("/admin/users", &[]))
        .await
        .problem(404, "not-found");
    send(&app, get_with("/anything", &[]))
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn not_is_about_signed_in_callers() {
    let policy = not(any_role(["banned"]));
    send(
        &guarded(RbacLayer::new(policy.clone()), None),
        get_with("/thing", &[]),
    )
    .await
    .problem(401, "missing-credentials");
    let fine = identity(&[], &["member"], json!({}));
    assert_eq!(
        send(
            &guarded(RbacLayer::new(policy.clone()), Some(fine)),
            get_with("/thing", &[])
        )
        .await
        .status,
        200
    );
    let banned = identity(&[], &["banned"], json!({}));
    send(
        &guarded(RbacLayer::new(policy), Some(banned)),
        get_with("/thing", &[]),
    )
    .await
    .problem(403, "forbidden");
}

#[tokio::test]
async fn step_up_is_only_offered_when_it_can_help() {
    // Missing a role is final: no point asking for MFA first, whatever the order.
    let weak_member = identity(&[], &["member"], json!({ "amr": ["pwd"] }));
    for policy in [
        require_amr("mfa").and(any_role(["admin"])),
        any_role(["admin"]).and(require_amr("mfa")),
    ] {
        let answer = send(
            &guarded(RbacLayer::new(policy), Some(weak_member.clone())),
            get_with("/thing", &[]),
        )
        .await;
        answer.problem(403, "forbidden");
    }
    // Several step-up rules become one challenge.
    let policy = require_acr(["urn:loa:2"]).and(max_auth_age(Duration::from_secs(300)));
    let answer = send(
        &guarded(RbacLayer::new(policy), Some(weak_member)),
        get_with("/thing", &[]),
    )
    .await;
    answer.problem(401, "insufficient-user-authentication");
    let challenge = &answer.www_authenticate()[0];
    assert!(
        challenge.contains(r#"acr_values="urn:loa:2""#) && challenge.contains(r#"max_age="300""#),
        "{challenge}"
    );
    // An API key cannot step up: 403, not a challenge it can never answer.
    let service = Identity::builder("svc", AuthMethod::ApiKey).build();
    let answer = send(
        &guarded(RbacLayer::new(require_amr("mfa")), Some(service)),
        get_with("/thing", &[]),
    )
    .await;
    answer.problem(403, "forbidden");
    // An auth_time in the future is not believed.
    let liar = identity(&[], &[], json!({ "auth_time": now() + 3600 }));
    let answer = send(
        &guarded(
            RbacLayer::new(max_auth_age(Duration::from_secs(300))),
            Some(liar),
        ),
        get_with("/thing", &[]),
    )
    .await;
    answer.problem(401, "insufficient-user-authentication");
}

#[tokio::test]
async fn every_decision_is_left_in_the_extensions() {
    let app =
        Router::new()
            .route(
                "/thing",
                get(|Extension(decision): Extension<Decision>| async move {
                    decision.reason.to_string()
                }),
            )
            .layer(RbacLayer::new(authenticated()))
            .layer(Extension(identity(&[], &[], json!({}))));
    let response = app.oneshot(get_with("/thing", &[])).await.unwrap();
    let decision = response.extensions().get::<Decision>().unwrap().clone();
    assert_eq!(
        decision,
        Decision {
            layer: portcullis::LayerKind::Rbac,
            allowed: true,
            reason: "policy".into()
        }
    );

    let denied = guarded(
        RbacLayer::new(any_role(["admin"])),
        Some(identity(&[], &[], json!({}))),
    );
    let response = denied.oneshot(get_with("/thing", &[])).await.unwrap();
    let decision = response.extensions().get::<Decision>().unwrap();
    assert!(!decision.allowed);
    assert_eq!(decision.reason, "policy_denied");
    assert_eq!(
        response
            .extensions()
            .get::<portcullis::Rejection>()
            .unwrap()
            .reason(),
        "policy_denied"
    );

    // The decision names the same reason as the rejection, also for anonymous callers.
    let response = guarded(RbacLayer::new(authenticated()), None)
        .oneshot(get_with("/thing", &[]))
        .await
        .unwrap();
    assert_eq!(
        response.extensions().get::<Decision>().unwrap().reason,
        "missing_credentials"
    );

    // An outer layer that allowed does not overwrite an inner refusal.
    let nested = Router::new()
        .route("/thing", get(|| async { "ok" }))
        .route_layer(RbacLayer::new(any_role(["admin"])))
        .layer(RbacLayer::new(authenticated()))
        .layer(Extension(identity(&[], &[], json!({}))));
    let response = nested.oneshot(get_with("/thing", &[])).await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(!response.extensions().get::<Decision>().unwrap().allowed);
}

#[test]
fn the_inventory_lists_every_route() {
    let inventory = items_table().inventory();
    let json = serde_json::to_value(&inventory).unwrap();
    assert_eq!(
        json[0],
        json!({ "method": "GET", "path": "/api/v1/orders/{order}/lines/{line}", "policy": "authenticated", "public": false })
    );
    assert_eq!(
        json[1],
        json!({ "method": "GET", "path": "/health", "policy": "public", "public": true })
    );
    assert_eq!(inventory.len(), 6);
    let delete = inventory.iter().find(|r| r.method == "DELETE").unwrap();
    assert_eq!(delete.policy, "permission `items:delete`");
    assert_eq!(inventory.iter().filter(|r| r.public).count(), 1);
}

#[test]
fn table_mistakes_are_configuration_errors() {
    assert!(
        RouteTable::builder()
            .route(Method::GET, "/items/:id", public())
            .build()
            .is_err(),
        "axum 0.7 syntax"
    );
    assert!(
        RouteTable::builder()
            .route(Method::GET, "/files/*rest", public())
            .build()
            .is_err()
    );
    assert!(
        RouteTable::builder()
            .route(Method::GET, "items", public())
            .build()
            .is_err()
    );
    let twice = RouteTable::builder()
        .route(Method::GET, "/a", public())
        .route(Method::GET, "/a", authenticated())
        .build();
    assert!(twice.is_err());
}

portcullis::scope!(ItemsWrite = "items:write");
portcullis::role!(Admin = "admin");

#[tokio::test]
async fn guards_give_the_same_answers_as_the_layer() {
    let app = |caller: Option<Identity>| {
        let router = Router::new()
            .route(
                "/write",
                post(|_: RequireScope<ItemsWrite>| async { "written" }),
            )
            .route("/admin", get(|_: RequireRole<Admin>| async { "admin" }));
        match caller {
            Some(identity) => router.layer(Extension(identity)),
            None => router,
        }
    };
    let post_write = || {
        http::Request::post("/write")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    send(&app(None), post_write())
        .await
        .problem(401, "missing-credentials");
    let answer = send(
        &app(Some(identity(&["read"], &[], json!({})))),
        post_write(),
    )
    .await;
    answer.problem(403, "insufficient-scope");
    let via_layer = send(
        &guarded(
            RbacLayer::new(require_scope("items:write")),
            Some(identity(&["read"], &[], json!({}))),
        ),
        get_with("/thing", &[]),
    )
    .await;
    assert_eq!(answer.body, via_layer.body, "guard and layer answer alike");
    assert_eq!(answer.www_authenticate(), via_layer.www_authenticate());
    assert_eq!(
        send(
            &app(Some(identity(&["items:write"], &[], json!({})))),
            post_write()
        )
        .await
        .text,
        "written"
    );
    send(
        &app(Some(identity(&[], &["viewer"], json!({})))),
        get_with("/admin", &[]),
    )
    .await
    .problem(403, "forbidden");
    assert_eq!(
        send(
            &app(Some(identity(&[], &["admin"], json!({})))),
            get_with("/admin", &[])
        )
        .await
        .text,
        "admin"
    );
}

struct Document {
    owner: String,
    tenant: String,
}

#[test]
fn object_level_checks() {
    let policy: ResourcePolicy<Document> =
        owner(|d: &Document| Principal::new(PrincipalKind::TokenSubject, None, &d.owner))
            .and(same_claim("/org/tenant", |d: &Document| {
                IssuedValue::new(None, &d.tenant)
            }))
            .or(any_role(["admin"]))
            .or(check("a reviewer of drafts", |identity, d: &Document| {
                identity.has_role("reviewer") && d.owner.starts_with("draft-")
            }));
    let alice = identity(&[], &[], json!({ "org": { "tenant": "acme" } }));
    let own = Document {
        owner: "alice".into(),
        tenant: "acme".into(),
    };
    let other_tenant = Document {
        owner: "alice".into(),
        tenant: "globex".into(),
    };
    let someone_else = Document {
        owner: "bob".into(),
        tenant: "acme".into(),
    };
    assert!(alice.authorize(&policy, &own).is_ok());
    let rejection = alice.authorize(&policy, &other_tenant).unwrap_err();
    assert_eq!(rejection.status(), 403);
    assert_eq!(rejection.reason(), "resource_policy_denied");
    assert!(alice.authorize(&policy, &someone_else).is_err());
    let admin = identity(&[], &["admin"], json!({}));
    assert!(admin.authorize(&policy, &someone_else).is_ok());
    let reviewer = identity(&[], &["reviewer"], json!({}));
    let draft = Document {
        owner: "draft-bob".into(),
        tenant: "x".into(),
    };
    assert!(reviewer.authorize(&policy, &draft).is_ok());
    // Permission rules inside object policies use the model given to the policy.
    let deletable: ResourcePolicy<Document> =
        ResourcePolicy::from(permission("items:delete")).with_roles(roles());
    assert!(admin.authorize(&deletable, &own).is_ok());
    assert!(alice.authorize(&deletable, &own).is_err());
}

/// Issue #16: ownership is the whole principal (kind of subject, issuer, subject), and a claim
/// counts only from the issuer the resource's value belongs to: the same name from another
/// identity provider, a Basic user, an API key or an OAuth client is someone else.
#[test]
fn object_level_checks_compare_whole_principals() {
    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    struct Doc {
        owner_issuer: &'static str,
        owner: &'static str,
        tenant: &'static str,
    }
    let owned: ResourcePolicy<Doc> =
        owner(|d: &Doc| Principal::new(PrincipalKind::TokenSubject, Some(d.owner_issuer), d.owner));
    let tenant: ResourcePolicy<Doc> = same_claim("tenant", |d: &Doc| {
        IssuedValue::new(Some(d.owner_issuer), d.tenant)
    });
    let doc = Doc {
        owner_issuer: A,
        owner: "alice",
        tenant: "acme",
    };
    let claims = || {
        json!({ "tenant": "acme" })
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let alice_at_a = Identity::builder("alice", AuthMethod::Jwt)
        .issuer(A)
        .claims(claims())
        .build();
    assert!(alice_at_a.authorize(&owned, &doc).is_ok());
    assert!(alice_at_a.authorize(&tenant, &doc).is_ok());
    // The same person through an opaque token of the same issuer.
    let opaque = Identity::builder("alice", AuthMethod::Introspection)
        .issuer(A)
        .build();
    assert!(opaque.authorize(&owned, &doc).is_ok());
    let impostors = [
        Identity::builder("alice", AuthMethod::Jwt)
            .issuer(B)
            .claims(claims())
            .build(),
        Identity::builder("alice", AuthMethod::Jwt)
            .claims(claims())
            .build(),
        Identity::builder("alice", AuthMethod::Basic).build(),
        Identity::builder("alice", AuthMethod::ApiKey)
            .api_key_id("k1")
            .build(),
        Identity::builder("alice", AuthMethod::Introspection)
            .issuer(A)
            .client_subject()
            .build(),
    ];
    for impostor in &impostors {
        let rejection = impostor.authorize(&owned, &doc).unwrap_err();
        assert_eq!(rejection.status(), 403, "{impostor:?}");
    }
    // A tenant claim of the same value from another issuer is another tenant.
    for impostor in &impostors[..2] {
        assert!(impostor.authorize(&tenant, &doc).is_err(), "{impostor:?}");
    }
    assert_eq!(
        alice_at_a.principal().key(),
        Principal::new(PrincipalKind::TokenSubject, Some(A), "alice").key()
    );
    assert_ne!(
        impostors[2].principal().key(),
        Principal::new(PrincipalKind::TokenSubject, None, "alice").key()
    );
}

#[test]
fn role_models_load_from_toml_and_json() {
    let toml_text = r#"
        [roles.viewer]
        permissions = ["items:read"]

        [roles.editor]
        inherits = ["viewer"]
        permissions = ["items:write"]

        [roles.admin]
        inherits = ["editor"]
        permissions = ["items:delete"]
    "#;
    let document: RoleDocument = toml::from_str(toml_text).unwrap();
    let model = RoleModel::from_document(&document).unwrap();
    assert_eq!(
        model.permissions("admin"),
        ["items:delete", "items:read", "items:write"]
    );

    let json_text = r#"{ "roles": { "a": { "inherits": ["b"] }, "b": { "inherits": ["a"] } } }"#;
    let cyclic: RoleDocument = serde_json::from_str(json_text).unwrap();
    assert!(RoleModel::from_document(&cyclic).is_err());
    let typo = r#"{ "roles": { "a": { "permisions": ["x"] } } }"#;
    assert!(
        serde_json::from_str::<RoleDocument>(typo).is_err(),
        "unknown fields are refused"
    );
}

mod totality {
    //! Property tests: evaluation is total and obeys boolean laws for any policy and caller.
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = Policy> {
        prop_oneof![
            Just(public()),
            Just(authenticated()),
            "[abc]".prop_map(require_scope),
            proptest::collection::vec("[abc]", 0..3).prop_map(any_role),
            "items:(read|write|delete)".prop_map(permission),
            "(mfa|pwd)".prop_map(require_amr),
            proptest::collection::vec("urn:loa:[12]", 0..3).prop_map(require_acr),
            (0u64..1000).prop_map(|s| max_auth_age(Duration::from_secs(s))),
        ]
    }

    fn policy() -> impl Strategy<Value = Policy> {
        leaf().prop_recursive(4, 32, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or(b)),
                inner.prop_map(not),
            ]
        })
    }

    fn caller() -> impl Strategy<Value = Option<Identity>> {
        proptest::option::of((
            proptest::collection::vec("[abc]", 0..3),
            proptest::collection::vec("(viewer|editor|admin|[abc])", 0..3),
            proptest::collection::vec("(mfa|pwd)", 0..2),
            0u64..2000,
        ))
        .prop_map(|maybe| {
            maybe.map(|(scopes, roles, amr, age)| {
                let claims = json!({ "amr": amr, "acr": "urn:loa:1", "auth_time": now().saturating_sub(age) });
                Identity::builder("p", AuthMethod::Jwt)
                    .scopes(scopes)
                    .roles(roles)
                    .claims(claims.as_object().cloned().unwrap())
                    .build()
            })
        })
    }

    proptest! {
        #[test]
        fn evaluation_is_total_and_boolean(p in policy(), q in policy(), who in caller()) {
            let model = roles();
            let who = who.as_ref();
            let allows = |x: &Policy| x.allows(who, &model);
            prop_assert!(allows(&public()));
            prop_assert_eq!(allows(&p.clone().and(q.clone())), allows(&p) && allows(&q));
            prop_assert_eq!(allows(&p.clone().or(q.clone())), allows(&p) || allows(&q));
            prop_assert!(!allows(&p.clone().and(not(p.clone()))));
            if who.is_some() {
                // For a signed-in caller every policy is a plain boolean.
                prop_assert!(allows(&p.clone().or(not(p.clone()))));
                prop_assert_eq!(allows(&not(not(p.clone()))), allows(&p));
            } else {
                // A negation never lets an anonymous caller in.
                prop_assert!(!allows(&not(p.clone())));
            }
            // Describing a policy never fails either.
            prop_assert!(!p.to_string().is_empty());
        }
    }
}

#[tokio::test]
async fn with_an_optional_auth_layer_anonymous_callers_get_its_challenge() {
    use portcullis::AuthLayer;
    let jwt = es256_jwt();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/items", get(|| async { "list" }))
        .layer(RbacLayer::table(items_table()))
        .layer(
            AuthLayer::optional()
                .realm(Realm::new("items").unwrap())
                .with(jwt),
        );
    assert_eq!(send(&app, get_with("/health", &[])).await.status, 200);
    let answer = send(&app, get_with("/items", &[])).await;
    answer.problem(401, "missing-credentials");
    assert_eq!(answer.www_authenticate(), [r#"Bearer realm="items""#]);
    let token = Signer::es256().sign(&claims("alice", "read:items"));
    assert_eq!(send(&app, bearer_to("/items", &token)).await.text, "list");
}

fn bearer_to(path: &str, token: &str) -> http::Request<axum::body::Body> {
    get_with(path, &[("authorization", &format!("Bearer {token}"))])
}

#[tokio::test]
async fn guards_behind_a_discreet_layer_are_discreet_too() {
    let app = Router::new()
        .route("/admin", get(|_: RequireRole<Admin>| async { "admin" }))
        .layer(RbacLayer::new(authenticated()).hide_details())
        .layer(Extension(identity(&[], &["viewer"], json!({}))));
    let answer = send(&app, get_with("/admin", &[])).await;
    answer.problem(403, "forbidden");
    assert_eq!(answer.body["detail"], "You are not allowed to do this.");
    answer.leaks_nothing_of("admin]");
}
