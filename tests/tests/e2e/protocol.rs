//! The worker binary speaking the protocol directly (the worker's side of S9).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tests::worker_bin;
use worker_protocol::{EXIT_PROTOCOL_ERROR, KernelMessage, WorkerMessage, decode, encode};

struct Worker {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Worker {
    fn start(args: &[&str]) -> Worker {
        let mut child = Command::new(worker_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut worker = Worker { child, lines };
        match worker.receive() {
            WorkerMessage::WorkerReady(ready) => {
                assert_eq!(ready.protocol_version, worker_protocol::PROTOCOL_VERSION)
            }
            other => panic!("expected WorkerReady, got {other:?}"),
        }
        worker
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        let _ = stdin.write_all(bytes);
        let _ = stdin.flush();
    }

    fn send(&mut self, message: KernelMessage) {
        self.send_raw(&encode(message).unwrap());
    }

    fn receive(&mut self) -> WorkerMessage {
        let line = self.lines.next().expect("a frame").unwrap();
        decode(line.as_bytes(), usize::MAX).unwrap()
    }

    fn exit_code(mut self) -> (Option<i32>, String) {
        drop(self.child.stdin.take());
        let output = self.child.wait_with_output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn execute(id: u64, key: &str, code: Option<&str>, mode: &str) -> KernelMessage {
    serde_json::from_value(json!({
        "type": "ExecuteTask", "correlation_id": id, "mode": mode,
        "task": {"key": key, "code": code}, "input": {"x": 1},
        "limits": {"timeout_ms": 1000, "memory_bytes": 134217728},
        "context": {"execution_id": "e", "attempt": 1, "task_id": "t", "task_version": "1"}
    }))
    .unwrap()
}

fn outcome(message: WorkerMessage) -> Value {
    match message {
        WorkerMessage::TaskResult(result) => serde_json::to_value(result.outcome).unwrap(),
        other => panic!("expected TaskResult, got {other:?}"),
    }
}

#[test]
fn handshake_ping_and_clean_shutdown() {
    let mut worker = Worker::start(&[]);
    worker.send(KernelMessage::Ping { nonce: 7 });
    assert_eq!(worker.receive(), WorkerMessage::Pong { nonce: 7 });
    worker.send(KernelMessage::Shutdown);
    assert_eq!(worker.exit_code().0, Some(0));
}

#[test]
fn code_is_cached_by_key_and_check_mode_does_not_call() {
    let mut worker = Worker::start(&[]);
    worker.send(execute(1, "k1", Some("(function (input) { return input.x + 1; })"), "run"));
    assert_eq!(outcome(worker.receive()), json!({"status": "success", "output": 2}));
    worker.send(execute(2, "k1", None, "run"));
    assert_eq!(outcome(worker.receive()), json!({"status": "success", "output": 2}));
    worker.send(execute(3, "k2", Some("(function () { throw new Error('called'); })"), "check"));
    assert_eq!(outcome(worker.receive()), json!({"status": "success", "output": null}));
    worker.send(execute(4, "unknown", None, "run"));
    assert_eq!(outcome(worker.receive())["error"]["name"], "ProtocolError");
}

#[test]
fn garbage_from_the_kernel_makes_the_worker_leave_with_a_protocol_error() {
    let mut worker = Worker::start(&[]);
    worker.send_raw(b"{not json}\n");
    let (code, stderr) = worker.exit_code();
    assert_eq!(code, Some(EXIT_PROTOCOL_ERROR));
    assert!(stderr.contains("protocol error: malformed frame"), "{stderr}");
}

#[test]
fn an_oversized_frame_from_the_kernel_is_refused() {
    let mut worker = Worker::start(&["--max-frame-bytes", "1024"]);
    worker.send_raw(&[b'x'; 4096]);
    let (code, stderr) = worker.exit_code();
    assert_eq!(code, Some(EXIT_PROTOCOL_ERROR));
    assert!(stderr.contains("exceeds the limit of 1024 bytes"), "{stderr}");
}

#[test]
fn another_protocol_version_is_named() {
    let mut worker = Worker::start(&[]);
    worker.send_raw(br#"{"protocol_version":7,"timestamp":0,"message":{"type":"Shutdown"}}"#);
    worker.send_raw(b"\n");
    let (code, stderr) = worker.exit_code();
    assert_eq!(code, Some(EXIT_PROTOCOL_ERROR));
    let expected = format!("protocol version 7, expected {}", worker_protocol::PROTOCOL_VERSION);
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn bad_arguments_print_usage() {
    let output = Command::new(worker_bin()).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: ratchet-worker"));
}

/// A field of `/proc/<pid>/status`, in kB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_worker_caps_its_address_space_before_it_allocates() {
    // Below the 1 GiB arena mimalloc reserves on a first allocation made without a cap: a cap
    // applied after that allocation (by the kernel's prlimit, racing with the start-up) left
    // the worker past its cap and its next mapping failed.
    let cap = 768 * 1024 * 1024u64;
    let mut worker = Worker::start(&["--address-space-cap", &cap.to_string()]);
    let pid = worker.child.id();
    worker.send(execute(1, "k1", Some("(function (input) { return input.x + 1; })"), "run"));
    assert_eq!(outcome(worker.receive()), json!({"status": "success", "output": 2}));
    tests::assert_address_space_cap(pid, cap);
    let peak = status_kib(pid, "VmPeak:");
    assert!(peak * 1024 <= cap, "the worker mapped {peak} kB, more than its cap of {cap} bytes");
}

#[test]
fn a_bad_address_space_cap_is_named() {
    let output = Command::new(worker_bin()).args(["--address-space-cap", "lots"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--address-space-cap: not a byte count"), "{stderr}");
}
