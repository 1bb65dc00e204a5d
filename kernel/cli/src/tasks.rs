//! `ratchet validate` and `ratchet test`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ratchet_core::{Config, Kernel};

pub async fn validate(config: Config, path: &Path) -> anyhow::Result<ExitCode> {
    let kernel = Kernel::start(config, 1)?;
    let result = check(&kernel, path).await;
    kernel.shutdown().await;
    let task = result?;
    for (file, schema) in
        [("input.schema.json", &task.input_schema), ("output.schema.json", &task.output_schema)]
    {
        for pattern in schema.backtracking_patterns() {
            eprintln!(
                "warning: {file}: the pattern `{pattern}` needs backtracking (lookaround or backreferences); \
                 values are matched against it with limits (at most {} bytes, {} ms per check) and \
                 fail beyond them: prefer a pattern without lookaround",
                ratchet_core::task::MAX_BACKTRACKING_SUBJECT,
                ratchet_core::task::VALIDATION_BUDGET.as_millis()
            );
        }
    }
    println!(
        "ok: {} {} ({} test case{})",
        task.name(),
        task.metadata.version,
        task.tests.len(),
        if task.tests.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(kernel: &Kernel, path: &Path) -> anyhow::Result<ratchet_core::Task> {
    let task = ratchet_core::task::load(path, &kernel.config().limits)?;
    for warning in &task.warnings {
        eprintln!("warning: {warning}");
    }
    kernel.validate(&task).await?;
    Ok(task)
}

pub async fn test(config: Config, path: &Path) -> anyhow::Result<ExitCode> {
    let workers = config.workers.count;
    let kernel = Arc::new(Kernel::start(config, workers)?);
    let task = match check(&kernel, path).await {
        Ok(task) => Arc::new(task),
        Err(error) => {
            kernel.shutdown().await;
            return Err(error);
        }
    };
    let progress = crate::progress::bar(crate::Format::Text, task.tests.len() as u64, "cases");
    let counter = progress.clone();
    let reports =
        ratchet_testing::run_cases(Arc::clone(&kernel), Arc::clone(&task), move |_| counter.inc(1)).await;
    progress.finish_and_clear();
    kernel.shutdown().await;
    if reports.is_empty() {
        eprintln!("warning: {} has no test cases; add tests/*.json", task.name());
    }
    let mut failed = 0;
    for report in &reports {
        let ms = report.duration.as_secs_f64() * 1000.0;
        match &report.failure {
            None => println!("ok   {} ({ms:.1} ms)", report.name),
            Some(reason) => {
                failed += 1;
                println!("FAIL {} ({ms:.1} ms): {reason}", report.name);
            }
        }
    }
    println!("{} passed, {failed} failed", reports.len() - failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
