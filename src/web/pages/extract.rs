//! Path and query extractors for pages: axum's, whose rejections (a path segment that is
//! not UTF-8 once percent-decoded, a query key given twice, a number that is not one)
//! become the HTML error page with the same status instead of a plain-text body.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::PageError;

/// `axum::extract::Path`, rejecting with the error page.
pub struct Path<T>(pub T);

/// `axum::extract::Query`, rejecting with the error page.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(e) => Err(PageError::new(e.status(), e.body_text())),
        }
    }
}

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(e) => Err(PageError::new(e.status(), e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Q {
        #[serde(rename = "try")]
        _try: Option<String>,
    }

    async fn page(Path(id): Path<String>, Query(_): Query<Q>) -> String {
        id
    }

    #[tokio::test]
    async fn bad_paths_and_queries_get_the_html_error_page() {
        let app = Router::new().route("/dags/{id}", get(page));
        for uri in ["/dags/%FF", "/dags/a?try=1&try=2"] {
            let request = Request::get(uri).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            let kind = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(kind.starts_with("text/html"), "{uri}: {kind}");
        }
        let ok = Request::get("/dags/a%20b").body(Body::empty()).unwrap();
        assert_eq!(app.oneshot(ok).await.unwrap().status(), StatusCode::OK);
    }
}
