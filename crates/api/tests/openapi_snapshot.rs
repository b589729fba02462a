//! The OpenAPI document is a contract: any change to it shows up in review.
#[test]
fn openapi_document_is_stable() {
    let doc = yunhan_api::openapi_document();
    assert_eq!(doc["openapi"], "3.0.3");
    insta::assert_json_snapshot!("openapi", doc);
}
