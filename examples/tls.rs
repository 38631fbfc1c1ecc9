//! A small API served directly over TLS with rustls, no proxy in front.
//!
//! ```text
//! cargo run --example tls                                   # dev certificate, https://localhost:8443
//! TLS_CERT=cert.pem TLS_KEY=key.pem TLS_ADDR=0.0.0.0:443 cargo run --example tls
//! ```
//!
//! - `TLS_CERT` (a PEM chain, leaf first) and `TLS_KEY` (a PEM private key) set: those are served.
//!   Neither set: a self-signed certificate for `localhost`, `127.0.0.1` and `::1` is made at
//!   start (its private key never leaves memory; the certificate is written to a new file in the
//!   temp directory for `curl --cacert`), and only a loopback `TLS_ADDR` is accepted. One set
//!   without the other stops start-up with a message.
//! - `TLS_ADDR` (default `127.0.0.1:8443`).
//! - TLS 1.3 and 1.2 only (rustls implements nothing older), 1.3 whenever the client has it, with
//!   rustls's default cipher suites, all AEAD with ECDHE forward secrecy: TLS 1.3
//!   `AES_256_GCM_SHA384`, `AES_128_GCM_SHA256`, `CHACHA20_POLY1305_SHA256`; TLS 1.2 ECDHE-ECDSA and
//!   ECDHE-RSA with AES-GCM or ChaCha20-Poly1305. No CBC, no RSA key exchange, no SHA-1 MACs.
//!   ALPN offers `h2` and `http/1.1`. A handshake gets 10 s, request headers 30 s; at most 1024
//!   connections are open at once.
//! - Every request carries `ConnectInfo<SocketAddr>` and the `TlsConnection` marker, so the
//!   `TransportSecurityLayer` knows it came over TLS and answers with HSTS and the API headers.
//! - `GET /health` is public; `GET /me` needs the API key printed at start (`X-Api-Key`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use portcullis::auth::{ApiKey, ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore};
use portcullis::transport::TlsConnection;
use portcullis::{AuthLayer, Identity, TransportSecurityLayer, ValidateLayer};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections at most; accepting waits beyond that instead of exhausting file descriptors.
const MAX_CONNECTIONS: usize = 1024;

/// The API: public health, and the caller's subject behind an API key.
pub fn app(keys: InMemoryKeyStore) -> Router {
    async fn me(identity: Identity) -> String {
        identity.subject().to_owned()
    }
    Router::new()
        .route("/me", get(me))
        .route_layer(AuthLayer::required().with(ApiKeyAuthenticator::new(keys)))
        .route("/health", get(|| async { "ok" }))
        .layer(ValidateLayer::new())
        // Outermost: every response, rejections included, leaves through it.
        .layer(TransportSecurityLayer::new())
}

/// TLS 1.3 and 1.2 with aws-lc-rs and its default (AEAD-only) cipher suites, named explicitly so
/// the choice does not depend on which crypto features other crates enable.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A self-signed certificate for the loopback names, its key, and the certificate as PEM.
pub fn dev_certificate()
-> Result<(CertificateDer<'static>, PrivateKeyDer<'static>, String), rcgen::Error> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((certified.cert.der().clone(), key, certified.cert.pem()))
}

/// The chain and key from PEM files.
fn load_pem(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("TLS_CERT {cert}: {error}"))?;
    if chain.is_empty() {
        return Err(format!("TLS_CERT {cert}: no certificate in it"));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|error| format!("TLS_KEY {key}: {error}"))?;
    Ok((chain, key))
}

/// Accepts TLS connections until the listener fails, serving `app` on each with the peer
/// address and the [`TlsConnection`] marker in every request.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router) {
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait, do not spin.
                eprintln!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // A client that never finishes its handshake must not hold the connection forever.
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(_)) | Err(_) => return,
            };
            let service = app.map_request(move |mut request: http::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(TlsConnection::new());
                request
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let _ = builder
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                .await;
        });
    }
}

/// Writes the dev certificate (public) to a file that did not exist before, so a planted symlink
/// in the shared temp directory cannot redirect the write.
fn write_dev_certificate(pem: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("portcullis-dev-cert-{}.pem", std::process::id()));
    let mut file = std::fs::File::create_new(&path)?;
    file.write_all(pem.as_bytes())?;
    Ok(path)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let addr: SocketAddr = std::env::var("TLS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8443".to_owned())
        .parse()
        .map_err(|error| format!("TLS_ADDR: {error}"))?;
    let cert_env = (
        std::env::var("TLS_CERT").ok(),
        std::env::var("TLS_KEY").ok(),
    );
    let (chain, key, dev_cert) = match cert_env {
        (Some(cert), Some(key)) => {
            let (chain, key) = load_pem(&cert, &key)?;
            (chain, key, None)
        }
        (None, None) => {
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "TLS_ADDR {addr}: the self-signed development certificate is served on \
                     loopback only; set TLS_CERT and TLS_KEY to listen elsewhere"
                ));
            }
            let (cert, key, pem) =
                dev_certificate().map_err(|error| format!("dev certificate: {error}"))?;
            let path = write_dev_certificate(&pem)
                .map_err(|error| format!("cannot write the dev certificate: {error}"))?;
            (vec![cert], key, Some(path))
        }
        _ => return Err("set both TLS_CERT and TLS_KEY, or neither".to_owned()),
    };
    let config = server_config(chain, key).map_err(|error| format!("TLS: {error}"))?;

    let keys = InMemoryKeyStore::new();
    let api_key = ApiKey::generate("pcl_dev").map_err(|error| error.to_string())?;
    keys.insert_hash(api_key.hash(), ApiKeyGrant::new("dev-1", "developer"));

    let runtime = tokio::runtime::Runtime::new()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
        let host = if dev_cert.is_some() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        let ca = dev_cert
            .as_ref()
            .map(|path| format!("--cacert {} ", path.display()))
            .unwrap_or_default();
        println!("portcullis TLS example listening on https://{host}");
        println!();
        println!("  curl -i {ca}https://{host}/health");
        println!(
            "  curl -i {ca}-H 'X-Api-Key: {}' https://{host}/me",
            api_key.expose()
        );
        serve(listener, TlsAcceptor::from(Arc::new(config)), app(keys)).await;
        Ok(())
    })
}
