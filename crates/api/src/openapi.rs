//! The OpenAPI 3.0 document, generated from the same types the handlers use
//! (schemars), so the contract cannot drift from the code.

use schemars::gen::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use yunhan_model::{
    ApiError, ApiKey, ApiKeySpec, CreateRequest, Flavor, Host, Image, Instance, Kind,
    PlacementGroup, Project, UpdateRequest, User, Volume,
};
use yunhan_store::objects::Doc;

use crate::crud::ListResponse;
use crate::keys::CreatedApiKey;
use crate::object_storage::s3_keys::CreatedS3Key;
use crate::users::WhoAmI;

mod objects;

struct Builder {
    gen: SchemaGenerator,
    paths: Map<String, Value>,
}

fn error_responses(codes: &[u16]) -> Map<String, Value> {
    let mut m = Map::new();
    for c in codes {
        let desc = match c {
            400 => "invalid request (codes: malformed_json, invalid_request, invalid_field)",
            401 => "missing or invalid token (unauthenticated)",
            403 => "needs the admin role (forbidden) or over quota (quota_exceeded)",
            404 => "no such object in the caller's scope (not_found)",
            409 => "name taken (already_exists) or changed meanwhile (conflict)",
            413 => "body too large (payload_too_large)",
            415 => "body is not JSON (unsupported_media_type)",
            429 => "rate limited (rate_limited); see Retry-After",
            _ => "store unavailable (unavailable)",
        };
        let mut resp = json!({
            "description": desc,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}
        });
        if *c == 429 {
            resp["headers"] = json!({"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}});
        }
        m.insert(c.to_string(), resp);
    }
    m
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn json_response(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true,
           "description": "the object's id, or its name in the caller's project",
           "schema": {"type": "string", "minLength": 1}})
}

fn project_param() -> Value {
    json!({"name": "project", "in": "query", "required": false,
           "description": "admins: the project (id or name) to look in",
           "schema": {"type": "string", "minLength": 1}})
}

impl Builder {
    fn schema<T: JsonSchema>(&mut self) -> Value {
        serde_json::to_value(self.gen.subschema_for::<T>()).unwrap_or(Value::Null)
    }

    fn op(&mut self, path: &str, method: &str, op: Value) {
        let entry = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}));
        entry[method] = op;
    }

    fn kind<K: Kind>(&mut self, create: bool, update: bool) {
        let doc = self.schema::<Doc<K>>();
        let list = self.schema::<ListResponse<Doc<K>>>();
        let p = K::PLURAL;
        let collection = format!("/v1/{p}");
        let item = format!("/v1/{p}/{{id}}");
        let mut responses = error_responses(&[400, 401, 403, 404, 429, 503]);
        responses.insert("200".into(), json_response("one page of objects", list));
        self.op(
            &collection,
            "get",
            json!({
                "operationId": format!("list_{p}").replace('-', "_"),
                "summary": format!("List {p} visible to the caller"),
                "tags": [K::KIND],
                "parameters": [
                    {"name": "limit", "in": "query", "required": false,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                    {"name": "page_token", "in": "query", "required": false,
                     "schema": {"type": "string"}},
                    project_param(),
                ],
                "responses": responses,
            }),
        );
        if create {
            let body = self.schema::<CreateRequest<K::Spec>>();
            let mut responses = error_responses(&[400, 401, 403, 404, 409, 413, 415, 429, 503]);
            let mut created = json_response("created", doc.clone());
            created["links"] = item_links(p, update);
            responses.insert("201".into(), created);
            self.op(
                &collection,
                "post",
                json!({
                    "operationId": format!("create_{p}").replace('-', "_"),
                    "summary": format!("Create a {}", K::KIND),
                    "tags": [K::KIND],
                    "requestBody": json_body(body),
                    "responses": responses,
                }),
            );
        }
        let mut responses = error_responses(&[400, 401, 403, 404, 429, 503]);
        responses.insert("200".into(), json_response("the object", doc.clone()));
        self.op(
            &item,
            "get",
            json!({
                "operationId": format!("get_{p}").replace('-', "_"),
                "summary": format!("Show a {}", K::KIND),
                "tags": [K::KIND],
                "parameters": [id_param(), project_param()],
                "responses": responses,
            }),
        );
        if update {
            let body = self.schema::<UpdateRequest<K::Spec>>();
            let mut responses = error_responses(&[400, 401, 403, 404, 409, 413, 415, 429, 503]);
            responses.insert(
                "200".into(),
                json_response("the updated object", doc.clone()),
            );
            self.op(&item, "put", json!({
                "operationId": format!("update_{p}").replace('-', "_"),
                "summary": format!("Replace a {}'s spec (compare-and-swap when `revision` is given)", K::KIND),
                "tags": [K::KIND],
                "parameters": [id_param(), project_param()],
                "requestBody": json_body(body),
                "responses": responses,
            }));
        }
        let mut responses = error_responses(&[400, 401, 403, 404, 409, 429, 503]);
        responses.insert("204".into(), json!({"description": "deleted"}));
        responses.insert("202".into(), json_response("deletion in progress", doc));
        self.op(
            &item,
            "delete",
            json!({
                "operationId": format!("delete_{p}").replace('-', "_"),
                "summary": format!("Delete a {}", K::KIND),
                "tags": [K::KIND],
                "parameters": [id_param(), project_param()],
                "responses": responses,
            }),
        );
    }
}

/// Links from a created object to the operations on it (`id` from the response),
/// so clients and stateful fuzzers (schemathesis) can walk create → get/update/delete.
fn item_links(plural: &str, update: bool) -> Value {
    let op = |verb: &str| format!("{verb}_{plural}").replace('-', "_");
    let id = json!({"id": "$response.body#/metadata/id"});
    let mut links = Map::new();
    let mut verbs = vec![("Get", "get"), ("Delete", "delete")];
    if update {
        verbs.push(("Update", "update"));
    }
    for (name, verb) in verbs {
        links.insert(
            name.into(),
            json!({"operationId": op(verb), "parameters": id}),
        );
    }
    Value::Object(links)
}

/// `POST /v1/<plural>` of a key whose secret the response shows once.
fn key_create_op<S: JsonSchema, C: JsonSchema>(
    b: &mut Builder,
    plural: &str,
    tag: &str,
    what: &str,
) {
    let body = b.schema::<CreateRequest<S>>();
    let created = b.schema::<C>();
    let mut responses = error_responses(&[400, 401, 403, 409, 413, 415, 429, 503]);
    responses.insert(
        "201".into(),
        json_response("the key and its secret (shown once)", created),
    );
    b.op(
        &format!("/v1/{plural}"),
        "post",
        json!({
            "operationId": format!("create_{plural}").replace('-', "_"),
            "summary": format!("Create {what}, shown only this once"),
            "tags": [tag],
            "requestBody": json_body(body),
            "responses": responses,
        }),
    );
}

/// `DELETE /v1/buckets/{id}` takes `force` (the objects go too).
fn force_param(b: &mut Builder) {
    let force = json!({"name": "force", "in": "query", "required": false, "schema": {"type": "boolean", "default": false}});
    if let Some(Value::Array(params)) = b
        .paths
        .get_mut("/v1/buckets/{id}")
        .and_then(|p| p.pointer_mut("/delete/parameters"))
    {
        params.push(force);
    }
}

/// The whole OpenAPI 3.0.3 document served at `/v1/openapi.json`.
pub fn openapi_document() -> Value {
    let mut b = Builder {
        gen: SchemaSettings::openapi3().into_generator(),
        paths: Map::new(),
    };
    b.kind::<Project>(true, true);
    b.kind::<User>(true, true);
    b.kind::<Host>(true, true);
    b.kind::<Flavor>(true, true);
    b.kind::<Image>(true, true);
    b.kind::<Instance>(true, true);
    b.kind::<Volume>(true, true);
    b.kind::<yunhan_model::Snapshot>(true, true);
    b.kind::<yunhan_model::SnapshotPolicy>(true, true);
    b.kind::<PlacementGroup>(true, true);
    b.kind::<yunhan_model::Vpc>(true, true);
    b.kind::<yunhan_model::Subnet>(true, true);
    b.kind::<yunhan_model::NetworkInterface>(true, true);
    b.kind::<yunhan_model::SecurityGroup>(true, true);
    b.kind::<yunhan_model::ExternalNetwork>(true, true);
    b.kind::<yunhan_model::ElasticIp>(true, true);
    b.kind::<yunhan_model::NatGateway>(true, true);
    b.kind::<yunhan_model::Vip>(true, true);
    b.kind::<yunhan_model::RouteTable>(true, true);
    b.kind::<yunhan_model::LoadBalancer>(true, true);
    b.kind::<yunhan_model::AlarmRule>(true, true);
    b.kind::<ApiKey>(false, false);
    b.kind::<yunhan_model::Bucket>(true, true);
    b.kind::<yunhan_model::S3Key>(false, false);
    force_param(&mut b);
    key_create_op::<ApiKeySpec, CreatedApiKey>(
        &mut b,
        "api-keys",
        "ApiKey",
        "an API key; the response holds the token",
    );
    key_create_op::<yunhan_model::S3KeySpec, CreatedS3Key>(
        &mut b,
        "s3-keys",
        "S3Key",
        "an S3 key; the response holds the secret key",
    );

    let image = b.schema::<Doc<Image>>();
    let mut responses = error_responses(&[400, 401, 403, 404, 409, 413, 429, 503]);
    responses.insert(
        "200".into(),
        json_response("the image, Active once its data is complete", image),
    );
    b.op("/v1/images/{id}/data", "put", json!({
        "operationId": "upload_image_data",
        "summary": "Upload an image's disk (qcow2 or raw, stored as sparse RAW), kernel or initrd; admins may import a server path with `source`",
        "tags": ["Image"],
        "parameters": [id_param(), project_param(),
            {"name": "part", "in": "query", "required": false, "schema": {"type": "string", "enum": ["disk", "kernel", "initrd"], "default": "disk"}},
            {"name": "source", "in": "query", "required": false, "schema": {"type": "string", "minLength": 1}}],
        "requestBody": {"required": false, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": responses,
    }));
    let mut responses = error_responses(&[400, 401, 403, 404, 409, 429, 503]);
    responses.insert(
        "200".into(),
        json!({"description": "console text from `offset`; `X-Console-Offset` is where to continue",
        "headers": {"X-Console-Offset": {"schema": {"type": "integer"}}},
        "content": {"text/plain": {"schema": {"type": "string"}}}}),
    );
    b.op("/v1/instances/{id}/console", "get", json!({
        "operationId": "instance_console",
        "summary": "Read the serial console log",
        "tags": ["Instance"],
        "parameters": [id_param(), project_param(),
            {"name": "offset", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}}],
        "responses": responses,
    }));

    let who = b.schema::<WhoAmI>();
    let mut responses = error_responses(&[401, 429]);
    responses.insert("200".into(), json_response("the caller", who));
    b.op("/v1/whoami", "get", json!({"operationId": "whoami", "summary": "Who the token belongs to", "responses": responses}));

    let events = b.schema::<yunhan_model::AuditEventList>();
    let mut responses = error_responses(&[400, 401, 404, 429]);
    responses.insert("200".into(), json_response("events, oldest first", events));
    let query = |name: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "schema": schema});
    b.op("/v1/events", "get", json!({
        "operationId": "events",
        "summary": "The audit trail: API writes (a member's project's; an admin's: all, or ?project=)",
        "parameters": [
            query("since", json!({"type": "string"})),
            query("kind", json!({"type": "string"})),
            query("project", json!({"type": "string"})),
            query("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
        ],
        "responses": responses,
    }));

    session_ops(&mut b);
    objects::object_ops(&mut b);
    monitoring_ops(&mut b);
    metering_ops(&mut b);
    rebalance_op(&mut b);
    let _ = b.schema::<ApiError>();
    let schemas = serde_json::to_value(b.gen.definitions()).unwrap_or(Value::Null);
    let mut public = Map::new();
    public.insert("/healthz".into(), json!({"get": {"operationId": "healthz", "security": [],
        "summary": "Liveness and store reachability",
        "responses": {"200": {"description": "healthy", "content": {"application/json": {"schema": {"type": "object"}}}},
                      "503": {"description": "store unavailable", "content": {"application/json": {"schema": {"type": "object"}}}}}}}));
    public.insert("/metrics".into(), json!({"get": {"operationId": "metrics", "security": [],
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}));
    public.insert("/v1/openapi.json".into(), json!({"get": {"operationId": "openapi", "security": [],
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}}}));
    let mut paths = b.paths;
    paths.extend(public);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Yunhan API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Yunhan private cloud. Every resource is {metadata, spec, status}; errors are {code, message, details} with the stable codes in docs/errors.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key token (yh_…)"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::session_store::COOKIE,
                    "description": "a web console session (POST /v1/sessions); requests that change something also need the X-CSRF-Token header"},
            },
        },
    })
}

/// Console logins and users' passwords (docs/console.md).
fn session_ops(b: &mut Builder) {
    let info = b.schema::<crate::sessions::SessionInfo>();
    let login = b.schema::<crate::sessions::LoginRequest>();
    let mut responses = error_responses(&[400, 401, 415, 429, 503]);
    responses.insert(
        "201".into(),
        json!({"description": "logged in; the session cookie is set",
        "headers": {"Set-Cookie": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": info.clone()}}}),
    );
    b.op("/v1/sessions", "post", json!({
        "operationId": "login", "security": [], "tags": ["Session"],
        "summary": "Log in to the web console with a username and password, an API key's token or a one-time login link",
        "requestBody": json_body(login), "responses": responses,
    }));
    let mut responses = error_responses(&[401, 503]);
    responses.insert(
        "200".into(),
        json_response("the session's user and CSRF token", info),
    );
    b.op(
        "/v1/session",
        "get",
        json!({
            "operationId": "session", "security": [], "tags": ["Session"],
            "summary": "The current console session (from the session cookie)", "responses": responses,
        }),
    );
    let mut responses = error_responses(&[401, 403, 429, 503]);
    responses.insert(
        "204".into(),
        json!({"description": "logged out; the cookie is cleared"}),
    );
    b.op(
        "/v1/session",
        "delete",
        json!({
            "operationId": "logout", "tags": ["Session"],
            "summary": "Log out of the console", "responses": responses,
        }),
    );
    let link = b.schema::<crate::session_store::LoginLink>();
    let mut responses = error_responses(&[401, 403, 429, 503]);
    responses.insert(
        "201".into(),
        json_response("a one-time login link for the caller", link),
    );
    b.op("/v1/sessions/links", "post", json!({
        "operationId": "create_login_link", "tags": ["Session"],
        "summary": "A one-time link (15 minutes) that opens the console logged in as the caller",
        "responses": responses,
    }));
    let set = b.schema::<crate::passwords::SetPassword>();
    let mut responses = error_responses(&[400, 401, 403, 404, 415, 429, 503]);
    responses.insert(
        "204".into(),
        json!({"description": "set; the user's other console sessions ended"}),
    );
    b.op("/v1/users/{id}/password", "put", json!({
        "operationId": "set_password", "tags": ["User"],
        "summary": "Set a user's console password (admins: anyone's; members: their own, with the current one)",
        "parameters": [id_param()], "requestBody": json_body(set), "responses": responses,
    }));
}

/// `GET /v1/rebalance` (docs/compute.md "Day two").
fn rebalance_op(b: &mut Builder) {
    let plan = b.schema::<yunhan_model::RebalancePlan>();
    let mut responses = error_responses(&[400, 401, 403, 429, 503]);
    responses.insert("200".into(), json_response("the proposed migrations", plan));
    b.op("/v1/rebalance", "get", json!({
        "operationId": "rebalance",
        "summary": "The live migrations that would bring every host at or under a target load, and the VMs that cannot move (admins; a dry run: nothing moves)",
        "parameters": [{"name": "target", "in": "query", "required": false, "schema": {"type": "string"}, "description": "percent of a host's limits, 10-100 (default 80)"}],
        "responses": responses,
    }));
}

/// `GET /v1/usage`, `GET`/`PUT /v1/price-list` (docs/metering.md).
fn metering_ops(b: &mut Builder) {
    let usage = b.schema::<yunhan_model::UsageReport>();
    let mut responses = error_responses(&[400, 401, 404, 429, 503]);
    responses.insert(
        "200".into(),
        json_response("usage per resource, priced", usage),
    );
    let query = |name: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}});
    b.op("/v1/usage", "get", json!({
        "operationId": "usage",
        "summary": "A project's metered usage and its cost (a member's own project; admins: any, with ?project=); from/to: RFC 3339 or a time ago (1h, 30d), default this month",
        "parameters": [query("project"), query("from"), query("to")],
        "responses": responses,
    }));
    let prices = b.schema::<yunhan_model::PriceList>();
    let mut responses = error_responses(&[401, 429, 503]);
    responses.insert(
        "200".into(),
        json_response("the price list", prices.clone()),
    );
    b.op(
        "/v1/price-list",
        "get",
        json!({
            "operationId": "price_list",
            "summary": "The prices usage is billed at, per unit-hour",
            "responses": responses,
        }),
    );
    let mut responses = error_responses(&[400, 401, 403, 413, 415, 429, 503]);
    responses.insert(
        "200".into(),
        json_response("the new price list", prices.clone()),
    );
    b.op(
        "/v1/price-list",
        "put",
        json!({
            "operationId": "set_price_list",
            "summary": "Replace the price list (admins)",
            "requestBody": json_body(prices),
            "responses": responses,
        }),
    );
}

/// `GET /v1/instances/{id}/metrics` and `GET /v1/hosts/{id}/metrics` (docs/monitoring.md).
fn monitoring_ops(b: &mut Builder) {
    let query = |name: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "schema": schema});
    let answer = b.schema::<yunhan_model::MetricsAnswer>();
    let metrics_params = |with_project: bool| {
        let mut params = vec![
            id_param(),
            query("since", json!({"type": "string"})),
            query("series", json!({"type": "string"})),
        ];
        if with_project {
            params.push(project_param());
        }
        params
    };
    let mut responses = error_responses(&[400, 401, 403, 404, 429, 503]);
    responses.insert(
        "200".into(),
        json_response("the series in the window", answer),
    );
    b.op(
        "/v1/instances/{id}/metrics",
        "get",
        json!({
            "operationId": "instance_metrics",
            "summary": "An instance's CPU, memory, disk and network series (its host's history)",
            "tags": ["Instance"],
            "parameters": metrics_params(true),
            "responses": responses.clone(),
        }),
    );
    for (path, op, summary, tag) in [
        (
            "/v1/volumes/{id}/metrics",
            "volume_metrics",
            "A volume's reads and writes (bytes and operations per second)",
            "Volume",
        ),
        (
            "/v1/elastic-ips/{id}/metrics",
            "elastic_ip_metrics",
            "An elastic IP's traffic in and out (bytes and packets per second)",
            "ElasticIp",
        ),
        (
            "/v1/load-balancers/{id}/metrics",
            "load_balancer_metrics",
            "A load balancer's listeners' connections and bytes per second",
            "LoadBalancer",
        ),
    ] {
        b.op(
            path,
            "get",
            json!({
                "operationId": op,
                "summary": summary,
                "tags": [tag],
                "parameters": metrics_params(true),
                "responses": responses.clone(),
            }),
        );
    }
    b.op(
        "/v1/hosts/{id}/metrics",
        "get",
        json!({
            "operationId": "host_metrics",
            "summary": "A host's CPU, memory, load, disk, network and storage pool series (admins)",
            "tags": ["Host"],
            "parameters": metrics_params(false),
            "responses": responses,
        }),
    );
}
