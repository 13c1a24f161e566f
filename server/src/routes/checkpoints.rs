//! `/v1/sessions/{id}/checkpoints`: a session's work kept off its sandbox (see
//! [`crate::checkpoints`]).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::checkpoint_store::BlobStore;
use crate::checkpoints::{object_key, retain, valid_name};
use crate::clock::Now;
use crate::error::{ApiError, ApiPath, ErrorBody};
use crate::model::rfc3339_ms;
use crate::responses::{NO_SESSION, UNAUTHORIZED};
use crate::state::AppState;
use crate::storage::{CheckpointRow, NewCheckpoint};

/// The `meta` part of an upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// The client's id for it, unique in the session: 1 to 64 of `A-Z a-z 0-9 - _ .`.
    pub name: String,
    /// The checkpoint whose bundle this one's builds on (its prerequisites are there); absent:
    /// self-contained except for commits of the repository's public history.
    #[serde(default)]
    pub base: Option<String>,
    /// Later checkpoints may build on this one.
    #[serde(default)]
    pub anchor: bool,
    /// SHA-256 of the bundle, hexadecimal: the upload is refused when the bytes differ.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// The bundle's length in bytes.
    pub size_bytes: u64,
    /// Keep at most this many checkpoints of the session (the server's limit caps it).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub keep: Option<u32>,
    /// What the client needs to use it again (a JSON object of at most 16 KiB).
    #[serde(default)]
    pub info: Option<Value>,
}

/// The document's view of the multipart body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// `CheckpointMeta` as JSON; must come first.
    meta: CheckpointMeta,
    /// The git bundle.
    #[schema(value_type = String, format = Binary)]
    bundle: Vec<u8>,
}

/// A stored checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checkpoint {
    pub name: String,
    pub base: Option<String>,
    pub anchor: bool,
    pub size_bytes: i64,
    pub sha256: String,
    /// RFC 3339.
    pub created_at: String,
    pub info: Value,
}

impl From<&CheckpointRow> for Checkpoint {
    fn from(r: &CheckpointRow) -> Self {
        Checkpoint {
            name: r.name.clone(),
            base: r.base.clone(),
            anchor: r.anchor,
            size_bytes: r.size_bytes,
            sha256: r.sha256.clone(),
            created_at: rfc3339_ms(r.created_at_ms),
            info: serde_json::from_str(&r.info).unwrap_or(Value::Null),
        }
    }
}

/// `{"checkpoint": Checkpoint}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointBody {
    pub checkpoint: Checkpoint,
}

/// `{"checkpoints": [Checkpoint]}`, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointList {
    pub checkpoints: Vec<Checkpoint>,
}

async fn require_session(
    state: &AppState,
    account: &str,
    id: &str,
    now: Now,
) -> Result<(), ApiError> {
    match state.store.get_session(account, id, now.s()).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::session_not_found(id)),
    }
}

/// List a session's checkpoints
///
/// The checkpoints stored for the session, oldest first.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/checkpoints",
    operation_id = "list_checkpoints",
    tag = "checkpoints",
    params(("id" = String, Path, description = "Session id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Oldest first", body = CheckpointList),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CheckpointList>, ApiError> {
    require_session(&state, &p.account_id, &id, now).await?;
    let rows = state.store.list_checkpoints(&p.account_id, &id).await?;
    Ok(Json(CheckpointList {
        checkpoints: rows.iter().map(Checkpoint::from).collect(),
    }))
}

/// Download a checkpoint's bundle
///
/// The git bundle, streamed; `X-Rclaude-Sha256` carries the checksum recorded at upload, which
/// the client checks (a store that damaged it is caught there).
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/checkpoints/{name}",
    operation_id = "get_checkpoint",
    tag = "checkpoints",
    params(
        ("id" = String, Path, description = "Session id (UUID)"),
        ("name" = String, Path, description = "Checkpoint name"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The bundle", content_type = "application/octet-stream", body = String,
            headers(("x-rclaude-sha256" = String, description = "SHA-256 recorded at upload"))),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "No such session or checkpoint (`not_found`)", body = ErrorBody),
        (status = 502, description = "The checkpoint store failed (`checkpoint_store`)", body = ErrorBody),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    require_session(&state, &p.account_id, &id, now).await?;
    let rows = state.store.list_checkpoints(&p.account_id, &id).await?;
    let Some(row) = rows.into_iter().find(|r| r.name == name) else {
        return Err(ApiError::not_found(format!(
            "session {id} has no checkpoint {name:?}"
        )));
    };
    let stream = state
        .checkpoints
        .get(&row.object_key)
        .await
        .map_err(store_failed)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, row.size_bytes.to_string()),
            (
                header::HeaderName::from_static("x-rclaude-sha256"),
                row.sha256.clone(),
            ),
        ],
        Body::from_stream(stream.map_err(std::io::Error::other)),
    )
        .into_response())
}

fn store_failed(e: crate::checkpoint_store::BlobError) -> ApiError {
    tracing::error!(error = %e, "checkpoint store failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "checkpoint_store",
        "the checkpoint store failed; see the server log",
    )
}

/// Upload a checkpoint
///
/// A `multipart/form-data` body: `meta` (JSON, first), then `bundle` (the git bundle). The
/// bundle is streamed into the checkpoint store and recorded only when its length and SHA-256
/// match `meta`; until then nothing is visible, and a failed or interrupted upload leaves
/// nothing behind. Retention then keeps the session's newest checkpoints and those they build
/// on. Uploading a name already stored answers it (200) when the checksum matches.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/checkpoints",
    operation_id = "upload_checkpoint",
    tag = "checkpoints",
    params(("id" = String, Path, description = "Session id (UUID)")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = CheckpointBody),
        (status = 200, description = "Already stored (same name and checksum)", body = CheckpointBody),
        (status = 400, description = "Not a multipart body with `meta` then `bundle` (`invalid_multipart`), or a bundle of another length than `meta` says (`size_mismatch`)", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
        (status = 409, description = "The name is taken by another bundle (`checkpoint_exists`), or `base` is not stored (`unknown_base`)", body = ErrorBody),
        (status = 413, description = "Larger than the server keeps (`checkpoint_too_large`)", body = ErrorBody),
        (status = 422, description = "`meta` is not valid JSON (`invalid_json`) or has an unacceptable value (`invalid_request`), or the bytes do not match `sha256` (`checksum_mismatch`)", body = ErrorBody),
        (status = 502, description = "The checkpoint store failed (`checkpoint_store`)", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<CheckpointBody>), ApiError> {
    let mut form = form.map_err(|e| {
        bad_form(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    require_session(&state, &p.account_id, &id, now).await?;
    let meta_field = next_field(&mut form, "meta").await?;
    let meta_bytes = meta_field
        .bytes()
        .await
        .map_err(|e| ApiError::invalid(format!("reading `meta`: {e}")))?;
    let meta: CheckpointMeta = crate::error::parse_json(&meta_bytes)?;
    let limits = &state.config.checkpoints;
    validate(&meta, limits.max_bytes)?;
    let existing = state.store.list_checkpoints(&p.account_id, &id).await?;
    if let Some(same) = existing.iter().find(|c| c.name == meta.name) {
        return again(same, &meta);
    }
    if let Some(base) = &meta.base
        && !existing.iter().any(|c| &c.name == base)
    {
        return Err(ApiError::conflict(
            "unknown_base",
            format!("base checkpoint {base:?} is not stored for this session"),
        ));
    }
    let key = object_key(&p.account_id, &id, &meta.name);
    let bundle = next_field(&mut form, "bundle").await?;
    receive(&state.checkpoints, &key, bundle, &meta).await?;
    let info = meta
        .info
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let new = NewCheckpoint {
        name: meta.name.clone(),
        base: meta.base.clone(),
        anchor: meta.anchor,
        object_key: key.clone(),
        size_bytes: meta.size_bytes as i64,
        sha256: meta.sha256.clone(),
        info: info.to_string(),
    };
    let row = match state
        .store
        .insert_checkpoint(&p.account_id, &id, &new, now.ms())
        .await
    {
        Ok(Ok(row)) => row,
        Ok(Err(other)) => {
            // Another upload of the same name won the race.
            let _ = state.checkpoints.delete(&key).await;
            return again(&other, &meta);
        }
        Err(e) => {
            let _ = state.checkpoints.delete(&key).await;
            return Err(e.into());
        }
    };
    let keep = meta.keep.unwrap_or(limits.keep).clamp(1, limits.keep) as usize;
    if let Err(e) = retain(
        &state.store,
        &state.checkpoints,
        &p.account_id,
        &id,
        keep,
        now,
    )
    .await
    {
        tracing::warn!(session = %id, error = %e, "checkpoint retention failed");
    }
    Ok((
        StatusCode::CREATED,
        Json(CheckpointBody {
            checkpoint: Checkpoint::from(&row),
        }),
    ))
}

async fn next_field<'a>(form: &'a mut Multipart, want: &str) -> Result<Field<'a>, ApiError> {
    match form.next_field().await {
        Ok(Some(f)) if f.name() == Some(want) => Ok(f),
        Ok(Some(f)) => Err(bad_form(format!(
            "expected the part `{want}` next, got `{}` (send `meta`, then `bundle`)",
            f.name().unwrap_or("")
        ))),
        Ok(None) => Err(bad_form(format!("the part `{want}` is missing"))),
        Err(e) => Err(bad_form(format!("reading the body: {e}"))),
    }
}

fn bad_form(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_multipart", message)
}

fn validate(meta: &CheckpointMeta, max_bytes: u64) -> Result<(), ApiError> {
    if !valid_name(&meta.name) {
        return Err(ApiError::invalid(
            "`name`: 1 to 64 of A-Z a-z 0-9 - _ . (not starting with .)",
        ));
    }
    if let Some(b) = &meta.base
        && (!valid_name(b) || b == &meta.name)
    {
        return Err(ApiError::invalid("`base`: another checkpoint's name"));
    }
    if meta.sha256.len() != 64
        || !meta
            .sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(ApiError::invalid(
            "`sha256`: 64 lowercase hexadecimal digits",
        ));
    }
    if meta.keep == Some(0) {
        return Err(ApiError::invalid("`keep`: at least 1"));
    }
    if let Some(info) = &meta.info
        && (!info.is_object() || info.to_string().len() > 16 * 1024)
    {
        return Err(ApiError::invalid("`info`: a JSON object of at most 16 KiB"));
    }
    if meta.size_bytes > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "checkpoint_too_large",
            format!(
                "the checkpoint is {} bytes; this server keeps checkpoints of at most {max_bytes} bytes (its `checkpoint_max_bytes`)",
                meta.size_bytes
            ),
        ));
    }
    Ok(())
}

/// A name already stored: the same bundle again is fine, another one is a conflict.
fn again(
    row: &CheckpointRow,
    meta: &CheckpointMeta,
) -> Result<(StatusCode, Json<CheckpointBody>), ApiError> {
    if row.sha256 == meta.sha256 {
        return Ok((
            StatusCode::OK,
            Json(CheckpointBody {
                checkpoint: Checkpoint::from(row),
            }),
        ));
    }
    Err(ApiError::conflict(
        "checkpoint_exists",
        format!(
            "checkpoint {:?} is already stored with other content",
            row.name
        ),
    ))
}

/// Stream the bundle into object `key`, checking its length and checksum; on any mismatch or
/// failure the object never becomes visible.
async fn receive(
    store: &BlobStore,
    key: &str,
    mut field: Field<'_>,
    meta: &CheckpointMeta,
) -> Result<(), ApiError> {
    let mut up = store.upload(key).await.map_err(store_failed)?;
    let mut hash = Sha256::new();
    let mut n: u64 = 0;
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                up.abort().await;
                return Err(ApiError::invalid(format!("reading `bundle`: {e}")));
            }
        };
        n += chunk.len() as u64;
        if n > meta.size_bytes {
            up.abort().await;
            return Err(size_mismatch(meta.size_bytes, n, true));
        }
        hash.update(&chunk);
        if let Err(e) = up.write(chunk).await {
            up.abort().await;
            return Err(store_failed(e));
        }
    }
    if n != meta.size_bytes {
        up.abort().await;
        return Err(size_mismatch(meta.size_bytes, n, false));
    }
    let got = hex::encode(hash.finalize());
    if got != meta.sha256 {
        up.abort().await;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "checksum_mismatch",
            format!(
                "the bundle's SHA-256 is {got}, not {} as `meta` says: it was damaged on the way; nothing was stored",
                meta.sha256
            ),
        ));
    }
    up.finish().await.map_err(store_failed)
}

fn size_mismatch(want: u64, got: u64, more: bool) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "size_mismatch",
        format!(
            "the bundle is {}{got} bytes, `meta` says {want}; nothing was stored",
            if more { "over " } else { "" }
        ),
    )
}
