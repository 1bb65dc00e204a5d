//! `ratchet explain ID`: why a run failed, as a Markdown report for a person or an LLM (or
//! the same as JSON): the error and its stack, the task's code around the failing line, the
//! error patterns' reading, the job's attempts, the cluster's state, prompts to ask an
//! assistant, and the run's logs and HTTP calls. An id of a job covers every attempt.

use std::process::ExitCode;

use clap::Args;
use ratchet_core::Config;
use ratchet_service::report;
use ratchet_storage::QueueError;

use super::Format;
use super::jobs::{Common, open_existing};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// An execution id, or a job id (every attempt).
    id: String,
    #[command(flatten)]
    common: Common,
}

pub async fn explain(mut config: Config, args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&mut config, &args.common).await?;
    let reports = match report::report(&store, &config, &args.id).await {
        Ok(one) => vec![one],
        Err(QueueError::NotFound(_)) => match report::job_reports(&store, &config, &args.id).await {
            Ok(reports) if reports.is_empty() => {
                anyhow::bail!("job {} has not run yet: there is nothing to explain", args.id)
            }
            Ok(reports) => reports,
            Err(QueueError::NotFound(_)) => anyhow::bail!(
                "no execution or job has the id `{}`; `ratchet executions list` and `ratchet jobs list` show them",
                args.id
            ),
            Err(error) => return Err(error.into()),
        },
        Err(error) => return Err(error.into()),
    };
    match args.common.format {
        Format::Json if reports.len() == 1 => println!("{}", serde_json::to_string(&reports[0])?),
        Format::Json => println!("{}", serde_json::to_string(&reports)?),
        Format::Text => {
            let text: Vec<String> = reports.iter().map(report::Report::markdown).collect();
            print!("{}", text.join("\n---\n\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
