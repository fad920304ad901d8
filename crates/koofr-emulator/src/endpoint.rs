//! The emulator's endpoints as one typed table: each [`Endpoint`] has its name (as in the request
//! log and fault rules), path pattern, methods, family, API versions and handler. Routing, the
//! method check and 405 `Allow`, fault rules and the request log all read this table.

use std::fmt;

use futures::future::BoxFuture;
use http::{HeaderMap, Method, Request};
use hyper::body::Incoming;

use crate::handlers::{account, auth, changes, download, metadata, token, upload};
use crate::response::{ApiError, HandlerResult};
use crate::server::Ctx;

/// Declares the enum and [`Endpoint::ALL`] from one list, so that the two cannot drift.
macro_rules! endpoints {
    ($($(#[$doc:meta])* $variant:ident,)*) => {
        /// A route class of the emulator: one Koofr endpoint, or [`Endpoint::Unknown`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Endpoint {
            $($(#[$doc])* $variant,)*
        }

        impl Endpoint {
            /// Every endpoint, in the order of the table.
            pub const ALL: &'static [Endpoint] = &[$(Endpoint::$variant,)*];
        }
    };
}

endpoints! {
    /// `GET /api/{v}/mounts` (spec §7.1).
    Mounts,
    /// `GET /api/v2.1/places`, the v2.1 name of the mount list.
    Places,
    /// `GET /api/{v}/mounts/{m}` (§7.2).
    Mount,
    /// `GET /api/{v}/user` (§7.3).
    User,
    /// `GET …/files/info` (§7.4).
    FilesInfo,
    /// `GET …/files/list` (§7.5).
    FilesList,
    /// `GET /api/v2/…/files/tree` (§7.6, absent from v2.1).
    FilesTree,
    /// `GET /content/…/files/listrecursive` (§7.7).
    FilesListRecursive,
    /// `GET /content/…/files/get` (§7.8); on the API family it answers 303 to the content URL.
    FilesGet,
    /// `POST /content/…/files/put` (§7.9).
    FilesPut,
    /// `POST …/files/folder` (§7.10).
    FilesFolder,
    /// `DELETE …/files/remove` (§7.11).
    FilesRemove,
    /// `PUT …/files/copy` (§7.12).
    FilesCopy,
    /// `PUT …/files/move` (§7.13).
    FilesMove,
    /// `PUT …/files/rename` (§7.14).
    FilesRename,
    /// `POST /api/{v}/mounts/{m}/links` (§7.15).
    Links,
    /// `GET|POST|DELETE /token`, the legacy token flow (§3.2).
    Token,
    /// `GET /oauth2/auth` (§3.3).
    OAuthAuth,
    /// `POST /oauth2/token` (§3.3).
    OAuthToken,
    /// Any other path, with any method: answered 404, or 501 for a Koofr endpoint the emulator
    /// does not implement.
    Unknown,
}

/// Where an endpoint lives (spec §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `/api/{v}/…`
    Api,
    /// `/content/api/{v}/…`
    Content,
    /// Outside the versioned API: `/token`, `/oauth2/…`.
    Root,
}

/// The API versions an endpoint exists in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versions {
    Both,
    V2Only,
    V21Only,
}

/// Serves one request of an endpoint once the route checks have passed.
pub(crate) type Handler = fn(Ctx, Request<Incoming>) -> BoxFuture<'static, HandlerResult>;

/// One row of the table.
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    /// The full path: `{v}` is the API version, `{m}` a mount id or `primary`.
    pub(crate) pattern: &'static str,
    /// The methods it serves; empty for [`Endpoint::Unknown`], which takes any.
    pub(crate) methods: &'static [Method],
    pub(crate) family: Family,
    pub(crate) versions: Versions,
    pub(crate) handler: Handler,
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const PUT: &[Method] = &[Method::PUT];
const DELETE: &[Method] = &[Method::DELETE];
const TOKEN: &[Method] = &[Method::GET, Method::POST, Method::DELETE];

fn row(
    name: &'static str,
    pattern: &'static str,
    methods: &'static [Method],
    family: Family,
    versions: Versions,
    handler: Handler,
) -> Spec {
    Spec {
        name,
        pattern,
        methods,
        family,
        versions,
        handler,
    }
}

impl Endpoint {
    /// The table. Each handler borrows the context; `Box::pin(async move { … })` adapts it to
    /// the one `Handler` shape.
    #[rustfmt::skip]
    pub(crate) fn spec(self) -> Spec {
        use Endpoint as E;
        use Family::{Api, Content, Root};
        use Versions::{Both, V2Only, V21Only};
        match self {
            E::Mounts => row("mounts", "/api/{v}/mounts", GET, Api, Both,
                |c, _| Box::pin(async move { account::mounts(&c, "mounts") })),
            E::Places => row("places", "/api/{v}/places", GET, Api, V21Only,
                |c, _| Box::pin(async move { account::mounts(&c, "places") })),
            E::Mount => row("mount", "/api/{v}/mounts/{m}", GET, Api, Both,
                |c, _| Box::pin(async move { account::mount(&c) })),
            E::User => row("user", "/api/{v}/user", GET, Api, Both,
                |c, _| Box::pin(async move { account::user(&c) })),
            E::FilesInfo => row("files/info", "/api/{v}/mounts/{m}/files/info", GET, Api, Both,
                |c, _| Box::pin(async move { metadata::info(&c) })),
            E::FilesList => row("files/list", "/api/{v}/mounts/{m}/files/list", GET, Api, Both,
                |c, _| Box::pin(async move { metadata::list(&c) })),
            E::FilesTree => row("files/tree", "/api/{v}/mounts/{m}/files/tree", GET, Api, V2Only,
                |c, _| Box::pin(async move { metadata::tree(&c) })),
            E::FilesListRecursive => row("files/listrecursive",
                "/content/api/{v}/mounts/{m}/files/listrecursive", GET, Content, Both,
                |c, _| Box::pin(async move { metadata::list_recursive(&c) })),
            E::FilesGet => row("files/get", "/content/api/{v}/mounts/{m}/files/get", GET, Content,
                Both, |c, _| Box::pin(async move {
                    if c.route.family == Family::Api {
                        download::get_redirect(&c)
                    } else {
                        download::get(&c).await
                    }
                })),
            E::FilesPut => row("files/put", "/content/api/{v}/mounts/{m}/files/put", POST, Content,
                Both, |c, req| Box::pin(async move { upload::put(&c, req).await })),
            E::FilesFolder => row("files/folder", "/api/{v}/mounts/{m}/files/folder", POST, Api,
                Both, |c, req| Box::pin(async move { changes::folder(&c, req).await })),
            E::FilesRemove => row("files/remove", "/api/{v}/mounts/{m}/files/remove", DELETE, Api,
                Both, |c, _| Box::pin(async move { changes::remove(&c) })),
            E::FilesCopy => row("files/copy", "/api/{v}/mounts/{m}/files/copy", PUT, Api, Both,
                |c, req| Box::pin(async move { changes::copy_or_move(&c, req, false).await })),
            E::FilesMove => row("files/move", "/api/{v}/mounts/{m}/files/move", PUT, Api, Both,
                |c, req| Box::pin(async move { changes::copy_or_move(&c, req, true).await })),
            E::FilesRename => row("files/rename", "/api/{v}/mounts/{m}/files/rename", PUT, Api,
                Both, |c, req| Box::pin(async move { changes::rename(&c, req).await })),
            E::Links => row("links", "/api/{v}/mounts/{m}/links", POST, Api, Both,
                |c, req| Box::pin(async move { changes::link(&c, req).await })),
            E::Token => row("token", "/token", TOKEN, Root, Both,
                |c, req| Box::pin(async move { token::token(&c, req).await })),
            E::OAuthAuth => row("oauth2/auth", "/oauth2/auth", GET, Root, Both,
                |c, _| Box::pin(async move { token::oauth_auth(&c) })),
            E::OAuthToken => row("oauth2/token", "/oauth2/token", POST, Root, Both,
                |c, req| Box::pin(async move { token::oauth_token(&c, req).await })),
            E::Unknown => row("unknown", "", &[], Root, Both,
                |c, req| Box::pin(async move { unknown(&c, &req) })),
        }
    }

    /// The name in the request log and in fault rules, e.g. `"files/put"`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The path pattern, e.g. `/content/api/{v}/mounts/{m}/files/put` (empty for `Unknown`).
    pub fn pattern(self) -> &'static str {
        self.spec().pattern
    }

    /// The methods it serves; empty for `Unknown`, which is any request that matches no
    /// endpoint, whatever its method.
    pub fn methods(self) -> &'static [Method] {
        self.spec().methods
    }

    /// Whether a request with `method` can reach this endpoint (`method` in any case).
    pub fn takes(self, method: &str) -> bool {
        let methods = self.methods();
        methods.is_empty()
            || methods
                .iter()
                .any(|m| m.as_str().eq_ignore_ascii_case(method))
    }

    /// The endpoint with this name, if any.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.iter().copied().find(|e| e.name() == name)
    }

    /// Every name, comma-separated, for error messages.
    pub(crate) fn names() -> String {
        let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        names.join(", ")
    }

    /// The endpoint with this name, for the fault-rule constructors.
    ///
    /// # Panics
    /// If no endpoint has that name (a test-setup mistake).
    pub(crate) fn named(name: &str) -> Endpoint {
        Endpoint::from_name(name).unwrap_or_else(|| {
            panic!(
                "unknown emulator endpoint {name:?}; known: {}",
                Endpoint::names()
            )
        })
    }

    /// The part of the pattern after the version (`mounts/{m}/files/info`); None for the root
    /// endpoints and `Unknown`.
    fn tail(self) -> Option<&'static str> {
        self.pattern().split_once("/{v}/").map(|(_, tail)| tail)
    }

    /// The prefix of the family it lives in (`/api`, `/content/api`), for error messages.
    pub(crate) fn family_prefix(self) -> &'static str {
        self.pattern()
            .split_once("/{v}")
            .map_or(self.pattern(), |(prefix, _)| prefix)
    }

    /// Whether a request under `family` is served here; `files/get` also answers on the API
    /// family (with a redirect), as Koofr does.
    pub(crate) fn answers_on(self, family: Family) -> bool {
        self.spec().family == family || (self == Endpoint::FilesGet && family == Family::Api)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Koofr endpoints the emulator knows exist but does not implement (answered with 501).
const NOT_IMPLEMENTED: &[&str] = &[
    "search",
    "versions",
    "zip",
    "sync",
    "trash",
    "shared",
    "jobs",
    "devices",
    "connections",
];

/// The endpoint, API version, family and mount of a request.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) endpoint: Endpoint,
    /// "v2", "v2.1" (from the path or `X-Koofr-Version: 2.1`) or "" (root and unknown paths).
    pub(crate) version: &'static str,
    /// The family of the request's path, which may differ from the endpoint's.
    pub(crate) family: Family,
    pub(crate) mount: Option<String>,
    /// An unknown path naming a Koofr endpoint the emulator does not implement (501).
    pub(crate) not_implemented: bool,
}

impl Route {
    pub(crate) fn v21(&self) -> bool {
        self.version == "v2.1"
    }

    /// Finds the route of a URL path in the table.
    pub(crate) fn of(path: &str, headers: &HeaderMap) -> Route {
        let unknown = |family, not_implemented| Route {
            endpoint: Endpoint::Unknown,
            version: "",
            family,
            mount: None,
            not_implemented,
        };
        if let Some(endpoint) = Endpoint::ALL.iter().copied().find(|e| {
            *e != Endpoint::Unknown && e.spec().family == Family::Root && e.pattern() == path
        }) {
            return Route {
                endpoint,
                ..unknown(Family::Root, false)
            };
        }
        let (family, rest) = if let Some(rest) = path.strip_prefix("/content/api/") {
            (Family::Content, rest)
        } else if let Some(rest) = path.strip_prefix("/api/") {
            (Family::Api, rest)
        } else {
            return unknown(Family::Root, false);
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let header_v21 = headers
            .get("x-koofr-version")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "2.1");
        let version = match segments[0] {
            "v2" if header_v21 => "v2.1",
            "v2" => "v2",
            "v2.1" => "v2.1",
            _ => return unknown(family, false),
        };
        let segments = &segments[1..];
        for &endpoint in Endpoint::ALL {
            let Some(tail) = endpoint.tail() else {
                continue;
            };
            if let Some(mount) = match_tail(tail, segments) {
                return Route {
                    endpoint,
                    version,
                    family,
                    mount,
                    not_implemented: false,
                };
            }
        }
        let not_implemented = match segments {
            ["mounts", _, "files", op] => NOT_IMPLEMENTED.contains(op),
            [first, ..] => NOT_IMPLEMENTED.contains(first),
            [] => false,
        };
        unknown(family, not_implemented)
    }
}

/// Matches path segments against a pattern tail; on a match, returns the `{m}` segment if the
/// pattern has one.
fn match_tail(tail: &str, segments: &[&str]) -> Option<Option<String>> {
    let pattern: Vec<&str> = tail.split('/').collect();
    if pattern.len() != segments.len() {
        return None;
    }
    let mut mount = None;
    for (want, got) in pattern.iter().zip(segments) {
        match *want {
            "{m}" => mount = Some((*got).to_string()),
            literal if literal == *got => {}
            _ => return None,
        }
    }
    Some(mount)
}

/// The answer for [`Endpoint::Unknown`]: 501 for a Koofr endpoint the emulator does not
/// implement, 404 otherwise.
fn unknown(ctx: &Ctx, req: &Request<Incoming>) -> HandlerResult {
    let path = req.uri().path();
    let method = &ctx.method;
    Err(if ctx.route.not_implemented {
        ApiError::new(
            501,
            "Other",
            format!("{method} {path} is a Koofr endpoint the emulator does not implement"),
        )
    } else {
        ApiError::new(
            404,
            "NotFound",
            format!(
                "Unknown endpoint {method} {path}: the emulator serves the Koofr API under /api/v2, /api/v2.1, /content/api/v2 and /content/api/v2.1"
            ),
        )
    }
    .into())
}

/// Checks a known endpoint's method, family, credentials and version, in that order.
pub(crate) fn check(ctx: &Ctx, path: &str) -> Result<(), crate::response::Failure> {
    let endpoint = ctx.route.endpoint;
    let spec = endpoint.spec();
    if !endpoint.takes(ctx.method.as_str()) {
        let allowed: Vec<&str> = spec.methods.iter().map(Method::as_str).collect();
        let allowed = allowed.join(", ");
        return Err(ApiError::new(
            405,
            "BadRequest",
            format!(
                "Method {} is not allowed on {endpoint}; use {allowed}",
                ctx.method
            ),
        )
        .with_header(http::header::ALLOW, allowed)
        .into());
    }
    if !endpoint.answers_on(ctx.route.family) {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "{endpoint} is served under {}/{}, not {path}",
                endpoint.family_prefix(),
                ctx.route.version
            ),
        )
        .into());
    }
    if spec.family == Family::Root {
        // The token and OAuth2 endpoints are how a client gets credentials.
        return Ok(());
    }
    auth::authenticate(ctx)?;
    match spec.versions {
        Versions::V21Only if !ctx.route.v21() => Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "{endpoint} is a v2.1 endpoint (use {} or X-Koofr-Version: 2.1)",
                spec.pattern.replace("{v}", "v2.1")
            ),
        )
        .into()),
        Versions::V2Only if ctx.route.v21() => Err(ApiError::new(
            404,
            "NotFound",
            format!("{endpoint} is a v2 endpoint, absent from v2.1"),
        )
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for &endpoint in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(endpoint.name()), Some(endpoint));
        }
        assert_eq!(Endpoint::from_name("files/nope"), None);
    }

    #[test]
    fn every_pattern_routes_to_its_endpoint() {
        let headers = HeaderMap::new();
        for &endpoint in Endpoint::ALL {
            if endpoint == Endpoint::Unknown {
                continue;
            }
            let path = endpoint
                .pattern()
                .replace("{v}", "v2")
                .replace("{m}", "primary");
            let route = Route::of(&path, &headers);
            assert_eq!(route.endpoint, endpoint, "{path}");
            if endpoint.pattern().contains("{m}") {
                assert_eq!(route.mount.as_deref(), Some("primary"), "{path}");
            }
            assert!(!endpoint.methods().is_empty(), "{endpoint}");
        }
        assert_eq!(
            Route::of("/api/v2/mounts/m/files/zzz", &headers).endpoint,
            Endpoint::Unknown
        );
    }
}
