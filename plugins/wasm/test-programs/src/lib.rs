//! One misbehaving sink, whose misbehaviour is chosen by the event kind it receives, so one
//! component covers every fault the host must survive:
//! `loop` spins forever, `grow` allocates without bound, `recurse` overflows the stack,
//! `panic` panics, `huge-error` returns a 64 MiB error message, `read-file` reads the file
//! named by the event's `task`, `http` calls the host's HTTP import with the URL in `task`;
//! anything else succeeds.

use plugin_api::guest::{Capability, Event, Manifest, PluginError, Sink};

struct Hostile;

#[inline(never)]
#[allow(unconditional_recursion, reason = "overflowing the stack is the point")]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    std::hint::black_box(&frame);
    recurse(depth + 1) + frame[0]
}

impl Sink for Hostile {
    fn manifest() -> Manifest {
        Manifest::new("hostile", "0.1.0", "misbehaves on purpose").capability(Capability::Http)
    }

    fn write(events: Vec<Event>) -> Result<(), PluginError> {
        for event in events {
            match event.kind.as_str() {
                "loop" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "grow" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1024 * 1024]);
                        std::hint::black_box(&hoard);
                    }
                }
                "recurse" => {
                    std::hint::black_box(recurse(0));
                }
                "panic" => panic!("the hostile plugin panics on purpose"),
                "huge-error" => return Err(PluginError::Failed("x".repeat(64 * 1024 * 1024))),
                "read-file" => {
                    let path = event.task.unwrap_or_default();
                    return std::fs::read_to_string(&path)
                        .map(|_| ())
                        .map_err(|e| PluginError::Denied(format!("cannot read {path}: {e}")));
                }
                "http" => {
                    let url = event.task.unwrap_or_default();
                    return plugin_api::guest::http("GET", &url, &[], &[]).map(|_| ());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

plugin_api::export_sink!(Hostile);
