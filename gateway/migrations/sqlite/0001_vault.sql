-- The token vault (docs/vault.md). Portable SQL only (TEXT and BIGINT; sealed values are
-- base64 text), so the PostgreSQL backend can ship the same statements.

-- Data keys, each sealed (AES-256-GCM) by the key-encryption key. The newest seals new values.
CREATE TABLE vault_keys (
    key_id     TEXT   NOT NULL PRIMARY KEY,
    wrapped    TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- One consented grant per (issuer, user, agent, target); agent '' = not bound to one agent.
-- Tokens are sealed values `KEYID.BASE64`; revision counts writes (compare-and-set).
CREATE TABLE vault_grants (
    issuer        TEXT   NOT NULL,
    user_name     TEXT   NOT NULL,
    agent         TEXT   NOT NULL,
    target        TEXT   NOT NULL,
    scopes        TEXT   NOT NULL,
    access_token  TEXT   NOT NULL,
    refresh_token TEXT,
    expires_at    BIGINT,
    revision      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (issuer, user_name, agent, target)
);
CREATE INDEX vault_grants_by_user ON vault_grants (user_name, agent, target);

-- Consents waiting for the user. id_digest is SHA-256 of the id in the consent link, so the
-- file does not hold working links.
CREATE TABLE vault_pending (
    id_digest     TEXT   NOT NULL PRIMARY KEY,
    issuer        TEXT   NOT NULL,
    user_name     TEXT   NOT NULL,
    agent         TEXT   NOT NULL,
    target        TEXT   NOT NULL,
    scopes        TEXT   NOT NULL,
    pkce_verifier TEXT   NOT NULL,
    session_id    TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX vault_pending_by_expiry ON vault_pending (expires_at);
