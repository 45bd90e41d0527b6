-- What a Supabase project provides before any migration, for tests on a plain PostgreSQL
-- (scripts/pg.sh). Run it as a superuser BEFORE migrations/supabase/*.sql; re-runnable.
--
-- Mirrors Supabase's own definitions: the API roles (anon, authenticated, service_role and the
-- login role authenticator that PostgREST switches from), the `auth` schema with auth.uid(),
-- auth.role() and auth.jwt() reading the JWT claims PostgREST puts in `request.jwt.claims`
-- (or the older per-claim `request.jwt.claim.*` settings), the `extensions` schema, the database
-- search_path and the permissive default privileges on schema public that the migration has to
-- narrow; Supabase Auth's own tables (users, sessions, refresh tokens, sign-in methods) that the
-- stand-in's token endpoint works on; and the API roles' statement timeouts. A session acts as
-- a user with:
--   begin; set local role authenticated;
--   select set_config('request.jwt.claims', '{"sub":"<uuid>","role":"authenticated"}', true);

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
exception
    -- Roles are shared by the server's databases: another database being set up at the same
    -- moment may have made them first.
    when unique_violation or duplicate_object then null;
end
$$;

grant anon, authenticated, service_role to authenticator;

create schema if not exists auth;
create schema if not exists extensions;

create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant usage on schema auth to anon, authenticated, service_role;
grant execute on function auth.uid(), auth.role(), auth.jwt() to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;
grant usage on schema extensions to anon, authenticated, service_role;

-- Supabase's defaults: everything created in public by postgres is open to the API roles, and
-- row-level security plus the migration's own grants/revokes are what protect it.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;

do $$
begin
    execute format('alter database %I set search_path = "$user", public, extensions',
        current_database());
end
$$;

-- Supabase Auth's own tables, reduced to the columns the stand-in's token endpoint
-- (outpost_sync::shim) reads and writes, with supabase/auth's names and types
-- (migrations/00_init_auth_schema.up.sql and later ones): users with a bcrypt
-- `encrypted_password`, sessions, the refresh tokens of each session (one family per session,
-- each naming the token it replaced in `parent`), and how each session was signed in to.
-- The API roles get no privileges on them, as on Supabase.
create table if not exists auth.users (
    instance_id uuid,
    id uuid primary key,
    aud varchar(255),
    role varchar(255),
    email varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb,
    raw_user_meta_data jsonb,
    created_at timestamptz,
    updated_at timestamptz,
    phone text default null,
    phone_confirmed_at timestamptz,
    banned_until timestamptz,
    is_sso_user boolean not null default false,
    deleted_at timestamptz,
    is_anonymous boolean not null default false
);
create unique index if not exists users_email_partial_key on auth.users (email)
    where is_sso_user = false;

create table if not exists auth.sessions (
    id uuid primary key,
    user_id uuid not null references auth.users (id) on delete cascade,
    created_at timestamptz,
    updated_at timestamptz,
    factor_id uuid,
    aal text,
    not_after timestamptz,
    refreshed_at timestamptz,
    user_agent text,
    ip inet,
    tag text
);

create table if not exists auth.refresh_tokens (
    instance_id uuid,
    id bigserial primary key,
    token varchar(255) unique,
    user_id varchar(255),
    revoked boolean,
    created_at timestamptz,
    updated_at timestamptz,
    parent varchar(255),
    session_id uuid references auth.sessions (id) on delete cascade
);
create index if not exists refresh_tokens_session_id_revoked_idx
    on auth.refresh_tokens (session_id, revoked);
create index if not exists refresh_tokens_parent_idx on auth.refresh_tokens (parent);

create table if not exists auth.mfa_amr_claims (
    session_id uuid not null references auth.sessions (id) on delete cascade,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    authentication_method text not null,
    id uuid primary key,
    unique (session_id, authentication_method)
);

-- Supabase's statement timeouts for the API roles ("anon: 3s, authenticated: 8s",
-- supabase.com/docs/guides/database/postgres/timeouts), which PostgREST applies to each request
-- as that role. Supabase sets them with `alter role … set`; here they are set for this database
-- only, since the roles are shared by every database of the test server (the stand-in reads a
-- database-specific setting first). A direct-Postgres session that `set role`s does not get
-- them, as on Supabase.
do $$
begin
    execute format('alter role anon in database %I set statement_timeout = %L',
        current_database(), '3s');
    execute format('alter role authenticated in database %I set statement_timeout = %L',
        current_database(), '8s');
end
$$;
