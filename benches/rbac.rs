//! RBAC decision cost: a table of 200 routes, a role model with 3 levels of inheritance, and a
//! caller with a few scopes and roles. `decision_*` measures the table lookup plus policy
//! evaluation (what the layer does per request); `router_*` measures a whole in-process request
//! through a 200-route axum router with and without the RbacLayer.

use std::hint::black_box;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use portcullis::rbac::{
    Policy, RbacLayer, RoleDef, RoleModel, RouteTable, any_role, authenticated, permission,
    require_scope,
};
use portcullis::{AuthMethod, Identity};
use tower::ServiceExt;

const ROUTES: usize = 200;

fn role_model() -> RoleModel {
    // 10 families of viewer ⊂ editor ⊂ admin: 30 roles, 3 levels of inheritance.
    let mut builder = RoleModel::builder();
    for family in 0..10 {
        builder = builder
            .role(RoleDef::new(format!("viewer{family}")).grants([format!("r{family}:read")]))
            .role(
                RoleDef::new(format!("editor{family}"))
                    .inherits([format!("viewer{family}")])
                    .grants([format!("r{family}:write")]),
            )
            .role(
                RoleDef::new(format!("admin{family}"))
                    .inherits([format!("editor{family}")])
                    .grants([format!("r{family}:delete")]),
            );
    }
    builder.build().unwrap()
}

fn policy_for(i: usize) -> Policy {
    let family = i % 10;
    match i % 4 {
        0 => require_scope(format!("r{family}:read")),
        1 => permission(format!("r{family}:write")),
        2 => permission(format!("r{family}:delete")).and(any_role([format!("admin{family}")])),
        _ => require_scope("admin").or(permission(format!("r{family}:read"))),
    }
}

fn path_for(i: usize) -> String {
    format!("/api/v1/resource{i}/{{id}}")
}

fn table() -> RouteTable {
    let mut builder = RouteTable::builder();
    for i in 0..ROUTES {
        builder = builder.route(Method::GET, path_for(i), policy_for(i));
    }
    builder
        .route(Method::GET, "/me", authenticated())
        .build()
        .unwrap()
}

fn caller() -> Identity {
    Identity::builder("user-1", AuthMethod::Jwt)
        .scopes(["r1:read", "r2:read", "profile"])
        .roles(["admin7", "viewer3"])
        .build()
}

fn decisions(c: &mut Criterion) {
    let table = table();
    let roles = role_model();
    let identity = caller();
    let mut group = c.benchmark_group("rbac_decision");
    // Route 187: family 7, `permission(r7:write)` granted through admin7 ⊃ editor7.
    let allowed_path = path_for(187);
    group.bench_function("decision_permission_inherited_allowed", |b| {
        b.iter(|| {
            let policy = table
                .policy(&Method::GET, black_box(&allowed_path))
                .unwrap();
            assert!(policy.allows(Some(black_box(&identity)), &roles));
        })
    });
    // Route 102: family 2, `permission(r2:delete) and any_role(admin2)`: denied.
    let denied_path = path_for(102);
    group.bench_function("decision_and_denied", |b| {
        b.iter(|| {
            let policy = table.policy(&Method::GET, black_box(&denied_path)).unwrap();
            assert!(!policy.allows(Some(black_box(&identity)), &roles));
        })
    });
    group.bench_function("decision_scope_allowed", |b| {
        let path = path_for(12); // `require_scope(r2:read)`, which the caller has
        b.iter(|| {
            let policy = table.policy(&Method::GET, black_box(&path)).unwrap();
            assert!(policy.allows(Some(black_box(&identity)), &roles));
        })
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut router = Router::new();
    for i in 0..ROUTES {
        router = router.route(&path_for(i), get(|| async { "ok" }));
    }
    let bare = router.clone().layer(Extension(identity.clone()));
    let guarded = router
        .layer(RbacLayer::table(table.clone()).roles(roles.clone()))
        .layer(Extension(identity.clone()));
    let mut group = c.benchmark_group("rbac_router_200_routes");
    for (name, app) in [("bare", bare), ("rbac_table", guarded)] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let request = Request::get("/api/v1/resource187/42")
                    .body(Body::empty())
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200);
                black_box(response)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
