//! `GET /api/openapi.json` from the running server: public, OpenAPI 3.1,
//! with both security schemes and the error body on every operation.

use serde_json::json;

use crate::util::Server;

#[test]
fn the_document_is_served_to_anyone() {
    let srv = Server::start();
    let r = srv.client().get("/api/openapi.json");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = &r.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["serviceToken"]["in"], "header");
    assert_eq!(schemes["session"]["in"], "cookie");
    let claim = &doc["paths"]["/api/dispatch/next"]["post"];
    assert!(
        claim["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|s| s.ends_with("/ClaimRequest"))
    );
    assert!(
        claim["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|s| s.ends_with("/ErrorBody"))
    );
    // This server runs with the test clock, so its route is listed.
    assert!(doc["paths"]["/api/test/clock"]["post"].is_object());
    assert!(doc["paths"]["/metrics"]["get"].is_object());

    let r = srv.client().post("/api/openapi.json", &json!({}));
    assert!(r.status == 405 || r.status == 401, "{}", r.text);
}

#[test]
fn without_the_test_clock_its_route_is_not_listed() {
    let srv = Server::start_with(&[("OPS_TEST_CLOCK", "")]);
    let doc = srv.client().get("/api/openapi.json").json;
    assert!(doc["paths"]["/api/test/clock"].is_null());
    assert!(doc["paths"]["/api/tasks"]["get"].is_object());
}
