//! GraphiQL at `/graphql/playground`, served from the binary (no CDN).

use axum::http::header;
use axum::response::IntoResponse as _;

pub(crate) const PLAYGROUND: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ratchet GraphiQL</title>
<link rel="stylesheet" href="/graphql/playground/graphiql.min.css">
</head>
<body style="margin: 0">
<div id="graphiql" style="height: 100vh"></div>
<script src="/graphql/playground/react.production.min.js"></script>
<script src="/graphql/playground/react-dom.production.min.js"></script>
<script src="/graphql/playground/graphiql.min.js"></script>
<script>
  // Subscriptions authenticate with the headers set in GraphiQL's header editor.
  const fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    subscriptionUrl: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql',
    wsConnectionParams: () => { try { return JSON.parse(localStorage.getItem('graphiql:headers') || '{}'); } catch (e) { return {}; } },
  });
  // /graphql/playground?docs opens with the documentation explorer showing.
  // (GraphiQL keeps the open pane in its storage, which it reads before its props.)
  if (new URLSearchParams(location.search).has('docs')) {
    try { localStorage.setItem('graphiql:visiblePlugin', 'Documentation Explorer'); } catch (e) {}
  }
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, { fetcher, defaultQuery: '{\n  tasks { name version description }\n}\n' })
  );
</script>
</body>
</html>
"#;

pub(crate) async fn asset(
    axum::extract::Path(file): axum::extract::Path<String>,
) -> axum::response::Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (include_bytes!("../assets/graphiql/graphiql.min.js"), "text/javascript"),
        "graphiql.min.css" => (include_bytes!("../assets/graphiql/graphiql.min.css"), "text/css"),
        "react.production.min.js" => {
            (include_bytes!("../assets/graphiql/react.production.min.js"), "text/javascript")
        }
        "react-dom.production.min.js" => {
            (include_bytes!("../assets/graphiql/react-dom.production.min.js"), "text/javascript")
        }
        _ => {
            return ratchet_server::ApiError::not_found(format!("no playground file {file}")).into_response();
        }
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}
