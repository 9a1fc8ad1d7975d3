//! The dates of our own certificate: an expired or not yet valid certificate
//! loads fine (rustls checks dates only in a handshake, on the other side),
//! so without this only the peers find out. Read at start by the server (its
//! log) and by `porthole check`.
//!
//! The dates come from x509-parser (the Rusticata X.509 parser, the usual
//! one in Rust: rustls-webpki keeps its validity field private, and a DER
//! walker of our own would be one more parser to fuzz). It parses only
//! files we were given, after rustls accepted them.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

/// A certificate expiring within this many days gets a warning, so there is
/// time to renew it before clients are refused.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// How bad a [`CertWarning`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The peers will refuse the certificate now.
    Error,
    /// The peers will refuse it later, or its dates could not be read.
    Warning,
}

/// What is wrong with a certificate's dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertIssue {
    /// Past its notAfter date.
    Expired { not_after: OffsetDateTime },
    /// Before its notBefore date.
    NotYetValid { not_before: OffsetDateTime },
    /// Valid, but for fewer than [`EXPIRY_WARNING_DAYS`] more days.
    ExpiresSoon {
        not_after: OffsetDateTime,
        days: i64,
    },
    /// Its dates could not be read (x509-parser refused what rustls loaded).
    Unreadable,
}

/// A problem with the dates of one of our own certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertWarning {
    /// The certificate file.
    pub path: PathBuf,
    pub issue: CertIssue,
    /// The sentence to print, with the dates.
    pub message: String,
}

impl CertWarning {
    pub fn severity(&self) -> Severity {
        match self.issue {
            CertIssue::Expired { .. } => Severity::Error,
            CertIssue::NotYetValid { .. }
            | CertIssue::ExpiresSoon { .. }
            | CertIssue::Unreadable => Severity::Warning,
        }
    }
}

impl fmt::Display for CertWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Logs `warnings` once, at start: an error (with `consequence`, what the
/// peer will do about it) or a warning each.
pub fn log_warnings(warnings: &[CertWarning], consequence: &str) {
    for warning in warnings {
        match warning.severity() {
            Severity::Error => tracing::error!("{warning}: {consequence}"),
            Severity::Warning => tracing::warn!("{warning}"),
        }
    }
}

/// The warnings for certificate `leaf` (the first of the chain in `path`) at
/// time `now`: expired (an error), not yet valid, or expiring within
/// [`EXPIRY_WARNING_DAYS`] (warnings). Empty when its dates are fine.
pub fn certificate_warnings(
    path: &Path,
    leaf: &CertificateDer<'_>,
    now: OffsetDateTime,
) -> Vec<CertWarning> {
    let shown = path.display();
    let warning = |issue, message| CertWarning {
        path: path.to_owned(),
        issue,
        message,
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        let message = format!("cannot read the validity dates of certificate {shown}");
        return vec![warning(CertIssue::Unreadable, message)];
    };
    let validity = cert.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    let mut warnings = Vec::new();
    if now > not_after {
        let message = format!(
            "certificate {shown} expired on {} (not valid after {})",
            day(not_after),
            utc(not_after)
        );
        warnings.push(warning(CertIssue::Expired { not_after }, message));
    } else if now < not_before {
        let message = format!(
            "certificate {shown} is not valid until {} (not valid before {}; it is now {}): \
             check the clock",
            day(not_before),
            utc(not_before),
            utc(now)
        );
        warnings.push(warning(CertIssue::NotYetValid { not_before }, message));
    } else {
        let days = (not_after - now).whole_days();
        if days < EXPIRY_WARNING_DAYS {
            let when = match days {
                0 => "within a day".to_owned(),
                1 => "in 1 day".to_owned(),
                n => format!("in {n} days"),
            };
            let message = format!(
                "certificate {shown} expires {when}, on {} (not valid after {})",
                day(not_after),
                utc(not_after)
            );
            warnings.push(warning(CertIssue::ExpiresSoon { not_after, days }, message));
        }
    }
    warnings
}

/// "2026-01-02 03:04:05 UTC".
pub fn utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        day(t),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// "2026-01-02" (UTC).
fn day(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// [`utc`] for rustls's time stamps.
pub(super) fn unix_utc(t: UnixTime) -> String {
    let at = i64::try_from(t.as_secs())
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok());
    match at {
        Some(at) => utc(at),
        None => format!("{} seconds after 1970", t.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gencert::{Ca, Validity};
    use rustls_pki_types::pem::PemObject;
    use time::{Date, Month, Time};

    /// A server certificate valid from `not_before` to `not_after`, as DER.
    fn leaf(not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateDer<'static> {
        let validity = Validity {
            not_before,
            not_after,
        };
        let ca = Ca::new("dates CA", validity).expect("CA");
        let pem = ca
            .server(&["localhost".to_owned()], validity)
            .expect("cert");
        CertificateDer::from_pem_slice(pem.cert.as_bytes()).expect("PEM")
    }

    /// `at("2026-01-02 03:04:05")`, UTC.
    fn at(text: &str) -> OffsetDateTime {
        let n: Vec<u32> = text
            .split(['-', ' ', ':'])
            .map(|part| part.parse().expect("number"))
            .collect();
        let month = Month::try_from(n[1] as u8).expect("month");
        let date = Date::from_calendar_date(n[0] as i32, month, n[2] as u8).expect("date");
        let time = Time::from_hms(n[3] as u8, n[4] as u8, n[5] as u8).expect("time");
        date.with_time(time).assume_utc()
    }

    const NOT_BEFORE: &str = "2025-12-01 00:00:00";
    const NOT_AFTER: &str = "2026-01-02 03:04:05";

    fn warnings_at(now: &str) -> Vec<CertWarning> {
        let leaf = leaf(at(NOT_BEFORE), at(NOT_AFTER));
        certificate_warnings(Path::new("server.crt"), &leaf, at(now))
    }

    #[test]
    fn an_expired_certificate_is_an_error_naming_its_date() {
        let found = warnings_at("2026-11-30 11:00:00");
        let [warning] = found.as_slice() else {
            panic!("one warning: {found:?}");
        };
        assert_eq!(warning.severity(), Severity::Error);
        assert_eq!(
            warning.message,
            "certificate server.crt expired on 2026-01-02 (not valid after 2026-01-02 03:04:05 UTC)"
        );
        assert_eq!(
            warning.issue,
            CertIssue::Expired {
                not_after: at(NOT_AFTER)
            }
        );
    }

    #[test]
    fn a_certificate_not_valid_yet_is_a_warning_naming_both_dates() {
        let found = warnings_at("2025-11-29 08:00:00");
        let [warning] = found.as_slice() else {
            panic!("one warning: {found:?}");
        };
        assert_eq!(warning.severity(), Severity::Warning);
        assert_eq!(
            warning.message,
            "certificate server.crt is not valid until 2025-12-01 (not valid before \
             2025-12-01 00:00:00 UTC; it is now 2025-11-29 08:00:00 UTC): check the clock"
        );
    }

    #[test]
    fn a_certificate_close_to_its_end_is_a_warning_with_the_days_left() {
        let found = warnings_at("2025-12-28 03:04:05");
        let [warning] = found.as_slice() else {
            panic!("one warning: {found:?}");
        };
        assert_eq!(warning.severity(), Severity::Warning);
        assert_eq!(
            warning.message,
            "certificate server.crt expires in 5 days, on 2026-01-02 \
             (not valid after 2026-01-02 03:04:05 UTC)"
        );
        let found = warnings_at("2026-01-01 12:00:00");
        assert!(
            found[0].message.contains("expires within a day"),
            "{found:?}"
        );
        // Fourteen days or more: nothing to say.
        assert_eq!(warnings_at("2025-12-19 03:04:05"), []);
        assert_eq!(warnings_at("2025-12-01 00:00:00"), []);
    }

    #[test]
    fn bytes_that_are_no_certificate_are_reported_not_panicked_on() {
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
        let found = certificate_warnings(Path::new("junk.crt"), &junk, at(NOT_AFTER));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].issue, CertIssue::Unreadable);
        assert!(found[0].message.contains("junk.crt"), "{found:?}");
    }
}
