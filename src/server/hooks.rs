//! The embedder's hooks: asked before a channel is created (by any path) or deleted over HTTP,
//! each an async function that may refuse with a status and a message ([`RequestError`]).

use std::sync::Arc;

use super::Server;
use crate::protocol::Error;

/// Why a hook refused a request: answered with `status` (a 4xx or 5xx; anything else becomes 400)
/// and `message` as the body (the status's reason when empty).
#[derive(Debug, Clone)]
pub struct RequestError {
    pub status: ::http::StatusCode,
    pub message: String,
}

impl From<RequestError> for Error {
    fn from(refusal: RequestError) -> Error {
        let status = if refusal.status.is_client_error() || refusal.status.is_server_error() {
            refusal.status
        } else {
            ::http::StatusCode::BAD_REQUEST
        };
        let message = if refusal.message.is_empty() {
            status.canonical_reason().unwrap_or("Bad Request").into()
        } else {
            refusal.message
        };
        Error::Refused { status, message }
    }
}

/// What a hook is asked about: a channel to be created or deleted.
pub struct HookRequest<'a> {
    /// The channel's name.
    pub name: &'a str,
    /// The HTTP request asking for it (`POST /{name}`, a `POST /{name}/{seq}` that creates its
    /// channel, `DELETE /{name}`); `None` for a channel created in process
    /// ([`Server::create_channel`], a [`crate::local::LocalPublisher`]).
    pub http: Option<&'a ::http::request::Parts>,
}

/// What a hook returns: a future that decides (it may call out, for example to a database).
pub type HookFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), RequestError>> + Send>>;

/// A hook that runs before a channel is created (by any path) or deleted over HTTP, and may refuse
/// it. Refusal leaves the channel untouched. The hook reads what it needs from the request when
/// called; its future owns what it keeps.
pub type Hook = Arc<dyn Fn(HookRequest<'_>) -> HookFuture + Send + Sync>;

/// Makes a [`Hook`] of an async function or closure.
pub(super) fn hook<F, Fut>(hook: F) -> Hook
where
    F: Fn(HookRequest<'_>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), RequestError>> + Send + 'static,
{
    Arc::new(move |request| Box::pin(hook(request)))
}

impl Server {
    /// Asks the `before_create` hook, if any, whether `name` may be created.
    pub(crate) async fn may_create(
        &self,
        name: &str,
        http: Option<&::http::request::Parts>,
    ) -> Result<(), Error> {
        ask(self.inner.before_create.as_ref(), name, http).await
    }

    /// Asks the `before_delete` hook, if any, whether `name` may be deleted.
    pub(crate) async fn may_delete(
        &self,
        name: &str,
        http: &::http::request::Parts,
    ) -> Result<(), Error> {
        ask(self.inner.before_delete.as_ref(), name, Some(http)).await
    }
}

/// What `hook` (if any) answers about `name`.
async fn ask(
    hook: Option<&Hook>,
    name: &str,
    http: Option<&::http::request::Parts>,
) -> Result<(), Error> {
    match hook {
        Some(hook) => Ok(hook(HookRequest { name, http }).await?),
        None => Ok(()),
    }
}
