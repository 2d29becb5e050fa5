//! Users, passwords and tokens: adding, listing and removing users, argon2 password hashes,
//! signed expiring tokens (HS256 JWTs in the shape Airflow 3's `/auth/token` issues) and the
//! secrets behind them, generated once and kept in the state store so every instance (and
//! the CLI) shares them. The CLI's `users` commands and the web's auth layer call this.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{Service, ServiceError, ServiceResult};
use crate::store::UserRow;

/// How long a token from `/auth/token` or a dashboard login stays valid (Airflow's
/// default `jwt_expiration_time`).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The `aud` claim of our tokens (Airflow's default `jwt_audience`).
pub const TOKEN_AUDIENCE: &str = "apache-airflow";

/// The `iss` claim of our tokens.
pub const TOKEN_ISSUER: &str = "orchestrator";

/// Longest accepted user name.
const MAX_NAME: usize = 64;

/// Longest accepted password, in bytes (argon2 takes any length; this bounds the work).
const MAX_PASSWORD: usize = 1024;

const TOKEN_KEY: &str = "token_signing_key";
const WAKE_KEY: &str = "wake_secret";

/// What a user may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also triggers, pauses, clears and marks.
    Op,
    /// Also manages users.
    Admin,
}

impl Role {
    /// Whether this role may do what needs `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }

    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Op => "op",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "op" => Ok(Self::Op),
            "admin" => Ok(Self::Admin),
            other => Err(ServiceError::Invalid(format!(
                "unknown role '{other}' (expected viewer, op or admin)"
            ))),
        }
    }
}

/// A user as listed (never with the hash).
#[derive(Clone, Debug, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When the user was added.
    pub created_at: DateTime<Utc>,
}

/// Who a request acts as, with the role the user has now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Login name.
    pub name: String,
    /// Current role.
    pub role: Role,
}

/// The claims of our tokens: Airflow's (`sub`, `role`) and the registered ones.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    aud: String,
    iss: String,
}

/// Whether a request needs credentials now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No user exists and this server may run open (on loopback, or told to).
    Off,
    /// Requests need a user's credentials.
    On,
    /// This server must authenticate (it listens beyond loopback) but no user exists, so
    /// no request but the public ones can pass.
    NoUsers,
}

impl Service {
    /// Whether requests need credentials: as soon as any user exists, and always on a
    /// server that requires authentication. Checked per request, so users added or removed
    /// by the CLI while `serve` runs take effect at once.
    pub async fn auth_mode(&self) -> ServiceResult<AuthMode> {
        Ok(match (self.store.any_user().await?, self.auth_required) {
            (true, _) => AuthMode::On,
            (false, true) => AuthMode::NoUsers,
            (false, false) => AuthMode::Off,
        })
    }

    /// Whether any user exists.
    pub async fn any_user(&self) -> ServiceResult<bool> {
        Ok(self.store.any_user().await?)
    }

    /// Adds a user with a password.
    pub async fn add_user(&self, name: &str, role: Role, password: &str) -> ServiceResult<User> {
        check_name(name)?;
        let hash = hash_password(password).await?;
        if !self.store.insert_user(name, role.as_str(), &hash).await? {
            return Err(ServiceError::Conflict(format!(
                "user '{name}' already exists (see `orchestrator users set-password`)"
            )));
        }
        self.user(name).await
    }

    /// Every user, by name.
    pub async fn users(&self) -> ServiceResult<Vec<User>> {
        let rows = self.store.users().await?;
        rows.into_iter().map(user).collect()
    }

    /// One user by name.
    pub async fn user(&self, name: &str) -> ServiceResult<User> {
        let row = self.store.user(name).await?;
        user(row.ok_or_else(|| ServiceError::UnknownUser(name.to_string()))?)
    }

    /// Removes a user; tokens issued to them stop working at once.
    pub async fn remove_user(&self, name: &str) -> ServiceResult<()> {
        match self.store.delete_user(name).await? {
            true => Ok(()),
            false => Err(ServiceError::UnknownUser(name.to_string())),
        }
    }

    /// Sets a user's password; tokens issued before stop working.
    pub async fn set_password(&self, name: &str, password: &str) -> ServiceResult<()> {
        let hash = hash_password(password).await?;
        match self.store.set_password_hash(name, &hash).await? {
            true => Ok(()),
            false => Err(ServiceError::UnknownUser(name.to_string())),
        }
    }

    /// Sets a user's role; tokens already issued carry the new role at once.
    pub async fn set_role(&self, name: &str, role: Role) -> ServiceResult<User> {
        match self.store.set_user_role(name, role.as_str()).await? {
            true => self.user(name).await,
            false => Err(ServiceError::UnknownUser(name.to_string())),
        }
    }

    /// The user these credentials belong to, or `None`. An unknown name costs the same
    /// argon2 work as a wrong password, so timing does not tell whether a user exists.
    pub async fn authenticate(
        &self,
        name: &str,
        password: &str,
    ) -> ServiceResult<Option<Principal>> {
        let row = match name.len() <= MAX_NAME && password.len() <= MAX_PASSWORD {
            true => self.store.user(name).await?,
            false => None,
        };
        let hash = match &row {
            Some(r) => r.password_hash.clone(),
            None => dummy_hash().await?,
        };
        let matches = verify_password(password.as_bytes().to_vec(), hash).await?;
        match (row, matches) {
            (Some(row), true) => Ok(Some(Principal {
                role: row.role.parse()?,
                name: row.name,
            })),
            _ => Ok(None),
        }
    }

    /// Signs a token for `who`, valid for [`TOKEN_LIFETIME`].
    pub async fn issue_token(&self, who: &Principal) -> ServiceResult<String> {
        self.issue_token_at(who, Utc::now().timestamp(), TOKEN_LIFETIME)
            .await
    }

    async fn issue_token_at(
        &self,
        who: &Principal,
        now: i64,
        lifetime: Duration,
    ) -> ServiceResult<String> {
        let claims = Claims {
            sub: who.name.clone(),
            role: who.role,
            iat: now,
            nbf: now,
            exp: now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            jti: hex(&random_bytes::<16>()?),
            aud: TOKEN_AUDIENCE.into(),
            iss: TOKEN_ISSUER.into(),
        };
        let key = EncodingKey::from_secret(&self.token_key().await?)
            .map_err(|e| ServiceError::Crypto(format!("bad token-signing key: {e}")))?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|e| ServiceError::Crypto(format!("cannot sign a token: {e}")))
    }

    /// The user a token was issued to, with their current role; `None` when the token is
    /// malformed, tampered with, expired, issued before the user's last password change,
    /// or the user no longer exists.
    pub async fn verify_token(&self, token: &str) -> ServiceResult<Option<Principal>> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let key = DecodingKey::from_secret(&self.token_key().await?)
            .map_err(|e| ServiceError::Crypto(format!("bad token-signing key: {e}")))?;
        let Ok(data) = jsonwebtoken::decode::<Claims>(token, &key, &validation) else {
            return Ok(None);
        };
        self.current_principal(&data.claims.sub, data.claims.iat)
            .await
    }

    /// The user `name` with their current role, provided they still exist and their
    /// password has not changed since `verified_at` (unix seconds) — for credentials
    /// checked earlier (a token's issue time, a cached basic-auth check).
    pub async fn current_principal(
        &self,
        name: &str,
        verified_at: i64,
    ) -> ServiceResult<Option<Principal>> {
        let Some(row) = self.store.user(name).await? else {
            return Ok(None);
        };
        if verified_at < row.credentials_changed_at {
            return Ok(None);
        }
        Ok(Some(Principal {
            role: row.role.parse()?,
            name: row.name,
        }))
    }

    /// The secret the CLI sends with its wake-up once users exist (created on first need).
    pub async fn wake_secret(&self) -> ServiceResult<String> {
        let secret = random_secret()?;
        Ok(self.store.setting_or_insert(WAKE_KEY, || secret).await?)
    }

    /// Whether a wake-up may pass: always while auth is off, otherwise only with the
    /// store's wake secret.
    pub async fn wake_allowed(&self, presented: Option<&str>) -> ServiceResult<bool> {
        if self.auth_mode().await? == AuthMode::Off {
            return Ok(true);
        }
        let Some(presented) = presented else {
            return Ok(false);
        };
        let secret = self.wake_secret().await?;
        Ok(constant_time_eq(presented.as_bytes(), secret.as_bytes()))
    }

    /// The token-signing key, read from the store once per process.
    async fn token_key(&self) -> ServiceResult<Vec<u8>> {
        let text = self
            .secrets
            .get_or_try_init(|| async {
                let secret = random_secret()?;
                let stored = self.store.setting_or_insert(TOKEN_KEY, || secret).await?;
                Ok::<_, ServiceError>(stored)
            })
            .await?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| ServiceError::Crypto("the stored token-signing key is corrupt".into()))
    }
}

fn user(row: UserRow) -> ServiceResult<User> {
    Ok(User {
        role: row.role.parse()?,
        name: row.name,
        created_at: row.created_at,
    })
}

/// Checks a new user's name: 1–64 letters, digits, `.`, `_`, `-` or `@`.
fn check_name(name: &str) -> ServiceResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    match ok {
        true => Ok(()),
        false => Err(ServiceError::Invalid(format!(
            "invalid user name '{}': use 1 to {MAX_NAME} letters, digits, '.', '_', '-' or '@'",
            name.escape_debug()
        ))),
    }
}

/// Hashes a new password with argon2id (default parameters, random salt).
async fn hash_password(password: &str) -> ServiceResult<String> {
    if password.is_empty() {
        return Err(ServiceError::Invalid(
            "the password must not be empty".into(),
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ServiceError::Invalid(format!(
            "the password is longer than {MAX_PASSWORD} bytes"
        )));
    }
    let password = password.as_bytes().to_vec();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(&password)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ServiceError::Crypto(format!("password hashing stopped: {e}")))?
    .map_err(|e| ServiceError::Crypto(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches a PHC hash (argon2 work off the async threads).
async fn verify_password(password: Vec<u8>, hash: String) -> ServiceResult<bool> {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|h| Argon2::default().verify_password(&password, &h).is_ok())
    })
    .await
    .map_err(|e| ServiceError::Crypto(format!("password check stopped: {e}")))
}

/// A hash of a random password, verified against when the user is unknown.
async fn dummy_hash() -> ServiceResult<String> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash.clone());
    }
    let hash = hash_password(&random_secret()?).await?;
    Ok(DUMMY.get_or_init(|| hash).clone())
}

fn random_bytes<const N: usize>() -> ServiceResult<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Crypto(format!("the OS random generator failed: {e}")))?;
    Ok(bytes)
}

/// 256 random bits, URL-safe base64.
fn random_secret() -> ServiceResult<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
