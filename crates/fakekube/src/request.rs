//! A request as the handlers see it (which resource it addresses, its query) and the response
//! bodies they build: shared by routing ([`crate::http`]) and watches ([`crate::watch`]).

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::Response;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(crate) fn json_response(status: u16, body: Vec<u8>, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache, private")
        .body(full(body))
        .unwrap()
}

pub(crate) fn value_response(status: u16, v: &Value) -> Response<Body> {
    json_response(status, serde_json::to_vec(v).unwrap(), "application/json")
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    value_response(e.code, &e.to_status())
}

/// Decoded query parameters (last value wins).
pub(crate) type Query = HashMap<String, String>;

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_query(q: &str) -> Query {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

pub(crate) fn truthy(q: &Query, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "1" || v == "true")
}

pub(crate) struct ResReq {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub(crate) fn selectors(
    r: &ResReq,
    query: &Query,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let ls = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fs = FieldSelector::parse(
        query.get("fieldSelector").map(String::as_str).unwrap_or(""),
        r.rt.plural,
    )?;
    Ok((ls, fs))
}
