//! The file browser's operations: a bucket's objects (`/v1/buckets/{id}/objects`).

use serde_json::{json, Value};

use super::{error_responses, id_param, json_response, project_param, Builder};
use crate::object_storage::objects::{ObjectItem, ObjectList, MAX_KEY_BYTES};

fn key_param() -> Value {
    json!({"name": "key", "in": "path", "required": true,
           "description": format!("the object's key, 1–{MAX_KEY_BYTES} bytes of UTF-8 (no NUL, no `.` or `..` segment); `/` may be sent as it is"),
           "schema": {"type": "string", "minLength": 1}})
}

/// `GET /v1/buckets/{id}/objects` and `GET`/`PUT`/`DELETE /v1/buckets/{id}/objects/{key}`.
pub(super) fn object_ops(b: &mut Builder) {
    let list = b.schema::<ObjectList>();
    let item = b.schema::<ObjectItem>();
    let query = |name: &str, desc: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": desc, "schema": schema});
    let mut responses = error_responses(&[400, 401, 404, 409, 429, 503]);
    responses.insert(
        "200".into(),
        json_response("one page of the bucket's objects", list),
    );
    b.op("/v1/buckets/{id}/objects", "get", json!({
        "operationId": "list_bucket_objects",
        "summary": "List a bucket's objects (the bucket must be Active); with a delimiter, the \"folders\" under the prefix too",
        "tags": ["Bucket"],
        "parameters": [
            id_param(),
            query("prefix", "only keys starting with this", json!({"type": "string"})),
            query("delimiter", "group keys by this after the prefix (usually `/`)", json!({"type": "string"})),
            query("page_token", "the previous page's next_page_token", json!({"type": "string"})),
            query("limit", "objects and prefixes per page", json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})),
            project_param(),
        ],
        "responses": responses,
    }));
    let path = "/v1/buckets/{id}/objects/{key}";
    let params = json!([id_param(), key_param(), project_param()]);
    let mut responses = error_responses(&[400, 401, 404, 409, 429, 503]);
    responses.insert("200".into(), json!({
        "description": "the object's bytes, with its Content-Type, as an attachment (Content-Disposition)",
        "headers": {"Content-Disposition": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}},
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }));
    b.op(
        path,
        "get",
        json!({
            "operationId": "download_bucket_object",
            "summary": "Download an object",
            "tags": ["Bucket"],
            "parameters": params,
            "responses": responses,
        }),
    );
    let mut responses = error_responses(&[400, 401, 403, 404, 409, 413, 429, 503]);
    responses.insert(
        "201".into(),
        json_response("the object as a listing shows it", item),
    );
    b.op(path, "put", json!({
        "operationId": "upload_bucket_object",
        "summary": "Upload (or replace) an object: the body is its bytes, any Content-Type (stored with it); at most 5 GiB with a Content-Length, 64 MiB without",
        "tags": ["Bucket"],
        "parameters": params,
        "requestBody": {"required": true, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": responses,
    }));
    let mut responses = error_responses(&[400, 401, 403, 404, 409, 429, 503]);
    responses.insert("204".into(), json!({"description": "deleted"}));
    b.op(
        path,
        "delete",
        json!({
            "operationId": "delete_bucket_object",
            "summary": "Delete an object",
            "tags": ["Bucket"],
            "parameters": params,
            "responses": responses,
        }),
    );
}
