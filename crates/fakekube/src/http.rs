//! The HTTP front: request parsing, authentication, routing by path (as kube-apiserver's
//! RequestInfoFactory does), authorization, fault injection, the request log, and the verbs.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::api_error::{ApiError, Cause};
use crate::faults::{FaultAction, RequestRecord};
use crate::patch::PatchKind;
use crate::rbac::{Attributes, Identity};
use crate::registry::ResourceType;
use crate::request::{
    error_response, json_response, parse_query, selectors, truthy, value_response, Body, Query,
    ResReq,
};
use crate::state::ServerState;
use crate::store::{DeleteOptions, DeleteOutcome, Propagation};
use crate::{discovery, protobuf, scale, table, watch};

/// What a path addresses.
enum Route {
    Version,
    Api,
    Apis,
    Group(String),
    ResourceList(String, String),
    Health,
    OpenApiV3Root,
    OpenApiV3(String, String),
    Resource(ResReq),
    NotFound,
}

fn route(state: &ServerState, path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["healthz" | "livez" | "readyz", ..] => return Route::Health,
        ["openapi", "v3"] => return Route::OpenApiV3Root,
        ["openapi", "v3", "api", v] => return Route::OpenApiV3(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => return Route::OpenApiV3(g.to_string(), v.to_string()),
        ["api"] => return Route::Api,
        ["apis"] => return Route::Apis,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let types = state.store.types();
    let find = |plural: &str| {
        types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    };
    let req = |rt: ResourceType, ns: Option<&str>, tail: &[&str]| -> Route {
        let (name, sub) = match tail {
            [] => (None, None),
            [n] => (Some(n.to_string()), None),
            [n, s] => (Some(n.to_string()), Some(s.to_string())),
            _ => return Route::NotFound,
        };
        if let Some(s) = &sub {
            if !rt.has_subresource(s) {
                return Route::NotFound;
            }
        }
        if name.is_some() && !rt.has_item_path() {
            return Route::NotFound;
        }
        Route::Resource(ResReq {
            rt,
            namespace: ns.map(String::from),
            name,
            sub,
        })
    };
    match rest {
        [] => Route::ResourceList(group.to_string(), version.to_string()),
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|t| t.namespaced) => {
            req(find(plural).unwrap(), Some(ns), tail)
        }
        [plural, tail @ ..] => match find(plural) {
            Some(rt) if !rt.namespaced || tail.is_empty() => req(rt, None, tail),
            _ => Route::NotFound,
        },
    }
}

/// The Kubernetes verb of a request (`list`, `watch`, `patch`, ...), or the lowercased method
/// for non-resource paths.
fn verb_of(state: &ServerState, method: &str, path: &str, query: &Query) -> String {
    match route(state, path) {
        Route::Resource(r) => k8s_verb(method, r.name.is_some(), query)
            .unwrap_or("")
            .to_string(),
        _ => method.to_lowercase(),
    }
}

fn k8s_verb(method: &str, named: bool, query: &Query) -> Option<&'static str> {
    Some(match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if truthy(query, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    })
}

fn not_found_path() -> ApiError {
    let mut e = ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    e.details = Some(json!({}));
    e
}

fn method_not_allowed(method: &str) -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
    )
}

/// Serve one request.
/// `client`: who the connection's verified client certificate names, if any
/// ([`crate::tls::certificate_identity`]). With a clock offset set
/// (`FakeCluster::set_clock_offset`), the response's `Date` is moved by it (hyper writes the
/// real time otherwise).
pub(crate) async fn handle(
    state: Arc<ServerState>,
    req: Request<Incoming>,
    kill: Arc<Notify>,
    client: Option<Identity>,
) -> Response<Body> {
    let offset = state
        .clock_offset_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut resp = handle_request(state, req, kill, client).await;
    if offset != 0 {
        let now = chrono::Utc::now() + chrono::Duration::milliseconds(offset);
        let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(value) = hyper::header::HeaderValue::from_str(&date) {
            resp.headers_mut().insert(hyper::header::DATE, value);
        }
    }
    resp
}

async fn handle_request(
    state: Arc<ServerState>,
    req: Request<Incoming>,
    kill: Arc<Notify>,
    client: Option<Identity>,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let header = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header("accept");
    let content_type = header("content-type");
    let auth = header("authorization");
    let mut record = RequestRecord {
        method: method.clone(),
        verb: method.to_lowercase(),
        path: path.clone(),
        query: raw_query.clone(),
        status: 0,
        latency: Default::default(),
        user: String::new(),
        user_agent: header("user-agent"),
    };
    let query = parse_query(&raw_query);
    record.verb = verb_of(&state, &method, &path, &query);
    for action in state.faults.check(&method, &path, &raw_query) {
        match action {
            FaultAction::Latency(d) => tokio::time::sleep(d).await,
            FaultAction::Fail(e) => {
                record.status = e.code;
                record.latency = start.elapsed();
                state.log.push(record);
                return error_response(&e);
            }
            FaultAction::Drop => {
                record.latency = start.elapsed();
                state.log.push(record);
                kill.notify_one();
                return std::future::pending().await;
            }
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let resp = serve(
        &state,
        &method,
        &path,
        &query,
        &accept,
        &content_type,
        &auth,
        client,
        body,
        &mut record,
    )
    .await;
    let resp = resp.unwrap_or_else(|e| error_response(&e));
    record.status = resp.status().as_u16();
    record.latency = start.elapsed();
    state.log.push(record);
    resp
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    state: &Arc<ServerState>,
    method: &str,
    path: &str,
    query: &Query,
    accept: &str,
    content_type: &str,
    auth: &str,
    client: Option<Identity>,
    body: Bytes,
    record: &mut RequestRecord,
) -> Result<Response<Body>, ApiError> {
    // Authentication: the client certificate (x509 comes before tokens upstream), else a known
    // bearer token, else 401, as with a bad token upstream (forbidden.json).
    let token = auth.strip_prefix("Bearer ").unwrap_or("").trim();
    let who = client
        .or_else(|| state.rbac.authenticate(token))
        .ok_or_else(ApiError::unauthorized)?;
    record.user = who.user.clone();
    let types = state.store.types();
    let aggregated = discovery::wants_aggregated(accept);
    let r = match route(state, path) {
        Route::Version => return Ok(value_response(200, &discovery::version())),
        Route::Health => return Ok(json_response(200, b"ok".to_vec(), "text/plain")),
        Route::Api if aggregated => {
            let v = discovery::aggregated(types, true);
            return Ok(json_response(
                200,
                serde_json::to_vec(&v).unwrap(),
                discovery::AGGREGATED_CONTENT_TYPE,
            ));
        }
        Route::Apis if aggregated => {
            let v = discovery::aggregated(types, false);
            return Ok(json_response(
                200,
                serde_json::to_vec(&v).unwrap(),
                discovery::AGGREGATED_CONTENT_TYPE,
            ));
        }
        Route::Api => {
            return Ok(value_response(
                200,
                &discovery::api_versions(&format!("127.0.0.1:{}", state.port)),
            ))
        }
        Route::Apis => return Ok(value_response(200, &discovery::api_group_list(types))),
        Route::Group(g) => {
            return discovery::api_group(types, &g)
                .map(|v| value_response(200, &v))
                .ok_or_else(not_found_path)
        }
        Route::ResourceList(g, v) => {
            return discovery::api_resource_list(types, &g, &v)
                .map(|v| value_response(200, &v))
                .ok_or_else(not_found_path)
        }
        Route::OpenApiV3Root => return Ok(value_response(200, &discovery::openapi_v3_root(types))),
        Route::OpenApiV3(g, v) => {
            return discovery::openapi_v3_gv(types, &g, &v)
                .map(|v| value_response(200, &v))
                .ok_or_else(not_found_path)
        }
        Route::NotFound => return Err(not_found_path()),
        Route::Resource(r) => r,
    };
    let verb =
        k8s_verb(method, r.name.is_some(), query).ok_or_else(|| method_not_allowed(method))?;
    record.verb = verb.to_string();
    let name = r.name.as_deref().unwrap_or("");
    // For the namespaces resource the namespace *is* the name (RequestInfoFactory).
    let authz_ns = if r.rt.plural == "namespaces" && r.rt.group.is_empty() && !name.is_empty() {
        Some(name)
    } else {
        r.namespace.as_deref()
    };
    let attrs = Attributes {
        verb,
        group: r.rt.group,
        resource: r.rt.plural,
        subresource: r.sub.as_deref(),
        namespace: authz_ns,
        name,
    };
    if !state.rbac.authorize(&state.store, &who, &attrs) {
        return Err(ApiError::forbidden(
            &r.rt,
            name,
            &who.user,
            verb,
            r.sub.as_deref(),
            authz_ns,
        ));
    }
    // Authorization runs before the handler upstream, so an unsupported verb is 405 only for
    // those allowed to try.
    // A namespaced type has no create (or deletecollection) across all namespaces.
    if !r.rt.verbs.contains(&verb)
        || (r.rt.namespaced
            && r.namespace.is_none()
            && matches!(verb, "create" | "deletecollection"))
    {
        return Err(method_not_allowed(method));
    }
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    if r.rt.group == "authentication.k8s.io" && r.rt.plural == "selfsubjectreviews" {
        return self_subject_review(&who, &body, content_type);
    }
    match verb {
        "get" => get(state, &r, accept),
        "list" => list(state, &r, query, accept),
        "watch" => watch::watch(state.clone(), &r, query),
        "create" => create(state, &r, &body, content_type, dry_run),
        "update" => update(state, &r, &body, content_type, dry_run),
        "patch" => patch(state, &r, &body, content_type, query, dry_run),
        "delete" => delete(state, &r, &body, query, dry_run),
        _ => delete_collection(state, &r, &body, query, dry_run),
    }
}

fn get(state: &ServerState, r: &ResReq, accept: &str) -> Result<Response<Body>, ApiError> {
    let name = r.name.as_deref().unwrap_or("");
    let obj = state.store.get(&r.rt, r.namespace.as_deref(), name)?;
    if r.sub.as_deref() == Some("scale") {
        return Ok(value_response(200, &scale::to_scale(&r.rt, &obj)));
    }
    if table::wants_table(accept) {
        let rv = obj["metadata"]["resourceVersion"].clone();
        return Ok(value_response(
            200,
            &table::table(&r.rt, &[obj], json!({"resourceVersion": rv})),
        ));
    }
    Ok(json_response(
        200,
        serde_json::to_vec(&*obj).unwrap(),
        "application/json",
    ))
}

/// The continue token: base64url (no padding) of JSON, like upstream's
/// `{"v":"meta.k8s.io/v1","rv":N,"start":"..."}`; ours carries `namespace/name` of the last item.
fn encode_continue(rv: u64, key: &(String, String)) -> String {
    use base64::Engine;
    let v = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}\u{0}", key.0, key.1)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn decode_continue(token: &str) -> Result<((String, String), u64), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v["start"]
        .as_str()
        .ok_or_else(bad)?
        .trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((
        (ns.to_string(), name.to_string()),
        v["rv"].as_u64().unwrap_or(0),
    ))
}

fn list(
    state: &ServerState,
    r: &ResReq,
    query: &Query,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let (ls, fs) = selectors(r, query)?;
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (key, rv) = decode_continue(c)?;
            if rv < state.store.compacted_revision() {
                // As etcd after a compaction: 410, with a token to go on inconsistently.
                let mut e = ApiError::expired(CONTINUE_EXPIRED);
                e.details = None;
                let mut status = e.to_status();
                let now = state.store.current_resource_version();
                status["metadata"] = json!({"continue": encode_continue(now, &key)});
                return Ok(value_response(410, &status));
            }
            Some(key)
        }
        None => None,
    };
    let (items, rv, next) = state.store.list_selected(
        &r.rt,
        r.namespace.as_deref(),
        &ls,
        &fs,
        after.as_ref(),
        limit,
    );
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(k) = &next {
        meta["continue"] = json!(encode_continue(rv, k));
    }
    if table::wants_table(accept) {
        let objs: Vec<Arc<Value>> = items
            .iter()
            .map(|b| Arc::new(serde_json::from_slice(b).unwrap()))
            .collect();
        return Ok(value_response(200, &table::table(&r.rt, &objs, meta)));
    }
    // The stored objects are already serialized: the list is a concatenation.
    let mut buf = Vec::with_capacity(256 + items.iter().map(|b| b.len() + 1).sum::<usize>());
    buf.extend_from_slice(b"{\"kind\":\"");
    buf.extend_from_slice(r.rt.kind.as_bytes());
    buf.extend_from_slice(b"List\",\"apiVersion\":\"");
    buf.extend_from_slice(r.rt.api_version().as_bytes());
    buf.extend_from_slice(b"\",\"metadata\":");
    serde_json::to_writer(&mut buf, &meta).unwrap();
    buf.extend_from_slice(b",\"items\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(it);
    }
    buf.extend_from_slice(b"]}");
    Ok(json_response(200, buf, "application/json"))
}

/// The object of a create or update. client-go's typed clients (kubectl create
/// configmap|deployment|..., kubectl run) send protobuf: decoded into the JSON the same object
/// would have been sent as, so both take the same path from here.
fn parse_object(rt: &ResourceType, body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if protobuf::is_protobuf(content_type) {
        return protobuf::decode_body(rt, body);
    }
    parse_body(body, content_type)
}

fn parse_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let v: Result<Value, String> = if content_type.contains("yaml") {
        serde_yaml_ng::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    let v = v.map_err(|e| ApiError::bad_request(format!("error decoding body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not an object",
        ));
    }
    Ok(v)
}

/// `POST .../authentication.k8s.io/v1/selfsubjectreviews` (the only verb routed here): as
/// pkg/registry/authentication/selfsubjectreview, nothing is stored; the answer is a new
/// SelfSubjectReview with a creationTimestamp and the caller's user info, 201 Created.
fn self_subject_review(
    who: &crate::rbac::Identity,
    body: &[u8],
    ct: &str,
) -> Result<Response<Body>, ApiError> {
    // Clients built on client-go's typed clientsets (kubectl auth whoami) send protobuf. The
    // body's content does not change the answer, so only the envelope's `k8s\0` prefix is
    // checked (the protobuf serializer's first test); anything else must be a JSON object.
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        if !body.starts_with(b"k8s\0") {
            return Err(ApiError::bad_request(
                "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]",
            ));
        }
        if body.len() == 4 {
            return Err(ApiError::bad_request("empty body"));
        }
    } else {
        parse_body(body, ct)?;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(value_response(
        201,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": now},
            "status": {"userInfo": who.user_info()},
        }),
    ))
}

fn check_namespace(r: &ResReq, obj: &Value) -> Result<(), ApiError> {
    if let (Some(ns), Some(body_ns)) = (
        r.namespace.as_deref(),
        obj["metadata"]["namespace"].as_str(),
    ) {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

fn create(
    state: &ServerState,
    r: &ResReq,
    body: &[u8],
    ct: &str,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    if r.sub.is_some() {
        return Err(method_not_allowed("POST"));
    }
    let mut obj = parse_object(&r.rt, body, ct)?;
    check_namespace(r, &obj)?;
    // PrepareForCreate: clients cannot set status on types with a status subresource.
    if r.rt.has_subresource("status") && r.rt.plural != "namespaces" {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    let created = state
        .store
        .create(&r.rt, r.namespace.as_deref(), obj, dry_run)?;
    Ok(json_response(
        201,
        serde_json::to_vec(&*created).unwrap(),
        "application/json",
    ))
}

fn update(
    state: &ServerState,
    r: &ResReq,
    body: &[u8],
    ct: &str,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    let name = r.name.as_deref().unwrap_or("");
    let ns = r.namespace.as_deref();
    let obj = parse_object(&r.rt, body, ct)?;
    check_namespace(r, &obj)?;
    if r.sub.as_deref() == Some("scale") {
        let cur = state.store.get(&r.rt, ns, name)?;
        let cur_rv = cur["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if let Some(rv) = obj["metadata"]["resourceVersion"]
            .as_str()
            .filter(|v| !v.is_empty())
        {
            if rv != cur_rv {
                return Err(ApiError::conflict_modified(&r.rt, name));
            }
        }
        let updated = state.store.update(
            &r.rt,
            ns,
            name,
            scale::apply_scale(&cur, &obj),
            None,
            dry_run,
        )?;
        return Ok(value_response(200, &scale::to_scale(&r.rt, &updated)));
    }
    let updated = state
        .store
        .update(&r.rt, ns, name, obj, r.sub.as_deref(), dry_run)?;
    Ok(json_response(
        200,
        serde_json::to_vec(&*updated).unwrap(),
        "application/json",
    ))
}

fn patch(
    state: &ServerState,
    r: &ResReq,
    body: &[u8],
    ct: &str,
    query: &Query,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    let name = r.name.as_deref().unwrap_or("");
    let ns = r.namespace.as_deref();
    let kind = PatchKind::from_content_type(ct)?;
    if kind == PatchKind::Apply {
        return apply(state, r, body, query, dry_run);
    }
    // Like GuaranteedUpdate: re-read and retry when someone else wrote in between, unless the
    // patch itself pinned a resourceVersion.
    for _ in 0..8 {
        let cur = state.store.get(&r.rt, ns, name)?;
        let cur_rv = cur["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let is_scale = r.sub.as_deref() == Some("scale");
        let mut view = if is_scale {
            scale::to_scale(&r.rt, &cur)
        } else {
            (*cur).clone()
        };
        crate::patch::apply_patch(kind, &mut view, body)?;
        let pinned = view["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from);
        if let Some(p) = &pinned {
            if !p.is_empty() && *p != cur_rv {
                return Err(ApiError::conflict_modified(&r.rt, name));
            }
        }
        let mut new_obj = if is_scale {
            scale::apply_scale(&cur, &view)
        } else {
            view
        };
        new_obj["metadata"]["resourceVersion"] = json!(cur_rv);
        let sub = if is_scale { None } else { r.sub.as_deref() };
        match state.store.update(&r.rt, ns, name, new_obj, sub, dry_run) {
            Ok(updated) => {
                if is_scale {
                    return Ok(value_response(200, &scale::to_scale(&r.rt, &updated)));
                }
                return Ok(json_response(
                    200,
                    serde_json::to_vec(&*updated).unwrap(),
                    "application/json",
                ));
            }
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict_modified(&r.rt, name))
}

fn apply(
    state: &ServerState,
    r: &ResReq,
    body: &[u8],
    query: &Query,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    let name = r.name.as_deref().unwrap_or("");
    let ns = r.namespace.as_deref();
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        let mut e = ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
        let c = Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: is required for apply patch".into(),
            field: "fieldManager".into(),
        };
        e.details = Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions",
            "causes": [{"reason": c.reason, "message": c.message, "field": c.field}]}));
        return Err(e);
    };
    let force = query.get("force").is_some_and(|f| f == "true");
    let applied: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if applied["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            applied["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    for _ in 0..8 {
        let live = state.store.get(&r.rt, ns, name).ok();
        let mut out = crate::apply::apply(
            live.as_deref(),
            &applied,
            manager,
            force,
            &r.rt.api_version(),
        )?;
        out["metadata"]["name"] = json!(name);
        let res = match &live {
            None => state
                .store
                .create(&r.rt, ns, out, dry_run)
                .map(|o| (201, o)),
            Some(l) => {
                out["metadata"]["resourceVersion"] = l["metadata"]["resourceVersion"].clone();
                state
                    .store
                    .update(&r.rt, ns, name, out, r.sub.as_deref(), dry_run)
                    .map(|o| (200, o))
            }
        };
        match res {
            Ok((code, o)) => {
                return Ok(json_response(
                    code,
                    serde_json::to_vec(&*o).unwrap(),
                    "application/json",
                ))
            }
            Err(e) if e.code == 409 && (e.reason == "Conflict" || e.reason == "AlreadyExists") => {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict_modified(&r.rt, name))
}

/// DeleteOptions from the body (preferred) or the query.
fn delete_options(body: &[u8], query: &Query, dry_run: bool) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.iter().all(|c| c.is_ascii_whitespace()) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let policy = b["propagationPolicy"]
        .as_str()
        .map(String::from)
        .or_else(|| query.get("propagationPolicy").cloned());
    let orphan = b["orphanDependents"]
        .as_bool()
        .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
    let propagation = match (policy.as_deref(), orphan) {
        (Some("Foreground"), _) => Propagation::Foreground,
        (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
        (Some("Background") | None, _) => Propagation::Background,
        (Some(other), _) => {
            return Err(ApiError::invalid_options(format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )))
        }
    };
    let dry = dry_run
        || b["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace = match b.get("gracePeriodSeconds").filter(|v| !v.is_null()) {
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "error decoding DeleteOptions: gracePeriodSeconds: {v} is not an integer"
            ))
        })?),
        None => match query.get("gracePeriodSeconds") {
            Some(q) => Some(q.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {q:?}: invalid syntax"))
            })?),
            None => None,
        },
    };
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        uid: b["preconditions"]["uid"].as_str().map(String::from),
        resource_version: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        propagation,
        dry_run: dry,
    })
}

fn deleted_status(rt: &ResourceType, obj: &Value) -> Value {
    let mut details =
        json!({"name": obj["metadata"]["name"], "kind": rt.plural, "uid": obj["metadata"]["uid"]});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn delete(
    state: &ServerState,
    r: &ResReq,
    body: &[u8],
    query: &Query,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    if r.sub.is_some() {
        return Err(method_not_allowed("DELETE"));
    }
    let name = r.name.as_deref().unwrap_or("");
    let opts = delete_options(body, query, dry_run)?;
    match state
        .store
        .delete(&r.rt, r.namespace.as_deref(), name, &opts)?
    {
        // Types with ReturnDeletedObject answer with the object; others with Status Success.
        DeleteOutcome::Deleted(obj) if !r.rt.returns_deleted_object() => {
            Ok(value_response(200, &deleted_status(&r.rt, &obj)))
        }
        // A Namespace answers as upstream's does while its content is being removed:
        // Terminating, with a deletionTimestamp (here the content is already gone).
        DeleteOutcome::Deleted(obj) if r.rt.plural == "namespaces" && r.rt.group.is_empty() => {
            let mut ns = (*obj).clone();
            ns["status"]["phase"] = json!("Terminating");
            ns["metadata"]["deletionTimestamp"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            Ok(value_response(200, &ns))
        }
        DeleteOutcome::Deleted(obj) | DeleteOutcome::Pending(obj) => Ok(json_response(
            200,
            serde_json::to_vec(&*obj).unwrap(),
            "application/json",
        )),
    }
}

fn delete_collection(
    state: &ServerState,
    r: &ResReq,
    body: &[u8],
    query: &Query,
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    let (ls, fs) = selectors(r, query)?;
    let opts = delete_options(body, query, dry_run)?;
    let (items, _) = state.store.list(&r.rt, r.namespace.as_deref(), &|o| {
        ls.matches_object(o) && fs.matches_object(o)
    });
    let mut deleted = Vec::new();
    for it in items {
        let ns = it["metadata"]["namespace"].as_str();
        let name = it["metadata"]["name"].as_str().unwrap_or("");
        match state.store.delete(&r.rt, ns, name, &opts) {
            Ok(DeleteOutcome::Deleted(o)) | Ok(DeleteOutcome::Pending(o)) => {
                deleted.push((*o).clone())
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = state.store.current_resource_version();
    Ok(value_response(
        200,
        &json!({"kind": format!("{}List", r.rt.kind), "apiVersion": r.rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
    ))
}
