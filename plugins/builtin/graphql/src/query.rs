//! The queries: tasks, jobs, executions, schedules, nodes and plugins, as their views.

use super::*;

pub struct Query;

#[Object]
impl Query {
    /// The loaded tasks, by name.
    async fn tasks(&self, ctx: &Context<'_>, tag: Option<String>) -> async_graphql::Result<Vec<TaskView>> {
        let mut tasks: Vec<TaskView> = state(ctx)?
            .service
            .tasks()
            .into_iter()
            .filter(|e| tag.as_ref().is_none_or(|tag| e.task.metadata.tags.contains(tag)))
            .map(|e| TaskView::new(&e.task, &e.source, e.load_error.as_deref()))
            .collect();
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tasks)
    }

    /// A task by name or uuid.
    async fn task(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Option<TaskView>> {
        let entry = state(ctx)?.service.task_entry(&name);
        Ok(entry.map(|e| TaskView::new(&e.task, &e.source, e.load_error.as_deref())))
    }

    /// Jobs, newest first.
    // Each argument is a field argument of the public schema, not an internal parameter list.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "limit.unwrap_or(50) as usize * child_complexity")]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        task: Option<String>,
        #[graphql(desc = "Jobs created at or after this time: RFC 3339, or a duration ago (1h, 7d).")]
        since: Option<String>,
        #[graphql(desc = "Jobs created before this time: RFC 3339, or a duration ago.")] until: Option<
            String,
        >,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> async_graphql::Result<JobPage> {
        let status = status.as_deref().map(str::parse::<JobStatus>).transpose()?;
        let (since, until) =
            ratchet_server::model::time_range(since.as_deref(), until.as_deref()).map_err(gql)?;
        let listed = state(ctx)?
            .service
            .jobs(&JobFilter { status, task, since, until }, page(limit, offset, "created_at")?)
            .await
            .map_err(gql)?;
        Ok(JobPage { items: listed.items.iter().map(JobView::from).collect(), total: listed.total })
    }

    async fn job(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<JobView> {
        Ok(JobView::from(&state(ctx)?.service.job(&id).await.map_err(gql)?))
    }

    /// Executions, newest first.
    // Each argument is a field argument of the public schema, not an internal parameter list.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "limit.unwrap_or(50) as usize * child_complexity")]
    async fn executions(
        &self,
        ctx: &Context<'_>,
        task: Option<String>,
        status: Option<String>,
        job_id: Option<String>,
        #[graphql(desc = "The runs of one trace (W3C trace id, 32 hex digits).")] trace_id: Option<String>,
        #[graphql(desc = "Runs that started at or after this time: RFC 3339, or a duration ago (1h, 7d).")]
        since: Option<String>,
        #[graphql(desc = "Runs that started before this time: RFC 3339, or a duration ago.")] until: Option<
            String,
        >,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> async_graphql::Result<ExecutionPage> {
        let status = match status.as_deref() {
            None => None,
            Some(name) => Some(ratchet_core::RunStatus::parse(name).ok_or_else(|| {
                gql(ratchet_server::ApiError::bad_request(format!(
                    "`{name}` is not an execution status; use success or failure"
                )))
            })?),
        };
        let (since, until) =
            ratchet_server::model::time_range(since.as_deref(), until.as_deref()).map_err(gql)?;
        let filter = ExecutionFilter { task, status, job_id, trace_id, since, until };
        let listed =
            state(ctx)?.service.executions(&filter, page(limit, offset, "started_at")?).await.map_err(gql)?;
        Ok(ExecutionPage { items: listed.items.into_iter().map(Into::into).collect(), total: listed.total })
    }

    async fn execution(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<ExecutionDetail> {
        Ok(state(ctx)?.service.execution(&id).await.map_err(gql)?.into())
    }

    /// Why a run failed: the failure report of `ratchet explain`, as Markdown (`markdown`) and
    /// as data (`data`, the JSON of `GET /api/v1/executions/{id}/report`).
    async fn execution_report(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<ExecutionReport> {
        let report = state(ctx)?.service.report(&id).await.map_err(gql)?;
        Ok(ExecutionReport {
            markdown: report.markdown(),
            data: async_graphql::Json(serde_json::to_value(&report).unwrap_or_default()),
        })
    }

    /// A schedule by id or name.
    async fn schedule(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<ScheduleView> {
        Ok(ScheduleView::from(&state(ctx)?.service.schedule(&id).await.map_err(gql)?))
    }

    async fn schedules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ScheduleView>> {
        Ok(state(ctx)?.service.schedules().await.map_err(gql)?.iter().map(ScheduleView::from).collect())
    }

    /// The queue's pauses in force, the whole queue's first (its `task` is null).
    async fn queue_pauses(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PauseView>> {
        Ok(state(ctx)?.service.pauses().await.map_err(gql)?.iter().map(PauseView::from).collect())
    }

    /// The secrets' names and when they were set (admin); never their values.
    async fn secrets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SecretView>> {
        need(ctx, Role::Admin)?;
        let listed = state(ctx)?.service.secrets().list().await.map_err(gql)?;
        Ok(listed.into_iter().map(|s| SecretView::new(s.name, s.created_at, s.updated_at)).collect())
    }

    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<NodeView>> {
        let nodes = state(ctx)?.service.nodes().await.map_err(gql)?;
        Ok(nodes.into_iter().map(NodeView::from).collect())
    }

    async fn plugins(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PluginView>> {
        Ok(state(ctx)?.plugin_views())
    }
}

/// A run's failure report.
#[derive(async_graphql::SimpleObject)]
pub struct ExecutionReport {
    pub markdown: String,
    pub data: async_graphql::Json<serde_json::Value>,
}
