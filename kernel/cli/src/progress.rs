//! Progress on long work, drawn on stderr when it is a terminal and the output is for people:
//! never into a pipe or a file, never with `--format json`.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Format;

fn shown(format: Format) -> bool {
    format == Format::Text && std::io::stderr().is_terminal()
}

/// A bar over `len` steps, each one of `unit` ("cases").
pub fn bar(format: Format, len: u64, unit: &str) -> ProgressBar {
    if !shown(format) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = format!("[{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}})");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.tick();
    bar
}

/// A spinner saying `message` for work of unknown length.
pub fn spinner(format: Format, message: String) -> ProgressBar {
    if !shown(format) {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(message);
    spinner.tick();
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}
