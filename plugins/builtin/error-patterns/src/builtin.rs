//! The built-in patterns. Suggestions name Ratchet's own settings where one is the fix. HTTP
//! status codes match only as an HTTP status (`HTTP 429`, `status 429`, `status code 429`),
//! never as a bare number: a log line counting to 429 is not rate limiting.

use super::Pattern;

/// `(kinds, names, any_text)`: the conditions of a pattern.
type When<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str]);

fn pattern(
    id: &str,
    category: &str,
    (kinds, names, any_text): When<'_>,
    suggestions: &[&str],
    confidence: f32,
) -> Pattern {
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    Pattern {
        id: id.into(),
        category: category.into(),
        kinds: strings(kinds),
        names: strings(names),
        any_text: strings(any_text),
        suggestions: strings(suggestions),
        confidence,
    }
}

pub fn patterns() -> Vec<Pattern> {
    let mut all = ratchet_kinds();
    all.extend(network());
    all.extend(database());
    all.extend(javascript());
    all.extend(authentication());
    all.extend(configuration());
    all
}

/// Every error kind of Ratchet's own.
fn ratchet_kinds() -> Vec<Pattern> {
    vec![
        pattern(
            "task-timeout",
            "resources",
            (&["timeout"], &[], &[]),
            &[
                "The run passed its timeout and its worker was killed: raise `timeout` in the task's metadata.json (at most limits.max_timeout_secs), or give the job its own with --timeout / timeout_secs",
                "Or do less per run: split the work into several jobs",
                "A fetch that hangs counts against the run's timeout: lower egress.request_timeout_secs to fail it sooner",
            ],
            0.95,
        ),
        pattern(
            "memory-limit",
            "resources",
            (&["memory_limit"], &[], &[]),
            &[
                "The run used more heap than allowed: raise `memory_limit` in the task's metadata.json (at most limits.max_memory_limit)",
                "Or hold less at once: stream or page through large data instead of building it whole",
            ],
            0.95,
        ),
        pattern(
            "schema-violation",
            "validation",
            (&["invalid_input", "invalid_output"], &[], &[]),
            &[
                "The data does not match the task's JSON Schema: each violation names the field (its JSON pointer) and the rule",
                "For input, fix the caller (ratchet validate shows the schema); for output, fix the task or its output.schema.json",
            ],
            0.95,
        ),
        pattern(
            "worker-crashed",
            "resources",
            (&["worker_crashed", "protocol_error"], &[], &[]),
            &[
                "The worker process died during the run and the pool replaced it; the error names the signal or exit code",
                "If it repeats, run the task alone with ratchet run-once and read the stderr tail in the error",
            ],
            0.9,
        ),
        pattern(
            "no-worker",
            "resources",
            (&["worker_unavailable"], &[], &[]),
            &[
                "No worker could start: the error carries the start failure; check workers.binary (or RATCHET_WORKER_BIN) and that ratchet-worker runs on this machine",
                "/ready and ratchet nodes show the workers' state",
            ],
            0.9,
        ),
        pattern(
            "cancelled",
            "operations",
            (&["cancelled"], &[], &[]),
            &[
                "The run was stopped on purpose (a cancelled job or a caller that gave up); nothing is wrong with the task",
            ],
            0.99,
        ),
        pattern(
            "data-too-large",
            "validation",
            (&[], &["DataError"], &[]),
            &[
                "A value was too deep or too large to pass between the kernel and the worker: the message names the limit (workers.max_frame_bytes, the depth limit)",
                "Return less, or a summary, and keep the bulk elsewhere",
            ],
            0.9,
        ),
        pattern(
            "recursion",
            "javascript",
            (&[], &["RecursionLimitError", "RangeError"], &["recursion", "call stack"]),
            &["A function recursed too deeply: rewrite the recursion as a loop, or bound its depth"],
            0.9,
        ),
    ]
}

fn network() -> Vec<Pattern> {
    vec![
        pattern(
            "egress-denied",
            "network",
            (&[], &["NetworkError"], &["egress", "allow-list", "allowed_hosts", "denied"]),
            &[
                "The host is outside the egress policy: add it to egress.allow_hosts in the config, or pass --allow-host for one command",
                "If the task declares allowed_hosts in its metadata.json, the host must be listed there too",
            ],
            0.95,
        ),
        pattern(
            "connection-refused",
            "network",
            (&[], &[], &["econnrefused", "connection refused", "connection reset", "econnreset"]),
            &[
                "Nothing accepted the connection: check that the service is up and listening on that host and port",
                "From a container, `localhost` is the container itself: use the service's address",
            ],
            0.85,
        ),
        pattern(
            "dns",
            "network",
            (&[], &[], &["enotfound", "dns error", "failed to lookup address", "name or service not known"]),
            &["The host name does not resolve: check its spelling, and the DNS the Ratchet node uses"],
            0.85,
        ),
        pattern(
            "network-error",
            "network",
            (&[], &["NetworkError"], &[]),
            &[
                "Check that the host is up and reachable from the Ratchet node, and the URL it is called with",
                "Retries with backoff absorb short outages: enqueue the run as a job with --max-attempts",
            ],
            0.8,
        ),
        pattern(
            "http-timeout",
            "network",
            (&[], &["TimeoutError"], &["fetch", "request", "http"]),
            &[
                "The remote service did not answer within egress.request_timeout_secs: raise it, or check the service",
            ],
            0.85,
        ),
        pattern(
            "rate-limited",
            "http",
            (
                &[],
                &[],
                &[
                    "http 429",
                    "status 429",
                    "status code 429",
                    "status: 429",
                    "status=429",
                    "too many requests",
                    "rate limit",
                    "ratelimit",
                ],
            ),
            &[
                "The service is rate limiting: slow down (fewer concurrent jobs), honour its Retry-After, or ask for a higher quota",
                "Jobs retry with backoff: --max-attempts lets a limited call succeed later",
            ],
            0.85,
        ),
        pattern(
            "server-error",
            "http",
            (
                &[],
                &[],
                &[
                    "500 internal server error",
                    "502",
                    "503",
                    "504",
                    "bad gateway",
                    "service unavailable",
                    "gateway timeout",
                ],
            ),
            &[
                "The remote service failed (5xx): usually on its side and temporary; retries with backoff help",
                "Replay the run offline from its recording (ratchet replay) to see the exact exchange",
            ],
            0.75,
        ),
        pattern(
            "not-found",
            "http",
            (
                &[],
                &[],
                &["http 404", "status 404", "status code 404", "status: 404", "status=404", "404 not found"],
            ),
            &["The resource does not exist at that URL: check the path and the identifiers in the input"],
            0.6,
        ),
    ]
}

fn database() -> Vec<Pattern> {
    vec![
        pattern(
            "database-timeout",
            "database",
            (
                &[],
                &[],
                &[
                    "database timeout",
                    "connection timeout",
                    "query timeout",
                    "statement timeout",
                    "database is locked",
                    "deadlock",
                ],
            ),
            &[
                "Check the database's connectivity and load",
                "Consider longer timeouts, or smaller queries and transactions",
                "Review slow queries and their indexes",
            ],
            0.8,
        ),
        pattern(
            "database-connection",
            "database",
            (
                &[],
                &[],
                &[
                    "too many connections",
                    "connection pool",
                    "could not connect to server",
                    "password authentication failed",
                    "no pg_hba.conf entry",
                ],
            ),
            &[
                "The database refused or ran out of connections: check its address, credentials and max_connections",
                "Fewer concurrent jobs (queue.concurrency) open fewer connections at once",
            ],
            0.8,
        ),
    ]
}

fn javascript() -> Vec<Pattern> {
    vec![
        pattern(
            "undefined-value",
            "javascript",
            (&["task_error"], &["TypeError"], &["undefined", "null"]),
            &[
                "A value was undefined or null where the code expected an object: check optional fields of the input and of fetched JSON",
                "The stack trace points at the line; ratchet run-once reproduces it offline",
            ],
            0.85,
        ),
        pattern(
            "javascript-error",
            "javascript",
            (&["task_error"], &["TypeError", "ReferenceError", "SyntaxError"], &[]),
            &[
                "A JavaScript error in the task's code: the stack trace points at the line",
                "ReferenceError: a misspelt or undeclared name; TypeError: a value of the wrong type, often undefined",
                "Reproduce it offline: ratchet run-once --from-fs TASK --input-json '...'",
            ],
            0.8,
        ),
        pattern(
            "bad-json",
            "javascript",
            (&["task_error"], &["SyntaxError"], &["json"]),
            &[
                "Parsing JSON failed: the response was probably not JSON (an HTML error page, an empty body); check its status and content type first",
            ],
            0.85,
        ),
    ]
}

fn authentication() -> Vec<Pattern> {
    vec![pattern(
        "authentication",
        "authentication",
        (
            &[],
            &[],
            &[
                "401",
                "403",
                "unauthorized",
                "forbidden",
                "authentication",
                "invalid token",
                "api key",
                "expired token",
            ],
        ),
        &[
            "A service refused the credentials: check the token or key the task sends, and whether it expired",
            "Keep secrets out of task code and recorded inputs; recordings mask Authorization headers and recording.mask_names",
        ],
        0.7,
    )]
}

fn configuration() -> Vec<Pattern> {
    vec![pattern(
        "configuration",
        "configuration",
        (
            &[],
            &[],
            &[
                "not configured",
                "missing configuration",
                "missing environment",
                "is required but",
                "no such file",
            ],
        ),
        &[
            "Something the task needs was not set: check its input, its metadata.json, and the node's configuration (ratchet config show)",
        ],
        0.6,
    )]
}
