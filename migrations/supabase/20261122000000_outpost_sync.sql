-- Outpost central schema, version 1: the Supabase side of the sync (see docs/SYNC.md).
--
-- Tables of replicated rows, owned by the user of the JWT (`auth.uid()`) and protected by
-- row-level security, and the functions both transports call: outpost_info, outpost_push,
-- outpost_pull, outpost_checksums, match_chunks and hybrid_search. Every function runs as its
-- caller (security invoker), so row-level security applies to it.
--
-- Runs on a Supabase project (schema `auth` and the roles anon, authenticated and service_role
-- exist; pgvector goes to schema `extensions`) and on a plain PostgreSQL once
-- sync/tests/sql/supabase_auth_emulation.sql has been run. Re-runnable.

do $$
begin
    if exists (select 1 from pg_namespace where nspname = 'extensions') then
        execute 'create extension if not exists vector with schema extensions';
    else
        execute 'create extension if not exists vector';
    end if;
end
$$;

-- `vector` and its operators resolve wherever the extension lives.
set search_path = public, extensions;

-- One sequence for all replicated tables: with the writing transaction's id it orders changes.
create sequence if not exists public.outpost_change_seq;

create table if not exists public.outpost_documents (
    owner        uuid not null default auth.uid(),
    id           uuid not null,
    collection   text not null,
    home_device  text not null,
    source       text not null,
    title        text not null,
    content_hash text not null,
    metadata     jsonb not null default '{}'::jsonb,
    created_at   timestamptz not null,
    updated_at   timestamptz not null,
    hlc          bigint not null,
    -- Compared bytewise ("C"), as the device does, whatever the database's collation.
    device       text collate "C" not null,
    deleted      boolean not null default false,
    change_xid   xid8 not null default pg_current_xact_id(),
    change_seq   bigint not null default nextval('public.outpost_change_seq'),
    primary key (owner, id)
);

create table if not exists public.outpost_document_chunks (
    owner       uuid not null default auth.uid(),
    id          uuid not null,
    document_id uuid not null,
    ordinal     integer not null,
    content     text not null,
    token_count integer not null,
    byte_start  bigint not null,
    byte_end    bigint not null,
    metadata    jsonb not null default '{}'::jsonb,
    model       text not null,
    embedding   vector(384) not null,
    fts         tsvector generated always as (to_tsvector('english', content)) stored,
    primary key (owner, id),
    foreign key (owner, document_id)
        references public.outpost_documents (owner, id) on delete cascade
);

create table if not exists public.outpost_conversations (
    owner      uuid not null default auth.uid(),
    id         uuid not null,
    title      text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    hlc        bigint not null,
    device     text collate "C" not null,
    deleted    boolean not null default false,
    change_xid xid8 not null default pg_current_xact_id(),
    change_seq bigint not null default nextval('public.outpost_change_seq'),
    primary key (owner, id)
);

-- No unique (conversation_id, seq): two devices may both append message 3.
create table if not exists public.outpost_messages (
    owner           uuid not null default auth.uid(),
    id              uuid not null,
    conversation_id uuid not null,
    seq             bigint not null,
    role            text not null,
    content         text not null,
    model           text,
    embedding       vector,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    hlc             bigint not null,
    device          text collate "C" not null,
    deleted         boolean not null default false,
    change_xid      xid8 not null default pg_current_xact_id(),
    change_seq      bigint not null default nextval('public.outpost_change_seq'),
    primary key (owner, id)
);

create index if not exists outpost_documents_changes
    on public.outpost_documents (owner, change_xid, change_seq);
create index if not exists outpost_conversations_changes
    on public.outpost_conversations (owner, change_xid, change_seq);
create index if not exists outpost_messages_changes
    on public.outpost_messages (owner, change_xid, change_seq);
create index if not exists outpost_messages_conversation
    on public.outpost_messages (owner, conversation_id, seq);
create index if not exists outpost_document_chunks_document
    on public.outpost_document_chunks (owner, document_id);
create index if not exists outpost_document_chunks_embedding
    on public.outpost_document_chunks using hnsw (embedding vector_cosine_ops);
create index if not exists outpost_document_chunks_fts
    on public.outpost_document_chunks using gin (fts);

-- Row-level security: a user reads and writes only their own rows.
do $$
declare
    t text;
begin
    foreach t in array array['outpost_documents', 'outpost_document_chunks',
                             'outpost_conversations', 'outpost_messages'] loop
        execute format('alter table public.%I enable row level security', t);
        execute format('drop policy if exists %I on public.%I', t || '_select', t);
        execute format('create policy %I on public.%I for select to authenticated '
                       'using (owner = (select auth.uid()))', t || '_select', t);
        execute format('drop policy if exists %I on public.%I', t || '_insert', t);
        execute format('create policy %I on public.%I for insert to authenticated '
                       'with check (owner = (select auth.uid()))', t || '_insert', t);
        execute format('drop policy if exists %I on public.%I', t || '_update', t);
        execute format('create policy %I on public.%I for update to authenticated '
                       'using (owner = (select auth.uid())) with check (owner = (select auth.uid()))',
                       t || '_update', t);
        execute format('drop policy if exists %I on public.%I', t || '_delete', t);
        execute format('create policy %I on public.%I for delete to authenticated '
                       'using (owner = (select auth.uid()))', t || '_delete', t);
        -- Supabase's default privileges open new tables to anon and give authenticated
        -- TRUNCATE (which ignores row-level security): narrow both.
        execute format('revoke all on table public.%I from public, anon, authenticated', t);
        execute format('grant select, insert, update, delete on table public.%I to authenticated', t);
        execute format('grant all on table public.%I to service_role', t);
    end loop;
end
$$;

revoke all on sequence public.outpost_change_seq from public, anon, authenticated;
grant usage, select on sequence public.outpost_change_seq to authenticated;
grant all on sequence public.outpost_change_seq to service_role;

-- ---------------------------------------------------------------------------------------------
-- outpost_info: what a device checks before anything else.

create or replace function public.outpost_info()
returns jsonb
language sql
stable
security invoker
set search_path = public, extensions
as $$
    select jsonb_build_object(
        'schema_version', 1,
        'embedding_dims', 384,
        'migration', '20261122000000_outpost_sync')
$$;

-- ---------------------------------------------------------------------------------------------
-- outpost_push: applies a batch of change records, last writer wins by (hlc, device).

create or replace function public.outpost_push(changes jsonb)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = public, extensions
as $$
#variable_conflict use_column
declare
    v_owner   uuid := auth.uid();
    v_xid     xid8;
    v_out     jsonb[] := array[]::jsonb[];
    v_rec     jsonb;
    v_idx     integer := 0;
    v_kind    text;
    v_id_text text;
    v_id      uuid;
    v_hlc     bigint;
    v_device  text;
    v_deleted boolean;
    v_problem text;
    v_applied boolean;
    v_s_hlc   bigint;
    v_s_dev   text;
    v_outcome text;
    v_msg     text;
    v_state   text;
    v_detail  text;
    c_uuid    constant text := '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
    c_int     constant text := '^-?[0-9]{1,18}$';
begin
    if v_owner is null then
        raise exception 'outpost_push: no authenticated user (auth.uid() is null); call it with a user''s JWT'
            using errcode = '28000';
    end if;
    if changes is null or jsonb_typeof(changes) <> 'array' then
        raise exception 'outpost_push: changes must be a JSON array of change records'
            using errcode = '22023';
    end if;
    v_xid := pg_current_xact_id();

    begin
        for v_rec in select value from jsonb_array_elements(changes) loop
            v_idx := v_idx + 1;
            v_kind := null;
            v_id_text := null;
            if jsonb_typeof(v_rec) = 'object' then
                v_kind := v_rec ->> 'kind';
                v_id_text := v_rec ->> 'id';
            end if;

            -- Validation: everything is checked before anything of the record is written.
            v_problem := case
                when jsonb_typeof(v_rec) <> 'object' then 'not a JSON object'
                when jsonb_typeof(v_rec -> 'id') is distinct from 'string' then 'missing id'
                when v_id_text !~ c_uuid then 'id is not a UUID'
                when jsonb_typeof(v_rec -> 'kind') is distinct from 'string' then 'missing kind'
                when v_kind not in ('document', 'conversation', 'message')
                    then format('unknown kind %s', v_rec -> 'kind')
                when jsonb_typeof(v_rec -> 'hlc') is distinct from 'number'
                     or (v_rec ->> 'hlc') !~ '^[0-9]{1,19}$'
                    then 'missing hlc (a non-negative integer)'
                when jsonb_typeof(v_rec -> 'device') is distinct from 'string' or v_rec ->> 'device' = ''
                    then 'missing device'
                when jsonb_typeof(v_rec -> 'deleted') not in ('boolean', 'null')
                    then 'deleted is not a boolean'
                when jsonb_typeof(v_rec -> 'created_at') is distinct from 'number'
                     or (v_rec ->> 'created_at') !~ c_int
                    then 'missing created_at (Unix milliseconds)'
                when jsonb_typeof(v_rec -> 'updated_at') is distinct from 'number'
                     or (v_rec ->> 'updated_at') !~ c_int
                    then 'missing updated_at (Unix milliseconds)'
            end;

            if v_problem is null and v_kind = 'document' then
                v_problem := case
                    when jsonb_typeof(v_rec -> 'collection') is distinct from 'string' then 'missing collection'
                    when jsonb_typeof(v_rec -> 'home_device') is distinct from 'string' then 'missing home_device'
                    when jsonb_typeof(v_rec -> 'source') is distinct from 'string' then 'missing source'
                    when jsonb_typeof(v_rec -> 'title') is distinct from 'string' then 'missing title'
                    when jsonb_typeof(v_rec -> 'content_hash') is distinct from 'string' then 'missing content_hash'
                    when jsonb_typeof(v_rec -> 'metadata') not in ('object', 'null')
                        then 'metadata is not an object'
                    when jsonb_typeof(v_rec -> 'chunks') not in ('array', 'null')
                        then 'chunks is not an array'
                    when coalesce((v_rec ->> 'deleted')::boolean, false) = false
                         and jsonb_typeof(v_rec -> 'chunks') is distinct from 'array'
                        then 'missing chunks'
                end;
                if v_problem is null and coalesce((v_rec ->> 'deleted')::boolean, false) = false then
                    select format('chunk %s: %s', coalesce(c ->> 'id', '#' || n), p)
                      into v_problem
                      from jsonb_array_elements(v_rec -> 'chunks') with ordinality as x (c, n),
                           lateral (select case
                               when jsonb_typeof(c) <> 'object' then 'not a JSON object'
                               when jsonb_typeof(c -> 'id') is distinct from 'string' then 'missing id'
                               when (c ->> 'id') !~ c_uuid then 'id is not a UUID'
                               when jsonb_typeof(c -> 'ordinal') is distinct from 'number'
                                    or (c ->> 'ordinal') !~ '^[0-9]{1,9}$' then 'missing ordinal'
                               when jsonb_typeof(c -> 'text') is distinct from 'string' then 'missing text'
                               when jsonb_typeof(c -> 'token_count') is distinct from 'number'
                                    or (c ->> 'token_count') !~ '^[0-9]{1,9}$' then 'missing token_count'
                               when jsonb_typeof(c -> 'byte_start') is distinct from 'number'
                                    or (c ->> 'byte_start') !~ c_int then 'missing byte_start'
                               when jsonb_typeof(c -> 'byte_end') is distinct from 'number'
                                    or (c ->> 'byte_end') !~ c_int then 'missing byte_end'
                               when jsonb_typeof(c -> 'metadata') not in ('object', 'null')
                                   then 'metadata is not an object'
                               when jsonb_typeof(c -> 'model') is distinct from 'string' then 'missing model'
                               when jsonb_typeof(c -> 'embedding') is distinct from 'array'
                                   then 'missing embedding'
                               when jsonb_array_length(c -> 'embedding') <> 384
                                   then format('embedding has %s dimensions, expected 384',
                                               jsonb_array_length(c -> 'embedding'))
                               when jsonb_path_exists(c -> 'embedding', '$[*] ? (@.type() != "number")')
                                   then 'embedding has a value that is not a number'
                           end as p) as v
                     where p is not null
                     order by n
                     limit 1;
                end if;
            elsif v_problem is null and v_kind = 'conversation' then
                v_problem := case
                    when jsonb_typeof(v_rec -> 'title') is distinct from 'string' then 'missing title'
                end;
            elsif v_problem is null and v_kind = 'message' then
                v_problem := case
                    when jsonb_typeof(v_rec -> 'conversation_id') is distinct from 'string'
                        then 'missing conversation_id'
                    when (v_rec ->> 'conversation_id') !~ c_uuid then 'conversation_id is not a UUID'
                    when jsonb_typeof(v_rec -> 'seq') is distinct from 'number'
                         or (v_rec ->> 'seq') !~ c_int then 'missing seq'
                    when jsonb_typeof(v_rec -> 'role') is distinct from 'string' then 'missing role'
                    when jsonb_typeof(v_rec -> 'content') is distinct from 'string' then 'missing content'
                    when jsonb_typeof(v_rec -> 'model') not in ('string', 'null')
                        then 'model is not a string'
                    when jsonb_typeof(v_rec -> 'embedding') not in ('array', 'null')
                        then 'embedding is not an array'
                    when jsonb_typeof(v_rec -> 'embedding') = 'array'
                         and jsonb_array_length(v_rec -> 'embedding') = 0
                        then 'embedding is empty'
                    when jsonb_typeof(v_rec -> 'embedding') = 'array'
                         and jsonb_path_exists(v_rec -> 'embedding', '$[*] ? (@.type() != "number")')
                        then 'embedding has a value that is not a number'
                end;
            end if;

            if v_problem is not null then
                raise exception 'outpost_push: record % (% %): %', v_idx,
                        coalesce(v_kind, '?'), coalesce(v_id_text, 'without id'), v_problem
                    using errcode = '22023';
            end if;

            v_id := v_id_text::uuid;
            v_hlc := (v_rec ->> 'hlc')::bigint;
            v_device := v_rec ->> 'device';
            v_deleted := coalesce((v_rec ->> 'deleted')::boolean, false);
            v_applied := null;

            if v_kind = 'document' then
                insert into public.outpost_documents as t
                    (owner, id, collection, home_device, source, title, content_hash, metadata,
                     created_at, updated_at, hlc, device, deleted, change_xid, change_seq)
                values
                    (v_owner, v_id, v_rec ->> 'collection', v_rec ->> 'home_device',
                     v_rec ->> 'source', v_rec ->> 'title', v_rec ->> 'content_hash',
                     coalesce(nullif(v_rec -> 'metadata', 'null'::jsonb), '{}'::jsonb),
                     to_timestamp((v_rec ->> 'created_at')::bigint / 1000.0),
                     to_timestamp((v_rec ->> 'updated_at')::bigint / 1000.0),
                     v_hlc, v_device, v_deleted, v_xid, nextval('public.outpost_change_seq'))
                on conflict (owner, id) do update set
                    collection = excluded.collection,
                    home_device = excluded.home_device,
                    source = excluded.source,
                    title = excluded.title,
                    content_hash = excluded.content_hash,
                    metadata = excluded.metadata,
                    created_at = excluded.created_at,
                    updated_at = excluded.updated_at,
                    hlc = excluded.hlc,
                    device = excluded.device,
                    deleted = excluded.deleted,
                    change_xid = excluded.change_xid,
                    change_seq = excluded.change_seq
                where (excluded.hlc, excluded.device) > (t.hlc, t.device)
                returning true into v_applied;

                if v_applied then
                    -- Chunks are derived from the document: replaced as a set, none for a tombstone.
                    delete from public.outpost_document_chunks
                     where owner = v_owner and document_id = v_id;
                    if not v_deleted then
                        insert into public.outpost_document_chunks
                            (owner, id, document_id, ordinal, content, token_count, byte_start,
                             byte_end, metadata, model, embedding)
                        select v_owner, (c ->> 'id')::uuid, v_id, (c ->> 'ordinal')::integer,
                               c ->> 'text', (c ->> 'token_count')::integer,
                               (c ->> 'byte_start')::bigint, (c ->> 'byte_end')::bigint,
                               coalesce(nullif(c -> 'metadata', 'null'::jsonb), '{}'::jsonb),
                               c ->> 'model', (c -> 'embedding')::text::vector(384)
                          from jsonb_array_elements(v_rec -> 'chunks') as x (c);
                    end if;
                else
                    select hlc, device into v_s_hlc, v_s_dev
                      from public.outpost_documents where owner = v_owner and id = v_id;
                end if;

            elsif v_kind = 'conversation' then
                insert into public.outpost_conversations as t
                    (owner, id, title, created_at, updated_at, hlc, device, deleted,
                     change_xid, change_seq)
                values
                    (v_owner, v_id, v_rec ->> 'title',
                     to_timestamp((v_rec ->> 'created_at')::bigint / 1000.0),
                     to_timestamp((v_rec ->> 'updated_at')::bigint / 1000.0),
                     v_hlc, v_device, v_deleted, v_xid, nextval('public.outpost_change_seq'))
                on conflict (owner, id) do update set
                    title = excluded.title,
                    created_at = excluded.created_at,
                    updated_at = excluded.updated_at,
                    hlc = excluded.hlc,
                    device = excluded.device,
                    deleted = excluded.deleted,
                    change_xid = excluded.change_xid,
                    change_seq = excluded.change_seq
                where (excluded.hlc, excluded.device) > (t.hlc, t.device)
                returning true into v_applied;

                if v_applied is null then
                    select hlc, device into v_s_hlc, v_s_dev
                      from public.outpost_conversations where owner = v_owner and id = v_id;
                end if;

            else
                insert into public.outpost_messages as t
                    (owner, id, conversation_id, seq, role, content, model, embedding,
                     created_at, updated_at, hlc, device, deleted, change_xid, change_seq)
                values
                    (v_owner, v_id, (v_rec ->> 'conversation_id')::uuid, (v_rec ->> 'seq')::bigint,
                     v_rec ->> 'role', v_rec ->> 'content', v_rec ->> 'model',
                     case when jsonb_typeof(v_rec -> 'embedding') = 'array'
                          then (v_rec -> 'embedding')::text::vector end,
                     to_timestamp((v_rec ->> 'created_at')::bigint / 1000.0),
                     to_timestamp((v_rec ->> 'updated_at')::bigint / 1000.0),
                     v_hlc, v_device, v_deleted, v_xid, nextval('public.outpost_change_seq'))
                on conflict (owner, id) do update set
                    conversation_id = excluded.conversation_id,
                    seq = excluded.seq,
                    role = excluded.role,
                    content = excluded.content,
                    model = excluded.model,
                    embedding = excluded.embedding,
                    created_at = excluded.created_at,
                    updated_at = excluded.updated_at,
                    hlc = excluded.hlc,
                    device = excluded.device,
                    deleted = excluded.deleted,
                    change_xid = excluded.change_xid,
                    change_seq = excluded.change_seq
                where (excluded.hlc, excluded.device) > (t.hlc, t.device)
                returning true into v_applied;

                if v_applied is null then
                    select hlc, device into v_s_hlc, v_s_dev
                      from public.outpost_messages where owner = v_owner and id = v_id;
                end if;
            end if;

            -- Not applied: the conflicting row (locked by the upsert) is the same write or newer.
            v_outcome := case
                when v_applied then 'applied'
                when v_s_hlc = v_hlc and v_s_dev = v_device then 'duplicate'
                else 'stale'
            end;
            v_out := v_out || jsonb_build_object('kind', v_kind, 'id', v_id, 'outcome', v_outcome);
        end loop;
    exception when others then
        get stacked diagnostics v_msg = message_text, v_state = returned_sqlstate,
                                v_detail = pg_exception_detail;
        if v_msg like 'outpost_push:%' or v_state !~ '^2[23]' then
            -- Ours (already names the record), or not about the data (serialization failures,
            -- deadlocks, cancellations...): unchanged, so that callers can retry.
            raise;
        end if;
        -- Bad values the checks above let through (an f32 out of range, an id collision...).
        raise exception 'outpost_push: record % (% %): %', v_idx, coalesce(v_kind, '?'),
                coalesce(v_id_text, 'without id'),
                v_msg || case when coalesce(v_detail, '') <> '' then ' (' || v_detail || ')' else '' end
            using errcode = case when v_state like '22%' then '22023' else v_state end;
    end;

    return to_jsonb(v_out);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- outpost_pull: the caller's changes after a cursor, oldest first.

create or replace function public.outpost_pull(
    cursor text default null,
    max_rows integer default 1000,
    exclude_device text default null)
returns jsonb
language plpgsql
stable
security invoker
set search_path = public, extensions
as $$
#variable_conflict use_column
declare
    v_owner   uuid := auth.uid();
    v_cursor  text := $1;
    v_cx      xid8 := '0';
    v_cs      bigint := 0;
    v_xmin    xid8;
    v_lim     integer;
    v_more    boolean;
    v_last    text;
    v_changes jsonb;
begin
    if v_owner is null then
        raise exception 'outpost_pull: no authenticated user (auth.uid() is null); call it with a user''s JWT'
            using errcode = '28000';
    end if;
    if v_cursor is not null and v_cursor <> '' then
        if v_cursor !~ '^[0-9]{1,20}:[0-9]{1,19}$' then
            raise exception 'outpost_pull: malformed cursor %, expected "<xid>:<seq>"', quote_literal(v_cursor)
                using errcode = '22023';
        end if;
        v_cx := split_part(v_cursor, ':', 1)::xid8;
        v_cs := split_part(v_cursor, ':', 2)::bigint;
    end if;
    v_lim := least(greatest(coalesce(max_rows, 1000), 1), 10000);
    -- Transactions below the oldest one still running have all finished: a row stamped with one
    -- of them can no longer appear behind the cursor.
    v_xmin := pg_snapshot_xmin(pg_current_snapshot());

    with candidates as (
        (select 'document' as kind, id, change_xid, change_seq, device
           from public.outpost_documents
          where owner = v_owner and (change_xid, change_seq) > (v_cx, v_cs) and change_xid < v_xmin
          order by change_xid, change_seq
          limit v_lim + 1)
        union all
        (select 'conversation', id, change_xid, change_seq, device
           from public.outpost_conversations
          where owner = v_owner and (change_xid, change_seq) > (v_cx, v_cs) and change_xid < v_xmin
          order by change_xid, change_seq
          limit v_lim + 1)
        union all
        (select 'message', id, change_xid, change_seq, device
           from public.outpost_messages
          where owner = v_owner and (change_xid, change_seq) > (v_cx, v_cs) and change_xid < v_xmin
          order by change_xid, change_seq
          limit v_lim + 1)
    ),
    page as (
        select kind, id, change_xid, change_seq, device,
               row_number() over (order by change_xid, change_seq) as rn
          from (select * from candidates order by change_xid, change_seq limit v_lim + 1) as s
    )
    select count(*) > v_lim,
           (array_agg(change_xid::text || ':' || change_seq::text order by rn desc)
                filter (where rn <= v_lim))[1],
           coalesce(jsonb_agg(
               case kind
               when 'document' then (
                   select jsonb_build_object(
                       'kind', 'document', 'id', d.id, 'hlc', d.hlc, 'device', d.device,
                       'deleted', d.deleted, 'collection', d.collection,
                       'home_device', d.home_device, 'source', d.source, 'title', d.title,
                       'content_hash', d.content_hash, 'metadata', d.metadata,
                       'created_at', (extract(epoch from d.created_at) * 1000)::bigint,
                       'updated_at', (extract(epoch from d.updated_at) * 1000)::bigint,
                       'chunks', coalesce((
                           select jsonb_agg(jsonb_build_object(
                                      'id', c.id, 'ordinal', c.ordinal, 'text', c.content,
                                      'token_count', c.token_count, 'byte_start', c.byte_start,
                                      'byte_end', c.byte_end, 'metadata', c.metadata,
                                      'model', c.model, 'embedding', c.embedding::text::jsonb)
                                  order by c.ordinal, c.id)
                             from public.outpost_document_chunks c
                            where c.owner = d.owner and c.document_id = d.id and not d.deleted),
                           '[]'::jsonb))
                     from public.outpost_documents d
                    where d.owner = v_owner and d.id = page.id)
               when 'conversation' then (
                   select jsonb_build_object(
                       'kind', 'conversation', 'id', v.id, 'hlc', v.hlc, 'device', v.device,
                       'deleted', v.deleted, 'title', v.title,
                       'created_at', (extract(epoch from v.created_at) * 1000)::bigint,
                       'updated_at', (extract(epoch from v.updated_at) * 1000)::bigint)
                     from public.outpost_conversations v
                    where v.owner = v_owner and v.id = page.id)
               else (
                   select jsonb_build_object(
                       'kind', 'message', 'id', m.id, 'hlc', m.hlc, 'device', m.device,
                       'deleted', m.deleted, 'conversation_id', m.conversation_id, 'seq', m.seq,
                       'role', m.role, 'content', m.content, 'model', m.model,
                       'embedding', m.embedding::text::jsonb,
                       'created_at', (extract(epoch from m.created_at) * 1000)::bigint,
                       'updated_at', (extract(epoch from m.updated_at) * 1000)::bigint)
                     from public.outpost_messages m
                    where m.owner = v_owner and m.id = page.id)
               end
               order by rn)
               filter (where rn <= v_lim and (exclude_device is null or device <> exclude_device)),
               '[]'::jsonb)
      into v_more, v_last, v_changes
      from page;

    return jsonb_build_object(
        'changes', v_changes,
        'next_cursor', coalesce(v_last, v_cx::text || ':' || v_cs::text),
        'more', v_more);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- outpost_checksums: counts and digests per collection, compared by `outpost verify`.

create or replace function public.outpost_checksums()
returns jsonb
language sql
stable
security invoker
set search_path = public, extensions
as $$
    with docs as (
        select collection,
               count(*) filter (where not deleted) as live,
               count(*) filter (where deleted) as tombstones,
               encode(sha256(convert_to(coalesce(string_agg(
                   id::text || '|' || hlc::text || '|' || device || '|'
                       || case when deleted then '1' else '0' end || '|' || content_hash,
                   E'\n' order by id), ''), 'UTF8')), 'hex') as digest
          from public.outpost_documents
         where owner = (select auth.uid())
         group by collection
    ),
    chunks as (
        select d.collection,
               count(*) as n,
               encode(sha256(convert_to(coalesce(string_agg(
                   c.id::text || '|' || c.document_id::text || '|' || c.ordinal::text || '|'
                       || encode(sha256(convert_to(c.content, 'UTF8')), 'hex') || '|' || c.model
                       || '|' || encode(sha256(vector_send(c.embedding)), 'hex'),
                   E'\n' order by c.id), ''), 'UTF8')), 'hex') as digest
          from public.outpost_document_chunks c
          join public.outpost_documents d on d.owner = c.owner and d.id = c.document_id
         where d.owner = (select auth.uid()) and not d.deleted
         group by d.collection
    ),
    conversations as (
        select count(*) as n,
               encode(sha256(convert_to(coalesce(string_agg(
                   id::text || '|' || hlc::text || '|' || device || '|'
                       || case when deleted then '1' else '0' end || '|'
                       || encode(sha256(convert_to(title, 'UTF8')), 'hex'),
                   E'\n' order by id), ''), 'UTF8')), 'hex') as digest
          from public.outpost_conversations
         where owner = (select auth.uid())
    ),
    messages as (
        select count(*) as n,
               encode(sha256(convert_to(coalesce(string_agg(
                   id::text || '|' || conversation_id::text || '|' || hlc::text || '|' || device
                       || '|' || case when deleted then '1' else '0' end || '|'
                       || encode(sha256(convert_to(content, 'UTF8')), 'hex'),
                   E'\n' order by id), ''), 'UTF8')), 'hex') as digest
          from public.outpost_messages
         where owner = (select auth.uid())
    )
    select coalesce((
               select jsonb_object_agg(docs.collection, jsonb_build_object(
                   'documents', docs.live,
                   'tombstones', docs.tombstones,
                   'chunks', coalesce(chunks.n, 0),
                   'documents_sha256', docs.digest,
                   'chunks_sha256', coalesce(chunks.digest,
                       encode(sha256(''::bytea), 'hex'))))
                 from docs left join chunks on chunks.collection = docs.collection),
               '{}'::jsonb)
           || jsonb_build_object('_conversations', jsonb_build_object(
                   'conversations', (select n from conversations),
                   'messages', (select n from messages),
                   'conversations_sha256', (select digest from conversations),
                   'messages_sha256', (select digest from messages)))
$$;

-- ---------------------------------------------------------------------------------------------
-- Search over the caller's chunks, in the shape of Supabase's guides. `metadata` is the
-- document's metadata with the chunk's own keys over it.

-- With pgvector 0.8 or later, filtered HNSW scans (here: by owner) keep going until they have
-- match_count rows instead of stopping after hnsw.ef_search candidates.
do $do$
declare
    v_iterative text := '';
begin
    if (select (regexp_match(extversion, '^(\d+)\.(\d+)'))::int[] >= array[0, 8]
          from pg_extension where extname = 'vector') then
        v_iterative := 'set hnsw.iterative_scan = strict_order';
    end if;

    execute replace($fn$
create or replace function public.match_chunks(
    query_embedding vector(384),
    match_count integer default 10,
    filter jsonb default '{}')
returns table (
    id uuid,
    document_id uuid,
    collection text,
    content text,
    metadata jsonb,
    similarity float)
language sql
stable
security invoker
set search_path = public, extensions
/*iterative_scan*/
as $$
    select c.id, c.document_id, d.collection, c.content, d.metadata || c.metadata,
           1 - (c.embedding <=> query_embedding)
      from public.outpost_document_chunks c
      join public.outpost_documents d on d.owner = c.owner and d.id = c.document_id
     where c.owner = (select auth.uid())
       and not d.deleted
       and (d.metadata || jsonb_build_object('collection', d.collection))
           @> coalesce(filter, '{}'::jsonb)
     order by c.embedding <=> query_embedding
     limit match_count
$$
$fn$, '/*iterative_scan*/', v_iterative);

    execute replace($fn$
create or replace function public.hybrid_search(
    query_text text,
    query_embedding vector(384),
    match_count integer,
    full_text_weight float default 1,
    semantic_weight float default 1,
    rrf_k integer default 50)
returns table (
    id uuid,
    document_id uuid,
    collection text,
    content text,
    metadata jsonb,
    score float)
language sql
stable
security invoker
set search_path = public, extensions
/*iterative_scan*/
as $$
    with full_text as (
        select c.id,
               -- ts_rank_cd is not indexable, but only ranks the matches of the where clause.
               row_number() over (
                   order by ts_rank_cd(c.fts, websearch_to_tsquery('english', query_text)) desc
               ) as rank_ix
          from public.outpost_document_chunks c
         where c.owner = (select auth.uid())
           and c.fts @@ websearch_to_tsquery('english', query_text)
         order by rank_ix
         limit match_count * 2
    ),
    semantic as (
        select c.id,
               row_number() over (order by c.embedding <=> query_embedding) as rank_ix
          from public.outpost_document_chunks c
         where c.owner = (select auth.uid())
         order by rank_ix
         limit match_count * 2
    )
    select c.id, c.document_id, d.collection, c.content, d.metadata || c.metadata,
           (coalesce(1.0 / (rrf_k + full_text.rank_ix), 0.0) * full_text_weight
            + coalesce(1.0 / (rrf_k + semantic.rank_ix), 0.0) * semantic_weight)::float as score
      from full_text
      full outer join semantic on full_text.id = semantic.id
      join public.outpost_document_chunks c
        on c.owner = (select auth.uid()) and c.id = coalesce(full_text.id, semantic.id)
      join public.outpost_documents d on d.owner = c.owner and d.id = c.document_id
     order by score desc, c.id
     limit match_count
$$
$fn$, '/*iterative_scan*/', v_iterative);
end
$do$;

-- ---------------------------------------------------------------------------------------------
-- Who may call what: functions are executable by PUBLIC (and, on Supabase, anon) by default.

revoke all on function public.outpost_info() from public, anon, authenticated, service_role;
revoke all on function public.outpost_push(jsonb) from public, anon, authenticated, service_role;
revoke all on function public.outpost_pull(text, integer, text) from public, anon, authenticated, service_role;
revoke all on function public.outpost_checksums() from public, anon, authenticated, service_role;
revoke all on function public.match_chunks(vector, integer, jsonb) from public, anon, authenticated, service_role;
revoke all on function public.hybrid_search(text, vector, integer, float, float, integer)
    from public, anon, authenticated, service_role;

grant execute on function public.outpost_info() to anon, authenticated, service_role;
grant execute on function public.outpost_push(jsonb) to authenticated, service_role;
grant execute on function public.outpost_pull(text, integer, text) to authenticated, service_role;
grant execute on function public.outpost_checksums() to authenticated, service_role;
grant execute on function public.match_chunks(vector, integer, jsonb) to authenticated, service_role;
grant execute on function public.hybrid_search(text, vector, integer, float, float, integer)
    to authenticated, service_role;

-- Leave the session as it was.
reset search_path;
