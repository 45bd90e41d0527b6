-- Outpost central schema, version 3: a document too large for one request is pushed in staged
-- parts and committed in one transaction (see docs/SYNC.md, "Bounded work"). Applies after
-- 20261205000000_outpost_vectors_base64; re-runnable.
--
-- A device sends a large document's chunks a part at a time with outpost_stage(upload, first,
-- chunks), each call well inside the request-size limit and the role's statement_timeout, and
-- then the document record without its chunks with outpost_push_staged(upload, document,
-- chunk_count). That call takes the staged chunks, pushes the whole record through outpost_push
-- (the same checks, conflict rule and outcome as any push) and removes the staged rows, all in
-- one transaction: no reader (outpost_pull, match_chunks, hybrid_search, a table read) sees a
-- document with part of its chunks, since staged chunks live only in outpost_staged_chunks,
-- which nothing else reads.
--
-- Staging is idempotent: a chunk is keyed by (owner, upload, index), so a part sent again (a
-- retry after a cut, a device that resumes after a crash) replaces itself, and parts of
-- different sizes may overlap. The upload id is the device's (derived from the document's id
-- and version), so a resumed push restages into the same upload. Staged rows nobody committed
-- are removed after a day by the next outpost_stage call of the same user.

create table if not exists public.outpost_staged_chunks (
    owner     uuid        not null,
    upload    uuid        not null,
    idx       integer     not null check (idx >= 0),
    chunk     jsonb       not null,
    staged_at timestamptz not null default now(),
    primary key (owner, upload, idx)
);

create index if not exists outpost_staged_chunks_age
    on public.outpost_staged_chunks (owner, staged_at);

alter table public.outpost_staged_chunks enable row level security;
drop policy if exists outpost_staged_chunks_own on public.outpost_staged_chunks;
create policy outpost_staged_chunks_own on public.outpost_staged_chunks for all to authenticated
    using (owner = (select auth.uid())) with check (owner = (select auth.uid()));
revoke all on table public.outpost_staged_chunks from anon, authenticated;
grant select, insert, update, delete on table public.outpost_staged_chunks to authenticated;
grant all on table public.outpost_staged_chunks to service_role;

-- ---------------------------------------------------------------------------------------------
-- outpost_info: version 3 says that outpost_stage / outpost_push_staged exist.

create or replace function public.outpost_info()
returns jsonb
language sql
stable
security invoker
set search_path = public, extensions
as $$
    select jsonb_build_object(
        'schema_version', 3,
        'embedding_dims', 384,
        'migration', '20261206000000_outpost_staged_push',
        'vector_formats', jsonb_build_array('json', 'base64'),
        'staged_push', true)
$$;

-- ---------------------------------------------------------------------------------------------
-- outpost_stage(upload, first, chunks): stages `chunks` (chunk records as outpost_push takes
-- them) as indexes first, first + 1, ... of `upload`. Answers {upload, staged: <chunks in this
-- call>, held: <chunks the upload now holds>}. The chunks are checked when the document is
-- committed, by outpost_push.

create or replace function public.outpost_stage(upload text, first integer, chunks jsonb)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = public, extensions
as $$
#variable_conflict use_column
declare
    v_owner  uuid := auth.uid();
    v_upload uuid;
    c_uuid   constant text := '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
    v_staged integer;
    v_held   integer;
begin
    if v_owner is null then
        raise exception 'outpost_stage: no authenticated user (auth.uid() is null); call it with a user''s JWT'
            using errcode = '28000';
    end if;
    if outpost_stage.upload is null or outpost_stage.upload !~ c_uuid then
        raise exception 'outpost_stage: upload must be a UUID, got %', coalesce(outpost_stage.upload, 'null')
            using errcode = '22023';
    end if;
    v_upload := outpost_stage.upload::uuid;
    if outpost_stage.first is null or outpost_stage.first < 0 then
        raise exception 'outpost_stage: first must be a chunk index (0 or more), got %',
                coalesce(outpost_stage.first::text, 'null')
            using errcode = '22023';
    end if;
    if outpost_stage.chunks is null or jsonb_typeof(outpost_stage.chunks) <> 'array'
       or jsonb_array_length(outpost_stage.chunks) = 0 then
        raise exception 'outpost_stage: chunks must be a non-empty JSON array of chunk records'
            using errcode = '22023';
    end if;

    -- Uploads abandoned a day ago (a device that gave up, a version superseded before it was
    -- committed) go, so that staging never grows without bound.
    delete from public.outpost_staged_chunks s
     where s.owner = v_owner and s.staged_at < now() - interval '1 day'
       and s.upload <> v_upload;

    insert into public.outpost_staged_chunks as s (owner, upload, idx, chunk)
    select v_owner, v_upload, outpost_stage.first + (x.n - 1)::integer, x.c
      from jsonb_array_elements(outpost_stage.chunks) with ordinality as x (c, n)
    on conflict (owner, upload, idx) do update
        set chunk = excluded.chunk, staged_at = excluded.staged_at;
    get diagnostics v_staged = row_count;

    select count(*) into v_held
      from public.outpost_staged_chunks s
     where s.owner = v_owner and s.upload = v_upload;
    return jsonb_build_object('upload', v_upload, 'staged', v_staged, 'held', v_held);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- outpost_push_staged(upload, document, chunk_count): pushes `document` (a document record as
-- outpost_push takes it, without `chunks`) with the chunks staged as indexes 0 .. chunk_count - 1
-- of `upload`, in that order, and removes the upload. Answers outpost_push's outcome array (one
-- element). Refuses (22023, nothing written) when a chunk is missing, so the device stages again.
--
-- Writing thousands of chunks into the vector index legitimately takes longer than the
-- `authenticated` role's 8-second statement_timeout, so the function sets its own (PostgREST
-- applies a function's statement_timeout to the request's transaction, `db-hoisted-tx-settings`).

create or replace function public.outpost_push_staged(upload text, document jsonb, chunk_count integer)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = public, extensions
set statement_timeout = '5min'
as $$
#variable_conflict use_column
declare
    v_owner  uuid := auth.uid();
    v_upload uuid;
    c_uuid   constant text := '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
    v_held   integer;
    v_chunks jsonb;
    v_out    jsonb;
begin
    if v_owner is null then
        raise exception 'outpost_push_staged: no authenticated user (auth.uid() is null); call it with a user''s JWT'
            using errcode = '28000';
    end if;
    if outpost_push_staged.upload is null or outpost_push_staged.upload !~ c_uuid then
        raise exception 'outpost_push_staged: upload must be a UUID, got %', coalesce(outpost_push_staged.upload, 'null')
            using errcode = '22023';
    end if;
    v_upload := outpost_push_staged.upload::uuid;
    if outpost_push_staged.document is null or jsonb_typeof(outpost_push_staged.document) <> 'object'
       or outpost_push_staged.document ->> 'kind' is distinct from 'document' then
        raise exception 'outpost_push_staged: document must be a document record (kind "document")'
            using errcode = '22023';
    end if;
    if outpost_push_staged.document ? 'chunks' then
        raise exception 'outpost_push_staged: the document carries chunks; they are staged with outpost_stage'
            using errcode = '22023';
    end if;
    if outpost_push_staged.chunk_count is null or outpost_push_staged.chunk_count < 1 then
        raise exception 'outpost_push_staged: chunk_count must be 1 or more, got %',
                coalesce(outpost_push_staged.chunk_count::text, 'null')
            using errcode = '22023';
    end if;

    -- Locked, so that a concurrent outpost_stage of the same upload waits for this commit.
    select count(*), jsonb_agg(s.chunk order by s.idx)
      into v_held, v_chunks
      from (select s.idx, s.chunk
              from public.outpost_staged_chunks s
             where s.owner = v_owner and s.upload = v_upload
               and s.idx < outpost_push_staged.chunk_count
               for update) s;
    if v_held <> outpost_push_staged.chunk_count then
        raise exception 'outpost_push_staged: upload % holds % of the document''s % chunks; stage the missing ones again',
                v_upload, v_held, outpost_push_staged.chunk_count
            using errcode = '22023';
    end if;

    v_out := public.outpost_push(
        jsonb_build_array(outpost_push_staged.document || jsonb_build_object('chunks', v_chunks)));

    delete from public.outpost_staged_chunks s
     where s.owner = v_owner and s.upload = v_upload;
    return v_out;
end
$$;

revoke all on function public.outpost_stage(text, integer, jsonb) from public, anon;
revoke all on function public.outpost_push_staged(text, jsonb, integer) from public, anon;
grant execute on function public.outpost_stage(text, integer, jsonb) to authenticated, service_role;
grant execute on function public.outpost_push_staged(text, jsonb, integer) to authenticated, service_role;

-- outpost_checksums hashes every chunk of the caller's (about 0.05 ms a chunk on a 2-core
-- server): past some 150,000 chunks a legitimate `outpost verify` needs longer than the
-- `authenticated` role's 8 s.
alter function public.outpost_checksums() set statement_timeout = '2min';
