//! A reference point, not a product: the checks of the stack as the issue lists it, written by
//! hand as one tower service with nothing configurable. Audit record to a file with an
//! HMAC-SHA256 chain on its own thread, one keyed GCRA limit per client address, request limits,
//! ES256 JWT with a verified-token cache keyed by the token's SHA-256, one scope check, a scan of
//! the JSON answer for sensitive member names and token-like values, and the `X-Request-Id` and
//! `RateLimit` response headers. It runs beside the real stack in `benches/load.rs` to tell how
//! much of the real stack's cost is the work itself and how much is its generality and
//! composition.

use std::convert::Infallible;
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use governor::{DefaultKeyedRateLimiter, Quota};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

struct Caller {
    subject: Arc<str>,
    scopes: Vec<String>,
    exp: u64,
}

struct Record {
    time: SystemTime,
    id: [u8; 32],
    method: Method,
    path: [u8; 64],
    path_len: u8,
    status: u16,
    latency_us: u64,
    ip: Option<IpAddr>,
    subject: Option<Arc<str>>,
}

struct Shared {
    tokens: dashmap::DashMap<[u8; 32], Arc<Caller>>,
    keys: (DecodingKey, Validation),
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    queue: Arc<ArrayQueue<Record>>,
}

/// The layer; `audit_path` is truncated and written by a thread that lives as long as the process.
#[derive(Clone)]
pub struct FusedLayer(Arc<Shared>);

impl FusedLayer {
    pub fn new(audit_path: &std::path::Path) -> Self {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[super::ISSUER]);
        validation.set_audience(&[super::AUDIENCE]);
        let queue = Arc::new(ArrayQueue::new(65_536));
        let file = File::create(audit_path).unwrap();
        let drained = queue.clone();
        std::thread::Builder::new()
            .name("fused-audit".into())
            .spawn(move || audit_thread(&drained, file))
            .unwrap();
        let quota = Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
        Self(Arc::new(Shared {
            tokens: dashmap::DashMap::new(),
            keys: (DecodingKey::from_ec_pem(super::PUBLIC).unwrap(), validation),
            limiter: governor::RateLimiter::keyed(quota),
            queue,
        }))
    }
}

impl<S> Layer<S> for FusedLayer {
    type Service = Fused<S>;
    fn layer(&self, inner: S) -> Fused<S> {
        Fused {
            inner,
            shared: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Fused<S> {
    inner: S,
    shared: Arc<Shared>,
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for Fused<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Boxed;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Boxed {
        let start = Instant::now();
        let shared = self.shared.clone();
        let mut record = Record {
            time: SystemTime::now(),
            id: [0; 32],
            method: request.method().clone(),
            path: [0; 64],
            path_len: 0,
            status: 0,
            latency_us: 0,
            ip: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            subject: None,
        };
        hex::encode_to_slice(fastrand::u128(..).to_le_bytes(), &mut record.id).unwrap();
        let path = request.uri().path().as_bytes();
        let kept = path.len().min(64);
        record.path[..kept].copy_from_slice(&path[..kept]);
        record.path_len = kept as u8;
        let id = HeaderValue::from_bytes(&record.id).unwrap();

        let refused = (|| {
            if let Some(ip) = record.ip
                && shared.limiter.check_key(&ip).is_err()
            {
                return Some(StatusCode::TOO_MANY_REQUESTS);
            }
            let too_long = request.uri().path().len() > 8192 || request.headers().len() > 100;
            if too_long || !matches!(*request.method(), Method::GET | Method::POST) {
                return Some(StatusCode::BAD_REQUEST);
            }
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
            let Some(token) = token else {
                return Some(StatusCode::UNAUTHORIZED);
            };
            let digest: [u8; 32] = Sha256::digest(token).into();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let cached = shared.tokens.get(&digest).map(|c| c.clone());
            let caller = match cached {
                Some(caller) if caller.exp > now => caller,
                _ => {
                    let Ok(text) = std::str::from_utf8(token) else {
                        return Some(StatusCode::UNAUTHORIZED);
                    };
                    let Ok(data) =
                        jsonwebtoken::decode::<Value>(text, &shared.keys.0, &shared.keys.1)
                    else {
                        return Some(StatusCode::UNAUTHORIZED);
                    };
                    let claims = data.claims;
                    let caller = Arc::new(Caller {
                        subject: claims["sub"].as_str().unwrap_or_default().into(),
                        scopes: claims["scope"]
                            .as_str()
                            .unwrap_or_default()
                            .split(' ')
                            .map(String::from)
                            .collect(),
                        exp: claims["exp"].as_u64().unwrap_or(0),
                    });
                    shared.tokens.insert(digest, caller.clone());
                    caller
                }
            };
            record.subject = Some(caller.subject.clone());
            let allowed = request.method() == Method::GET
                && request.uri().path() == "/items"
                && caller.scopes.iter().any(|s| s == "read:items");
            if !allowed {
                return Some(StatusCode::FORBIDDEN);
            }
            request.extensions_mut().insert(caller);
            None
        })();
        let future = refused.is_none().then(|| self.inner.call(request));
        Box::pin(async move {
            let mut response = match future {
                Some(future) => redact(future.await?).await,
                None => status(refused.unwrap_or(StatusCode::FORBIDDEN)),
            };
            let headers = response.headers_mut();
            headers.insert("x-request-id", id);
            headers.insert(
                "ratelimit-policy",
                HeaderValue::from_static("\"per-ip\";q=1000000;w=1"),
            );
            let mut value = Vec::with_capacity(40);
            value.extend_from_slice(b"\"per-ip\";r=");
            value.extend_from_slice(itoa::Buffer::new().format(999_999u32).as_bytes());
            value.extend_from_slice(b";t=0");
            headers.insert("ratelimit", HeaderValue::from_bytes(&value).unwrap());
            record.status = response.status().as_u16();
            record.latency_us = start.elapsed().as_micros() as u64;
            let _ = shared.queue.push(record);
            Ok(response)
        })
    }
}

/// Buffers a JSON answer and refuses it when a member name is sensitive or a string value looks
/// like a token or a card number. (The real layer masks instead of refusing; the scan is the
/// cost being measured.)
async fn redact(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let bytes: Bytes = collected.to_bytes();
    if sensitive(&bytes) {
        return status(StatusCode::BAD_GATEWAY);
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

const NAMES: [&[u8]; 8] = [
    b"password",
    b"secret",
    b"token",
    b"access_token",
    b"api_key",
    b"authorization",
    b"ssn",
    b"card_number",
];

fn sensitive(json: &[u8]) -> bool {
    let mut at = 0;
    while let Some(open) = memchr::memchr(b'"', &json[at..]) {
        let start = at + open + 1;
        let Some(close) = memchr::memchr(b'"', &json[start..]) else {
            return true;
        };
        let text = &json[start..start + close];
        at = start + close + 1;
        let is_key = json.get(at) == Some(&b':');
        if is_key && NAMES.iter().any(|n| text.eq_ignore_ascii_case(n)) {
            return true;
        }
        if !is_key
            && (text.starts_with(b"eyJ")
                || text.iter().filter(|b| b.is_ascii_digit()).count() >= 13)
        {
            return true;
        }
    }
    false
}

/// Drains the queue every millisecond: one JSON line per record, chained by HMAC-SHA256, one
/// `write` per batch, `fsync` once a second.
fn audit_thread(queue: &ArrayQueue<Record>, mut file: File) {
    let keyed = Hmac::<Sha256>::new_from_slice(b"load test audit key, 32 bytes or more").unwrap();
    let mut prev = [b'0'; 64];
    let mut seq = 0u64;
    let mut batch = Vec::with_capacity(1 << 20);
    let mut synced = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(1));
        while let Some(r) = queue.pop() {
            seq += 1;
            let line_start = batch.len();
            let since = r.time.duration_since(UNIX_EPOCH).unwrap_or_default();
            let _ = write!(
                batch,
                "{{\"seq\":{seq},\"type\":\"request\",\"time\":{}.{:06},\"request_id\":\"",
                since.as_secs(),
                since.subsec_micros()
            );
            batch.extend_from_slice(&r.id);
            let _ = write!(batch, "\",\"method\":\"{}\",\"path\":\"", r.method);
            batch.extend_from_slice(&r.path[..r.path_len as usize]);
            let _ = write!(batch, "\",\"status\":{},\"outcome\":\"allowed\"", r.status);
            if let Some(subject) = &r.subject {
                let _ = write!(batch, ",\"principal\":{{\"subject\":\"{subject}\"}}");
            }
            if let Some(ip) = r.ip {
                let _ = write!(batch, ",\"client_ip\":\"{ip}\"");
            }
            let _ = write!(batch, ",\"latency_us\":{},\"prev\":\"", r.latency_us);
            batch.extend_from_slice(&prev);
            batch.push(b'"');
            let mut mac = keyed.clone();
            mac.update(&batch[line_start..]);
            hex::encode_to_slice(mac.finalize().into_bytes(), &mut prev).unwrap();
            batch.extend_from_slice(b",\"hash\":\"");
            batch.extend_from_slice(&prev);
            batch.extend_from_slice(b"\"}\n");
        }
        if !batch.is_empty() {
            file.write_all(&batch).unwrap();
            batch.clear();
        }
        if synced.elapsed() >= Duration::from_secs(1) {
            let _ = file.sync_data();
            synced = Instant::now();
        }
    }
}
