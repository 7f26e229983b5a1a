"""Build a 2Truths-1Lie SQLite database of any size, with the app's real schema.

The benchmark and the tests need the app's shape (nine tables, declared types,
CHECKs, foreign keys, indexes) and its real value spellings: 0/1 booleans, three
timestamp spellings mixed within one table, REAL epoch seconds, canonical and
32-hex UUIDs, JSON text, IPv4 and IPv6 text, unicode names. Rows are produced by
SQLite itself (one recursive CTE per table), so millions of rows take seconds.

Every key is a bijective hash of the row number, so foreign keys can be computed
instead of looked up, and the same ``seed`` gives the same keys and values.

    python -m bench.gen_2truths app.db --rows 2000000 [--seed 0] [--older-layout]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

USERS_DDL = """CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    name TEXT,
    score INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    is_active BOOLEAN DEFAULT TRUE,
    last_login TIMESTAMP,
    is_premium BOOLEAN DEFAULT FALSE
)"""

# Older app files: the table was created without these, then ALTERed.
USERS_OLDER_DDL = """CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    is_active BOOLEAN DEFAULT TRUE,
    last_login TIMESTAMP
)"""

USERS_OLDER_ALTERS = (
    "ALTER TABLE users ADD COLUMN name TEXT",
    "ALTER TABLE users ADD COLUMN is_premium BOOLEAN DEFAULT FALSE",
    "ALTER TABLE users ADD COLUMN score INTEGER NOT NULL DEFAULT 0",
)

OTHER_DDL = (
    """CREATE TABLE challenges (
    challenge_id TEXT PRIMARY KEY,
    creator_id TEXT NOT NULL,
    title TEXT,
    status TEXT NOT NULL DEFAULT 'draft',
    lie_statement_id TEXT NOT NULL,
    view_count INTEGER DEFAULT 0,
    guess_count INTEGER DEFAULT 0,
    correct_guess_count INTEGER DEFAULT 0,
    is_merged_video BOOLEAN DEFAULT FALSE,
    statements_json TEXT NOT NULL,
    merged_video_metadata_json TEXT,
    tags_json TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    published_at TIMESTAMP
)""",
    """CREATE TABLE guesses (
    guess_id TEXT PRIMARY KEY,
    challenge_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    guessed_lie_statement_id TEXT NOT NULL,
    is_correct BOOLEAN NOT NULL,
    response_time_seconds REAL,
    submitted_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (challenge_id) REFERENCES challenges (challenge_id) ON DELETE CASCADE
)""",
    """CREATE TABLE guess_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    challenge_id TEXT NOT NULL,
    was_correct BOOLEAN NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
)""",
    """CREATE TABLE user_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    challenge_id TEXT NOT NULL CHECK (length(challenge_id) > 0),
    user_id INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('inappropriate_language', 'spam', 'personal_info',
        'violence', 'hate_speech', 'adult_content', 'copyright', 'misleading', 'low_quality')),
    details TEXT CHECK (details IS NULL OR length(details) <= 1000),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE,
    UNIQUE (challenge_id, user_id)
)""",
    """CREATE TABLE token_balances (
    user_id TEXT PRIMARY KEY,
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)""",
    """CREATE TABLE token_transactions (
    transaction_id TEXT PRIMARY KEY DEFAULT (hex(randomblob(16))),
    user_id TEXT NOT NULL,
    transaction_type TEXT NOT NULL
        CHECK (transaction_type IN ('purchase', 'spend', 'adjustment', 'refund')),
    amount INTEGER NOT NULL,
    balance_before INTEGER NOT NULL CHECK (balance_before >= 0),
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    description TEXT NOT NULL,
    metadata TEXT DEFAULT '{}',
    revenuecat_transaction_id TEXT,
    revenuecat_product_id TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)""",
    """CREATE TABLE user_sessions (
    session_id TEXT PRIMARY KEY DEFAULT (hex(randomblob(16))),
    user_id TEXT NOT NULL,
    jwt_token TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    session_type TEXT NOT NULL DEFAULT 'user' CHECK (session_type IN ('user', 'guest', 'admin')),
    permissions TEXT DEFAULT '[]',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP NOT NULL,
    last_accessed TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    is_active BOOLEAN DEFAULT TRUE,
    user_agent TEXT,
    ip_address TEXT
)""",
    """CREATE TABLE rate_limit_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    timestamp REAL NOT NULL
)""",
)

# (index name suffix, table, columns): named idx_<table>_<suffix> like the app's.
INDEX_SPECS = (
    ("email", "users", "email"),
    ("is_active", "users", "is_active"),
    ("created_at", "users", "created_at"),
    ("last_login", "users", "last_login"),
    ("creator_id", "challenges", "creator_id"),
    ("status", "challenges", "status"),
    ("created_at", "challenges", "created_at DESC"),
    ("published_at", "challenges", "published_at DESC"),
    ("view_count", "challenges", "view_count DESC"),
    ("challenge_id", "guesses", "challenge_id"),
    ("user_id", "guesses", "user_id"),
    ("submitted_at", "guesses", "submitted_at DESC"),
    ("user_id", "guess_history", "user_id"),
    ("challenge_id", "guess_history", "challenge_id"),
    ("user_challenge", "guess_history", "user_id, challenge_id"),
    ("challenge_id", "user_reports", "challenge_id"),
    ("user_id", "user_reports", "user_id"),
    ("created_at", "user_reports", "created_at"),
    ("reason", "user_reports", "reason"),
    ("challenge_created", "user_reports", "challenge_id, created_at DESC"),
    ("user_created", "user_reports", "user_id, created_at DESC"),
    ("moderation", "user_reports", "challenge_id, created_at, reason, id"),
    ("last_updated", "token_balances", "last_updated"),
    ("user_id", "token_transactions", "user_id"),
    ("created_at", "token_transactions", "created_at DESC"),
    ("type", "token_transactions", "transaction_type"),
    ("revenuecat_id", "token_transactions", "revenuecat_transaction_id"),
    ("user_id", "user_sessions", "user_id"),
    ("token_hash", "user_sessions", "token_hash"),
    ("expires_at", "user_sessions", "expires_at"),
    ("active", "user_sessions", "is_active, expires_at"),
    ("user_id", "rate_limit_records", "user_id"),
)

INDEXES = tuple(
    f"CREATE INDEX idx_{table}_{suffix} ON {table} ({columns})"
    for suffix, table, columns in INDEX_SPECS
)

TABLES = (
    "users",
    "challenges",
    "guesses",
    "guess_history",
    "user_reports",
    "token_balances",
    "token_transactions",
    "user_sessions",
    "rate_limit_records",
)

# Share of the requested total per table, like a live app: many guesses and rate-limit
# records, few users and challenges.
SHARES = {
    "users": 0.02,
    "challenges": 0.03,
    "guesses": 0.30,
    "guess_history": 0.25,
    "user_reports": 0.01,
    "token_balances": 0.02,
    "token_transactions": 0.10,
    "user_sessions": 0.05,
    "rate_limit_records": 0.22,
}

BASE_EPOCH = 1_700_000_000  # 2023-11-14: all timestamps fall within ~200 days after it
REASONS = (
    "inappropriate_language",
    "spam",
    "personal_info",
    "violence",
    "hate_speech",
    "adult_content",
    "copyright",
    "misleading",
    "low_quality",
)


class Keys:
    """SQL expressions for hashes, ids and timestamps of a row number, salted by seed.

    Hashes are multiplicative (an odd multiplier is a bijection modulo 2**32), so an id
    made from ``row`` is unique per table and recomputable from another table's row.
    """

    def __init__(self, seed: int) -> None:
        self.salt = random.Random(seed).randrange(1, 1 << 20)

    def _mul(self, n: int) -> int:
        """An odd multiplier per stream, so different columns of a row are not in step."""
        return (2654435761 + (n + self.salt) * 2246822518) % 4294967296 | 1

    def h(self, k: str, n: int) -> str:
        """A 24-bit pseudo-random integer derived from ``k`` (stream ``n``)."""
        return f"(((({k}) * {self._mul(n)} + {self.salt * 131 + n}) % 4294967296) >> 8)"

    def perm(self, k: str, n: int) -> str:
        """A 32-bit value unique per ``k`` (for k < 2**32): the uniqueness carrier."""
        return f"((({k}) * {self._mul(n + 1000)} + {self.salt * 31 + n}) % 4294967296)"

    def uuid(self, k: str, n: int) -> str:
        """Canonical lower-case UUID v4 text, like ``str(uuid4())``."""
        parts = (
            self.perm(k, n),
            f"{self.h(k, n + 1)} % 65536",
            f"{self.h(k, n + 2)} % 4096",
            f"32768 + {self.h(k, n + 3)} % 16384",
            self.h(k, n + 4),
            self.h(k, n + 5),
        )
        return f"printf('%08x-%04x-4%03x-%04x-%06x%06x', {', '.join(parts)})"

    def hex32(self, k: str, n: int) -> str:
        """32 upper-case hex digits, like the default ``hex(randomblob(16))``."""
        parts = (self.perm(k, n), *(self.h(k, n + j) for j in range(1, 5)))
        return f"printf('%08X%06X%06X%06X%06X', {', '.join(parts)})"

    def epoch(self, k: str, n: int) -> str:
        """Integer epoch seconds within ~194 days of BASE_EPOCH."""
        return f"({BASE_EPOCH} + {self.h(k, n)})"

    def ts(self, k: str, epoch: str, n: int) -> str:
        """Naive UTC text in the app's three spellings, chosen by row so each table mixes."""
        micro = f"printf('.%06d', {self.h(k, n)} % 1000000)"
        return (
            f"(CASE (({k}) + {n}) % 3 WHEN 0 THEN datetime({epoch}, 'unixepoch')"
            f" WHEN 1 THEN datetime({epoch}, 'unixepoch') || {micro}"
            f" ELSE strftime('%Y-%m-%dT%H:%M:%S', {epoch}, 'unixepoch') || {micro} END)"
        )

    def later(self, k: str, epoch: str, n: int, spread: int) -> str:
        """An epoch up to ``spread`` seconds after ``epoch`` (updated after created)."""
        return f"({epoch} + {self.h(k, n)} % {spread})"

    def pick(self, k: str, n: int, values: Sequence[str]) -> str:
        """One of ``values`` (SQL expressions) chosen by a hash of ``k``."""
        arms = " ".join(f"WHEN {i} THEN {v}" for i, v in enumerate(values))
        return f"(CASE {self.h(k, n)} % {len(values)} {arms} END)"


def counts_for(rows: int) -> dict[str, int]:
    """Split the requested total across tables, keeping every key space non-empty."""
    counts = {t: max(1, round(rows * SHARES[t])) for t in TABLES}
    counts["users"] = max(counts["users"], 10)
    counts["challenges"] = max(counts["challenges"], 3)
    counts["token_balances"] = min(counts["token_balances"], counts["users"])
    counts["user_reports"] = min(counts["user_reports"], counts["users"] * counts["challenges"])
    return counts


def _series(n: int) -> str:
    return f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) "


def users_sql(k: Keys, c: dict[str, int]) -> str:
    ep = k.epoch("i", 10)
    name = k.pick(
        "i",
        11,
        (
            "NULL",
            "printf('José Núñez %d', i)",
            "printf('日本語ユーザー%d', i)",
            "printf('Zoë 🎉 %d', i)",
            "printf('Player %d', i)",
            "printf('Player %d', i)",
        ),
    )
    email = (
        "CASE i % 9 WHEN 0 THEN printf('Player.%d@Example.COM', i)"
        " ELSE printf('user%d@example.com', i) END"
    )
    return (
        _series(c["users"]) + "INSERT INTO users (id, email, password_hash, name, score,"
        " created_at, updated_at, is_active, last_login, is_premium) SELECT i, "
        f"{email}, '$2b$12$' || substr(lower(hex(randomblob(27))), 1, 53), {name}, "
        f"{k.h('i', 12)} % 5000, {k.ts('i', ep, 13)}, "
        f"{k.ts('i', k.later('i', ep, 14, 864000), 15)}, "
        f"CASE WHEN {k.h('i', 16)} % 10 < 9 THEN 1 ELSE 0 END, "
        f"CASE WHEN {k.h('i', 17)} % 4 = 0 THEN NULL "
        f"ELSE {k.ts('i', k.later('i', ep, 18, 2592000), 19)} END, "
        f"CASE WHEN {k.h('i', 20)} % 7 = 0 THEN 1 ELSE 0 END FROM n"
    )


STATUS_BY_TENTH = (
    "'published'",
    "'published'",
    "'published'",
    "'published'",
    "'published'",
    "'draft'",
    "'pending_moderation'",
    "'moderated'",
    "'rejected'",
    "CASE WHEN (i / 10) % 2 = 0 THEN 'flagged' ELSE 'archived' END",
)

STATEMENTS_JSON = (
    'printf(\'[{"id":"stmt_%d_0","text":"I have lived in Tōkyō 日本","is_lie":%s,'
    '"duration_seconds":%d.%02d,"media":{"width":1080,"height":1920,'
    '"bitrate_mbps":2.50}},'
    '{"id":"stmt_%d_1","text":"I can juggle five café cups ☕","is_lie":%s,'
    '"duration_seconds":%d.%02d,"media":{"width":720,"height":1280,'
    '"bitrate_mbps":1.25}},'
    '{"id":"stmt_%d_2","text":"I met a penguin 🐧","is_lie":%s,'
    '"duration_seconds":%d.%02d,"media":null}]\','
    " i, CASE WHEN i % 3 = 0 THEN 'true' ELSE 'false' END, 3 + i % 20, i % 100,"
    " i, CASE WHEN i % 3 = 1 THEN 'true' ELSE 'false' END, 4 + i % 17, (i * 7) % 100,"
    " i, CASE WHEN i % 3 = 2 THEN 'true' ELSE 'false' END, 5 + i % 13, (i * 3) % 100)"
)

MERGED_JSON = (
    'printf(\'{"total_duration":%d.%02d,"codec":"h264","segments":'
    '[{"start":0.0,"end":%d.50},{"start":%d.50,"end":%d.75},'
    '{"start":%d.75,"end":%d.00}],"compressed":true}\','
    " 15 + i % 30, i % 100, 5 + i % 5, 5 + i % 5, 10 + i % 5, 10 + i % 5, 15 + i % 30)"
)


def challenges_sql(k: Keys, c: dict[str, int]) -> str:
    title = k.pick(
        "i",
        30,
        (
            "NULL",
            "printf('Two truths about Paris café #%d', i)",
            "printf('私の秘密 %d', i)",
            "printf('Guess my lie 🤔 %d', i)",
            "printf('Challenge %d', i)",
            "printf('Challenge %d', i)",
        ),
    )
    tags = k.pick("i", 31, ("NULL", '\'["travel","food"]\'', '\'["fun","日本","café"]\'', "'[]'"))
    status = (
        "CASE i % 10 "
        + " ".join(f"WHEN {n} THEN {s}" for n, s in enumerate(STATUS_BY_TENTH))
        + " END"
    )
    views = f"{k.h('i', 32)} % 100000"
    guesses = f"{k.h('i', 33)} % 5000"
    inner = f"SELECT i, {status} AS st, {k.epoch('i', 34)} AS ep, {guesses} AS g FROM n"
    published = (
        f"CASE WHEN st IN ('published', 'flagged', 'archived') "
        f"THEN {k.ts('i', k.later('i', 'ep', 35, 86400), 36)} END"
    )
    return (
        _series(c["challenges"]) + "INSERT INTO challenges (challenge_id, creator_id,"
        " title, status, lie_statement_id, view_count, guess_count, correct_guess_count,"
        " is_merged_video, statements_json, merged_video_metadata_json, tags_json,"
        " created_at, updated_at, published_at) SELECT "
        f"{k.uuid('i', 1)}, CAST(1 + {k.h('i', 37)} % {c['users']} AS TEXT), {title}, st,"
        f" printf('stmt_%d_%d', i, i % 3), {views}, g, g / 3, (i % 4 = 0), "
        f"{STATEMENTS_JSON}, CASE WHEN i % 4 = 0 THEN {MERGED_JSON} END, {tags}, "
        f"{k.ts('i', 'ep', 38)}, {k.ts('i', k.later('i', 'ep', 39, 172800), 40)}, "
        f"{published} FROM ({inner})"
    )


def guesses_sql(k: Keys, c: dict[str, int]) -> str:
    inner = (
        f"SELECT i, 1 + {k.h('i', 50)} % {c['challenges']} AS ci, {k.h('i', 51)} % 3 AS pick FROM n"
    )
    return (
        _series(c["guesses"]) + "INSERT INTO guesses (guess_id, challenge_id, user_id,"
        " guessed_lie_statement_id, is_correct, response_time_seconds, submitted_at) SELECT "
        f"{k.uuid('i', 2)}, {k.uuid('ci', 1)}, CAST(1 + {k.h('i', 52)} % {c['users']} AS TEXT),"
        " printf('stmt_%d_%d', ci, pick), (pick = ci % 3), "
        f"CASE WHEN {k.h('i', 53)} % 20 = 0 THEN NULL ELSE ({k.h('i', 54)} % 60000) / 1000.0"
        f" END, {k.ts('i', k.epoch('i', 55), 56)} FROM ({inner})"
    )


def guess_history_sql(k: Keys, c: dict[str, int]) -> str:
    inner = f"SELECT i, 1 + {k.h('i', 60)} % {c['challenges']} AS ci FROM n"
    return (
        _series(c["guess_history"]) + "INSERT INTO guess_history (id, user_id,"
        " challenge_id, was_correct, created_at) SELECT i, "
        f"1 + {k.h('i', 61)} % {c['users']}, {k.uuid('ci', 1)}, {k.h('i', 62)} % 2, "
        f"{k.ts('i', k.epoch('i', 63), 64)} FROM ({inner})"
    )


def user_reports_sql(k: Keys, c: dict[str, int]) -> str:
    """Reports walk (challenge, user) pairs in order, so the UNIQUE pair always holds."""
    reason = k.pick("i", 70, tuple(f"'{r}'" for r in REASONS))
    details = k.pick(
        "i",
        71,
        (
            "NULL",
            "'Offensive language in statement two'",
            "'Contient des propos déplacés'",
            "'個人情報が含まれています'",
            "printf('Reported via app %d 🚩', i)",
        ),
    )
    inner = (
        f"SELECT i, 1 + (i - 1) % {c['challenges']} AS ci,"
        f" 1 + ((i - 1) / {c['challenges']}) % {c['users']} AS ui FROM n"
    )
    return (
        _series(c["user_reports"]) + "INSERT INTO user_reports (id, challenge_id, user_id,"
        f" reason, details, created_at) SELECT i, {k.uuid('ci', 1)}, ui, {reason},"
        f" {details}, {k.ts('i', k.epoch('i', 72), 73)} FROM ({inner})"
    )


def token_balances_sql(k: Keys, c: dict[str, int]) -> str:
    ep = k.epoch("i", 80)
    return (
        _series(c["token_balances"]) + "INSERT INTO token_balances (user_id, balance,"
        f" last_updated, created_at) SELECT CAST(i AS TEXT), {k.h('i', 81)} % 10000, "
        f"{k.ts('i', k.later('i', ep, 82, 864000), 83)}, {k.ts('i', ep, 84)} FROM n"
    )


def token_transactions_sql(k: Keys, c: dict[str, int]) -> str:
    """Amounts never take a balance below zero, so both balance CHECKs hold."""
    # Cheap columns only in the inner query: SQLite inlines it into every reference.
    kind = (
        "CASE i % 7 WHEN 0 THEN 'purchase' WHEN 1 THEN 'purchase' WHEN 2 THEN 'adjustment'"
        " WHEN 3 THEN 'refund' ELSE 'spend' END"
    )
    amount = (
        "CASE i % 7 WHEN 0 THEN 100 * (1 + i % 10) WHEN 1 THEN 100 * (1 + i % 10)"
        " WHEN 2 THEN max(-bal, i % 21 - 10) WHEN 3 THEN 10 * (1 + i % 5)"
        " ELSE -min(bal, 1 + i % 50) END"
    )
    inner = f"SELECT i, {kind} AS kind, {k.h('i', 91)} % 5000 AS bal FROM n"
    middle = f"SELECT i, kind, bal, {amount} AS amt FROM ({inner})"
    paid = "i % 7 IN (0, 1, 3)"
    metadata = (
        'printf(\'{"platform":"%s","price_usd":%d.%02d,'
        '"receipt":{"attempt":%d,"sandbox":%s},"note":"%s"}\','
        " CASE WHEN i % 2 = 0 THEN 'ios' ELSE 'android' END, i % 20, (i * 7) % 100,"
        " 1 + i % 3, CASE WHEN i % 11 = 0 THEN 'true' ELSE 'false' END,"
        " CASE WHEN i % 5 = 0 THEN 'bonus 🎁' ELSE 'ok' END)"
    )
    return (
        _series(c["token_transactions"]) + "INSERT INTO token_transactions ("
        "transaction_id, user_id, transaction_type, amount, balance_before, balance_after,"
        " description, metadata, revenuecat_transaction_id, revenuecat_product_id,"
        f" created_at) SELECT {k.uuid('i', 3)},"
        f" CAST(1 + {k.h('i', 92)} % {c['users']} AS TEXT), kind, amt, bal, bal + amt,"
        " printf('%s of %d tokens', kind, abs(amt)), CASE WHEN i % 13 = 0 THEN '{}' ELSE "
        f"{metadata} END, CASE WHEN {paid} THEN printf('GPA.%04d-%04d-%04d-%05d',"
        " i % 10000, (i / 7) % 10000, (i / 11) % 10000, i % 100000) END, "
        f"CASE WHEN {paid} THEN printf('com.twotruths.tokens.%d', 100 * (1 + i % 5)) END, "
        f"{k.ts('i', k.epoch('i', 93), 94)} FROM ({middle})"
    )


USER_AGENTS = (
    "'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15'",
    "'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile'",
    "'TwoTruths/2.3.1 (iOS 17.2; iPhone15,2)'",
    "'okhttp/4.12.0'",
    "NULL",
)

PERMISSIONS = (
    'CASE st WHEN \'admin\' THEN \'["read","write","moderate","admin"]\''
    " WHEN 'guest' THEN '[\"read\"]' ELSE '[\"read\",\"write\"]' END"
)


def user_sessions_sql(k: Keys, c: dict[str, int]) -> str:
    ip = k.pick(
        "i",
        100,
        (
            "NULL",
            "printf('2001:db8:%x:%x::%x', i % 65536, (i / 65536) % 65536, 1 + i % 4095)",
            "printf('fe80::%x:%x', 1 + i % 65535, i % 4096)",
            "printf('%d.%d.%d.%d', 1 + i % 223, (i / 223) % 256, (i / 7) % 256, 1 + i % 254)",
            "printf('192.168.%d.%d', i % 256, 1 + i % 254)",
            "printf('10.%d.%d.%d', (i / 65536) % 256, (i / 256) % 256, 1 + i % 254)",
        ),
    )
    kind = (
        f"CASE {k.h('i', 101)} % 20 WHEN 0 THEN 'admin'"
        " WHEN 1 THEN 'guest' WHEN 2 THEN 'guest' ELSE 'user' END"
    )
    inner = f"SELECT i, {kind} AS st, {k.epoch('i', 102)} AS ep FROM n"
    jwt = (
        "'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.' || printf('eyJzdWIiOiIl%d', i)"
        " || '.' || lower(hex(randomblob(16)))"
    )
    token_hash = f"printf('%08x', {k.perm('i', 103)}) || lower(hex(randomblob(28)))"
    return (
        _series(c["user_sessions"]) + "INSERT INTO user_sessions (session_id, user_id,"
        " jwt_token, token_hash, session_type, permissions, created_at, expires_at,"
        " last_accessed, is_active, user_agent, ip_address) SELECT "
        f"{k.hex32('i', 4)}, CAST(1 + {k.h('i', 104)} % {c['users']} AS TEXT), {jwt},"
        f" {token_hash}, st, {PERMISSIONS}, {k.ts('i', 'ep', 105)},"
        f" {k.ts('i', 'ep + 604800', 106)}, {k.ts('i', k.later('i', 'ep', 107, 604800), 108)},"
        f" CASE WHEN {k.h('i', 109)} % 3 = 0 THEN 0 ELSE 1 END,"
        f" {k.pick('i', 110, USER_AGENTS)}, {ip} FROM ({inner})"
    )


def rate_limit_records_sql(k: Keys, c: dict[str, int]) -> str:
    return (
        _series(c["rate_limit_records"]) + "INSERT INTO rate_limit_records (id, user_id,"
        f" timestamp) SELECT i, CAST(1 + {k.h('i', 120)} % {c['users']} AS TEXT),"
        f" {BASE_EPOCH} + {k.h('i', 121)} + ({k.h('i', 122)} % 1000000) / 1000000.0 FROM n"
    )


FILLERS = {
    "users": users_sql,
    "challenges": challenges_sql,
    "guesses": guesses_sql,
    "guess_history": guess_history_sql,
    "user_reports": user_reports_sql,
    "token_balances": token_balances_sql,
    "token_transactions": token_transactions_sql,
    "user_sessions": user_sessions_sql,
    "rate_limit_records": rate_limit_records_sql,
}


def create_schema(db: sqlite3.Connection, *, older_layout: bool) -> None:
    """Create the nine tables; ``older_layout`` reproduces files upgraded by ALTER TABLE."""
    if older_layout:
        db.execute(USERS_OLDER_DDL)
        for alter in USERS_OLDER_ALTERS:
            db.execute(alter)
    else:
        db.execute(USERS_DDL)
    for ddl in OTHER_DDL:
        db.execute(ddl)


def _fill(db: sqlite3.Connection, sql: str) -> int:
    """Run one INSERT; count by total_changes (rowcount ignores WITH-prefixed DML)."""
    before = db.total_changes
    db.execute(sql)
    return db.total_changes - before


def generate(path: Path, rows: int, *, seed: int = 0, older_layout: bool = False) -> dict[str, int]:
    """Write a new database at ``path`` with about ``rows`` rows in all; return counts."""
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    counts = counts_for(max(rows, 0))
    keys = Keys(seed)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "cache_size = -262144",
            "temp_store = MEMORY",
        ):
            db.execute(f"PRAGMA {pragma}")
        db.execute("BEGIN")
        create_schema(db, older_layout=older_layout)
        made = {t: _fill(db, FILLERS[t](keys, counts)) for t in TABLES}
        for index in INDEXES:  # after the data: building an index once is cheaper
            db.execute(index)
        db.execute("COMMIT")
    finally:
        db.close()
    return made


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gen_2truths",
        description="Write a 2Truths-1Lie SQLite database of about ROWS rows in all.",
    )
    parser.add_argument("out", type=Path, help="the database file to create")
    parser.add_argument("--rows", type=int, default=20_000, help="approximate total rows")
    parser.add_argument("--seed", type=int, default=0, help="changes ids and values")
    parser.add_argument(
        "--older-layout",
        action="store_true",
        help="users gets name/is_premium/score by ALTER TABLE (column order)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    return parser


def claim_output(out: Path, *, force: bool, prog: str) -> bool:
    """Make way for a new database at ``out``: False (and why, on stderr) if one is there
    and ``force`` was not given; generators never overwrite by accident."""
    if out.exists():
        if not force:
            print(f"{prog}: error: {out} exists; pass --force to replace it", file=sys.stderr)
            return False
        out.unlink()
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if not claim_output(out, force=args.force, prog="gen_2truths"):
        return 1
    started = time.perf_counter()
    counts = generate(out, args.rows, seed=args.seed, older_layout=args.older_layout)
    seconds = time.perf_counter() - started
    for table, count in counts.items():
        print(f"{table:<20} {count:>10}")
    print(f"{'total':<20} {sum(counts.values()):>10}  in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
