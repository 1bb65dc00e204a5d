//! What the benches that drive a real `ratchet serve` share.

use std::time::{Duration, Instant};

/// Waits until the server on `port` answers `/ready`, up to `deadline`.
pub async fn wait_until_ready(client: &reqwest::Client, port: u16, deadline: Duration) {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/ready")).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(started.elapsed() < deadline, "ratchet serve did not become ready within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `q` quantile of `sorted` latencies, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
