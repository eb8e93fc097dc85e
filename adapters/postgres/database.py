"""PostgreSQL connections for the read models."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

Connection = psycopg.AsyncConnection[Any]


async def connect(url: str, *, application_name: str = "moltbot") -> Connection:
    """A connection without server-side prepared statements.

    Read-model schemas are renamed under running workers when a rebuild swaps in, so
    every statement resolves its table names afresh instead of reusing a cached plan.
    """
    return await psycopg.AsyncConnection.connect(
        url,
        application_name=application_name,
        prepare_threshold=None,
        row_factory=dict_row,
        autocommit=True,  # transactions are explicit: `async with conn.transaction()`
    )


@asynccontextmanager
async def connection(url: str, *, application_name: str = "moltbot") -> AsyncIterator[Connection]:
    conn = await connect(url, application_name=application_name)
    try:
        yield conn
    finally:
        await conn.close()


def connection_like(conn: Connection) -> contextlib.AbstractAsyncContextManager[Connection]:
    """Another connection to where ``conn`` is connected, as the same user."""
    return connection(make_conninfo(conn.info.dsn, password=conn.info.password))


# The role the gateway and the agent `SET ROLE` into (row-level security, projections/engine.py).
CONFINED_ROLE = "moltbot_gateway"

_ADOPT_SQL = """
SELECT format('ALTER SCHEMA %%I OWNER TO %%I', n.nspname, %(role)s::text)
FROM pg_namespace n
WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname NOT IN ('information_schema', 'public')
UNION ALL
SELECT format(
    'ALTER %%s %%I.%%I OWNER TO %%I',
    CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                   WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
    n.nspname, c.relname, %(role)s::text)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
  AND NOT EXISTS (  -- a table's own sequence follows its table
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
"""


async def provision_login_role(superuser_url: str, database: str, role: str, password: str) -> str:
    """As a superuser: the product's login role and its database; returns the role's URL.

    The role may log in with ``password`` (scram) and nothing more: no superuser, no role or
    database creation, no replication, no bypassing row-level security. It owns ``database``
    (created if missing) and whatever an older version created there as the superuser, and
    is a member of the confined role, created here so the product never needs CREATEROLE.
    """
    async with await psycopg.AsyncConnection.connect(superuser_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        verb = "ALTER" if await cur.fetchone() else "CREATE"
        await conn.execute(
            sql.SQL(
                "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
            ).format(sql.SQL(verb), sql.Identifier(role), sql.Literal(password))
        )
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (CONFINED_ROLE,))
        if await cur.fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(CONFINED_ROLE)))
        await conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(CONFINED_ROLE), sql.Identifier(role))
        )
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if await cur.fetchone() is None:
            await conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role))
            )
        else:
            await conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )
    parts = conninfo_to_dict(superuser_url)
    async with await psycopg.AsyncConnection.connect(
        make_conninfo(superuser_url, dbname=database), autocommit=True
    ) as conn:
        cur = await conn.execute(_ADOPT_SQL, {"role": role})
        statements = [row[0] for row in await cur.fetchall()]
        if statements:
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
    userinfo = f"{quote(role, safe='')}:{quote(password, safe='')}"
    address = f"{parts.get('host', 'localhost')}:{parts.get('port', '5432')}"
    return f"postgresql://{userinfo}@{address}/{quote(database, safe='')}"


def without_password(url: str) -> str:
    """``url`` with its password shown as ``***`` (for logs and messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
