//! GET /: the single-page web client (plain HTML and JavaScript, compiled into the binary).

use axum::response::Html;

pub(crate) const INDEX: &str = include_str!("../../page/index.html");

pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX)
}
