//! Reporting an item's failure: the message, the stage and an uploaded error file
//! (reason, events, log tail of every container) — never a traceback, never a secret.

use rlaunch_k8s_runner::Diagnostics;
use rlaunch_wandb_api::{Error as WandbError, FailureStage, LAUNCH_PROJECT, RunFile};

use crate::context::{Context, Registration};
use crate::retry::a_few_times;

/// Why an item failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemFailure {
    /// `agent`, `build` or `run`.
    pub stage: FailureStage,
    /// One sentence naming the cause.
    pub message: String,
    /// Events and logs, when there are any.
    pub diagnostics: Option<Diagnostics>,
}

impl ItemFailure {
    pub fn new(stage: FailureStage, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
            diagnostics: None,
        }
    }
}

/// The error file's text (pure).
pub(crate) fn error_file(item_id: &str, run_id: Option<&str>, failure: &ItemFailure) -> String {
    let mut out = format!(
        "run queue item: {item_id}\nrun id: {}\nstage: {}\nreason: {}\n",
        run_id.unwrap_or("(not acked)"),
        failure.stage,
        failure.message
    );
    if let Some(diagnostics) = &failure.diagnostics {
        out.push_str("\nevents:\n");
        if diagnostics.events.is_empty() {
            out.push_str("  (none)\n");
        }
        for event in &diagnostics.events {
            out.push_str(&format!("  {event}\n"));
        }
        for log in &diagnostics.logs {
            out.push_str(&format!(
                "\nlog of {}/{}{}:\n{}\n",
                log.pod,
                log.container,
                if log.truncated { " (last part)" } else { "" },
                log.tail
            ));
        }
    }
    out
}

/// Uploads the error file and calls `failRunQueueItem`. Never fails: problems are logged.
pub(crate) async fn report_failure(
    ctx: &Context,
    registration: &Registration,
    item_id: &str,
    queue: &str,
    run_id: Option<&str>,
    failure: &ItemFailure,
    spec_key: Option<&rlaunch_model::ApiKey>,
) {
    let mut text = ctx.api_key.redact_in(&error_file(item_id, run_id, failure));
    let mut message = ctx.api_key.redact_in(&failure.message);
    if let Some(key) = spec_key {
        text = key.redact_in(&text);
        message = key.redact_in(&message);
    }
    let file = RunFile {
        path: format!("{item_id}/error/error.log"),
        contents: text.into_bytes(),
    };
    let paths = match ctx
        .wandb
        .upload_run_files(
            &registration.entity,
            LAUNCH_PROJECT,
            &registration.agent_name,
            std::slice::from_ref(&file),
        )
        .await
    {
        Ok(paths) => paths,
        Err(error) => {
            ctx.metrics.api_error("uploadRunFiles", error.kind());
            tracing::warn!(item = item_id, error = %error, "cannot upload the error file; failing the item without it");
            Vec::new()
        }
    };
    let report = FailReport {
        item_id,
        queue,
        stage: failure.stage,
        message: &message,
        paths: &paths,
    };
    let result = fail_once(ctx, registration, &report).await;
    ctx.metrics.failed(queue, failure.stage.as_str());
    match result {
        Ok(()) => {
            tracing::info!(item = item_id, queue, run_id = run_id.unwrap_or(""), stage = %failure.stage, reason = %message, "item failed")
        }
        Err(error) => {
            tracing::error!(item = item_id, queue, stage = %failure.stage, reason = %message, error = %error, "cannot report the item's failure to W&B")
        }
    }
}

/// One `failRunQueueItem` call's arguments.
struct FailReport<'a> {
    item_id: &'a str,
    queue: &'a str,
    stage: FailureStage,
    message: &'a str,
    paths: &'a [String],
}

/// How many times a failure whose answer was lost is checked and sent again.
const UNSURE_REPORTS: u32 = 3;

/// `failRunQueueItem`, taking effect once: when the connection broke after the call may
/// have reached W&B (the client never resends it), the item's state says whether it did —
/// `FAILED` is done — before it is sent again. W&B's agent resends it blindly.
async fn fail_once(
    ctx: &Context,
    registration: &Registration,
    report: &FailReport<'_>,
) -> Result<(), WandbError> {
    let mut unsure = 0;
    loop {
        let result = a_few_times(ctx, "failRunQueueItem", 5, || {
            ctx.wandb.fail_run_queue_item(
                report.item_id,
                report.stage,
                report.message,
                report.paths,
            )
        })
        .await;
        let Err(error @ WandbError::OutcomeUnknown { .. }) = result else {
            return result;
        };
        unsure += 1;
        tracing::warn!(item = report.item_id, error = %error, "the failure report's answer was lost; reading the item's state");
        if already_failed(ctx, registration, report).await {
            return Ok(());
        }
        if unsure >= UNSURE_REPORTS {
            return Err(error);
        }
    }
}

/// True when W&B shows the item `FAILED` (a failure report took effect).
async fn already_failed(
    ctx: &Context,
    registration: &Registration,
    report: &FailReport<'_>,
) -> bool {
    let info = a_few_times(ctx, "RunQueueItemInfo", 5, || {
        ctx.wandb.run_queue_item_info(
            &registration.entity,
            LAUNCH_PROJECT,
            report.queue,
            report.item_id,
        )
    })
    .await;
    match info {
        Ok(Some(info)) => info.state.as_deref() == Some("FAILED"),
        Ok(None) => false,
        Err(error) => {
            tracing::warn!(item = report.item_id, error = %error, "cannot read the item's state; sending the failure again");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use rlaunch_k8s_runner::ContainerLog;

    use super::*;

    #[test]
    fn error_file_has_reason_events_and_every_log() {
        let failure = ItemFailure {
            stage: FailureStage::Run,
            message: "container main was OOMKilled (limit 1Gi)".into(),
            diagnostics: Some(Diagnostics {
                events: vec!["pod/x Started (1)".into()],
                logs: vec![
                    ContainerLog {
                        pod: "x".into(),
                        container: "main".into(),
                        tail: "boom".into(),
                        truncated: true,
                    },
                    ContainerLog {
                        pod: "x".into(),
                        container: "side".into(),
                        tail: "ok".into(),
                        truncated: false,
                    },
                ],
            }),
        };
        let text = error_file("item-1", Some("abcd1234"), &failure);
        assert!(
            text.contains("stage: run\nreason: container main was OOMKilled (limit 1Gi)"),
            "{text}"
        );
        assert!(text.contains("pod/x Started (1)"));
        assert!(text.contains("log of x/main (last part):\nboom"));
        assert!(text.contains("log of x/side:\nok"));
        assert!(!text.contains("Traceback"));
    }
}
