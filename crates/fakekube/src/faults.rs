//! Fault injection and the request log.
//!
//! A [`Fault`] matches requests by HTTP method and a path substring; it fires on the Nth match
//! (or every match) for a number of times, and either fails the request with a Status,
//! delays it, or drops the TCP connection without answering.

use std::sync::Mutex;
use std::time::Duration;

use crate::api_error::ApiError;

#[derive(Debug, Clone)]
/// What a fault does to the request it fires on.
pub enum FaultAction {
    /// Answer with this Status instead of serving the request.
    Fail(ApiError),
    /// Serve the request after this delay.
    Latency(Duration),
    /// Close the connection without an answer.
    Drop,
}

#[derive(Debug, Clone)]
/// A request matcher and the action to take on the requests it matches.
pub struct Fault {
    /// `GET`, `POST`, ...; None matches any.
    pub method: Option<String>,
    /// Matches when the request path contains this.
    pub path_contains: String,
    /// And, if set, when the raw query string contains this (e.g. `watch=`).
    pub query_contains: Option<String>,
    /// Fire first on the Nth matching request (1-based); 1 = the next one.
    pub nth: u64,
    /// How many times to fire from then on; None = forever.
    pub times: Option<u64>,
    /// What to do when it fires.
    pub action: FaultAction,
    seen: u64,
    fired: u64,
}

impl Fault {
    /// A fault on `method` (or "*" for any) and a path substring; fires once on the next match
    /// unless `.nth()` / `.times()` say otherwise.
    pub fn on(method: &str, path_contains: &str, action: FaultAction) -> Fault {
        Fault {
            method: (method != "*").then(|| method.to_uppercase()),
            path_contains: path_contains.to_string(),
            query_contains: None,
            nth: 1,
            times: Some(1),
            action,
            seen: 0,
            fired: 0,
        }
    }

    /// Fire first on the `n`th matching request (1-based).
    pub fn nth(mut self, n: u64) -> Fault {
        self.nth = n.max(1);
        self
    }

    /// Only requests whose raw query string contains `query` (say `watch=` for watches).
    pub fn with_query(mut self, query: &str) -> Fault {
        self.query_contains = Some(query.to_string());
        self
    }

    /// Fire `n` times from then on.
    pub fn times(mut self, n: u64) -> Fault {
        self.times = Some(n);
        self
    }

    /// Fire on every matching request from then on.
    pub fn always(mut self) -> Fault {
        self.times = None;
        self
    }
}

/// The faults armed on a server.
#[derive(Default)]
pub struct Faults {
    faults: Mutex<Vec<Fault>>,
}

impl Faults {
    /// Arm `fault`.
    pub fn add(&self, fault: Fault) {
        self.faults.lock().unwrap().push(fault);
    }

    /// Fail the Nth request matching (method, path substring) with `status` and a Status body
    /// whose reason is derived from the code (503 ServiceUnavailable, 500 InternalError ...).
    pub fn fail_nth(&self, method: &str, path_contains: &str, n: u64, status: u16) {
        self.add(
            Fault::on(
                method,
                path_contains,
                FaultAction::Fail(status_error(status)),
            )
            .nth(n),
        );
    }

    /// Delay every matching request.
    pub fn latency(&self, method: &str, path_contains: &str, delay: Duration) {
        self.add(Fault::on(method, path_contains, FaultAction::Latency(delay)).always());
    }

    /// Drop the connection of the Nth matching request.
    pub fn drop_nth(&self, method: &str, path_contains: &str, n: u64) {
        self.add(Fault::on(method, path_contains, FaultAction::Drop).nth(n));
    }

    /// Disarm every fault.
    pub fn clear(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// The actions to take for this request (latencies first), counting it against each fault.
    pub fn check(&self, method: &str, path: &str, query: &str) -> Vec<FaultAction> {
        let mut out = Vec::new();
        let mut faults = self.faults.lock().unwrap();
        for f in faults.iter_mut() {
            let matches = f.method.as_deref().is_none_or(|m| m == method)
                && path.contains(&f.path_contains)
                && f.query_contains
                    .as_deref()
                    .is_none_or(|q| query.contains(q));
            if !matches {
                continue;
            }
            f.seen += 1;
            if f.seen >= f.nth && f.times.is_none_or(|t| f.fired < t) {
                f.fired += 1;
                out.push(f.action.clone());
            }
        }
        out.sort_by_key(|a| !matches!(a, FaultAction::Latency(_)));
        out
    }
}

/// A Status error for an HTTP code, worded like upstream's generic ones.
pub fn status_error(code: u16) -> ApiError {
    let (reason, message) = match code {
        400 => ("BadRequest", "the server rejected our request for an unknown reason"),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "forbidden"),
        404 => ("NotFound", "the server could not find the requested resource"),
        409 => ("Conflict", "the server reported a conflict"),
        410 => ("Gone", "the requested resource is no longer available"),
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        500 => ("InternalError", "an error on the server (\"injected fault\") has prevented the request from succeeding"),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
        504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
        _ => ("Unknown", "injected fault"),
    };
    ApiError::new(code, reason, message)
}

/// One served request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`), or the lowercased method for non-resource paths.
    pub verb: String,
    /// The request path.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// HTTP status; 0 when the connection was dropped.
    pub status: u16,
    /// How long serving it took, injected latency included.
    pub latency: Duration,
    /// The authenticated user; empty when none was.
    pub user: String,
    /// The client's `User-Agent` header; empty when it sent none.
    pub user_agent: String,
}

/// The request log, with counters.
#[derive(Default)]
pub struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
}

/// Keep the log bounded so long benchmarks do not grow memory without limit.
const MAX_RECORDS: usize = 20_000;

impl RequestLog {
    pub(crate) fn push(&self, r: RequestRecord) {
        let mut v = self.records.lock().unwrap();
        if v.len() >= MAX_RECORDS {
            v.drain(..MAX_RECORDS / 2);
        }
        v.push(r);
    }

    /// Every record kept, oldest first (at most the last 20,000).
    pub fn all(&self) -> Vec<RequestRecord> {
        self.records.lock().unwrap().clone()
    }

    /// How many requests matched `verb` (or any when "*") and contained `path_contains`.
    pub fn count(&self, verb: &str, path_contains: &str) -> usize {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| (verb == "*" || r.verb == verb) && r.path.contains(path_contains))
            .count()
    }

    /// Forget every record.
    pub fn clear(&self) {
        self.records.lock().unwrap().clear();
    }
}
