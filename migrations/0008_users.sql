-- Users of the dashboard and the REST API. Kept in the state store so every instance
-- sharing it sees the same users. `password_hash` is an argon2 PHC string; tokens issued
-- before `credentials_changed_at` (unix seconds) are no longer accepted.
CREATE TABLE users (
    name TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'op', 'admin')),
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    credentials_changed_at INTEGER NOT NULL
);

-- Secrets generated once and shared by every process on the store: the token-signing key
-- and the CLI's wake-up secret. Created on first need with INSERT OR IGNORE.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
