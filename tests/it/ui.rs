//! The web UI: served at `/` and `/ui/<file>` with the right content types
//! and a same-origin Content-Security-Policy, in Spanish, with the
//! runbook's labels; every other path outside `/api/` is a 404.

use crate::util::{Res, Server};

fn assert_csp(r: &Res, what: &str) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp:?} lacks {directive}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(
        !csp.contains("http"),
        "{what}: CSP names another host: {csp}"
    );
}

#[test]
fn root_serves_the_page_in_spanish() {
    let srv = Server::start();
    let r = srv.client().get("/");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_csp(&r, "/");
    assert!(r.text.contains(r#"<html lang="es">"#), "{}", r.text);
    assert!(r.text.contains(r#"src="/ui/app.js""#));
    assert!(r.text.contains(r#"href="/ui/style.css""#));
    for label in [
        "Iniciar sesión",
        "Usuario",
        "Contraseña",
        "Tareas",
        "Operación",
        "Automatizaciones",
        // The runbook's UI path: Operacion -> Automatizaciones, tabs
        // Dispatching and Watchdog, button "Reconciliar stale".
        "Operación → Automatizaciones",
        ">Dispatching<",
        ">Watchdog<",
        ">Reconciliar stale<",
        ">Ejecutar watchdog<",
        ">Actualizar<",
    ] {
        assert!(r.text.contains(label), "the page lacks {label:?}");
    }
    // The page needs no login to load; the API behind it does.
    assert_eq!(srv.client().get("/api/auth/me").status, 401);
}

#[test]
fn script_and_stylesheet_have_their_types_and_the_policy() {
    let srv = Server::start();
    let js = srv.client().get("/ui/app.js");
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_csp(&js, "/ui/app.js");
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    for label in ["Nueva tarea", "Despachar", "Aprobar Human Gate", "Resolver"] {
        assert!(js.text.contains(label), "the UI lacks {label:?}");
    }
    for endpoint in [
        "/dispatch/health",
        "/dispatch/reconcile-stale",
        "/watchdog/run",
        "/settings/dispatch_enabled",
        "/alerts",
        "/approve",
    ] {
        assert!(js.text.contains(endpoint), "the UI never calls {endpoint}");
    }

    // The task's code: its module, imported by the page's.
    assert!(js.text.contains("from './changes.js'"));
    let changes = srv.client().get("/ui/changes.js");
    assert_eq!(changes.status, 200);
    assert_eq!(
        changes.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_csp(&changes, "/ui/changes.js");
    for label in ["Cambios", "Parche", "Repositorio", "/workspaces/"] {
        assert!(changes.text.contains(label), "changes.js lacks {label:?}");
    }

    let css = srv.client().get("/ui/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_csp(&css, "/ui/style.css");
    assert!(css.text.contains("{"), "{}", css.text);

    let icon = srv.client().get("/ui/favicon.svg");
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
}

#[test]
fn unknown_paths_are_404_and_api_errors_stay_json() {
    let srv = Server::start();
    for path in [
        "/nope",
        "/ui/missing.js",
        "/ui/../Cargo.toml",
        "/favicon.ico",
        "/index.php",
    ] {
        let r = srv.client().get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error(), "not_found", "{path}: {}", r.text);
        assert!(r.header("content-security-policy").is_none(), "{path}");
    }
    let r = srv.client().get("/api/no-such-route");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));

    // The files are read-only.
    let r = srv.client().raw("POST", "/", b"");
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}
