//! Trace ids: one id follows a request through the job it enqueues, every attempt of that job,
//! their log lines and events, and the HTTP requests the task makes. The format is W3C Trace
//! Context (`traceparent: 00-<trace id>-<parent id>-<flags>`), so a caller's tracing system and
//! the services a task calls see the same trace.

use std::fmt;

/// The header a caller sends and a task's outgoing requests carry.
pub const TRACEPARENT: &str = "traceparent";

/// A trace: its id (32 lowercase hex digits) and the span that caused this work (16 hex
/// digits), with the caller's sampling flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    parent_id: String,
    sampled: bool,
}

impl TraceContext {
    /// A new trace, for work no caller traced (a schedule's fire, a request without a
    /// `traceparent`, the CLI).
    pub fn root() -> TraceContext {
        TraceContext { trace_id: random_hex(32), parent_id: random_hex(16), sampled: true }
    }

    /// The trace a `traceparent` header names, or `None` when the header is not a valid
    /// version-00 header (then the W3C rules say to start a new trace). Future versions are
    /// read for their first four fields, as the specification asks.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let header = header.trim();
        let mut fields = header.split('-');
        let version = fields.next()?;
        let trace_id = fields.next()?;
        let parent_id = fields.next()?;
        let flags = fields.next()?;
        let rest = fields.next();
        let valid_version = is_hex(version, 2) && version != "ff";
        if !valid_version || (version == "00" && rest.is_some()) || !is_hex(flags, 2) {
            return None;
        }
        if !is_hex(trace_id, 32) || !is_hex(parent_id, 16) || all_zero(trace_id) || all_zero(parent_id) {
            return None;
        }
        let sampled = u8::from_str_radix(flags, 16).is_ok_and(|bits| bits & 1 == 1);
        Some(TraceContext { trace_id: trace_id.to_owned(), parent_id: parent_id.to_owned(), sampled })
    }

    /// A stored trace id taken up again (a job's attempt), with a new parent span.
    pub fn resume(trace_id: &str) -> Option<TraceContext> {
        (is_hex(trace_id, 32) && !all_zero(trace_id)).then(|| TraceContext {
            trace_id: trace_id.to_owned(),
            parent_id: random_hex(16),
            sampled: true,
        })
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The `traceparent` of a request made on this trace's behalf: the same trace, a new span.
    pub fn child_header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, random_hex(16), if self.sampled { "01" } else { "00" })
    }
}

impl fmt::Display for TraceContext {
    /// The trace's own `traceparent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.parent_id, if self.sampled { "01" } else { "00" })
    }
}

/// Lowercase hex of exactly `len` digits (W3C forbids uppercase).
fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn all_zero(text: &str) -> bool {
    text.bytes().all(|b| b == b'0')
}

/// `len` (at most 32) random lowercase hex digits: a v4 UUID's (122 random bits), never all
/// zero.
fn random_hex(len: usize) -> String {
    let mut hex = uuid::Uuid::new_v4().simple().to_string();
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_header_is_read_and_passed_on_with_a_new_span() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::parse(header).unwrap();
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.to_string(), header);
        let child = trace.child_header();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{child}");
        assert!(child.ends_with("-01"));
        assert_ne!(child, header);
        assert!(TraceContext::parse(&child).is_some());
    }

    #[test]
    fn invalid_headers_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version may add fields; its first four are read.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more").is_some()
        );
    }

    #[test]
    fn new_traces_are_valid_and_distinct() {
        let a = TraceContext::root();
        let b = TraceContext::root();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a.clone()));
        assert_eq!(TraceContext::resume(a.trace_id()).unwrap().trace_id(), a.trace_id());
        assert_eq!(TraceContext::resume("not-a-trace"), None);
    }
}
