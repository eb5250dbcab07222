//! Which handler answers a request on the admin listener, and who may ask.
//!
//! `/metrics`, `/healthz`, `/readyz` and the API's own description stay open (Prometheus
//! and probes carry no token); everything else under `/api/` needs the admin token, and is
//! off (404 saying how to turn it on) when none is configured. Unknown paths are 404, a
//! known path with another method 405 with `Allow`.

use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{config, drain, info, metrics, reload, reply, sessions, AdminApi};
use crate::response::{full, text, Body};

/// The API's contract, the same file the tests check the implementation against.
const OPENAPI: &str = include_str!("../../admin-openapi.yaml");

const API_OFF: &str = "the admin API is off: set admin.token or admin.token_file in the \
                       configuration (or GATEWAY__ADMIN__TOKEN in the environment) and restart";

enum Route<'a> {
    Metrics,
    Health,
    Ready,
    OpenApi,
    Info,
    Config,
    Sessions,
    Session(&'a str),
    CloseSession(&'a str),
    ClosePrincipal(&'a str),
    Drain,
    Reload,
}

impl Route<'_> {
    fn method(&self) -> Method {
        match self {
            Route::CloseSession(_) | Route::ClosePrincipal(_) | Route::Drain | Route::Reload => {
                Method::POST
            }
            _ => Method::GET,
        }
    }

    fn needs_token(&self) -> bool {
        !matches!(
            self,
            Route::Metrics | Route::Health | Route::Ready | Route::OpenApi
        )
    }
}

fn find(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    Some(match segments.as_slice() {
        ["metrics"] => Route::Metrics,
        ["healthz"] => Route::Health,
        ["readyz"] => Route::Ready,
        ["api", "openapi.yaml"] => Route::OpenApi,
        ["api", "info"] => Route::Info,
        ["api", "config"] => Route::Config,
        ["api", "drain"] => Route::Drain,
        ["api", "reload"] => Route::Reload,
        ["api", "sessions"] => Route::Sessions,
        ["api", "sessions", id] => Route::Session(id),
        ["api", "sessions", id, "close"] => Route::CloseSession(id),
        ["api", "principals", name, "close"] => Route::ClosePrincipal(name),
        _ => return None,
    })
}

pub async fn route(api: &AdminApi, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let route = find(&path);
    let under_api = path == "/api" || path.starts_with("/api/");
    if route.as_ref().map_or(under_api, Route::needs_token) {
        let Some(token) = &api.token else {
            return reply::not_found(API_OFF);
        };
        if let Err(refused) = token.check(req.headers()) {
            return refused.into_response();
        }
    }
    let Some(route) = route else {
        return if under_api {
            reply::not_found(&format!("no admin API endpoint at {path}"))
        } else {
            text(StatusCode::NOT_FOUND, "not found\n")
        };
    };
    if req.method() != route.method() {
        let mut resp = reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{path} takes {} only", route.method()),
        );
        resp.headers_mut().insert(
            ALLOW,
            HeaderValue::from_static(if route.method() == Method::POST {
                "POST"
            } else {
                "GET"
            }),
        );
        return resp;
    }
    let query = req.uri().query().map(str::to_owned);
    match route {
        Route::Metrics => metrics::render(&api.metrics),
        Route::Health => text(StatusCode::OK, "ok\n"),
        Route::Ready => crate::http::readyz(&api.state),
        Route::OpenApi => {
            let mut resp = Response::new(full(OPENAPI));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            resp
        }
        Route::Info => info::show(api),
        Route::Config => config::show(api),
        Route::Drain => drain::start(api),
        Route::Reload => reload::run(api).await,
        Route::Sessions => sessions::list(api, query.as_deref()),
        Route::Session(id) => sessions::show(api, id),
        Route::CloseSession(id) => sessions::close(api, id, req).await,
        Route::ClosePrincipal(name) => sessions::close_principal(api, name, req).await,
    }
}
