//! The web UI: served at `/` and `/ui/<file>` with the right content types
//! and a same-origin Content-Security-Policy, in Spanish, with the
//! labels of docs/SPEC.md §18; every other path outside `/api/` is a 404.

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
        // The UI path operators follow (docs/SPEC.md §17): Operación -> Automatizaciones, tabs
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

/// The page's scripts: `app.js` and every module it imports, followed as
/// a browser does (`from './x.js'`), each served as JavaScript under the
/// policy. Returns each module's address and text, `app.js` first.
fn page_scripts(srv: &Server) -> Vec<(String, String)> {
    let mut scripts: Vec<(String, String)> = Vec::new();
    let mut todo = vec!["/ui/app.js".to_string()];
    while let Some(path) = todo.pop() {
        if scripts.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let js = srv.client().get(&path);
        assert_eq!(js.status, 200, "{path}: {}", js.text);
        assert_eq!(
            js.header("content-type"),
            Some("text/javascript; charset=utf-8"),
            "{path}"
        );
        assert_csp(&js, &path);
        assert_eq!(
            js.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        for (i, _) in js.text.match_indices("from './") {
            let rest = &js.text[i + "from './".len()..];
            let name = &rest[..rest.find('\'').expect("closing quote")];
            todo.push(format!("/ui/{name}"));
        }
        scripts.push((path, js.text));
    }
    scripts
}

#[test]
fn script_and_stylesheet_have_their_types_and_the_policy() {
    let srv = Server::start();
    let scripts = page_scripts(&srv);
    let all: String = scripts.iter().map(|(_, text)| text.as_str()).collect();
    for label in ["Nueva tarea", "Despachar", "Aprobar Human Gate", "Resolver"] {
        assert!(all.contains(label), "the UI lacks {label:?}");
    }
    for endpoint in [
        "/dispatch/health",
        "/dispatch/reconcile-stale",
        "/watchdog/run",
        "/settings/dispatch_enabled",
        "/alerts",
        "/approve",
    ] {
        assert!(all.contains(endpoint), "the UI never calls {endpoint}");
    }

    // The task's code: its module, imported by the task page's.
    let module = |path: &str| {
        scripts
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("the page never loads {path}"))
    };
    assert!(module("/ui/task_page.js").contains("from './changes.js'"));
    let changes = module("/ui/changes.js");
    for label in ["Cambios", "Parche", "Repositorio", "/workspaces/"] {
        assert!(changes.contains(label), "changes.js lacks {label:?}");
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

/// Each file is sent gzip-compressed to a client that accepts it, with a
/// strong ETag per form, `Vary: Accept-Encoding` and `no-cache`, and a
/// matching `If-None-Match` costs a 304 without a body.
#[test]
fn files_are_compressed_and_revalidated() {
    use std::io::Read;
    let srv = Server::start();
    for path in ["/", "/ui/task_page.js", "/ui/style.css"] {
        let plain = srv.client().get(path);
        assert_eq!(plain.status, 200, "{path}");
        assert!(plain.header("content-encoding").is_none(), "{path}");
        assert_eq!(plain.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "{path}");
        assert_eq!(
            plain.header("content-length"),
            Some(plain.body.len().to_string().as_str())
        );
        assert_csp(&plain, path);
        let tag = plain.header("etag").expect("an ETag").to_string();
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34,
            "{tag}"
        );
        // Refused by quality: still the plain bytes.
        let refused = srv
            .client()
            .header("Accept-Encoding", "gzip;q=0, br")
            .get(path);
        assert!(refused.header("content-encoding").is_none(), "{path}");
        assert_eq!(refused.body, plain.body, "{path}");

        let gz = srv
            .client()
            .header("Accept-Encoding", "br, gzip, deflate")
            .get(path);
        assert_eq!(gz.status, 200, "{path}");
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
        assert_eq!(gz.header("cache-control"), Some("no-cache"));
        assert_csp(&gz, path);
        assert_eq!(
            gz.header("content-length"),
            Some(gz.body.len().to_string().as_str())
        );
        assert!(
            gz.body.len() * 2 < plain.body.len(),
            "{path}: {} of {}",
            gz.body.len(),
            plain.body.len()
        );
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        assert_eq!(decoded, plain.body, "{path}: gzip decodes to the file");
        let gz_tag = gz.header("etag").expect("an ETag").to_string();
        assert_ne!(gz_tag, tag, "{path}: each form has its own strong tag");
        // The same bytes always carry the same tag.
        assert_eq!(srv.client().get(path).header("etag"), Some(tag.as_str()));

        // Revalidation: a current tag is a 304 without a body, with the
        // validators and the policy; a stale one gets the file again.
        for (accept, current) in [("identity", &tag), ("gzip", &gz_tag)] {
            let c = srv.client().header("Accept-Encoding", accept);
            let r = c.clone().header("If-None-Match", current).get(path);
            assert_eq!(r.status, 304, "{path} {accept}: {}", r.text);
            assert!(r.body.is_empty(), "{path}: a 304 has no body");
            assert!(r.header("content-length").is_none(), "{path}");
            assert_eq!(r.header("etag"), Some(current.as_str()));
            assert_eq!(r.header("cache-control"), Some("no-cache"));
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            let listed = c
                .clone()
                .header("If-None-Match", &format!("\"old\", W/{current}"))
                .get(path);
            assert_eq!(listed.status, 304, "{path}: a tag among others, weak form");
            let stale = c.header("If-None-Match", "\"0123456789abcdef\"").get(path);
            assert_eq!(stale.status, 200, "{path}");
            assert_eq!(stale.header("etag"), Some(current.as_str()));
            assert!(!stale.body.is_empty());
        }
        // The plain tag does not validate the gzip form, nor the reverse.
        let r = srv
            .client()
            .header("Accept-Encoding", "gzip")
            .header("If-None-Match", &tag)
            .get(path);
        assert_eq!(r.status, 200, "{path}");
    }
    // The API is never cached.
    let r = srv.client().get("/api/auth/me");
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

/// `HEAD` answers as `GET` does, without the body, and the connection
/// stays usable for the next request.
#[test]
fn head_is_get_without_a_body() {
    use std::io::{Read, Write};
    let srv = Server::start();
    let get = srv
        .client()
        .header("Accept-Encoding", "gzip")
        .get("/ui/app.js");
    let head = srv
        .client()
        .header("Accept-Encoding", "gzip")
        .raw("HEAD", "/ui/app.js", b"");
    assert_eq!(head.status, 200);
    assert!(
        head.body.is_empty(),
        "{} bytes after a HEAD",
        head.body.len()
    );
    for h in [
        "content-length",
        "content-encoding",
        "etag",
        "cache-control",
        "content-security-policy",
    ] {
        assert_eq!(head.header(h), get.header(h), "{h}");
    }
    // On one connection: HEAD, then GET; both answered, the first without a body.
    let mut s = std::net::TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    s.write_all(
        b"HEAD /ui/favicon.svg HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /ui/favicon.svg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(text.matches("<svg").count(), 1, "{text}");
    let second = text
        .find("\r\n\r\nHTTP/1.1 200 OK")
        .expect("no body after the HEAD's head");
    assert!(text[..second].contains("Connection: keep-alive"), "{text}");
}
