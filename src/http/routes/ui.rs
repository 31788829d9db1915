//! The web UI: a few static files embedded in the binary, served at `/`
//! and `/ui/<file>` under a Content-Security-Policy that allows only this
//! origin (no inline scripts or styles, no third-party hosts).

use crate::error::{Error, Result};
use crate::http::request::Req;
use crate::http::response::Resp;

const INDEX_HTML: &[u8] = include_bytes!("../../ui/index.html");
const APP_JS: &[u8] = include_bytes!("../../ui/app.js");
const LIVE_JS: &[u8] = include_bytes!("../../ui/live.js");
const HEALTH_ES_JS: &[u8] = include_bytes!("../../ui/health_es.js");
const STYLE_CSS: &[u8] = include_bytes!("../../ui/style.css");
const FAVICON_SVG: &[u8] = include_bytes!("../../ui/favicon.svg");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Everything the page loads comes from this origin; nothing may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The content type and bytes of the UI file at `path`, if there is one.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" | "/ui/" | "/ui/index.html" => Some((HTML, INDEX_HTML)),
        "/ui/app.js" => Some((JS, APP_JS)),
        "/ui/live.js" => Some((JS, LIVE_JS)),
        "/ui/health_es.js" => Some((JS, HEALTH_ES_JS)),
        "/ui/style.css" => Some((CSS, STYLE_CSS)),
        "/ui/favicon.svg" => Some((SVG, FAVICON_SVG)),
        _ => None,
    }
}

/// Serves a UI file for any path outside `/api/`; other paths are a 404.
pub fn serve(req: &Req) -> Result<Resp> {
    let Some((content_type, body)) = asset(&req.path) else {
        return Err(Error::not_found(format!("no route {}", req.path)));
    };
    match req.method.as_str() {
        "GET" | "HEAD" => Ok(Resp::static_file(content_type, body)
            .with_header(
                "Content-Security-Policy",
                CONTENT_SECURITY_POLICY.to_string(),
            )
            .with_header("X-Frame-Options", "DENY".to_string())
            .with_header("Referrer-Policy", "no-referrer".to_string())),
        _ => Ok(Resp::method_not_allowed(&["GET", "HEAD"])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> &'static str {
        std::str::from_utf8(asset(path).expect(path).1).expect("UTF-8")
    }

    #[test]
    fn serves_the_known_files_only() {
        assert_eq!(asset("/").unwrap().0, HTML);
        assert_eq!(asset("/ui/app.js").unwrap().0, JS);
        assert_eq!(asset("/ui/live.js").unwrap().0, JS);
        assert_eq!(asset("/ui/health_es.js").unwrap().0, JS);
        assert_eq!(asset("/ui/style.css").unwrap().0, CSS);
        assert_eq!(asset("/ui/favicon.svg").unwrap().0, SVG);
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
            assert!(
                !html.contains(needle) && !text("/ui/app.js").contains(needle),
                "external URL"
            );
        }
    }

    /// Server text reaches the page as text nodes, never as markup.
    #[test]
    fn script_never_parses_markup() {
        for file in ["/ui/app.js", "/ui/live.js", "/ui/health_es.js"] {
            never_parses_markup(text(file), file);
        }
    }

    fn never_parses_markup(js: &str, file: &str) {
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
}
