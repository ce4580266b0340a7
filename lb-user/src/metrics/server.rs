//! The HTTP listener of `global.metrics_listen`: `/metrics`, `/status.json`, the status page
//! `/`, and `/-/healthy`. Read-only and unauthenticated: bind it to a management address.
//!
//! Every answer is built from the latest snapshot in a `watch` channel, never by asking the
//! daemon: a scrape does not wait behind a slow reload.
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch};
use tracing::{info, warn};

use super::render::{render, Format};
use crate::status::StatusReport;

/// The status page: one self-contained file (no external assets: directors often have no
/// internet access).
pub const STATUS_PAGE: &str = include_str!("page.html");

/// Longest a connection may stay open (slow or idle clients).
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

fn response(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The answer to one request (HEAD: hyper sends the headers of the GET answer, no body).
pub fn respond(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    snapshot: &StatusReport,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET or HEAD\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // Before the daemon's first snapshot: no zeros that would read as facts (table size 0...).
    let waiting = snapshot.config_file.is_empty();
    match path {
        "/metrics" | "/status.json" if waiting => response(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "no status snapshot from the daemon yet\n",
        ),
        "/metrics" => {
            let format = Format::negotiate(accept);
            let body = render(snapshot, &super::process::read(), format);
            response(StatusCode::OK, format.content_type(), body)
        }
        "/status.json" => match serde_json::to_string(snapshot) {
            Ok(json) => response(StatusCode::OK, "application/json", json),
            Err(e) => response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ),
        },
        "/" | "/index.html" => response(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE),
        "/-/healthy" => response(StatusCode::OK, "text/plain; charset=utf-8", "OK\n"),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /, /metrics, /status.json, /-/healthy\n",
        ),
    }
}

/// Serves `addr` until the process ends.
pub async fn serve(addr: SocketAddr, snapshots: watch::Receiver<Arc<StatusReport>>) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, "metrics endpoint not started: {e}");
            return;
        }
    };
    info!(%addr, "metrics on http://{addr}/metrics, status page on http://{addr}/");
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // e.g. EMFILE: do not spin.
                warn!(%addr, "metrics endpoint: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let snapshot = snapshots.borrow().clone();
                let accept = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let r = respond(req.method(), req.uri().path(), accept.as_deref(), &snapshot);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let snap = crate::status::tests::sample();
        let r = respond(&Method::GET, "/-/healthy", None, &snap);
        assert_eq!(r.status(), StatusCode::OK);
        let r = respond(&Method::HEAD, "/metrics", None, &snap);
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let r = respond(&Method::GET, "/", None, &snap);
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(
            respond(&Method::GET, "/nope", None, &snap).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/metrics", None, &snap).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let empty = StatusReport::empty();
        let code = |path: &str| respond(&Method::GET, path, None, &empty).status();
        assert_eq!(code("/metrics"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code("/status.json"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code("/-/healthy"), StatusCode::OK);
    }

    #[test]
    fn page_is_self_contained() {
        // No external assets: nothing loaded from another host (the SVG namespace URI is a name).
        for bad in [
            "src=\"http",
            "href=\"http",
            "url(http",
            "@import",
            "src=\"//",
            "fetch(\"http",
        ] {
            assert!(!STATUS_PAGE.contains(bad), "status page refers to {bad}");
        }
        assert!(STATUS_PAGE.contains("/status.json"));
    }
}
