//! `GET /api/openapi.json` from the running server: public, OpenAPI 3.1,
//! with both security schemes and the error body on every operation.

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
    // Repositories: a workspace's roots, a task's effective repository.
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("WorkspaceChange", "repo_roots"),
        ("Workspace", "repo_roots"),
        ("TaskView", "effective_repo_path"),
        ("TaskView", "effective_base_ref"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field}: {:#}",
            schemas[schema]
        );
    }
    assert_eq!(
        schemas["Workspace"]["properties"]["repo_roots"]["items"]["type"],
        "string"
    );
    // This server runs with the test clock, so its route is listed.
    assert!(doc["paths"]["/api/test/clock"]["post"].is_object());
    assert!(doc["paths"]["/metrics"]["get"].is_object());
}

/// The document needs no caller, so a wrong method is the router's 405
/// with `Allow`, for an anonymous client too (with a body, which is refused
/// from the head alone on the paths that need a caller), and changes
/// nothing.
#[test]
fn a_wrong_method_is_405_with_allow_whoever_asks() {
    let srv = Server::start();
    let anonymous = srv.client();
    for c in [srv.service(), srv.client()] {
        for (method, body) in [("POST", &b"{}"[..]), ("PUT", b"{}"), ("DELETE", b"")] {
            let r = c.raw(method, "/api/openapi.json", body);
            assert_eq!(r.status, 405, "{method}: {}", r.text);
            assert_eq!(r.header("allow"), Some("GET"), "{method}");
            assert_eq!(r.json["error"], "method_not_allowed", "{method}");
        }
    }
    // A path that needs a caller still refuses an anonymous body unread.
    let r = anonymous.raw("PUT", "/api/tasks", b"{}");
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json["error"], "unauthorized");
    assert_eq!(anonymous.get("/api/openapi.json").status, 200);
}

#[test]
fn without_the_test_clock_its_route_is_not_listed() {
    let srv = Server::start_with(&[("OPS_TEST_CLOCK", "")]);
    let doc = srv.client().get("/api/openapi.json").json;
    assert!(doc["paths"]["/api/test/clock"].is_null());
    assert!(doc["paths"]["/api/tasks"]["get"].is_object());
}
