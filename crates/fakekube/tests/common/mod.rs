//! A raw HTTP/1.1 client for the fake's own tests: exact status codes and bodies, no kube-rs
//! interpretation in between. Talks to a `plain_http` FakeCluster.

#![allow(dead_code)]
// A test crate exports nothing: `pub` in its helper modules only shares them between test
// files, so unreachable_pub does not apply.
#![allow(unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use fakekube::{FakeCluster, ServerOptions};

pub async fn plain_cluster() -> FakeCluster {
    FakeCluster::start(ServerOptions {
        plain_http: true,
        ..Default::default()
    })
    .await
    .unwrap()
}

pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// Watch bodies: one JSON value per line.
    pub fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Send one request; for streaming answers, read until the server ends the body or
/// `read_for` passes.
pub async fn send(
    port: u16,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    token: Option<&str>,
    body: Option<Vec<u8>>,
    read_for: Duration,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("Host", format!("127.0.0.1:{port}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = sender.send_request(req).await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + read_for;
    while let Ok(Some(Ok(f))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Ok(d) = f.into_data() {
            out.extend_from_slice(&d);
        }
    }
    Resp {
        status,
        content_type,
        body: out,
    }
}

/// A JSON request as admin.
pub async fn admin(port: u16, method: &str, path: &str, body: Option<Value>) -> Resp {
    let ct = match method {
        "PATCH" => "application/merge-patch+json",
        _ => "application/json",
    };
    send(
        port,
        method,
        path,
        &[("Content-Type", ct)],
        Some(fakekube::ADMIN_TOKEN),
        body.map(|b| serde_json::to_vec(&b).unwrap()),
        Duration::from_secs(10),
    )
    .await
}
