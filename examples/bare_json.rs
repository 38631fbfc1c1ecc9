//! The bare axum baseline for `scripts/load_demo.sh`: the demo's `GET /me` and `GET /items`
//! answers as fixed JSON bodies of the same shape and size, with no portcullis layer at all.
//!
//! ```text
//! BIND_ADDR=127.0.0.1:3100 cargo run --release --example bare_json
//! ```

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

fn me() -> Value {
    json!({
        "subject": "reader",
        "issuer": "https://portcullis.example/dev",
        "method": "bearer",
        "scopes": ["read:items"],
        "roles": [],
    })
}

fn items() -> Value {
    let item = |id: u64, name: &str, sku: &str, owner: &str, card: &str| {
        json!({
            "id": id, "name": name, "sku": sku, "price": 100.0, "quantity": 1, "tags": [],
            "contact_email": null, "notes": null, "owner_email": owner, "card_number": card,
        })
    };
    json!({ "items": [
        item(1, "portcullis", "PC-001", "[REDACTED]", "************1111"),
        item(2, "drawbridge", "DB-002", "[REDACTED]", "************0004"),
    ] })
}

#[tokio::main]
async fn main() {
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3100".into());
    let app = Router::new()
        .route("/me", get(|| async { Json(me()) }))
        .route("/items", get(|| async { Json(items()) }));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
