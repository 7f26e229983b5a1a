"""SQLite -> PostgreSQL expression and default translation."""

from __future__ import annotations

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmig.plan.sqlexpr import Translation, translate_default, translate_expression

TYPES = {
    "id": "bigint",
    "is_active": "boolean",
    "Display Name": "text",
    "order": "bigint",
    "email": "text",
    "code": "varchar(20)",
    "data": "jsonb",
    "notes": "text",
    "blob": "bytea",
    "created": "timestamptz",
    "day": "date",
    "price": "double precision",
    "amount": "numeric",
    "uid": "uuid",
    "ip": "inet",
    'we"ird': "text",
}


def ok(sql: str) -> str:
    result = translate_expression(sql, column_types=TYPES)
    assert result.reason is None, result
    assert result.sql is not None
    return result.sql


def refused(sql: str) -> str:
    result = translate_expression(sql, column_types=TYPES)
    assert result.sql is None, result
    assert result.reason
    return result.reason


ASCII_LOWER = (
    "translate(\"email\", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') COLLATE \"C\""
)
SUBSTR_FROM_END = 'substr("email", length("email") - 3 + 1) = \'com\''
SUBSTR_FROM_A_COLUMN = (
    'CASE WHEN ("id")::integer < 0 THEN substr("email", length("email") + ("id")::integer + 1, 2) '
    'ELSE substr("email", ("id")::integer, 2) END = \'co\''
)


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        # identifiers re-quoted, whatever the SQLite quoting
        ("\"Display Name\" <> ''", "\"Display Name\" <> ''"),
        ("[order] > 0", '"order" > 0'),
        ("`order` > 0", '"order" > 0'),
        ("ORDER > 0", '"order" > 0'),
        ('"we""ird" = \'x\'', '"we""ird" = \'x\''),
        ("main.t.email = 'x'", "\"email\" = 'x'"),
        # operators
        ("id == 1", '"id" = 1'),
        ("id != 1", '"id" <> 1'),
        ("id <> 1", '"id" <> 1'),
        ("email || 'x' = 'ax'", "\"email\" || 'x' = 'ax'"),
        ("email IS NULL", '"email" IS NULL'),
        ("email IS NOT NULL", '"email" IS NOT NULL'),
        ("email ISNULL", '"email" IS NULL'),
        ("email NOTNULL", '"email" IS NOT NULL'),
        ("email NOT NULL", '"email" IS NOT NULL'),
        ("email IS 'x'", "\"email\" IS NOT DISTINCT FROM 'x'"),
        ("email IS NOT 'x'", "\"email\" IS DISTINCT FROM 'x'"),
        ("email IS NOT notes", '"email" IS DISTINCT FROM "notes"'),
        ("email IN ('a', 'b')", "\"email\" IN ('a', 'b')"),
        ("id NOT IN (1, 2, 3)", '"id" NOT IN (1, 2, 3)'),
        ("id BETWEEN 1 AND 10", '"id" BETWEEN 1 AND 10'),
        ("id NOT BETWEEN 1 AND 10 AND id > 0", '"id" NOT BETWEEN 1 AND 10 AND "id" > 0'),
        ("email LIKE '%@%'", '"email" COLLATE "C" LIKE \'%@%\''),  # no letter to fold
        ("email NOT LIKE 'A%'", f"{ASCII_LOWER} NOT LIKE 'a%'"),  # ASCII only
        ("email LIKE 'a\\%'", f"{ASCII_LOWER} LIKE 'a\\%' ESCAPE ''"),
        ("email LIKE 'a!%' ESCAPE '!'", f"{ASCII_LOWER} LIKE 'a!%' ESCAPE '!'"),
        ("email < 'b'", '"email" COLLATE "C" < \'b\''),  # SQLite compares text bytewise
        ("email BETWEEN 'a' AND 'b'", "\"email\" COLLATE \"C\" BETWEEN 'a' AND 'b'"),
        ("substr(email, -3) = 'com'", SUBSTR_FROM_END),
        # SQLite divides by zero into NULL; whole NUMERIC values divide as integers
        ("price / id > 1", '"price" / NULLIF("id", 0) > 1'),
        ("id / 2 = 3", '"id" / 2 = 3'),
        (
            "amount / 2 = 3",
            'CASE WHEN "amount" = trunc("amount") THEN trunc("amount" / 2) ELSE "amount" / 2 END = 3',
        ),
        ("amount / 2.0 = 3", '"amount" / CAST(2.0 AS double precision) = 3'),  # REAL, as SQLite
        ("amount * price / 2 > 1", '"amount" * "price" / 2 > 1'),  # a REAL: REAL division
        ("substr(email, id, 2) = 'co'", SUBSTR_FROM_A_COLUMN),
        ("email GLOB '[A-Z]*'", "\"email\" ~ '^[A-Z].*$'"),
        ("email NOT GLOB 'a?.b'", "\"email\" !~ '^a.\\.b$'"),
        (
            "id > 0 AND (price < 10 OR price IS NULL)",
            '"id" > 0 AND ("price" < 10 OR "price" IS NULL)',
        ),
        ("NOT (id > 0)", 'NOT "id" > 0'),
        ("id * (2 + price) >= 3 % 2", '"id" * (2 + "price") >= 3 % 2'),
        ("id - (1 - 2) > 0", '"id" - (1 - 2) > 0'),
        ("-id < 0x10", '-"id" < 16'),
        ("- -id > 0", '-(-"id") > 0'),
        ("id % 2 = 0 AND id & 4 = 0", '"id" % 2 = 0 AND "id" & 4 = 0'),
        ("id - -1 > 0", '"id" - -1 > 0'),
        ("CAST(price AS INTEGER) > 0", 'CAST("price" AS bigint) > 0'),
        ("CAST(email AS TEXT) <> ''", "CAST(\"email\" AS text) <> ''"),
        ("CAST(id AS REAL) > 1.5", 'CAST("id" AS double precision) > 1.5'),
        ("CAST(id AS NUMERIC) > 1", 'CAST("id" AS numeric) > 1'),
        ("CAST(email AS BLOB) IS NOT NULL", 'CAST("email" AS bytea) IS NOT NULL'),
        # SQLite's || binds tighter than *, PostgreSQL's looser than +
        ("email || (id + 1) = 'x'", '"email" || "id" + 1 = \'x\''),
        ("(id + 1) || email = 'x'", '"id" + 1 || "email" = \'x\''),
        ("(email || 'a') || 'b' = 'x'", "\"email\" || 'a' || 'b' = 'x'"),
        # booleans
        ("is_active = 1", '"is_active" = true'),
        ("is_active == 0", '"is_active" = false'),
        ("1 = is_active", 'true = "is_active"'),
        ("is_active != 0", '"is_active" <> false'),
        ("is_active IN (0,1)", '"is_active" IN (false, true)'),
        ("is_active", '"is_active"'),
        ("NOT is_active", 'NOT "is_active"'),
        ("is_active = TRUE", '"is_active" = true'),
        ("is_active IS FALSE", '"is_active" IS FALSE'),
        ("is_active OR id > 0", '"is_active" OR "id" > 0'),
        # functions
        ("length(email) < 5", 'length("email") < 5'),
        ("length(blob) = 16", 'octet_length("blob") = 16'),
        ("length(code) <= 20", 'length("code") <= 20'),
        # SQLite's lower()/upper() fold ASCII letters only ('É' stays 'É')
        (
            "lower(email) = email",
            "translate(\"email\", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') = \"email\"",
        ),
        (
            "upper(trim(email)) <> ''",
            "translate(trim(\"email\"), 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') <> ''",
        ),
        ("ltrim(email, 'x') = rtrim(notes)", 'ltrim("email", \'x\') = rtrim("notes")'),
        ("trim(email, ' ') <> ''", "btrim(\"email\", ' ') <> ''"),
        ("abs(price) <= 1e3", 'abs("price") <= 1e3'),
        ("coalesce(email, notes, '') <> ''", "coalesce(\"email\", \"notes\", '') <> ''"),
        ("ifnull(email, '') <> ''", "coalesce(\"email\", '') <> ''"),
        ("coalesce(is_active, 0) = 1", 'coalesce("is_active", false) = true'),
        ("nullif(email, '') IS NOT NULL", "nullif(\"email\", '') IS NOT NULL"),
        ("substr(email, 1, 2) = 'ab'", "substr(\"email\", 1, 2) = 'ab'"),
        ("instr(email, '@') > 1", "strpos(\"email\", '@') > 1"),
        ("replace(email, 'a', 'b') = 'b'", "replace(\"email\", 'a', 'b') = 'b'"),
        (
            "CASE WHEN id > 0 THEN 'p' ELSE 'n' END = email",
            "CASE WHEN \"id\" > 0 THEN 'p' ELSE 'n' END = \"email\"",
        ),
        # literals and typed comparisons
        ("email = 'it''s'", "\"email\" = 'it''s'"),
        ("price > -1.5", '"price" > -1.5'),
        ("notes = 5", "\"notes\" = '5'"),
        ("id = '5'", '"id" = 5'),
        ("created > '2020-01-01 10:00:00'", "\"created\" > '2020-01-01 10:00:00+00:00'"),
        ("day >= '2020-01-01'", "\"day\" >= '2020-01-01'"),
        (
            "uid <> '6ba7b810-9dad-11d1-80b4-00c04fd430c8'",
            "\"uid\" <> '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid",
        ),
        ("ip <> '10.0.0.1'", "\"ip\" <> '10.0.0.1'::inet"),
        ("blob <> x'00FF'", "\"blob\" <> '\\x00ff'::bytea"),
        # collations
        ("email COLLATE NOCASE = 'Bob'", "lower(\"email\") = lower('Bob')"),
        ("email = notes COLLATE NOCASE", 'lower("email") = lower("notes")'),
        ("email COLLATE NOCASE IN ('a', 'B')", "lower(\"email\") IN (lower('a'), lower('B'))"),
        ("email COLLATE NOCASE", 'lower("email")'),
        ("email COLLATE BINARY < 'b'", '"email" COLLATE "C" < \'b\''),
        # comments and whitespace
        ("id > 0 -- positive\n", '"id" > 0'),
        ("id /* c */ > 0", '"id" > 0'),
    ],
)
def test_translates(sqlite: str, postgres: str) -> None:
    assert ok(sqlite) == postgres


@pytest.mark.parametrize(
    ("sqlite", "reason_part"),
    [
        ("typeof(id) = 'integer'", "typeof"),
        ("typeof(email) IN ('text', 'null')", "typeof"),
        ("json_valid(notes)", "IS JSON"),
        ("created > datetime('now')", "datetime"),
        ("created < CURRENT_TIMESTAMP", "immutable"),
        ("day <= CURRENT_DATE", "CURRENT_DATE"),
        ("strftime('%Y', created) = '2020'", "strftime"),
        ("date(created) IS NOT NULL", "date"),
        ("frobnicate(email)", "frobnicate"),
        ("email GLOB notes", "GLOB has no PostgreSQL equivalent"),
        ("email REGEXP 'a'", "REGEXP"),
        ("email MATCH 'a'", "MATCH"),
        ("email COLLATE RTRIM = 'a'", "RTRIM"),
        ("email = 'a' COLLATE my_collation", "MY_COLLATION"),
        ("missing > 0", "missing"),
        ("[missing] > 0", "missing"),
        ('"missing" = 1', "single quotes"),
        ("id IN (SELECT id FROM t)", "subquer"),
        ("EXISTS (SELECT 1)", "EXISTS"),
        ("id = ?", "unexpected"),
        ("id = :x", "unexpected"),
        ("count(*) > 0", "aggregate"),
        ("random() > 0", "volatile"),
        ("data ->> '$.a' = 1", "->>"),
        ("id IN ()", "empty IN"),
        ("is_active + 1 > 0", "arithmetic"),
        ("price % 2 = 0", "%"),
        ("id IS TRUE", "non-zero"),
        ("email || id + 1 = 'x'", "arithmetic"),
        ("CASE WHEN id > 0 THEN is_active ELSE 2 END", "cannot be compared"),
        ("is_active = 2", "cannot be compared"),
        ("id = 'abc'", "cannot be compared"),
        ("uid = 'not-a-uuid'", "cannot be compared"),
        ("created > 'yesterday'", "cannot be compared"),
        ("is_active = id", "compared with"),
        ("email = id", "compared with"),
        ("id AND email = 'x'", "condition"),
        ("lower(id) = 'x'", "text function"),
        ("length(price) > 1", "length"),
        ("(id, price) = (1, 2)", "row values"),
        ("id >", "cannot parse"),
        ("id > 0)", "cannot parse"),
        ("'unterminated", "unterminated"),
        ("email = x'0'", "blob"),
    ],
)
def test_refuses(sqlite: str, reason_part: str) -> None:
    assert reason_part.lower() in refused(sqlite).lower()


def test_json_valid_on_jsonb_is_redundant() -> None:
    result = translate_expression("json_valid(data)", column_types=TYPES)
    assert result == Translation("TRUE", "redundant: jsonb validates JSON")
    folded = translate_expression("data IS NULL OR json_valid(data)", column_types=TYPES)
    assert folded.sql == "TRUE"
    kept = translate_expression("json_valid(data) AND id > 0", column_types=TYPES)
    assert kept == Translation('"id" > 0')


def test_column_names_match_case_insensitively_but_keep_their_spelling() -> None:
    result = translate_expression("display name > ''", column_types={"Display Name": "text"})
    assert result.sql is None  # two words: not one identifier
    result = translate_expression("[display name] > ''", column_types={"Display Name": "text"})
    assert result.sql == '"Display Name" COLLATE "C" > \'\''
    result = translate_expression("Email <> ''", column_types={"eMail": "text"})
    assert result.sql == "\"eMail\" <> ''"


def test_keyword_named_columns_win_over_keywords() -> None:
    assert translate_expression("true = 1", column_types={"true": "bigint"}).sql == '"true" = 1'


@pytest.mark.parametrize(
    ("default", "target", "expected"),
    [
        ("0", "bigint", "0"),
        ("-1", "bigint", "-1"),
        ("+7", "integer", "7"),
        ("'5'", "bigint", "5"),
        ("0x10", "bigint", "16"),
        ("1.5", "double precision", "1.5"),
        ("-2.25", "numeric", "-2.25"),
        ("'member'", "text", "'member'"),
        ("'it''s'", "varchar(10)", "'it''s'"),
        ('"x"', "text", "'x'"),
        ("5", "text", "'5'"),
        ("1.50", "text", "'1.5'"),
        ("NULL", "text", "NULL"),
        ("(NULL)", "bigint", "NULL"),
        ("0", "boolean", "false"),
        ("1", "boolean", "true"),
        ("'0'", "boolean", "false"),
        ("'1'", "boolean", "true"),
        ("'t'", "boolean", "true"),
        ("'f'", "boolean", "false"),
        ("TRUE", "boolean", "true"),
        ("FALSE", "boolean", "false"),
        ("TRUE", "bigint", "1"),
        ("'{}'", "jsonb", "'{}'::jsonb"),
        ("'[1, \"a\"]'", "jsonb", "'[1, \"a\"]'::jsonb"),
        (
            "'6BA7B810-9DAD-11D1-80B4-00C04FD430C8'",
            "uuid",
            "'6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid",
        ),
        ("'127.0.0.1'", "inet", "'127.0.0.1'::inet"),
        ("'2020-01-02'", "date", "'2020-01-02'"),
        ("'2020-01-02 03:04:05'", "timestamptz", "'2020-01-02 03:04:05+00:00'"),
        ("'2020-01-02T03:04:05+02:00'", "timestamp", "'2020-01-02 01:04:05'"),
        ("X'00'", "bytea", "'\\x00'::bytea"),
        ("x'CAFE'", "bytea", "'\\xcafe'::bytea"),
        ("CURRENT_TIMESTAMP", "timestamptz", "CURRENT_TIMESTAMP"),
        ("(datetime('now'))", "timestamptz", "CURRENT_TIMESTAMP"),
        ("(strftime('%Y-%m-%d %H:%M:%S','now'))", "timestamptz", "CURRENT_TIMESTAMP"),
        ("CURRENT_TIMESTAMP", "timestamp", "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"),
        ("CURRENT_DATE", "date", "CAST((CURRENT_TIMESTAMP AT TIME ZONE 'UTC') AS date)"),
        ("(date('now'))", "date", "CAST((CURRENT_TIMESTAMP AT TIME ZONE 'UTC') AS date)"),
        (
            "(strftime('%s','now'))",
            "bigint",
            "floor(extract(epoch FROM (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')))::bigint",
        ),
        (
            "CURRENT_TIMESTAMP",
            "text",
            """to_char((CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), 'YYYY"-"MM"-"DD" "HH24":"MI":"SS')""",
        ),
        (
            "(datetime('now', 'localtime'))",
            "timestamptz",
            "(date_trunc('second', LOCALTIMESTAMP) AT TIME ZONE 'UTC')",
        ),
        (
            "(datetime('now', 'subsec'))",
            "text",
            (
                """to_char((CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), """
                """'YYYY"-"MM"-"DD" "HH24":"MI":"SS.MS')"""
            ),
        ),
        (
            "(date('now'))",
            "timestamptz",
            "(date_trunc('day', (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC')",
        ),
        ("(hex(randomblob(16)))", "uuid", "gen_random_uuid()"),
        ("(lower(hex(randomblob(16))))", "uuid", "gen_random_uuid()"),
        ("(hex(randomblob(16)))", "text", "upper(replace(gen_random_uuid()::text, '-', ''))"),
        ("(lower(hex(randomblob(16))))", "text", "replace(gen_random_uuid()::text, '-', '')"),
        (
            "((lower(hex(randomblob(16)))))",
            "varchar(32)",
            "replace(gen_random_uuid()::text, '-', '')",
        ),
    ],
)
def test_default(default: str, target: str, expected: str) -> None:
    assert translate_default(default, target) == Translation(expected)


@pytest.mark.parametrize(
    ("default", "target"),
    [
        ("CURRENT_TIMESTAMP", "varchar(10)"),
        ("(datetime('now'))", "bigint"),
        ("(julianday('now'))", "bigint"),
        ("(date('now', 'weekday 1'))", "date"),
        ("CURRENT_TIME", "boolean"),
        ("(hex(randomblob(16)))", "bigint"),
        ("(hex(randomblob(8)))", "text"),
        ("(lower(hex(randomblob(16))))", "varchar(16)"),
        ("'member'", "varchar(3)"),
        ("'member'", "bigint"),
        ("1.5", "bigint"),
        ("9223372036854775808", "bigint"),
        ("2", "boolean"),
        ("'yes please'", "boolean"),
        ("'{'", "jsonb"),
        ("'NaN'", "jsonb"),
        ("'abc'", "uuid"),
        ("'300.1.1.1'", "inet"),
        ("'soon'", "timestamptz"),
        ("'2020-13-01'", "date"),
        ("X'00'", "text"),
        ("(1 + 2)", "bigint"),
        ("('a' || 'b')", "text"),
        ("(random())", "bigint"),
        ("(abs(-1))", "bigint"),
        ("some_function()", "text"),
        ("(SELECT 1)", "bigint"),
        ("'x", "text"),
    ],
)
def test_default_refused(default: str, target: str) -> None:
    result = translate_default(default, target)
    assert result.sql is None, result
    assert result.reason


@given(
    st.text(
        alphabet=st.sampled_from(list("()'\"[]`x0123.-+*/=<>!|,; aAIsNnOTLk_@?$#\n")), max_size=30
    ),
    st.sampled_from(["bigint", "text", "boolean", "jsonb", "uuid", "timestamptz", "bytea"]),
)
@settings(max_examples=300, deadline=None)
def test_garbage_never_raises_and_defaults_are_never_quoted_expressions(
    text: str, target: str
) -> None:
    expression = translate_expression(text, column_types={"x": target})
    assert (expression.sql is None) == (expression.reason is not None) or expression.sql == "TRUE"
    default = translate_default(text, target)
    assert (default.sql is None) != (default.reason is None)


# --------------------------------------------------------------------------- PostgreSQL

PG_TYPES = {
    "id": "bigint",
    "is_active": "boolean",
    "email": "text",
    "data": "jsonb",
    "created": "timestamptz",
    "uid": "uuid",
    "Display Name": "varchar(20)",
    "blob": "bytea",
}
CHECKS = [
    "is_active IN (0, 1)",
    "is_active = 1 OR email IS NOT NULL",
    "email LIKE '%@%' AND length(email) > 3",
    "email GLOB '*@*'",
    "[Display Name] IS NOT 'Q' COLLATE NOCASE",
    "created > '2000-01-01'",
    "uid <> '00000000-0000-0000-0000-000000000000'",
    "CAST(id AS TEXT) <> '' AND id BETWEEN 0 AND 0x7fffffff",
    "instr(email, '@') > 1 AND substr(email, 1, 1) <> '@'",
    "CASE WHEN is_active THEN email IS NOT NULL ELSE 1 END",
    "length(blob) <= 16",
    "email || id <> ''",
]
WHERES = [
    "is_active = 1",
    "email IS NOT NULL AND email NOT LIKE 'x\\%'",
    "created > '2020-01-01 00:00:00'",
]
DEFAULTS = {
    "id": ("0x10", "bigint"),
    "is_active": ("'t'", "boolean"),
    "email": ("'nobody@example.com'", "text"),
    "token": ("(lower(hex(randomblob(16))))", "text"),
    "data": ("'{\"a\": [1]}'", "jsonb"),
    "created": ("(datetime('now'))", "timestamptz"),
    "uid": ("(hex(randomblob(16)))", "uuid"),
    "Display Name": ('"x"', "varchar(20)"),
    "blob": ("X'00FF'", "bytea"),
}


async def test_postgresql_accepts_translations(pg_dsn: str) -> None:
    columns = []
    for name, (default, target) in DEFAULTS.items():
        translated = translate_default(default, target)
        assert translated.sql is not None, translated
        columns.append(f'"{name}" {target} DEFAULT {translated.sql}')
    for number, check in enumerate(CHECKS):
        translated = translate_expression(check, column_types=PG_TYPES)
        assert translated.reason is None and translated.sql, (check, translated)
        columns.append(f"CONSTRAINT c{number} CHECK ({translated.sql})")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"CREATE TABLE t ({', '.join(columns)})")
        for number, where in enumerate(WHERES):
            translated = translate_expression(where, column_types=PG_TYPES)
            assert translated.reason is None, translated
            await conn.execute(f"CREATE INDEX i{number} ON t (id) WHERE {translated.sql}")
        key = translate_expression("lower(email) COLLATE NOCASE", column_types=PG_TYPES).sql
        await conn.execute(f"CREATE INDEX ikey ON t (({key}))")
        await conn.execute("INSERT INTO t (email) VALUES ('a@b.example')")
        row = await conn.fetchrow("SELECT * FROM t")
        assert row["id"] == 16 and row["is_active"] is True
        assert len(row["token"]) == 32 and row["token"] == row["token"].lower()
        assert row["data"] == '{"a": [1]}' and row["Display Name"] == "x"
        assert row["blob"] == b"\x00\xff" and row["uid"] is not None
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO t (email) VALUES ('no-at-sign')")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO t (email, \"Display Name\") VALUES ('a@b', 'q')")
        # LIKE folds ASCII letters as SQLite's does; IS NOT DISTINCT keeps SQLite's IS
        like = translate_expression("email LIKE 'A%'", column_types=PG_TYPES).sql
        assert await conn.fetchval(f"SELECT count(*) FROM t WHERE {like}") == 1
        is_ = translate_expression("email IS NOT NULL", column_types=PG_TYPES).sql
        assert await conn.fetchval(f"SELECT count(*) FROM t WHERE {is_}") == 1
    finally:
        await conn.close()
