-- Outpost central schema, version 2: vectors on the wire as base64 (see docs/SYNC.md, "Vectors on
-- the wire"). Applies after 20261122000000_outpost_sync; re-runnable.
--
-- Version 1 sends and answers every embedding as a JSON array of numbers, about 11 bytes per
-- float. A device that reads `"base64"` in `outpost_info().vector_formats` now sends
-- `embedding_b64` instead: base64 (RFC 4648, standard alphabet, padded) of the vector's float32
-- values in big-endian byte order, which is pgvector's binary form (`vector_send`) without its
-- 4-byte header: 2,048 characters for 384 floats. It asks `outpost_pull(..., vector_format =>
-- 'base64')` for the same form back. Both forms carry the exact float32 bits, -0 included.
--
-- Old devices are unaffected: `outpost_push` still takes `embedding` arrays, and `outpost_pull`
-- without `vector_format` answers as before. Statement shapes, outcomes and errors are
-- otherwise those of version 1.

set search_path = public, extensions;

-- ---------------------------------------------------------------------------------------------
-- outpost_f32_decode: big-endian IEEE 754 float32 values (pgvector's binary form without its
-- header) to real[], bit for bit. SQL has no cast from bits to a float, so each value is rebuilt
-- from its sign, exponent and mantissa in float8 arithmetic, which is exact for every float32
-- (the product of a 24-bit integer and a power of two). NaN and infinities come out as NaN,
-- which the cast to vector refuses ("NaN not allowed in vector"). A trailing partial value is
-- ignored: callers check the length first.

create or replace function public.outpost_f32_decode(b bytea)
returns real[]
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
    select coalesce(array_agg(
               case when e = 255 then 'NaN'::real
               else ((case when b0 >= 128 then -1::float8 else 1::float8 end)
                     * ((((b1 & 127) << 16) | (b2 << 8) | b3)
                        + case when e > 0 then 8388608 else 0 end)::float8
                     * power(2::float8, greatest(e, 1) - 150))::real
               end
               order by o), '{}')
      from (select o, get_byte(b, o) as b0, get_byte(b, o + 1) as b1,
                   get_byte(b, o + 2) as b2, get_byte(b, o + 3) as b3
              from generate_series(0, length(b) - 4, 4) as o) as x,
           lateral (select ((b0 & 127) << 1) | (b1 >> 7) as e) as y
$$;

-- power(2, k) must be exact for every exponent a float32 can have; a libm that rounds one of
-- them would corrupt vectors, so the migration stops here instead.
do $$
begin
    if exists (
        with recursive p(k, v) as (
            select 0, 1::float8
            union all
            select k - 1, v / 2 from p where k > -149)
        select 1 from p where power(2::float8, k) <> v
        union all
        select 1 from generate_series(0, 104) as k where power(2::float8, k) <> (2::numeric ^ k)::float8)
    then
        raise exception 'outpost: power(2, k) is not exact on this server; base64 vectors would be corrupted';
    end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- outpost_info: version 2 says which vector forms the functions take and give.

create or replace function public.outpost_info()
returns jsonb
language sql
stable
security invoker
set search_path = public, extensions
as $$
    select jsonb_build_object(
        'schema_version', 2,
        'embedding_dims', 384,
        'migration', '20261205000000_outpost_vectors_base64',
        'vector_formats', jsonb_build_array('json', 'base64'))
$$;

-- ---------------------------------------------------------------------------------------------
-- outpost_push: as version 1; a chunk (or message) may carry `embedding_b64` instead of
-- `embedding`.

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
                               when c ? 'embedding_b64' and c ? 'embedding'
                                   then 'both embedding and embedding_b64: send one'
                               when c ? 'embedding_b64' then case
                                   when jsonb_typeof(c -> 'embedding_b64') is distinct from 'string'
                                       then 'embedding_b64 is not a string'
                                   when length(c ->> 'embedding_b64') <> 2048
                                        or (c ->> 'embedding_b64') !~ '^[A-Za-z0-9+/]*$'
                                       then format('embedding_b64 is not base64 of 384 big-endian float32 '
                                                   '(2048 characters of A-Z a-z 0-9 + /), got %s characters',
                                                   length(c ->> 'embedding_b64'))
                               end
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
                    when v_rec ? 'embedding_b64' and v_rec ? 'embedding'
                        then 'both embedding and embedding_b64: send one'
                    when jsonb_typeof(v_rec -> 'embedding_b64') not in ('string', 'null')
                        then 'embedding_b64 is not a string'
                    when jsonb_typeof(v_rec -> 'embedding_b64') = 'string'
                         and ((v_rec ->> 'embedding_b64') = ''
                              or (v_rec ->> 'embedding_b64')
                                 !~ '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$')
                        then 'embedding_b64 is not base64 (RFC 4648, padded, no line breaks)'
                    when jsonb_typeof(v_rec -> 'embedding_b64') = 'string'
                         and length(decode(v_rec ->> 'embedding_b64', 'base64')) % 4 <> 0
                        then format('embedding_b64 holds %s bytes, not a whole number of float32',
                                    length(decode(v_rec ->> 'embedding_b64', 'base64')))
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
                               c ->> 'model',
                               case when c ? 'embedding_b64'
                                    then public.outpost_f32_decode(decode(c ->> 'embedding_b64', 'base64'))::vector(384)
                                    else (c -> 'embedding')::text::vector(384) end
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
                     case when jsonb_typeof(v_rec -> 'embedding_b64') = 'string'
                          then public.outpost_f32_decode(decode(v_rec ->> 'embedding_b64', 'base64'))::vector
                          when jsonb_typeof(v_rec -> 'embedding') = 'array'
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
-- outpost_pull: as version 1, with `vector_format` ('json', the default, or 'base64') and
-- `max_bytes`: a page stops before the record that would take it past that many bytes of
-- records (as jsonb text), and always holds at least one, so that a page of large documents
-- stays small enough for a phone and for the statement timeout (null: rows only, as before).
-- The new arguments make it a new function: the three-argument one goes, so that a call by
-- name resolves to exactly one function (PostgREST refuses overloads it cannot tell apart).

drop function if exists public.outpost_pull(text, integer, text);
drop function if exists public.outpost_pull(text, integer, text, text);

create or replace function public.outpost_pull(
    cursor text default null,
    max_rows integer default 1000,
    exclude_device text default null,
    vector_format text default 'json',
    max_bytes integer default null)
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
    v_b64     boolean;
    v_bytes   bigint;
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
    if coalesce(vector_format, 'json') not in ('json', 'base64') then
        raise exception 'outpost_pull: unknown vector_format %, expected ''json'' or ''base64''',
                quote_literal(vector_format)
            using errcode = '22023';
    end if;
    v_b64 := coalesce(vector_format = 'base64', false);
    v_lim := least(greatest(coalesce(max_rows, 1000), 1), 10000);
    v_bytes := case when max_bytes is null then null else greatest(max_bytes, 1) end;
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
    ),
    -- Each record of the page (null for a row of the excluded device, which the cursor still
    -- passes), with the bytes of the page up to and including it.
    recs as (
        select rn, change_xid, change_seq,
               case when exclude_device is not null and device = exclude_device then null
               else case kind
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
                                      'model', c.model)
                                  || case when v_b64
                                          then jsonb_build_object('embedding_b64', translate(encode(
                                              substring(vector_send(c.embedding) from 5), 'base64'), E'\n', ''))
                                          else jsonb_build_object('embedding', c.embedding::text::jsonb) end
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
                       'created_at', (extract(epoch from m.created_at) * 1000)::bigint,
                       'updated_at', (extract(epoch from m.updated_at) * 1000)::bigint)
                       || case when v_b64
                               then jsonb_build_object('embedding_b64', translate(encode(
                                   substring(vector_send(m.embedding) from 5), 'base64'), E'\n', ''))
                               else jsonb_build_object('embedding', m.embedding::text::jsonb) end
                     from public.outpost_messages m
                    where m.owner = v_owner and m.id = page.id)
               end end as rec
          from page
         where rn <= v_lim
    ),
    sized as (
        select *, sum(octet_length(rec::text)) over (order by rn) as upto from recs
    ),
    -- A prefix: sizes only grow, and the first row is always kept.
    kept as (
        select * from sized where v_bytes is null or rn = 1 or coalesce(upto, 0) <= v_bytes
    )
    select (select count(*) from page) > (select count(*) from kept),
           (select change_xid::text || ':' || change_seq::text from kept order by rn desc limit 1),
           coalesce((select jsonb_agg(rec order by rn) from kept where rec is not null), '[]'::jsonb)
      into v_more, v_last, v_changes;

    return jsonb_build_object(
        'changes', v_changes,
        'next_cursor', coalesce(v_last, v_cx::text || ':' || v_cs::text),
        'more', v_more);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Who may call what (the callers of outpost_push need outpost_f32_decode: it runs as them).

revoke all on function public.outpost_f32_decode(bytea) from public, anon, authenticated, service_role;
revoke all on function public.outpost_info() from public, anon, authenticated, service_role;
revoke all on function public.outpost_push(jsonb) from public, anon, authenticated, service_role;
revoke all on function public.outpost_pull(text, integer, text, text, integer)
    from public, anon, authenticated, service_role;

grant execute on function public.outpost_f32_decode(bytea) to authenticated, service_role;
grant execute on function public.outpost_info() to anon, authenticated, service_role;
grant execute on function public.outpost_push(jsonb) to authenticated, service_role;
grant execute on function public.outpost_pull(text, integer, text, text, integer) to authenticated, service_role;

-- Leave the session as it was.
reset search_path;
