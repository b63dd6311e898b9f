//! The time every lease and expiry decision uses: the API server's, not this machine's.
//!
//! Two machines whose clocks disagree must still agree on whether a lease has run out, or a
//! laptop three minutes behind has its live session ended by someone else's `gc`. Every
//! timestamp we write (`since`, `leaseExpires`, `expires`, `heartbeat`) and every comparison
//! with one uses [`now`]: this machine's clock corrected by the offset to the API server's,
//! learnt from the `Date` header of its responses ([`observe_server_date`], called by the
//! client's HTTP stack). Before any response, and where none carries a `Date`, the offset is
//! zero. `Date` has one-second resolution, so decisions are right to about a second plus the
//! round trip; leases are minutes.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// Server time minus local time, in milliseconds.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// Whether a server `Date` has been seen (or an offset set).
static KNOWN: AtomicBool = AtomicBool::new(false);

/// The API server's current time, as best known.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}

/// Server time minus this machine's time (zero until a response told us).
pub fn offset() -> Duration {
    Duration::milliseconds(OFFSET_MS.load(Ordering::Relaxed))
}

/// Whether the offset comes from the server (false: this machine's clock is used as it is).
pub fn is_known() -> bool {
    KNOWN.load(Ordering::Relaxed)
}

/// Set the offset directly: tests use it to simulate a machine whose clock is off.
pub fn set_offset(offset: Duration) {
    OFFSET_MS.store(offset.num_milliseconds(), Ordering::Relaxed);
    KNOWN.store(true, Ordering::Relaxed);
}

/// Learn the offset from a response's `Date` header (RFC 7231 IMF-fixdate, as Go's net/http
/// writes it), received at `received` by this machine's clock. `Date` is truncated to the
/// second when the server wrote it, so the server's time at that moment lies in
/// [date, date + 1s): its middle is the estimate. Returns false if the header does not parse.
pub fn observe_server_date(date_header: &str, received: DateTime<Utc>) -> bool {
    let Ok(date) = DateTime::parse_from_rfc2822(date_header) else {
        return false;
    };
    let server = date.with_timezone(&Utc) + Duration::milliseconds(500);
    set_offset(server - received);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test for the process-wide offset (tests run in parallel threads).
    #[test]
    fn the_server_date_corrects_a_skewed_clock() {
        let local = Utc::now();
        // The server is ten minutes ahead of this machine.
        let server = local + Duration::minutes(10);
        let header = server.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        assert!(observe_server_date(&header, local));
        assert!(is_known());
        let skew = (now() - server).num_milliseconds().abs();
        assert!(
            skew <= 1_000,
            "within the Date's one-second resolution: {skew} ms"
        );
        assert!(!observe_server_date("not a date", local));
        set_offset(Duration::minutes(-3));
        let behind = (Utc::now() - now()).num_seconds();
        assert!((179..=180).contains(&behind), "{behind}");
        set_offset(Duration::zero());
    }
}
