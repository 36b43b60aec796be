//! HTTP ingress (axum): the CloudEvents HTTP binding (binary, structured and batched modes)
//! onto a bus, answering 202 only once the append is durable; synchronous invocation for
//! HTTP-source Triggers; tail and dead-letter endpoints for the CLI; health and metrics.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde::Deserialize;
use serde_json::json;
use sluice_event::{CloudEvent, EventError, Extension};

use sluice_bus::{BusError, DEFAULT_BUS, Publish, Published, SharedBus, TriggerId};
use sluice_delivery::{
    SharedInvoker,
    metrics::Metrics,
    replay::{ReplayError, ReplayRequest, Replays},
};

/// Set when the process begins to stop. Open long-polls (`sluice tail`) then answer at once
/// with what they have, so a graceful shutdown is not held up for their full wait (a pod on
/// SIGTERM otherwise took up to 30 s to exit).
static STOPPING: AtomicBool = AtomicBool::new(false);
static STOP: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Ends every long-poll now and from now on; call when shutdown begins.
pub fn begin_shutdown() {
    STOPPING.store(true, Ordering::Release);
    STOP.notify_waiters();
}

/// An HTTP-source trigger's route: the Function answers the request itself.
#[derive(Clone)]
pub struct HttpRoute {
    pub trigger: TriggerId,
    pub function: String,
    pub methods: Vec<String>,
    pub invoker: SharedInvoker,
    pub reply_bus: String,
    /// What the handler gets instead of the request's body (`spec.transform`).
    pub transform: Option<Arc<sluice_transform::Transform>>,
    /// The Trigger's `tokenSecret`: callers must present its token.
    pub token: Option<RouteToken>,
}

/// Where an HTTP Trigger's token is: read at every request, so a rotated Secret takes effect
/// at once (a mounted Secret volume is updated in place by the kubelet).
#[derive(Clone)]
pub struct RouteToken {
    pub namespace: String,
    pub secret: String,
    pub store: crate::secrets::SharedSecrets,
}

/// Where HTTP-source Triggers are looked up: `sluice dev`'s local system, or a `sluice
/// worker`'s own Function.
pub trait HttpRoutes: Send + Sync {
    /// The route serving `/fn/{namespace}{path}`.
    fn http_route(&self, namespace: &str, path: &str) -> Option<HttpRoute>;
}

/// No HTTP-source Triggers here (`sluice ingress`: they are served by their Function's
/// workers).
pub struct NoHttpRoutes;

impl HttpRoutes for NoHttpRoutes {
    fn http_route(&self, _: &str, _: &str) -> Option<HttpRoute> {
        None
    }
}

/// Ingress settings.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// Required as `Authorization: Bearer <token>` on every write and admin call when set.
    pub token: Option<String>,
    /// Largest single event (bytes, as on the wire).
    pub max_event_bytes: usize,
    /// Largest request body (a batch may hold several events).
    pub max_body_bytes: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            token: None,
            max_event_bytes: 256 * 1024,
            max_body_bytes: 4 << 20,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub bus: SharedBus,
    pub metrics: Metrics,
    pub http: Arc<dyn HttpRoutes>,
    pub cfg: Arc<IngressConfig>,
    /// False until the first manifests are applied.
    pub ready: Arc<AtomicBool>,
    /// Archive replays, where this process runs them (`sluice dev`, `sluice ingress`).
    pub replays: Option<Arc<Replays>>,
    /// What the process runs, for the console.
    pub catalog: Arc<crate::console::SharedCatalog>,
    /// The EventSchemas events are checked against before they are stored.
    pub schemas: Arc<sluice_schema::Shared>,
}

/// What a process serves on its port. Only the front door (`sluice dev`, `sluice ingress`)
/// takes events and admin calls; a worker serves its Function's HTTP Triggers and a router
/// nothing but health and metrics, so a port that is not the front door (a worker's Service,
/// a router's metrics Service) cannot publish to a bus, read one, or purge a dead-letter
/// list, token or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Publishing, tails, HTTP Triggers, admin calls (dead letters, depth, replays).
    Full,
    /// HTTP Triggers (`/fn/…`).
    Worker,
    /// `/healthz`, `/readyz`, `/metrics` only.
    Health,
}

/// The whole HTTP surface; tests call `app(state).oneshot(request)` without a socket.
pub fn app(state: AppState) -> Router {
    app_for(state, Surface::Full)
}

/// The routes of `surface`, every one but health and metrics behind the token when one is set.
pub fn app_for(state: AppState, surface: Surface) -> Router {
    let limit = state.cfg.max_body_bytes;
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if surface == Surface::Full {
        router = router
            .merge(front_door().route_layer(middleware::from_fn_with_state(state.clone(), auth)))
            // The page holds no data; what it fetches is behind the token.
            .route("/console", get(crate::console::page));
    }
    if surface != Surface::Health {
        router = router.merge(http_triggers());
    }
    router.layer(DefaultBodyLimit::max(limit)).with_state(state)
}

/// HTTP Triggers check their callers themselves (`invoke_http`): a Trigger with a
/// `tokenSecret` takes its own token besides the process's.
fn http_triggers() -> Router<AppState> {
    Router::new().route("/fn/{namespace}/{*path}", any(invoke_http))
}

fn front_door() -> Router<AppState> {
    Router::new()
        .route("/", post(publish_default))
        .route("/console/api/overview", get(crate::console::overview))
        .route("/buses/{bus}/events", post(publish_bus).get(tail))
        .route(
            "/admin/triggers/{namespace}/{name}/dlq",
            get(dlq_list).delete(dlq_purge),
        )
        .route(
            "/admin/triggers/{namespace}/{name}/dlq/redrive",
            post(dlq_redrive),
        )
        .route("/admin/triggers/{namespace}/{name}/depth", get(depth))
        .route("/admin/events/{id}/trace", get(event_trace))
        .route("/admin/steps", get(recent_steps))
        .route("/admin/buses/{bus}/replays", post(replay_start))
        .route("/admin/replays", get(replay_list))
        .route(
            "/admin/replays/{name}",
            get(replay_get).delete(replay_cancel),
        )
}

const NEED_TOKEN: &str = "a valid `Authorization: Bearer <token>` header is required";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether the request carries the process's token: None when the process has none.
pub(crate) fn has_process_token(s: &AppState, headers: &HeaderMap) -> Option<bool> {
    s.cfg
        .token
        .as_ref()
        .map(|token| bearer(headers).is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())))
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if has_process_token(&s, req.headers()) == Some(false) {
        return problem(StatusCode::UNAUTHORIZED, NEED_TOKEN);
    }
    next.run(req).await
}

/// Who may call an HTTP Trigger: with a `tokenSecret`, whoever presents its token or the
/// process's; without, whoever may call the process (its token when it has one).
async fn admit_http(s: &AppState, route: &HttpRoute, headers: &HeaderMap) -> Result<(), Response> {
    let process = has_process_token(s, headers);
    if process == Some(true) {
        return Ok(());
    }
    let Some(t) = &route.token else {
        return match process {
            Some(false) => Err(problem(StatusCode::UNAUTHORIZED, NEED_TOKEN)),
            _ => Ok(()),
        };
    };
    let want = match t
        .store
        .get(&t.namespace, &t.secret)
        .await
        .and_then(|v| sluice_api::credentials::http_token(&t.secret, &v))
    {
        Ok(want) => want,
        Err(e) => {
            // Closed, not open, while the token cannot be read; the reason goes to the log,
            // not to an unauthenticated caller.
            tracing::error!(trigger = %route.trigger, field = "spec.source.http.tokenSecret", error = %e, "HTTP Trigger refused: its token is unavailable");
            return Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("trigger {} cannot check tokens right now", route.trigger),
            ));
        }
    };
    if bearer(headers).is_some_and(|g| same_secret(g.as_bytes(), want.as_bytes())) {
        Ok(())
    } else {
        Err(problem(StatusCode::UNAUTHORIZED, NEED_TOKEN))
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    if !s.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "loading manifests").into_response();
    }
    match s.bus.health() {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("bus: {why}")).into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut r = s.metrics.encode().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refused request: status plus the reason, answered as `{"error": reason}`.
#[derive(Debug)]
pub struct Rejection(pub StatusCode, pub String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        problem(self.0, self.1)
    }
}

fn bad_event(e: EventError) -> Rejection {
    Rejection(StatusCode::BAD_REQUEST, format!("invalid CloudEvent: {e}"))
}

async fn publish_default(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    publish(s, DEFAULT_BUS.to_owned(), headers, body).await
}

async fn publish_bus(
    State(s): State<AppState>,
    Path(bus): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    publish(s, bus, headers, body).await
}

/// Reads the events of a request in whichever CloudEvents HTTP mode it uses.
pub fn parse_events(
    headers: &HeaderMap,
    body: &[u8],
    max_event: usize,
) -> Result<Vec<CloudEvent>, Rejection> {
    parse_events_keeping_data(headers, body, max_event).map(|(events, _)| events)
}

/// [`parse_events`], with each event's JSON `data` as the parser built it (none in binary
/// mode, where the body is the data): an EventSchema check then reads it without a second
/// parse.
pub fn parse_events_keeping_data(
    headers: &HeaderMap,
    body: &[u8],
    max_event: usize,
) -> Result<(Vec<CloudEvent>, Vec<Option<serde_json::Value>>), Rejection> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (events, data): (Vec<CloudEvent>, Vec<Option<serde_json::Value>>) = if ct
        .starts_with("application/cloudevents-batch+json")
    {
        sluice_event::from_batch_json_keeping_data(body)
            .map_err(bad_event)?
            .into_iter()
            .unzip()
    } else if ct.starts_with("application/cloudevents+json") {
        let (e, d) = CloudEvent::from_json_keeping_data(body).map_err(bad_event)?;
        (vec![e], vec![d])
    } else if headers.contains_key("ce-specversion") {
        let hs = headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        (
            vec![sluice_event::from_binary(hs, body).map_err(bad_event)?],
            vec![None],
        )
    } else {
        return Err(Rejection(
            StatusCode::BAD_REQUEST,
            "not a CloudEvent: send ce-* headers (binary mode) or Content-Type application/cloudevents+json (structured) or application/cloudevents-batch+json (batch)".into(),
        ));
    };
    for (i, e) in events.iter().enumerate() {
        if let Some(name) = e
            .extensions
            .keys()
            .find(|k| sluice_event::is_reserved_extension(k))
        {
            let msg = format!(
                "event {i} ({}): attribute {name} is reserved: Sluice sets the sluice* attributes \
                 itself (hops, attempts, dead-letter reasons, replays); remove it",
                e.id
            );
            return Err(Rejection(StatusCode::BAD_REQUEST, msg));
        }
        if let Err(err) = e.check_bounds() {
            let msg = format!(
                "event {i} ({}): {err}",
                e.id.chars().take(64).collect::<String>()
            );
            return Err(Rejection(StatusCode::BAD_REQUEST, msg));
        }
        if e.size() > max_event {
            let msg = format!(
                "event {i} ({}) is {} bytes, over the {max_event}-byte limit",
                e.id,
                e.size()
            );
            return Err(Rejection(StatusCode::PAYLOAD_TOO_LARGE, msg));
        }
    }
    Ok((events, data))
}

/// A trace context for events that arrive without one, so every delivery can be followed.
fn ensure_traceparent(e: &mut CloudEvent, headers: &HeaderMap) {
    if e.extensions.contains_key("traceparent") {
        return;
    }
    let tp = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        // A malformed header is not carried into the bus: a fresh trace starts instead.
        .filter(|v| sluice_event::check_traceparent(v).is_ok())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // The thread's RNG, not a syscall per event as `Uuid::new_v4` makes. All-zero ids
            // are invalid in W3C trace context, hence the `max(1)`.
            let (trace, span) = (rand::random::<u128>().max(1), rand::random::<u64>().max(1));
            format!("00-{trace:032x}-{span:016x}-01")
        });
    e.extensions
        .insert("traceparent".into(), Extension::String(tp));
}

async fn publish(s: AppState, bus: String, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = check_bus_name(&bus) {
        return e.into_response();
    }
    let (mut events, data) = match parse_events_keeping_data(&headers, &body, s.cfg.max_event_bytes)
    {
        Ok(parsed) => parsed,
        Err(r) => return r.into_response(),
    };
    for e in &mut events {
        ensure_traceparent(e, &headers);
    }
    if let Err(r) = check_schemas(&s.schemas.get(), &mut events, &data) {
        s.metrics.refused(&bus, events.len() as u64);
        return r.into_response();
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let items = events
        .into_iter()
        .map(|event| Publish {
            bus: bus.clone(),
            event,
            dedupe: true,
        })
        .collect();
    // Each event's outcome; `None`: not stored (a publish that failed part way).
    let (stored, failure) = match s.bus.publish(items).await {
        Ok(out) => (out.into_iter().map(Some).collect::<Vec<_>>(), None),
        Err(BusError::Partial { stored, reason }) => (stored, Some(reason)),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, format!("bus {bus}: {e}")),
    };
    let accepted = stored
        .iter()
        .filter(|p| matches!(p, Some(Published::Appended(_))))
        .count();
    let duplicates = stored
        .iter()
        .filter(|p| matches!(p, Some(Published::Duplicate)))
        .count();
    s.metrics.events_in(&bus, accepted as u64);
    s.metrics.duplicates(&bus, duplicates as u64);
    let results: Vec<_> = ids
        .iter()
        .zip(&stored)
        .map(|(id, p)| match p {
            Some(Published::Appended(seq)) => json!({"id": id, "position": seq}),
            Some(Published::Duplicate) => json!({"id": id, "duplicate": true}),
            None => json!({"id": id, "stored": false}),
        })
        .collect();
    let mut answer = json!({ "bus": bus, "accepted": accepted, "events": results });
    let status = match failure {
        None => StatusCode::ACCEPTED,
        Some(reason) => {
            // Say which events are stored: a retry of the whole batch is deduplicated, but a
            // producer that cannot retry must know what it may drop.
            answer["error"] = json!(format!(
                "bus {bus}: {} of {} events stored: {reason}; retry the batch \
                 (stored events are deduplicated)",
                accepted + duplicates,
                stored.len()
            ));
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (status, Json(answer)).into_response()
}

/// Checks every event of a request against its EventSchema, stamping the version each passed.
/// One invalid event refuses the whole request (nothing stored, as with any invalid event of
/// a batch); the 400 names the event, the schema version and each failing path and rule.
pub fn check_schemas(
    registry: &sluice_schema::Registry,
    events: &mut [CloudEvent],
    data: &[Option<serde_json::Value>],
) -> Result<(), SchemaRefusal> {
    if registry.is_empty() {
        return Ok(());
    }
    for (index, e) in events.iter_mut().enumerate() {
        let parsed = data.get(index).and_then(Option::as_ref);
        if let Err(invalid) = registry.check_parsed(e, parsed) {
            let id = e.id.chars().take(64).collect();
            return Err(SchemaRefusal { index, id, invalid });
        }
    }
    Ok(())
}

/// The event of a request its EventSchema refuses; answered 400.
#[derive(Debug)]
pub struct SchemaRefusal {
    pub index: usize,
    pub id: String,
    pub invalid: sluice_schema::Invalid,
}

impl IntoResponse for SchemaRefusal {
    fn into_response(self) -> Response {
        let failures: Vec<_> = self
            .invalid
            .failures
            .iter()
            .map(|f| json!({"path": f.path, "rule": f.rule, "message": f.message}))
            .collect();
        let body = json!({
            "error": format!("event {} ({}): {}", self.index, self.id, self.invalid),
            "index": self.index,
            "schema": self.invalid.schema,
            "version": self.invalid.version,
            "failures": failures,
        });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// A path parameter that must be a DNS label, as the manifest's names are: they become NATS
/// subjects, consumer names and metric labels, where `.`, `*`, `>` or spaces would reach
/// other objects. The 400 names `field`.
fn dns_label(field: &str, value: &str) -> Result<(), Rejection> {
    sluice_api::validate::dns_label(field, value)
        .map_err(|e| Rejection(StatusCode::BAD_REQUEST, e.to_string()))
}

/// `namespace/name` of a Trigger from a path.
fn trigger_id(ns: &str, name: &str) -> Result<String, Rejection> {
    dns_label("namespace", ns)?;
    dns_label("name", name)?;
    Ok(format!("{ns}/{name}"))
}

/// Bus names follow the same rule as in manifests (`spec.source.bus`).
fn check_bus_name(bus: &str) -> Result<(), Rejection> {
    dns_label("bus", bus)
}

#[derive(Deserialize)]
struct TailQuery {
    /// Return events after this position; omitted: start at the head (only new events).
    after: Option<u64>,
    /// Start at the first event accepted at or after this RFC 3339 time (instead of `after`).
    since: Option<String>,
    /// Long-poll up to this many milliseconds for new events.
    wait_ms: Option<u64>,
    limit: Option<usize>,
    /// Only events matching this event pattern (JSON), as a Trigger would match them.
    pattern: Option<String>,
}

/// `GET /buses/{bus}/events?after=N`: events after position N as JSON lines, long-polling
/// when there are none yet. `x-sluice-next` says where to continue.
async fn tail(
    State(s): State<AppState>,
    Path(bus): Path<String>,
    Query(q): Query<TailQuery>,
) -> Response {
    if let Err(e) = check_bus_name(&bus) {
        return e.into_response();
    }
    let pattern = match q.pattern.as_deref().map(parse_pattern).transpose() {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("pattern: {e}")),
    };
    let since = match q.since.as_deref().map(parse_time).transpose() {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("since: {e}")),
    };
    let after = match (q.after, since) {
        (Some(a), _) => a,
        (None, Some(t)) => match sluice_bus::archive::seek(s.bus.as_ref(), &bus, t).await {
            Ok(a) => a,
            Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        (None, None) => match s.bus.head(&bus).await {
            Ok(h) => h,
            Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
    };
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000));
    loop {
        let events = match s.bus.read(&bus, after, limit).await {
            Ok(e) => e,
            Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let now = tokio::time::Instant::now();
        let stopping = STOPPING.load(Ordering::Acquire);
        if !events.is_empty() || now >= deadline || stopping {
            let next = events.last().map_or(after, |e| e.0);
            let mut body = Vec::new();
            for (_, _, e) in &events {
                let json = e.to_json();
                if let Some(p) = &pattern {
                    let value: serde_json::Value =
                        serde_json::from_slice(&json).unwrap_or(serde_json::Value::Null);
                    if !sluice_pattern::matches(p, &value) {
                        continue;
                    }
                }
                body.extend_from_slice(&json);
                body.push(b'\n');
            }
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            if let Ok(v) = HeaderValue::from_str(&next.to_string()) {
                r.headers_mut().insert("x-sluice-next", v);
            }
            return r;
        }
        // Bounded so a wake-up missed between the read and the wait costs little.
        let wait = (deadline - now).min(Duration::from_millis(250));
        let stop = STOP.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        if STOPPING.load(Ordering::Acquire) {
            continue;
        }
        tokio::select! {
            _ = s.bus.wait_published(&bus, wait) => {}
            _ = stop => {}
        }
    }
}

/// A tail's `pattern`: JSON text of an event pattern, checked as a Trigger's is.
fn parse_pattern(text: &str) -> Result<sluice_pattern::Pattern, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    sluice_pattern::Pattern::parse(&json).map_err(|e| e.to_string())
}

/// Invokes an HTTP-source Trigger's Function synchronously; the first reply event is the
/// response (its data as the body, its attributes as `ce-` headers, as Knative does).
async fn invoke_http(
    State(s): State<AppState>,
    Path((namespace, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{path}");
    let Some(route) = s.http.http_route(&namespace, &path) else {
        // Which paths exist is not told to a caller without the process's token.
        if has_process_token(&s, &headers) == Some(false) {
            return problem(StatusCode::UNAUTHORIZED, NEED_TOKEN);
        }
        return problem(
            StatusCode::NOT_FOUND,
            format!("no HTTP trigger serves /fn/{namespace}{path}"),
        );
    };
    if let Err(r) = admit_http(&s, &route, &headers).await {
        return r;
    }
    if !route.methods.iter().any(|m| m == method.as_str()) {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "trigger {} accepts {}",
                route.trigger,
                route.methods.join(", ")
            ),
        );
    }
    let mut event = if headers.contains_key("ce-specversion")
        || headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|c| c.as_bytes().starts_with(b"application/cloudevents"))
    {
        match parse_events(&headers, &body, s.cfg.max_event_bytes) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            Ok(_) => return problem(StatusCode::BAD_REQUEST, "send one event, not a batch"),
            Err(r) => return r.into_response(),
        }
    } else {
        let mut e = CloudEvent::new(
            uuid::Uuid::new_v4().to_string(),
            format!("sluice://{namespace}/http{path}"),
            "dev.sluice.http.request",
        );
        e.subject = Some(path.clone());
        e.datacontenttype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        e.extensions
            .insert("httpmethod".into(), Extension::String(method.to_string()));
        if !body.is_empty() {
            e.data = Some(body.to_vec());
        }
        e
    };
    ensure_traceparent(&mut event, &headers);
    if let Some(t) = &route.transform {
        event = match sluice_delivery::transformed(t, &event, &route.trigger) {
            Ok(e) => e,
            Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e.message),
        };
    }
    let started = std::time::Instant::now();
    let result = route.invoker.invoke(&event).await;
    s.metrics
        .observe_duration(&route.function, started.elapsed());
    match result {
        Ok(replies) => {
            s.metrics.delivered(&route.trigger);
            let Some(first) = replies.first() else {
                return StatusCode::NO_CONTENT.into_response();
            };
            let mut r = (StatusCode::OK, first.data.clone().unwrap_or_default()).into_response();
            for (k, v) in sluice_event::to_binary_headers(first) {
                if let (Ok(k), Ok(v)) = (header::HeaderName::try_from(k), HeaderValue::from_str(&v))
                {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
        Err(e) => {
            let status = match e.reason.as_str() {
                "timeout" => StatusCode::GATEWAY_TIMEOUT,
                _ if !e.retryable => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_GATEWAY,
            };
            problem(
                status,
                format!("function {}: {}", route.function, e.message),
            )
        }
    }
}

/// Most dead letters in one answer of `GET …/dlq`: a trigger with a million of them must not
/// make the server build a million-item response.
const DLQ_PAGE_MAX: usize = 1000;

#[derive(Deserialize)]
struct PageQuery {
    /// Skip this many (oldest first).
    offset: Option<usize>,
    /// At most this many, up to [`DLQ_PAGE_MAX`].
    limit: Option<usize>,
}

/// `GET …/dlq?offset=N&limit=L`: a page of a trigger's dead letters, oldest first; `next` is
/// the offset of the following page while there is one.
async fn dlq_list(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let id = match trigger_id(&ns, &name) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(DLQ_PAGE_MAX).clamp(1, DLQ_PAGE_MAX);
    match s.bus.dead_letters(&id, offset, limit).await {
        Ok(page) => {
            let items: Vec<_> = page
                .items
                .iter()
                .map(|d| d.to_event().to_json_value())
                .collect();
            let end = offset.saturating_add(items.len());
            let next = (end < page.total).then_some(end);
            Json(json!({ "trigger": id, "total": page.total, "next": next, "deadLetters": items }))
                .into_response()
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A trigger's queue depth as the bus reports it (the autoscaling signal).
async fn depth(State(s): State<AppState>, Path((ns, name)): Path<(String, String)>) -> Response {
    let id = match trigger_id(&ns, &name) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match s.bus.depth(&id).await {
        Ok(d) => Json(json!({
            "trigger": id,
            "queued": d.queued,
            "inflight": d.inflight,
            "pending": d.pending(),
        }))
        .into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `sluice trace ID`: the recorded steps of the event with this id.
async fn event_trace(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.bus.traced(&id).await {
        // In the order they happened, not the order they were stored: a worker may record
        // its attempt before the router's record of the routing it started from is stored.
        Ok(mut steps) => {
            steps.sort_by_key(|step| step.at_ms);
            Json(json!({ "id": id, "steps": steps })).into_response()
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct StepsQuery {
    limit: Option<usize>,
}

/// The newest recorded steps (the console's recent deliveries), at most 1000.
async fn recent_steps(State(s): State<AppState>, Query(q): Query<StepsQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match s.bus.recent_steps(limit).await {
        Ok(steps) => Json(json!({ "steps": steps })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn dlq_redrive(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let id = match trigger_id(&ns, &name) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match s.bus.redrive(&id).await {
        Ok(n) => Json(json!({ "redriven": n })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn dlq_purge(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let id = match trigger_id(&ns, &name) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match s.bus.purge(&id).await {
        Ok(n) => Json(json!({ "purged": n })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Compares a presented token with the configured one in time that does not depend on where
/// they differ, so response timing does not reveal a prefix of the token.
fn same_secret(given: &[u8], want: &[u8]) -> bool {
    let diff = given
        .iter()
        .zip(want)
        .fold(given.len() ^ want.len(), |d, (a, b)| d | usize::from(a ^ b));
    diff == 0
}

/// An RFC 3339 time as ms since the epoch.
fn parse_time(t: &str) -> Result<u64, String> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|d| u64::try_from(d.timestamp_millis()).ok())
        .ok_or_else(|| format!("{t:?} is not an RFC 3339 time (e.g. 2026-12-06T10:00:00Z)"))
}

/// `POST /admin/buses/{bus}/replays`: what `sluice replay` sends.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReplayBody {
    name: Option<String>,
    from: String,
    to: Option<String>,
    trigger: Option<String>,
    pattern: Option<serde_json::Value>,
    #[serde(default)]
    dry_run: bool,
}

fn replays(s: &AppState) -> Result<&Arc<Replays>, Rejection> {
    s.replays.as_ref().ok_or_else(|| {
        Rejection(
            StatusCode::NOT_FOUND,
            "replays are run by `sluice dev` and `sluice ingress`, not here".into(),
        )
    })
}

fn replay_problem(e: ReplayError) -> Response {
    let status = match &e {
        ReplayError::Invalid { .. } => StatusCode::BAD_REQUEST,
        ReplayError::Exists(_) => StatusCode::CONFLICT,
        ReplayError::Unknown(_) => StatusCode::NOT_FOUND,
        ReplayError::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    problem(status, format!("replay: {e}"))
}

async fn replay_start(State(s): State<AppState>, Path(bus): Path<String>, body: Bytes) -> Response {
    let replays = match replays(&s) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = check_bus_name(&bus) {
        return e.into_response();
    }
    let b: ReplayBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("replay: {e}")),
    };
    let from_ms = match parse_time(&b.from) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("replay: from: {e}")),
    };
    let to_ms = match b.to.as_deref().map(parse_time).transpose() {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("replay: to: {e}")),
    };
    let req = ReplayRequest {
        name: b.name,
        bus,
        from_ms,
        to_ms,
        trigger: b.trigger,
        pattern: b.pattern,
        dry_run: b.dry_run,
    };
    match replays.start(req).await {
        Ok(st) => (StatusCode::CREATED, Json(st.to_json())).into_response(),
        Err(e) => replay_problem(e),
    }
}

async fn replay_list(State(s): State<AppState>) -> Response {
    match replays(&s) {
        Ok(r) => Json(json!({
            "replays": r.list().iter().map(|st| st.to_json()).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn replay_get(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let replays = match replays(&s) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match replays.get(&name) {
        Some(st) => Json(st.to_json()).into_response(),
        None => replay_problem(ReplayError::Unknown(name)),
    }
}

async fn replay_cancel(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let replays = match replays(&s) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match replays.cancel(&name).await {
        Ok(st) => Json(st.to_json()).into_response(),
        Err(e) => replay_problem(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn trigger_ids_in_paths_are_dns_labels() {
        assert_eq!(
            trigger_id("shop", "paid-orders").unwrap(),
            "shop/paid-orders"
        );
        for (ns, name, field) in [
            ("shop", "a.b", "name"),
            ("shop", "*", "name"),
            ("sh op", "t", "namespace"),
            ("shop", ">", "name"),
            ("..", "t", "namespace"),
        ] {
            let Rejection(status, msg) = trigger_id(ns, name).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(msg.starts_with(field), "{ns}/{name}: {msg}");
        }
    }

    /// Only the front door takes events and admin calls: a worker's port serves its HTTP
    /// Triggers (behind the token when set), a router's health and metrics, whatever is sent.
    #[tokio::test]
    async fn each_process_serves_only_its_surface() {
        use sluice_bus::embedded::{EmbeddedBus, EmbeddedConfig};
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let bus: SharedBus = Arc::new(EmbeddedBus::open(EmbeddedConfig::new(dir.path())).unwrap());
        let state = |token: Option<&str>| AppState {
            bus: bus.clone(),
            metrics: Metrics::new(),
            http: Arc::new(NoHttpRoutes),
            cfg: Arc::new(IngressConfig {
                token: token.map(str::to_owned),
                ..IngressConfig::default()
            }),
            ready: Arc::new(AtomicBool::new(true)),
            replays: None,
            catalog: Default::default(),
            schemas: Default::default(),
        };
        let event = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;
        let requests: [(&str, &str); 7] = [
            ("POST", "/buses/default/events"),
            ("POST", "/"),
            ("GET", "/buses/default/events?after=0"),
            ("DELETE", "/admin/triggers/shop/t/dlq"),
            ("GET", "/admin/triggers/shop/t/depth"),
            ("POST", "/fn/shop/hook"),
            ("GET", "/readyz"),
        ];
        let status = |surface: Surface, token: Option<&'static str>, i: usize| {
            let (method, uri) = requests[i];
            let app = app_for(state(token), surface);
            async move {
                let mut req = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("content-type", "application/cloudevents+json");
                if let Some(t) = token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                let req = req.body(axum::body::Body::from(&event[..])).unwrap();
                app.oneshot(req).await.unwrap().status().as_u16()
            }
        };
        // (full, worker, health) without a token.
        let want = [
            (202, 404, 404),
            (202, 404, 404),
            (200, 404, 404),
            (200, 404, 404),
            (200, 404, 404),
            (404, 404, 404), // no such HTTP Trigger: but served
            (200, 200, 200),
        ];
        for (i, w) in want.iter().enumerate() {
            let got = (
                status(Surface::Full, None, i).await,
                status(Surface::Worker, None, i).await,
                status(Surface::Health, None, i).await,
            );
            assert_eq!(got, *w, "{:?}", requests[i]);
        }
        // A worker with a token: its HTTP Triggers need it; the rest is still not there.
        let worker = app_for(state(Some("s3cret")), Surface::Worker);
        let fn_call = |auth: Option<&str>| {
            let mut req = Request::builder().method("POST").uri("/fn/shop/hook");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            worker
                .clone()
                .oneshot(req.body(axum::body::Body::empty()).unwrap())
        };
        assert_eq!(fn_call(None).await.unwrap().status(), 401);
        assert_eq!(fn_call(Some("Bearer s3cret")).await.unwrap().status(), 404);
        assert_eq!(status(Surface::Worker, Some("s3cret"), 0).await, 404);
    }

    #[tokio::test]
    async fn dead_letters_are_listed_in_bounded_pages() {
        use sluice_bus::{
            DeadLetter,
            embedded::{EmbeddedBus, EmbeddedConfig},
        };
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let bus: SharedBus = Arc::new(EmbeddedBus::open(EmbeddedConfig::new(dir.path())).unwrap());
        for seq in 1..=3 {
            let dead = DeadLetter {
                trigger: "shop/t".into(),
                seq,
                reason: "fatal".into(),
                attempts: 1,
                last_error: "no".into(),
                at_ms: 0,
                event: CloudEvent::new(format!("e{seq}"), "/s", "t"),
            };
            bus.dead_letter(dead, None, None).await.unwrap();
        }
        let state = AppState {
            bus,
            metrics: Metrics::new(),
            http: Arc::new(NoHttpRoutes),
            cfg: Arc::new(IngressConfig::default()),
            ready: Arc::new(AtomicBool::new(true)),
            replays: None,
            catalog: Default::default(),
            schemas: Default::default(),
        };
        let page = |q: &str| {
            let req = Request::builder()
                .uri(format!("/admin/triggers/shop/t/dlq{q}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let app = app(state.clone());
            async move {
                let resp = app.oneshot(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                serde_json::from_slice::<serde_json::Value>(&body).unwrap()
            }
        };
        let first = page("?limit=2").await;
        let ids: Vec<&str> = first["deadLetters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            (ids, &first["total"], &first["next"]),
            (vec!["e1", "e2"], &json!(3), &json!(2))
        );
        let last = page("?offset=2&limit=2").await;
        assert_eq!(last["deadLetters"][0]["id"], "e3");
        assert_eq!(last["next"], serde_json::Value::Null);
        let all = page("?limit=1000000").await;
        assert_eq!(
            all["deadLetters"].as_array().unwrap().len(),
            3,
            "the cap only bounds"
        );
    }

    #[test]
    fn deeply_nested_data_is_a_400_not_a_stack_overflow() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let body =
            format!(r#"{{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{deep}}}"#);
        for ct in [
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
        ] {
            let body = if ct.contains("batch") {
                format!("[{body}]")
            } else {
                body.clone()
            };
            let Rejection(status, msg) =
                parse_events(&headers(ct), body.as_bytes(), 1 << 20).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{ct}: {msg}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        for other in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"s3creT"] {
            assert!(!same_secret(other, b"s3cret"), "{other:?}");
        }
    }

    #[test]
    fn producers_may_not_send_the_runtimes_attributes() {
        let structured = headers("application/cloudevents+json");
        let ok = br#"{"specversion":"1.0","id":"a","source":"/s","type":"t","region":"eu"}"#;
        assert_eq!(parse_events(&structured, ok, 1 << 20).unwrap().len(), 1);
        for name in [
            "sluicehops",
            "sluicereason",
            "sluicereplay",
            "sluiceattempts",
        ] {
            let forged = format!(
                r#"[{{"specversion":"1.0","id":"a","source":"/s","type":"t"}},{{"specversion":"1.0","id":"b","source":"/s","type":"t","{name}":"1"}}]"#
            );
            let batch = headers("application/cloudevents-batch+json");
            let Rejection(status, msg) =
                parse_events(&batch, forged.as_bytes(), 1 << 20).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                msg.contains(&format!("event 1 (b): attribute {name} is reserved")),
                "{msg}"
            );
        }
        let mut binary = headers("application/json");
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "c"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-sluicehops", "16"),
        ] {
            binary.insert(
                axum::http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        let Rejection(_, msg) = parse_events(&binary, b"{}", 1 << 20).unwrap_err();
        assert!(msg.contains("sluicehops is reserved"), "{msg}");
    }
}
