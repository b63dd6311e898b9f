//! What the plugin adds to kube's HTTP stack, under every request of every command:
//!
//! - the API server's clock: each response's `Date` header updates
//!   [`mirrord_copy_lock::clock`], so leases and expiries never depend on this machine's clock;
//! - retries of transient failures, bounded and safe: 429 and 503 (the server did not act on
//!   the request; `Retry-After` honoured) for every method; 500, 502, 504 and failures after
//!   the request was sent only for reads (GET), since a write may have been applied; a refused
//!   connection (nothing was sent) for every method. Writes that are retried carry
//!   resourceVersion or uid preconditions or create a fixed name, so a second attempt cannot
//!   clobber anything: at worst it gets a 409 the caller already handles.

use std::time::Duration;

use chrono::Utc;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::Policy;
use tower::util::rng::{HasherRng, Rng};
use tower::BoxError;

/// At most this many attempts in all.
const MAX_ATTEMPTS: u32 = 5;
/// First backoff; doubles each time, plus up to as much again at random.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Random part of each backoff, as a fraction of it: many clients failing together spread out.
const BACKOFF_JITTER: f64 = 1.0;
/// A server asking for longer than this is not waited for: the error surfaces instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Records the server's clock from a response (a `MapResponseLayer` function).
pub(crate) fn observe_server_date<B>(response: Response<B>) -> Response<B> {
    if let Some(date) = response
        .headers()
        .get(http::header::DATE)
        .and_then(|d| d.to_str().ok())
    {
        mirrord_copy_lock::clock::observe_server_date(date, Utc::now());
    }
    response
}

/// The retry policy of the module doc. One per request (tower clones it per call).
#[derive(Clone)]
pub(crate) struct TransientRetry {
    attempt: u32,
    backoff: ExponentialBackoff,
}

impl Default for TransientRetry {
    fn default() -> Self {
        let backoff = ExponentialBackoffMaker::new(
            FIRST_BACKOFF,
            MAX_BACKOFF,
            BACKOFF_JITTER,
            HasherRng::default(),
        )
        .expect("valid backoff bounds")
        .make_backoff();
        TransientRetry {
            attempt: 0,
            backoff,
        }
    }
}

/// What one attempt's outcome calls for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Done,
    RetryAfter(Option<Duration>),
}

fn verdict(method: &Method, status: Option<StatusCode>, err: Option<&BoxError>) -> Verdict {
    let read = method == Method::GET || method == Method::HEAD;
    match (status, err) {
        (Some(s), _)
            if s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::SERVICE_UNAVAILABLE =>
        {
            Verdict::RetryAfter(None)
        }
        (Some(s), _)
            if read
                && (s == StatusCode::INTERNAL_SERVER_ERROR
                    || s == StatusCode::BAD_GATEWAY
                    || s == StatusCode::GATEWAY_TIMEOUT) =>
        {
            Verdict::RetryAfter(None)
        }
        // A certificate the kubeconfig does not trust is refused again on every attempt.
        (None, Some(e)) if tls_failure(e.as_ref()) => Verdict::Done,
        (None, Some(e)) if read || connection_refused(e.as_ref()) => Verdict::RetryAfter(None),
        _ => Verdict::Done,
    }
}

/// Nothing reached the server: the connection itself was refused (a restarting API server).
fn connection_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// The TLS handshake failed (an untrusted or wrong certificate, a protocol mismatch): rustls
/// said no, and would say it again. tokio-rustls hands rustls' error over inside an I/O error,
/// which hyper-rustls wraps in another: an I/O error's `source()` skips what it wraps, so the
/// chain is followed through `get_ref()` too.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            },
            None => e.source(),
        };
    }
    false
}

/// `Retry-After` in seconds, as the API server sends it.
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// `base` scaled by a random factor in [low, high): many clients that fail together do not
/// retry together.
pub(crate) fn jitter(base: Duration, low: f64, high: f64) -> Duration {
    base.mul_f64(low + (high - low) * HasherRng::default().next_f64())
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for TransientRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        if self.attempt + 1 >= MAX_ATTEMPTS {
            return None;
        }
        let (status, err, asked) = match result {
            Ok(r) => (Some(r.status()), None, retry_after(r)),
            Err(e) => (None, Some(&*e), None),
        };
        if verdict(req.method(), status, err) == Verdict::Done {
            return None;
        }
        let sleep = match asked {
            Some(d) if d > MAX_RETRY_AFTER => return None,
            Some(d) => tokio::time::sleep(d),
            None => self.backoff.next_backoff(),
        };
        self.attempt += 1;
        let delay = sleep.deadline() - tokio::time::Instant::now();
        tracing::info!(
            "{} {}: {} - retrying in {delay:?} (attempt {} of {MAX_ATTEMPTS})",
            req.method(),
            req.uri().path(),
            status.map_or_else(|| "no response".to_string(), |s| s.to_string()),
            self.attempt + 1
        );
        Some(sleep)
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Streaming bodies cannot be replayed; ours are all buffered.
        let body = req.body().try_clone()?;
        let mut clone = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> BoxError {
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    fn reset() -> BoxError {
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    }

    #[test]
    fn throttling_and_unavailable_are_retried_for_every_method() {
        for m in [Method::GET, Method::POST, Method::PATCH, Method::DELETE] {
            for s in [429, 503] {
                let v = verdict(&m, Some(StatusCode::from_u16(s).unwrap()), None);
                assert_eq!(v, Verdict::RetryAfter(None), "{m} {s}");
            }
        }
    }

    #[test]
    fn a_write_that_may_have_been_applied_is_not_retried() {
        for s in [500, 502, 504] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(verdict(&Method::POST, Some(s), None), Verdict::Done);
            assert_eq!(verdict(&Method::PATCH, Some(s), None), Verdict::Done);
            assert_eq!(
                verdict(&Method::GET, Some(s), None),
                Verdict::RetryAfter(None)
            );
        }
        let e = reset();
        assert_eq!(verdict(&Method::POST, None, Some(&e)), Verdict::Done);
        assert_eq!(
            verdict(&Method::GET, None, Some(&e)),
            Verdict::RetryAfter(None)
        );
        // Refused: nothing was sent, so even a write is safe to send again.
        let e = refused();
        assert_eq!(
            verdict(&Method::POST, None, Some(&e)),
            Verdict::RetryAfter(None)
        );
        for s in [400, 403, 404, 409, 422] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(verdict(&Method::GET, Some(s), None), Verdict::Done, "{s}");
        }
    }

    #[test]
    fn a_refused_certificate_is_not_retried() {
        let rustls_error =
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As tokio-rustls reports it: inside an I/O error, which hyper-rustls wraps in
        // another, inside the client's error.
        let io = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls_error.clone(),
        ));
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped: BoxError = Box::new(Wrapper(io));
        for m in [Method::GET, Method::POST] {
            assert_eq!(verdict(&m, None, Some(&wrapped)), Verdict::Done, "{m}");
        }
        let bare: BoxError = Box::new(rustls_error);
        assert_eq!(verdict(&Method::GET, None, Some(&bare)), Verdict::Done);
        // Still retried: a reset read.
        assert_eq!(
            verdict(&Method::GET, None, Some(&reset())),
            Verdict::RetryAfter(None)
        );
    }

    #[tokio::test]
    async fn retry_after_is_honoured_within_a_bound() {
        let mut policy = TransientRetry::default();
        let mut req = Request::post("/api/v1/namespaces/x/pods")
            .body(Body::from(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        let asked = |secs: &str| {
            Response::builder()
                .status(429)
                .header("Retry-After", secs)
                .body(())
                .unwrap()
        };
        let mut ok: Result<Response<()>, BoxError> = Ok(asked("1"));
        let sleep = policy.retry(&mut req, &mut ok).expect("retried");
        let wait = sleep.deadline() - tokio::time::Instant::now();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        let mut too_long: Result<Response<()>, BoxError> = Ok(asked("60"));
        assert!(policy.retry(&mut req, &mut too_long).is_none());
        let replay =
            <TransientRetry as Policy<_, Response<()>, BoxError>>::clone_request(&mut policy, &req);
        assert!(replay.is_some(), "a buffered body replays");
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_backoff_grows_with_jitter() {
        let mut policy = TransientRetry::default();
        let mut req = Request::get("/api").body(Body::empty()).unwrap();
        let mut tries = 1;
        loop {
            let mut e: Result<Response<()>, BoxError> = Err(reset());
            if policy.retry(&mut req, &mut e).is_none() {
                break;
            }
            tries += 1;
        }
        assert_eq!(tries, MAX_ATTEMPTS);
        // Each wait at least doubles the first, within [base, 2 x base], never above the cap.
        let mut backoff = TransientRetry::default().backoff;
        for n in 0..10u32 {
            let sleep = backoff.next_backoff();
            let wait = sleep.deadline() - tokio::time::Instant::now();
            let base = (FIRST_BACKOFF * 2u32.pow(n)).min(MAX_BACKOFF);
            assert!(
                wait <= MAX_BACKOFF && wait + Duration::from_millis(5) >= base,
                "wait {n}: {wait:?} (base {base:?})"
            );
        }
    }

    #[test]
    fn the_date_header_sets_the_server_clock() {
        let ahead = Utc::now() + chrono::Duration::minutes(7);
        let response = Response::builder()
            .header(
                "Date",
                ahead.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            )
            .body(())
            .unwrap();
        observe_server_date(response);
        let off = mirrord_copy_lock::clock::offset().num_seconds();
        assert!((419..=421).contains(&off), "{off}");
        mirrord_copy_lock::clock::set_offset(chrono::Duration::zero());
    }
}
