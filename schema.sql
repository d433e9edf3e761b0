-- The schema, as readable DDL: what migrating an empty database gives (the migrations under
-- server/store/migrations/ make it; tests/test_migrations.py holds them, this file and
-- server/store/tables.py to the same tables, columns, keys and indexes, on both engines).
-- Nothing runs this file: a database is created and upgraded by `python -m server migrate`
-- (docs/migrations.md). A change here comes with a new revision, never alone.
--
-- Written in the SQL both engines share. The one construct they spell differently, the
-- auto-increment primary key, is written `BIGSERIAL PRIMARY KEY`; on SQLite it is
-- `INTEGER NOT NULL PRIMARY KEY` (the rowid); and outbox.xid's default, a PostgreSQL
-- transaction id, is left out on SQLite. JSON documents are TEXT (the store encodes
-- them with orjson). Times are epoch seconds as DOUBLE PRECISION.

CREATE TABLE accounts (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    conversation_seq BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    access_token TEXT NOT NULL UNIQUE,
    pubsub_token TEXT NOT NULL UNIQUE,
    availability TEXT NOT NULL DEFAULT 'online',
    avatar_url TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE account_users (
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL DEFAULT 'agent',
    PRIMARY KEY (account_id, user_id)
);

CREATE TABLE inboxes (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    website_url TEXT,
    website_token TEXT NOT NULL UNIQUE,
    hmac_token TEXT NOT NULL,
    hmac_mandatory BOOLEAN NOT NULL DEFAULT FALSE,
    end_conversation BOOLEAN NOT NULL DEFAULT FALSE,
    welcome_title TEXT NOT NULL DEFAULT '',
    welcome_tagline TEXT NOT NULL DEFAULT '',
    widget_color TEXT NOT NULL DEFAULT '#1f93ff',
    elevenlabs_agent_id TEXT,
    elevenlabs_api_key TEXT,
    elevenlabs_webhook_secret TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    attachments_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- Resolving a conversation sends the CSAT survey (input_csat), as Chatwoot.
    csat_survey_enabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX inboxes_account ON inboxes (account_id);

CREATE TABLE inbox_members (
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    PRIMARY KEY (inbox_id, user_id)
);

CREATE TABLE contacts (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL DEFAULT '',
    email TEXT,
    phone_number TEXT,
    identifier TEXT,
    -- TRUE once a valid identifier_hash proved the identifier (server/widget/identity.py).
    identifier_verified BOOLEAN NOT NULL DEFAULT FALSE,
    avatar_url TEXT NOT NULL DEFAULT '',
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    additional_attributes TEXT NOT NULL DEFAULT '{}',
    custom_attributes TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX contacts_account_identifier ON contacts (account_id, identifier);

-- One verified contact per identifier and account: two visitors proving the same identifier at
-- once cannot make two (the second write fails and retries onto the first).
CREATE UNIQUE INDEX contacts_verified_identifier ON contacts (account_id, identifier)
    WHERE identifier_verified;

CREATE TABLE contact_inboxes (
    id BIGSERIAL PRIMARY KEY,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    source_id TEXT NOT NULL,
    pubsub_token TEXT NOT NULL UNIQUE,
    hmac_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (inbox_id, source_id)
);

CREATE INDEX contact_inboxes_contact ON contact_inboxes (contact_id);

CREATE TABLE conversations (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    display_id BIGINT NOT NULL,
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    contact_inbox_id BIGINT NOT NULL REFERENCES contact_inboxes (id),
    status TEXT NOT NULL DEFAULT 'open',
    assignee_id BIGINT REFERENCES users (id),
    additional_attributes TEXT NOT NULL DEFAULT '{}',
    custom_attributes TEXT NOT NULL DEFAULT '{}',
    contact_last_seen_at DOUBLE PRECISION,
    agent_last_seen_at DOUBLE PRECISION,
    unread_count INTEGER NOT NULL DEFAULT 0,
    last_activity_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    -- The titles of its labels, a JSON array (a handful: read with the row, no join).
    labels TEXT NOT NULL DEFAULT '[]',
    UNIQUE (account_id, display_id)
);

CREATE INDEX conversations_contact_inbox ON conversations (contact_inbox_id, id);

CREATE INDEX conversations_inbox_activity ON conversations (inbox_id, last_activity_at);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    message_type INTEGER NOT NULL,
    content_type TEXT NOT NULL DEFAULT 'text',
    content TEXT,
    private BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL DEFAULT 'sent',
    sender_type TEXT,
    sender_id BIGINT,
    source_id TEXT,
    echo_id TEXT,
    external_event_id TEXT,
    content_attributes TEXT NOT NULL DEFAULT '{}',
    additional_attributes TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (conversation_id, external_event_id)
);

CREATE INDEX messages_conversation ON messages (conversation_id, id);

-- A retried message (the same echo_id from the same sender) is written once: the database
-- refuses the second, even when both arrive at once (server/store/messages.py).
CREATE UNIQUE INDEX messages_sender_echo ON messages (sender_type, sender_id, echo_id)
    WHERE echo_id IS NOT NULL;

-- An account's labels (Chatwoot's Label): title lower case, unique per account.
CREATE TABLE labels (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    color TEXT NOT NULL DEFAULT '#1f93ff',
    show_on_sidebar BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (account_id, title)
);

-- One per answered CSAT survey message (the answer is also on the message, in Chatwoot's
-- shape): what agents list at /accounts/{id}/csat_survey_responses.
CREATE TABLE csat_survey_responses (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    message_id BIGINT NOT NULL UNIQUE REFERENCES messages (id),
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    assigned_agent_id BIGINT REFERENCES users (id),
    rating INTEGER NOT NULL,
    feedback_message TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX csat_survey_responses_account ON csat_survey_responses (account_id, id);

-- Durable events, written in the transaction of the data they describe; the relay publishes
-- them and never writes to them (what it has published is its position in relay_state).
-- xid: PostgreSQL, the id of the transaction that wrote the row; on SQLite the column has no
-- default and stays NULL (there the row id plays its part).
-- A visitor's voice call (server/voice/): live while ended_at is NULL, at most one live
-- call per contact_inbox; end_signal tells a heartbeat still arriving for it to stop.
CREATE TABLE voice_calls (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    contact_inbox_id BIGINT NOT NULL REFERENCES contact_inboxes (id),
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    elevenlabs_conversation_id TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    last_heartbeat_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    end_reason TEXT,
    end_signal BOOLEAN NOT NULL DEFAULT FALSE,
    reconciled_at DOUBLE PRECISION
);

CREATE INDEX voice_calls_contact_inbox ON voice_calls (contact_inbox_id, id);
CREATE INDEX voice_calls_conversation ON voice_calls (conversation_id, id);
CREATE UNIQUE INDEX voice_calls_live ON voice_calls (contact_inbox_id) WHERE ended_at IS NULL;
CREATE INDEX voice_calls_heartbeat ON voice_calls (last_heartbeat_at) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX voice_calls_elevenlabs ON voice_calls (elevenlabs_conversation_id)
    WHERE elevenlabs_conversation_id IS NOT NULL;

CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT,
    channels TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    xid BIGINT DEFAULT (pg_current_xact_id()::text::bigint)
);

-- The rows a position does not cover: those of transactions from its xmax on, or in its list.
CREATE INDEX outbox_xid ON outbox (xid, id) WHERE xid IS NOT NULL;

CREATE INDEX outbox_created ON outbox (created_at);

-- How far the relay has published (server/store/outbox.py, Position): one row, rewritten by
-- the relay a few times a second while it publishes, instead of every outbox row once.
CREATE TABLE relay_state (
    name TEXT NOT NULL PRIMARY KEY,
    position TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE attachments (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    message_id BIGINT NOT NULL REFERENCES messages (id),
    file_type TEXT NOT NULL,
    content_type TEXT NOT NULL,
    file_name TEXT NOT NULL,
    byte_size BIGINT NOT NULL,
    storage_key TEXT NOT NULL UNIQUE,
    thumb_key TEXT,
    width INTEGER,
    height INTEGER,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX attachments_message ON attachments (message_id);

-- What the widget reports about a visitor (POST /api/v1/widget/events), for agents to read;
-- each write keeps the newest few of its contact_inbox (server/store/widget_events.py).
CREATE TABLE widget_events (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    inbox_id BIGINT NOT NULL REFERENCES inboxes (id),
    contact_id BIGINT NOT NULL REFERENCES contacts (id),
    contact_inbox_id BIGINT NOT NULL REFERENCES contact_inboxes (id),
    name TEXT NOT NULL,
    event_info TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX widget_events_contact_inbox ON widget_events (contact_inbox_id, id);

CREATE INDEX widget_events_contact ON widget_events (contact_id, id);
