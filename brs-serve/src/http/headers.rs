//! Security headers on every response: no MIME sniffing, no framing, no referrer, and a content
//! security policy. The page's inline script and style are allowed by their SHA-256 (computed
//! from the page this binary serves, so editing the page never breaks the policy); everything
//! else gets `default-src 'none'`.

use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The `'sha256-...'` sources of every inline `<tag>...</tag>` block of `html`.
fn inline_hashes(html: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start..];
        let Some(body_start) = after.find('>') else {
            break;
        };
        let Some(body_len) = after[body_start + 1..].find(&close) else {
            break;
        };
        let body = &after[body_start + 1..body_start + 1 + body_len];
        // `<script src=...></script>` has no inline body to allow.
        if !body.trim().is_empty() {
            let digest = Sha256::digest(body.as_bytes());
            out.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &after[body_start + 1 + body_len + close.len()..];
    }
    out
}

/// The policy of the page: its own inline code, images from here (and `extra_img` origins, e.g.
/// an S3 store's presigned URLs), API calls to here, and `data:` reads (the greeting sends its
/// embedded sample portrait, which it can only read back with `fetch`).
pub(crate) fn page_policy(html: &str, extra_img: &str) -> HeaderValue {
    let scripts = inline_hashes(html, "script").join(" ");
    let styles = inline_hashes(html, "style").join(" ");
    let policy = format!(
        "default-src 'none'; script-src {scripts}; style-src {styles}; \
         img-src 'self' blob: data: {extra_img}; connect-src 'self' data: {extra_img}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(policy.trim()).unwrap_or(HeaderValue::from_static(API_POLICY))
}

/// The policy of every response that is not the page.
pub(crate) const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Headers every response carries.
pub(crate) const ALWAYS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_blocks_are_hashed_and_external_ones_skipped() {
        let html =
            "<style>b{}</style><script src=x.js></script><script type=module>let a=1;</script>";
        let s = inline_hashes(html, "script");
        assert_eq!(s.len(), 1);
        let expect = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"let a=1;"));
        assert_eq!(s[0], format!("'sha256-{expect}'"));
        assert_eq!(inline_hashes(html, "style").len(), 1);
        let p = page_policy(html, "");
        let p = p.to_str().expect("ascii");
        assert!(
            p.contains("frame-ancestors 'none'") && p.contains(&s[0]),
            "{p}"
        );
    }

    #[test]
    fn the_served_page_has_a_policy_covering_its_code() {
        let page = crate::http::routes::page::INDEX;
        let p = page_policy(page, "");
        let p = p.to_str().expect("ascii");
        for h in inline_hashes(page, "script") {
            assert!(p.contains(&h));
        }
        assert!(
            p.contains("script-src 'sha256-"),
            "the page has inline script: {p}"
        );
    }
}
