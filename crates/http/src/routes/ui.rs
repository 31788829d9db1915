//! The web UI: a few static files embedded in the binary, served at `/`
//! and `/ui/<file>` under a Content-Security-Policy that allows only this
//! origin (no inline scripts or styles, no third-party hosts).

use std::io::Write;
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::request::Req;
use crate::response::Resp;
use ops_app::secrets::sha256_hex_bytes;
use ops_base::error::{Error, Result};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

static INDEX_HTML: Asset = Asset::new(HTML, include_bytes!("../../ui/index.html"));
static APP_JS: Asset = Asset::new(JS, include_bytes!("../../ui/app.js"));
static LIVE_JS: Asset = Asset::new(JS, include_bytes!("../../ui/live.js"));
static HEALTH_ES_JS: Asset = Asset::new(JS, include_bytes!("../../ui/health_es.js"));
static CHANGES_JS: Asset = Asset::new(JS, include_bytes!("../../ui/changes.js"));
static DOM_JS: Asset = Asset::new(JS, include_bytes!("../../ui/dom.js"));
static FILTERS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/filters.js"));
static ADMIN_SCREENS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/admin_screens.js"));
static ALERTS_COUNT_JS: Asset = Asset::new(JS, include_bytes!("../../ui/alerts_count.js"));
static ERRORS_ES_JS: Asset = Asset::new(JS, include_bytes!("../../ui/errors_es.js"));
static TASK_ACTIONS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/task_actions.js"));
static HISTORY_JS: Asset = Asset::new(JS, include_bytes!("../../ui/history.js"));
static ROLES_JS: Asset = Asset::new(JS, include_bytes!("../../ui/roles.js"));
static DRAFTS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/drafts.js"));
static FOCUS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/focus.js"));
static API_JS: Asset = Asset::new(JS, include_bytes!("../../ui/api.js"));
static AUTOMATIONS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/automations.js"));
static BOARD_JS: Asset = Asset::new(JS, include_bytes!("../../ui/board.js"));
static COMMENTS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/comments.js"));
static FLASH_JS: Asset = Asset::new(JS, include_bytes!("../../ui/flash.js"));
static NEW_TASK_JS: Asset = Asset::new(JS, include_bytes!("../../ui/new_task.js"));
static PAGE_JS: Asset = Asset::new(JS, include_bytes!("../../ui/page.js"));
static ROUTER_JS: Asset = Asset::new(JS, include_bytes!("../../ui/router.js"));
static SESSION_JS: Asset = Asset::new(JS, include_bytes!("../../ui/session.js"));
static SHELL_JS: Asset = Asset::new(JS, include_bytes!("../../ui/shell.js"));
static TASK_PAGE_JS: Asset = Asset::new(JS, include_bytes!("../../ui/task_page.js"));
static RUNS_JS: Asset = Asset::new(JS, include_bytes!("../../ui/runs.js"));
static REVIEW_JS: Asset = Asset::new(JS, include_bytes!("../../ui/review.js"));
static TIME_JS: Asset = Asset::new(JS, include_bytes!("../../ui/time.js"));
static VOCABULARY_JS: Asset = Asset::new(JS, include_bytes!("../../ui/vocabulary.js"));
static STYLE_CSS: Asset = Asset::new(CSS, include_bytes!("../../ui/style.css"));
static FAVICON_SVG: Asset = Asset::new(SVG, include_bytes!("../../ui/favicon.svg"));

/// Everything the page loads comes from this origin; nothing may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every file, the page included, may be kept by the browser but is
/// checked with the server (`If-None-Match`) before each use: a new
/// release is seen at once, and an unchanged file costs a 304. The page
/// holds no data (the API answers are `no-store`), so it is treated alike.
const CACHE_CONTROL: &str = "no-cache";

/// One embedded file, and its forms as sent, prepared once on first use.
pub struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    sent: OnceLock<Sent>,
}

struct Sent {
    /// Strong validators: each form's own bytes have their own tag.
    etag: String,
    /// The gzip form, when it is smaller, and its tag.
    gzip: Option<(Vec<u8>, String)>,
}

impl Asset {
    const fn new(content_type: &'static str, bytes: &'static [u8]) -> Asset {
        Asset {
            content_type,
            bytes,
            sent: OnceLock::new(),
        }
    }

    fn sent(&self) -> &Sent {
        self.sent.get_or_init(|| {
            // The first 128 bits of the SHA-256 of the bytes identify them.
            let tag = |b: &[u8]| format!("\"{}\"", &sha256_hex_bytes(b)[..32]);
            let gz = gzip(self.bytes);
            Sent {
                etag: tag(self.bytes),
                gzip: (gz.len() < self.bytes.len()).then(|| {
                    let t = tag(&gz);
                    (gz, t)
                }),
            }
        })
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// The UI file at `path`, if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    match path {
        "/" | "/ui/" | "/ui/index.html" => Some(&INDEX_HTML),
        "/ui/app.js" => Some(&APP_JS),
        "/ui/live.js" => Some(&LIVE_JS),
        "/ui/health_es.js" => Some(&HEALTH_ES_JS),
        "/ui/changes.js" => Some(&CHANGES_JS),
        "/ui/dom.js" => Some(&DOM_JS),
        "/ui/filters.js" => Some(&FILTERS_JS),
        "/ui/admin_screens.js" => Some(&ADMIN_SCREENS_JS),
        "/ui/alerts_count.js" => Some(&ALERTS_COUNT_JS),
        "/ui/errors_es.js" => Some(&ERRORS_ES_JS),
        "/ui/task_actions.js" => Some(&TASK_ACTIONS_JS),
        "/ui/history.js" => Some(&HISTORY_JS),
        "/ui/roles.js" => Some(&ROLES_JS),
        "/ui/drafts.js" => Some(&DRAFTS_JS),
        "/ui/focus.js" => Some(&FOCUS_JS),
        "/ui/api.js" => Some(&API_JS),
        "/ui/automations.js" => Some(&AUTOMATIONS_JS),
        "/ui/board.js" => Some(&BOARD_JS),
        "/ui/comments.js" => Some(&COMMENTS_JS),
        "/ui/flash.js" => Some(&FLASH_JS),
        "/ui/new_task.js" => Some(&NEW_TASK_JS),
        "/ui/page.js" => Some(&PAGE_JS),
        "/ui/router.js" => Some(&ROUTER_JS),
        "/ui/session.js" => Some(&SESSION_JS),
        "/ui/shell.js" => Some(&SHELL_JS),
        "/ui/task_page.js" => Some(&TASK_PAGE_JS),
        "/ui/runs.js" => Some(&RUNS_JS),
        "/ui/review.js" => Some(&REVIEW_JS),
        "/ui/time.js" => Some(&TIME_JS),
        "/ui/vocabulary.js" => Some(&VOCABULARY_JS),
        "/ui/style.css" => Some(&STYLE_CSS),
        "/ui/favicon.svg" => Some(&FAVICON_SVG),
        _ => None,
    }
}

/// Whether an `Accept-Encoding` value admits gzip: named (or `*`) with a
/// quality above zero, and not refused by name.
fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut named = None;
    let mut any = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => named = Some(q > 0.0),
            "*" => any = Some(q > 0.0),
            _ => {}
        }
    }
    named.or(any).unwrap_or(false)
}

/// Whether `If-None-Match` names `etag` (or is `*`). The comparison is
/// weak, as RFC 9110 asks for this header: a `W/` prefix is ignored.
fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

/// Serves a UI file for any path outside `/api/`; other paths are a 404.
/// A `HEAD` gets the same answer without its body (the event loop drops it).
pub fn serve(req: &Req) -> Result<Resp> {
    let Some(asset) = asset(&req.path) else {
        return Err(Error::not_found(format!("no route {}", req.path)));
    };
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return Ok(Resp::method_not_allowed(&["GET", "HEAD"]));
    }
    let sent = asset.sent();
    let gzip = sent
        .gzip
        .as_ref()
        .filter(|_| req.header("accept-encoding").is_some_and(accepts_gzip));
    let (body, etag): (&[u8], &str) = match gzip {
        Some((gz, etag)) => (gz, etag),
        None => (asset.bytes, &sent.etag),
    };
    let not_modified = req
        .header("if-none-match")
        .is_some_and(|v| none_match(v, etag));
    let mut resp = if not_modified {
        let mut r = Resp::static_file(asset.content_type, &[]);
        r.status = 304;
        r
    } else {
        Resp::static_file(asset.content_type, body)
    };
    if gzip.is_some() {
        resp = resp.with_header("Content-Encoding", "gzip".to_string());
    }
    Ok(resp
        .with_header("ETag", etag.to_string())
        .with_header("Cache-Control", CACHE_CONTROL.to_string())
        .with_header("Vary", "Accept-Encoding".to_string())
        .with_header(
            "Content-Security-Policy",
            CONTENT_SECURITY_POLICY.to_string(),
        )
        .with_header("X-Frame-Options", "DENY".to_string())
        .with_header("Referrer-Policy", "no-referrer".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script of the page.
    const SCRIPTS: &[&str] = &[
        "/ui/app.js",
        "/ui/live.js",
        "/ui/health_es.js",
        "/ui/changes.js",
        "/ui/dom.js",
        "/ui/filters.js",
        "/ui/admin_screens.js",
        "/ui/alerts_count.js",
        "/ui/errors_es.js",
        "/ui/task_actions.js",
        "/ui/history.js",
        "/ui/roles.js",
        "/ui/drafts.js",
        "/ui/focus.js",
        "/ui/api.js",
        "/ui/automations.js",
        "/ui/board.js",
        "/ui/comments.js",
        "/ui/flash.js",
        "/ui/new_task.js",
        "/ui/page.js",
        "/ui/router.js",
        "/ui/session.js",
        "/ui/shell.js",
        "/ui/task_page.js",
        "/ui/runs.js",
        "/ui/review.js",
        "/ui/time.js",
        "/ui/vocabulary.js",
    ];

    fn text(path: &str) -> &'static str {
        std::str::from_utf8(asset(path).expect(path).bytes).expect("UTF-8")
    }

    #[test]
    fn serves_the_known_files_only() {
        assert_eq!(asset("/").unwrap().content_type, HTML);
        for script in SCRIPTS {
            assert_eq!(asset(script).unwrap().content_type, JS, "{script}");
        }
        assert_eq!(asset("/ui/style.css").unwrap().content_type, CSS);
        assert_eq!(asset("/ui/favicon.svg").unwrap().content_type, SVG);
        for unknown in [
            "/ui/../Cargo.toml",
            "/ui/missing.js",
            "/index",
            "/favicon.ico",
            "/api",
        ] {
            assert!(asset(unknown).is_none(), "{unknown}");
        }
    }

    /// The policy forbids inline code: the page must not rely on any.
    #[test]
    fn page_fits_the_content_security_policy() {
        let html = text("/");
        assert!(html.contains(r#"<script type="module" src="/ui/app.js">"#));
        assert!(html.contains(r#"href="/ui/style.css""#));
        assert!(!html.contains("style="), "inline style attribute");
        assert!(!html.contains("<style"), "inline stylesheet");
        assert_eq!(html.matches("<script").count(), 1, "only the module script");
        let lower = html.to_ascii_lowercase();
        let handler = lower.match_indices(" on").any(|(i, _)| {
            let name: String = lower[i + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            !name.is_empty() && lower[i + 3 + name.len()..].starts_with('=')
        });
        assert!(!handler, "inline event handler");
        for needle in ["http://", "https://"] {
            assert!(!html.contains(needle), "external URL in the page");
            for script in SCRIPTS {
                assert!(!text(script).contains(needle), "external URL in {script}");
            }
        }
    }

    /// Every module a script imports is served, and listed above.
    #[test]
    fn every_imported_module_is_served() {
        for script in SCRIPTS {
            for path in imports(script) {
                assert!(
                    asset(&path).is_some(),
                    "{script} imports {path}, not served"
                );
                assert!(
                    SCRIPTS.contains(&path.as_str()),
                    "{path} missing from SCRIPTS"
                );
            }
        }
    }

    /// The modules a script imports (`from './x.js'`), as served paths.
    fn imports(script: &str) -> Vec<String> {
        let js = text(script);
        js.match_indices("from './")
            .map(|(i, _)| {
                let rest = &js[i + "from './".len()..];
                format!("/ui/{}", &rest[..rest.find('\'').expect("closing quote")])
            })
            .collect()
    }

    /// No module imports itself through others: each layer (dom, api,
    /// flash, session, page, the pages, the router, the shell) only
    /// imports the ones below it.
    #[test]
    fn modules_import_no_cycle() {
        fn visit(script: &str, path: &mut Vec<String>, done: &mut Vec<String>) {
            if done.iter().any(|d| d == script) {
                return;
            }
            assert!(
                !path.iter().any(|p| p == script),
                "import cycle: {} -> {script}",
                path.join(" -> ")
            );
            path.push(script.to_string());
            for next in imports(script) {
                visit(&next, path, done);
            }
            path.pop();
            done.push(script.to_string());
        }
        let mut done = Vec::new();
        for script in SCRIPTS {
            visit(script, &mut Vec::new(), &mut done);
        }
    }

    /// Server text reaches the page as text nodes, never as markup.
    #[test]
    fn script_never_parses_markup() {
        for file in SCRIPTS {
            never_parses_markup(file);
        }
    }

    fn never_parses_markup(file: &str) {
        let js = text(file);
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(sink), "{file} uses {sink}");
        }
    }

    #[test]
    fn reads_accept_encoding() {
        for yes in [
            "gzip",
            "deflate, gzip, br",
            "GZIP;q=0.5",
            "*",
            "br, *;q=0.1",
            "x-gzip",
        ] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br",
            "gzip;q=0",
            "gzip; q=0.0, *",
            "*;q=0",
            "gzipx",
        ] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }

    #[test]
    fn matches_entity_tags() {
        let tag = r#""abc""#;
        assert!(none_match(r#""abc""#, tag));
        assert!(none_match(r#""x", W/"abc""#, tag));
        assert!(none_match("*", tag));
        assert!(!none_match(r#""abcd""#, tag));
        assert!(!none_match("abc", tag));
    }
}
