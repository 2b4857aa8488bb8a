//! `[authentication]` over the admin API:
//!
//! - `POST /api/v5/authentication/reload`: reads the password file and the
//!   ACL file again (as SIGHUP does); 204, or 400 naming the file and line
//!   of the first bad one (the old files stay).
//! - EMQX 5's built-in database users,
//!   `/api/v5/authentication/password_based:built_in_database/users`:
//!   `POST` `{"user_id", "password", "is_superuser"}` (201, 409 when the
//!   user exists), `GET` paged like `/api/v5/clients`, and
//!   `GET` / `PUT` (`{"password"?, "is_superuser"?}`) / `DELETE` (204)
//!   `.../users/{user_id}`. A user is shown as `{"user_id",
//!   "is_superuser"}`, never with its password or hash. 404 when
//!   `built_in_database` is off.

use super::api::{error, AdminState};
use super::clients::{page_json, parse_paging};
use crate::authn::{Authn, DbError, UserDb, UserInfo};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub const USERS_PATH: &str = "/api/v5/authentication/password_based:built_in_database/users";

pub async fn reload(State(state): State<Arc<AdminState>>) -> Response {
    let Some(authn) = &state.authn else {
        return StatusCode::NO_CONTENT.into_response();
    };
    match authn.reload() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            None,
            &format!("reload refused, the old files stay: {e}"),
        ),
    }
}

// The error is the answer itself, built once per refused request.
#[allow(clippy::result_large_err)]
fn database(state: &AdminState) -> Result<&UserDb, Response> {
    state
        .authn
        .as_deref()
        .and_then(Authn::database)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                None,
                "the built-in database is not enabled (authentication.built_in_database)",
            )
        })
}

fn user_json(user: &UserInfo) -> Value {
    json!({ "user_id": user.user_id, "is_superuser": user.is_superuser })
}

fn db_error(e: DbError) -> Response {
    match e {
        DbError::Invalid(field, message) => error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            Some(field),
            &format!("{field}: {message}"),
        ),
        DbError::AlreadyExists => error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            Some("user_id"),
            "User already exists",
        ),
        DbError::NotFound => error(StatusCode::NOT_FOUND, "NOT_FOUND", None, "User not found"),
        DbError::Storage(message) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            None,
            &message,
        ),
    }
}

/// Parses a JSON body, naming the bad field in a 400.
#[allow(clippy::result_large_err)] // the error is the answer itself
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Response> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            (field != ".").then_some(field.as_str()),
            &format!("bad request body: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    user_id: String,
    password: String,
    #[serde(default)]
    is_superuser: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserUpdate {
    password: Option<String>,
    is_superuser: Option<bool>,
}

pub async fn add_user(State(state): State<Arc<AdminState>>, bytes: Bytes) -> Response {
    let db = match database(&state) {
        Ok(db) => db,
        Err(r) => return r,
    };
    let new: NewUser = match body(&bytes) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match db.add(&new.user_id, &new.password, new.is_superuser) {
        Ok(()) => {
            tracing::info!(user_id = %new.user_id, "built-in database: user added");
            let user = UserInfo {
                user_id: new.user_id,
                is_superuser: new.is_superuser,
            };
            (StatusCode::CREATED, Json(user_json(&user))).into_response()
        }
        Err(e) => db_error(e),
    }
}

pub async fn list_users(
    State(state): State<Arc<AdminState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let db = match database(&state) {
        Ok(db) => db,
        Err(r) => return r,
    };
    let paging = match parse_paging(query.as_deref()) {
        Ok(p) => p,
        Err((field, message)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                Some(field),
                &message,
            )
        }
    };
    let (users, count) = db.list(paging.skip(), paging.limit);
    page_json(users.iter().map(user_json).collect(), paging, count)
}

pub async fn get_user(
    State(state): State<Arc<AdminState>>,
    Path(user_id): Path<String>,
) -> Response {
    let db = match database(&state) {
        Ok(db) => db,
        Err(r) => return r,
    };
    match db.get(&user_id) {
        Some(user) => Json(user_json(&user)).into_response(),
        None => db_error(DbError::NotFound),
    }
}

pub async fn update_user(
    State(state): State<Arc<AdminState>>,
    Path(user_id): Path<String>,
    bytes: Bytes,
) -> Response {
    let db = match database(&state) {
        Ok(db) => db,
        Err(r) => return r,
    };
    let update: UserUpdate = match body(&bytes) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match db.update(&user_id, update.password.as_deref(), update.is_superuser) {
        Ok(user) => {
            tracing::info!(user_id = %user_id, "built-in database: user changed");
            Json(user_json(&user)).into_response()
        }
        Err(e) => db_error(e),
    }
}

pub async fn delete_user(
    State(state): State<Arc<AdminState>>,
    Path(user_id): Path<String>,
) -> Response {
    let db = match database(&state) {
        Ok(db) => db,
        Err(r) => return r,
    };
    match db.delete(&user_id) {
        Ok(()) => {
            tracing::info!(user_id = %user_id, "built-in database: user deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => db_error(e),
    }
}
