//! Watches: a chunked `application/json;stream=watch` body of one JSON event per line
//! (watch.json). From resourceVersion "0" or none, the current objects come first as ADDED;
//! from a resourceVersion older than the store's history, the answer is HTTP 200 and a single
//! ERROR event carrying a 410 `Expired` Status, as upstream. BOOKMARKs are sent when
//! `allowWatchBookmarks=true` (periodically and just before a `timeoutSeconds` expiry).
//!
//! With a selector, an object modified out of the selection is reported as DELETED and one
//! modified into it as ADDED, as upstream's watch cache does (from a past resourceVersion the
//! selection is approximated by the current one).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::api_error::ApiError;
use crate::request::{selectors, Body, Query, ResReq};
use crate::state::ServerState;
use crate::store::{EventType, StoreEvent};

const BOOKMARK_EVERY: Duration = Duration::from_secs(20);
/// Upstream picks a random timeout of 30-60 minutes when the client gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    serde_json::to_writer(&mut buf, obj).unwrap();
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// A watch line around an already serialized object.
fn raw_line(kind: &str, obj: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(obj.len() + 32);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    buf.extend_from_slice(obj);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

fn stream_response(rx: mpsc::Receiver<Bytes>, content_type: &str) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache, private")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}

pub(crate) fn watch(
    state: Arc<ServerState>,
    r: &ResReq,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let (ls, fs) = selectors(r, query)?;
    let rt = r.rt.clone();
    let ns = r.namespace.clone();
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let rv_param = query.get("resourceVersion").cloned().unwrap_or_default();
    let mut initial = Vec::new();
    let from_rv = if rv_param.is_empty() || rv_param == "0" || send_initial {
        let (items, rv, _) = state
            .store
            .list_selected(&rt, ns.as_deref(), &ls, &fs, None, 0);
        initial = items;
        rv
    } else {
        rv_param
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?
    };
    // With a selector, track which objects are in the selection so that one leaving it is
    // reported as DELETED and one entering it as ADDED, as the watch cache does.
    let selective = !ls.is_empty() || !fs.is_empty();
    let mut selection = if selective {
        state.store.matching_keys(&rt, ns.as_deref(), &ls, &fs)
    } else {
        Default::default()
    };
    let keep = move |o: &Value| ls.matches_object(o) && fs.matches_object(o);
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let (history, live) = match state
        .store
        .events_since_for(from_rv, Some((rt.group, rt.plural)))
    {
        Ok(x) => x,
        Err(e) => {
            // Expired: 200, then one ERROR event, then the end of the stream.
            let _ = tx.try_send(line("ERROR", &e.to_status()));
            drop(tx);
            return Ok(stream_response(rx, "application/json"));
        }
    };
    let kind = rt.kind;
    let api_version = rt.api_version();
    let key = (rt.group, rt.plural);
    let bookmark = move |rv: u64, initial_end: bool| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
        )
    };
    let mut classify = move |ev: &StoreEvent| -> Option<&'static str> {
        if ev.resource != key || ns.as_deref().is_some_and(|n| n != ev.namespace) {
            return None;
        }
        if !selective {
            return Some(ev.event.as_str());
        }
        let k = (ev.namespace.clone(), ev.name.clone());
        let now = keep(&ev.object);
        if ev.event == EventType::Deleted {
            let was = selection.remove(&k);
            return (was || now).then_some("DELETED");
        }
        match (selection.contains(&k), now) {
            (true, true) => Some(ev.event.as_str()),
            (false, true) => {
                selection.insert(k);
                Some("ADDED")
            }
            (true, false) => {
                selection.remove(&k);
                Some("DELETED")
            }
            (false, false) => None,
        }
    };
    tokio::spawn(async move {
        let mut live = live;
        let deadline = tokio::time::Instant::now() + timeout;
        for o in &initial {
            if tx.send(raw_line("ADDED", o)).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks {
            let _ = tx.send(bookmark(from_rv, true)).await;
        }
        for ev in &history {
            if let Some(t) = classify(ev) {
                if tx.send(line(t, &ev.object)).await.is_err() {
                    return;
                }
            }
        }
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if let Some(t) = classify(&ev) {
                            if tx.send(line(t, &ev.object)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow a reader: end with 410 so the client re-lists, as a watch
                        // cache that dropped the watcher would make it.
                        let e = ApiError::expired("watch channel overflowed; please re-list");
                        let _ = tx.send(line("ERROR", &e.to_status())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if bookmarks && tx.send(bookmark(state.store.current_resource_version(), false)).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if bookmarks {
                        let _ = tx.send(bookmark(state.store.current_resource_version(), false)).await;
                    }
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    });
    Ok(stream_response(rx, "application/json;stream=watch"))
}
