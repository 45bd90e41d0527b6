-- Smoke test of the central schema (migrations/supabase) on a plain PostgreSQL, run by
-- smoke.sh after supabase_auth_emulation.sql and the migration. Fails (psql exits non-zero) at
-- the first broken expectation. Users act as the direct transport does: one transaction with
-- `set local role authenticated` and the JWT claims in `request.jwt.claims`.
\set ON_ERROR_STOP on
\set QUIET on
set client_min_messages = warning;

\set user_a '11111111-1111-4111-8111-111111111111'
\set user_b '22222222-2222-4222-8222-222222222222'
\set claims_a '{"sub":"11111111-1111-4111-8111-111111111111","role":"authenticated"}'
\set claims_b '{"sub":"22222222-2222-4222-8222-222222222222","role":"authenticated"}'
\set dev0 'aaaaaaaa-0000-4000-8000-000000000000'
\set dev1 'aaaaaaaa-0000-4000-8000-000000000001'
\set dev2 'bbbbbbbb-0000-4000-8000-000000000002'
\set doc '0190a000-0000-7000-8000-000000000001'
\set c1 '0190a000-0000-7000-8000-0000000000c1'
\set c2 '0190a000-0000-7000-8000-0000000000c2'
\set c3 '0190a000-0000-7000-8000-0000000000c3'
\set conv '0190a000-0000-7000-8000-00000000c0c0'
\set m1 '0190a000-0000-7000-8000-0000000000e1'
\set m2 '0190a000-0000-7000-8000-0000000000e2'

-- Test helpers: record builders and a table of results, usable by the test users.
drop schema if exists smoke cascade;
create schema smoke;
grant usage on schema smoke to authenticated, anon;
create table smoke.results (name text primary key, value jsonb);
grant all on smoke.results to authenticated, anon;

-- A 384-d (or n-d) embedding whose values survive f32 exactly (6 significant digits).
create function smoke.vec(seed float, n int default 384) returns jsonb language sql immutable as $$
    select jsonb_agg(round(sin(i * seed)::numeric, 6) order by i) from generate_series(1, n) i
$$;
create function smoke.chunk(id uuid, ordinal int, body text, emb jsonb) returns jsonb language sql as $$
    select jsonb_build_object('id', id, 'ordinal', ordinal, 'text', body, 'token_count', 5,
        'byte_start', ordinal * 100, 'byte_end', ordinal * 100 + length(body),
        'metadata', jsonb_build_object('page', ordinal), 'model', 'all-MiniLM-L6-v2',
        'embedding', emb)
$$;
create function smoke.doc(id uuid, hlc bigint, device text, title text, chunks jsonb,
                          deleted boolean default false) returns jsonb language sql as $$
    select jsonb_build_object('kind', 'document', 'id', id, 'hlc', hlc, 'device', device,
        'deleted', deleted, 'collection', 'default',
        'home_device', 'aaaaaaaa-0000-4000-8000-000000000001', 'source', 'notes/a.md',
        'title', title, 'content_hash', 'hash-' || title, 'metadata', '{"lang": "en"}'::jsonb,
        'created_at', 1732270000123, 'updated_at', 1732270000999, 'chunks', chunks)
$$;
grant execute on all functions in schema smoke to authenticated, anon;

create function smoke.check(name text, ok boolean, got jsonb default null) returns void
language plpgsql as $$
begin
    if ok is not true then
        raise exception 'smoke check failed: % (got %)', name, got;
    end if;
end
$$;

-- The migration is there and anon may ask about it, but nothing else.
begin;
set local role anon;
select smoke.check('outpost_info', outpost_info() = '{"schema_version": 3, "embedding_dims": 384,
    "migration": "20261206000000_outpost_staged_push", "vector_formats": ["json", "base64"],
    "staged_push": true}'::jsonb,
    outpost_info());
commit;
do $$
begin
    set local role anon;
    begin
        perform outpost_push('[]');
        raise exception 'anon could call outpost_push';
    exception when insufficient_privilege then null;
    end;
    begin
        perform count(*) from outpost_documents;
        raise exception 'anon could read outpost_documents';
    exception when insufficient_privilege then null;
    end;
    reset role;
    -- authenticated without a user id
    set local role authenticated;
    begin
        perform outpost_push('[]');
        raise exception 'outpost_push ran without auth.uid()';
    exception when sqlstate '28000' then null;
    end;
    reset role;
end
$$;

-- 1. A pushes a document with two chunks, a conversation and two messages: all applied.
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
insert into smoke.results values ('batch1', jsonb_build_array(
    smoke.doc(:'doc', 1000, :'dev1', 'A', jsonb_build_array(
        smoke.chunk(:'c1', 0, 'The quick brown fox jumps over the lazy dog', smoke.vec(1)),
        smoke.chunk(:'c2', 1, 'Postgres stores vectors with pgvector', smoke.vec(2)))),
    jsonb_build_object('kind', 'conversation', 'id', :'conv', 'hlc', 1001, 'device', :'dev1',
        'deleted', false, 'title', 'Chat', 'created_at', 1732270000000, 'updated_at', 1732270000001),
    jsonb_build_object('kind', 'message', 'id', :'m1', 'hlc', 1002, 'device', :'dev1',
        'deleted', false, 'conversation_id', :'conv', 'seq', 1, 'role', 'user', 'content', 'hi',
        'model', 'all-MiniLM-L6-v2', 'embedding', smoke.vec(3, 5),
        'created_at', 1732270000002, 'updated_at', 1732270000002),
    jsonb_build_object('kind', 'message', 'id', :'m2', 'hlc', 1003, 'device', :'dev1',
        'deleted', false, 'conversation_id', :'conv', 'seq', 2, 'role', 'assistant',
        'content', 'hello', 'model', null, 'embedding', null,
        'created_at', 1732270000003, 'updated_at', 1732270000003)));
insert into smoke.results select 'push1', outpost_push(value) from smoke.results where name = 'batch1';
commit;
select smoke.check('push1 all applied', value = jsonb_build_array(
    jsonb_build_object('kind', 'document', 'id', :'doc', 'outcome', 'applied'),
    jsonb_build_object('kind', 'conversation', 'id', :'conv', 'outcome', 'applied'),
    jsonb_build_object('kind', 'message', 'id', :'m1', 'outcome', 'applied'),
    jsonb_build_object('kind', 'message', 'id', :'m2', 'outcome', 'applied')), value)
  from smoke.results where name = 'push1';
select smoke.check('two chunks stored', count(*) = 2) from outpost_document_chunks;

-- 2. The same batch again: duplicates. An older stamp, or the same hlc from a smaller device: stale.
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
insert into smoke.results select 'push2', outpost_push(value) from smoke.results where name = 'batch1';
insert into smoke.results values ('push3', outpost_push(jsonb_build_array(
    smoke.doc(:'doc', 999, :'dev1', 'old', '[]'),
    smoke.doc(:'doc', 1000, :'dev0', 'old', '[]'))));
commit;
select smoke.check('push2 all duplicate',
    (select bool_and(r ->> 'outcome' = 'duplicate') and count(*) = 4
       from jsonb_array_elements(value) r), value)
  from smoke.results where name = 'push2';
select smoke.check('push3 stale', value = jsonb_build_array(
    jsonb_build_object('kind', 'document', 'id', :'doc', 'outcome', 'stale'),
    jsonb_build_object('kind', 'document', 'id', :'doc', 'outcome', 'stale')), value)
  from smoke.results where name = 'push3';
select smoke.check('stale left the title', title = 'A' and hlc = 1000 and device = :'dev1')
  from outpost_documents;

-- 3. Same hlc from a larger device id: applied, chunks replaced.
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
insert into smoke.results values ('push4', outpost_push(jsonb_build_array(
    smoke.doc(:'doc', 1000, :'dev2', 'A2', jsonb_build_array(
        smoke.chunk(:'c3', 0, 'A brown fox, rewritten', smoke.vec(4)))))));
commit;
select smoke.check('push4 applied', value -> 0 ->> 'outcome' = 'applied', value)
  from smoke.results where name = 'push4';
select smoke.check('chunks replaced', array_agg(id) = array[:'c3'::uuid]) from outpost_document_chunks;

-- 4. A pulls everything, oldest first, with exactly the fields of docs/SYNC.md.
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
insert into smoke.results values ('pull1', outpost_pull());
insert into smoke.results values ('pull_excl', outpost_pull(null, 1000, :'dev2'));
insert into smoke.results values ('pull_p1', outpost_pull('', 2));
insert into smoke.results select 'pull_p2', outpost_pull(value ->> 'next_cursor', 2)
  from smoke.results where name = 'pull_p1';
insert into smoke.results select 'pull_p3', outpost_pull(value ->> 'next_cursor', 2)
  from smoke.results where name = 'pull_p2';
commit;
select smoke.check('pull1 order', (select array_agg(c ->> 'id' order by n)
        from jsonb_array_elements(value -> 'changes') with ordinality x (c, n))
    = array[:'conv', :'m1', :'m2', :'doc'], value)
  from smoke.results where name = 'pull1';
select smoke.check('pull1 more/cursor', value -> 'more' = 'false' and value ->> 'next_cursor' ~ '^[0-9]+:[0-9]+$', value)
  from smoke.results where name = 'pull1';
select smoke.check('pulled document', value -> 'changes' -> 3 = smoke.doc(:'doc', 1000, :'dev2', 'A2',
    jsonb_build_array(smoke.chunk(:'c3', 0, 'A brown fox, rewritten', smoke.vec(4)))), value -> 'changes' -> 3)
  from smoke.results where name = 'pull1';
select smoke.check('pulled records = pushed records', (value -> 'changes') - 3
        = ((select b.value from smoke.results b where b.name = 'batch1') - 0), value)
  from smoke.results where name = 'pull1';
select smoke.check('pulled document key order-independent fields',
    (select array_agg(k order by k) from jsonb_object_keys(value -> 'changes' -> 3) k)
    = array['chunks', 'collection', 'content_hash', 'created_at', 'deleted', 'device', 'hlc',
            'home_device', 'id', 'kind', 'metadata', 'source', 'title', 'updated_at'], value)
  from smoke.results where name = 'pull1';
select smoke.check('exclude_device skips but moves the cursor',
    jsonb_array_length(e.value -> 'changes') = 3 and e.value -> 'next_cursor' = p.value -> 'next_cursor', e.value)
  from smoke.results e, smoke.results p where e.name = 'pull_excl' and p.name = 'pull1';
select smoke.check('paged pulls', jsonb_array_length(p1.value -> 'changes') = 2 and p1.value -> 'more' = 'true'
    and (p2.value -> 'changes') = (p.value -> 'changes') - 0 - 0 and p2.value -> 'more' = 'false'
    and p3.value -> 'changes' = '[]' and p3.value -> 'next_cursor' = p2.value -> 'next_cursor'
    and p2.value -> 'next_cursor' = p.value -> 'next_cursor', jsonb_build_array(p1.value, p2.value, p3.value))
  from smoke.results p1, smoke.results p2, smoke.results p3, smoke.results p
 where p1.name = 'pull_p1' and p2.name = 'pull_p2' and p3.name = 'pull_p3' and p.name = 'pull1';

-- 5. Search as A finds the chunk; checksums match an independent computation.
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
insert into smoke.results select 'match', jsonb_agg(to_jsonb(m))
  from match_chunks((smoke.vec(4))::text::vector(384), 5) m;
insert into smoke.results select 'match_filtered', coalesce(jsonb_agg(to_jsonb(m)), '[]')
  from match_chunks((smoke.vec(4))::text::vector(384), 5, '{"collection": "other"}') m;
insert into smoke.results select 'match_filtered2', coalesce(jsonb_agg(to_jsonb(m)), '[]')
  from match_chunks((smoke.vec(4))::text::vector(384), 5, '{"collection": "default", "lang": "en"}') m;
insert into smoke.results select 'hybrid', jsonb_agg(to_jsonb(h))
  from hybrid_search('brown fox', (smoke.vec(1))::text::vector(384), 5) h;
insert into smoke.results values ('sums', outpost_checksums());
commit;
select smoke.check('match_chunks', jsonb_array_length(value) = 1 and value -> 0 ->> 'id' = :'c3'
    and abs((value -> 0 ->> 'similarity')::float - 1) < 1e-6 and value -> 0 ->> 'collection' = 'default'
    and value -> 0 -> 'metadata' = '{"lang": "en", "page": 0}', value)
  from smoke.results where name = 'match';
select smoke.check('match_chunks filter', f.value = '[]' and f2.value = m.value, f.value)
  from smoke.results f, smoke.results f2, smoke.results m
 where f.name = 'match_filtered' and f2.name = 'match_filtered2' and m.name = 'match';
select smoke.check('hybrid_search', jsonb_array_length(value) = 1 and value -> 0 ->> 'id' = :'c3'
    and (value -> 0 ->> 'score')::float > 0 and value -> 0 ? 'document_id', value)
  from smoke.results where name = 'hybrid';
select smoke.check('checksums', value = jsonb_build_object(
    'default', jsonb_build_object(
        'documents', 1, 'tombstones', 0, 'chunks', 1,
        'documents_sha256', encode(sha256(convert_to(
            :'doc' || '|1000|' || :'dev2' || '|0|hash-A2', 'UTF8')), 'hex'),
        'chunks_sha256', encode(sha256(convert_to(
            :'c3' || '|' || :'doc' || '|0|'
            || encode(sha256(convert_to('A brown fox, rewritten', 'UTF8')), 'hex')
            || '|all-MiniLM-L6-v2|'
            || encode(sha256('\x01800000'::bytea || (select string_agg(float4send(x::text::float4), ''::bytea order by n)
                  from jsonb_array_elements(smoke.vec(4)) with ordinality e (x, n))), 'hex'), 'UTF8')), 'hex')),
    '_conversations', jsonb_build_object(
        'conversations', 1, 'messages', 2,
        'conversations_sha256', encode(sha256(convert_to(
            :'conv' || '|1001|' || :'dev1' || '|0|' || encode(sha256(convert_to('Chat', 'UTF8')), 'hex'),
            'UTF8')), 'hex'),
        'messages_sha256', encode(sha256(convert_to(
            :'m1' || '|' || :'conv' || '|1002|' || :'dev1' || '|0|' || encode(sha256(convert_to('hi', 'UTF8')), 'hex')
            || E'\n' ||
            :'m2' || '|' || :'conv' || '|1003|' || :'dev1' || '|0|' || encode(sha256(convert_to('hello', 'UTF8')), 'hex'),
            'UTF8')), 'hex'))), value)
  from smoke.results where name = 'sums';

-- 6. B sees none of A's rows, and pushing A's id makes B's own row.
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_b', true) \gset ignored_
insert into smoke.results values ('b_pull', outpost_pull());
insert into smoke.results select 'b_select',
    to_jsonb(array[(select count(*) from outpost_documents), (select count(*) from outpost_document_chunks),
                   (select count(*) from outpost_conversations), (select count(*) from outpost_messages)]);
insert into smoke.results select 'b_match', coalesce(jsonb_agg(to_jsonb(m)), '[]')
  from match_chunks((smoke.vec(4))::text::vector(384), 5) m;
insert into smoke.results select 'b_hybrid', coalesce(jsonb_agg(to_jsonb(h)), '[]')
  from hybrid_search('brown fox', (smoke.vec(4))::text::vector(384), 5) h;
insert into smoke.results values ('b_push', outpost_push(jsonb_build_array(
    smoke.doc(:'doc', 1, :'dev1', 'B', jsonb_build_array(
        smoke.chunk(:'c3', 0, 'B owns this chunk id too', smoke.vec(5)))))));
commit;
select smoke.check('B pulls nothing of A', value -> 'changes' = '[]' and value -> 'more' = 'false', value)
  from smoke.results where name = 'b_pull';
select smoke.check('B selects nothing of A', value = '[0, 0, 0, 0]', value) from smoke.results where name = 'b_select';
select smoke.check('B matches nothing of A', a.value = '[]' and b.value = '[]', a.value || b.value)
  from smoke.results a, smoke.results b where a.name = 'b_match' and b.name = 'b_hybrid';
select smoke.check('B push applied', value -> 0 ->> 'outcome' = 'applied', value)
  from smoke.results where name = 'b_push';
select smoke.check('A and B rows', array_agg(owner::text || ':' || title order by owner)
    = array[:'user_a' || ':A2', :'user_b' || ':B']) from outpost_documents;
select smoke.check('A and B chunks', count(*) = 2) from outpost_document_chunks;

-- 7. A deletes the document: a tombstone, its chunks gone, pulled with "chunks": [].
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
insert into smoke.results values ('push5', outpost_push(jsonb_build_array(
    smoke.doc(:'doc', 2000, :'dev1', '', '[]', true))));
commit;
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
insert into smoke.results select 'pull2', outpost_pull(value ->> 'next_cursor') from smoke.results where name = 'pull1';
insert into smoke.results values ('sums2', outpost_checksums());
insert into smoke.results select 'match2', coalesce(jsonb_agg(to_jsonb(m)), '[]')
  from match_chunks((smoke.vec(4))::text::vector(384), 5) m;
commit;
select smoke.check('tombstone applied', value -> 0 ->> 'outcome' = 'applied', value) from smoke.results where name = 'push5';
select smoke.check('tombstone pulled', value -> 'changes' = jsonb_build_array(
    smoke.doc(:'doc', 2000, :'dev1', '', '[]', true)), value)
  from smoke.results where name = 'pull2';
select smoke.check('tombstone checksums', value -> 'default' ->> 'documents' = '0'
    and value -> 'default' ->> 'tombstones' = '1' and value -> 'default' ->> 'chunks' = '0'
    and value -> 'default' ->> 'chunks_sha256' = encode(sha256(''::bytea), 'hex'), value)
  from smoke.results where name = 'sums2';
select smoke.check('no match after delete', value = '[]', value) from smoke.results where name = 'match2';
select smoke.check('A chunks deleted, B kept', array_agg(owner) = array[:'user_b'::uuid]) from outpost_document_chunks;

-- 8. Malformed records: an error naming the record, nothing of the batch applied.
do $$
declare
    v_bad record;
begin
    set local role authenticated;
    perform set_config('request.jwt.claims', '{"sub":"11111111-1111-4111-8111-111111111111"}', true);
    for v_bad in
        select * from (values
            ('0190a000-0000-7000-8000-0000000000f1', 'embedding has 385 dimensions',
             jsonb_build_array(smoke.doc('0190a000-0000-7000-8000-0000000000f1', 5000,
                 'aaaaaaaa-0000-4000-8000-000000000001', 'bad',
                 jsonb_build_array(smoke.chunk('0190a000-0000-7000-8000-0000000000f2', 0, 'x', smoke.vec(1, 385)))))),
            ('0190a000-0000-7000-8000-0000000000f3', 'unknown kind',
             '[{"kind": "folder", "id": "0190a000-0000-7000-8000-0000000000f3", "hlc": 1, "device": "d"}]'::jsonb),
            ('0190a000-0000-7000-8000-0000000000f4', 'missing hlc',
             '[{"kind": "conversation", "id": "0190a000-0000-7000-8000-0000000000f4", "device": "d"}]'::jsonb),
            ('0190a000-0000-7000-8000-0000000000f5', 'missing device',
             '[{"kind": "conversation", "id": "0190a000-0000-7000-8000-0000000000f5", "hlc": 1}]'::jsonb),
            ('record 1 (conversation without id)', 'missing id',
             '[{"kind": "conversation", "hlc": 1, "device": "d"}]'::jsonb),
            ('0190a000-0000-7000-8000-0000000000f6', 'record 2',
             jsonb_build_array(
                 jsonb_build_object('kind', 'conversation', 'id', '0190a000-0000-7000-8000-0000000000f7',
                     'hlc', 1, 'device', 'd', 'title', 't', 'created_at', 1, 'updated_at', 1),
                 jsonb_build_object('kind', 'message', 'id', '0190a000-0000-7000-8000-0000000000f6',
                     'hlc', 1, 'device', 'd', 'conversation_id', '0190a000-0000-7000-8000-0000000000f7',
                     'seq', 1, 'role', 'user', 'content', 'x', 'model', 'm', 'embedding', '[1e39]'::jsonb,
                     'created_at', 1, 'updated_at', 1)))
        ) as t (id, problem, batch)
    loop
        begin
            perform outpost_push(v_bad.batch);
            raise exception 'smoke check failed: malformed record % was accepted', v_bad.id;
        exception when sqlstate '22023' then
            if sqlerrm not like '%' || v_bad.id || '%' or sqlerrm not like '%' || v_bad.problem || '%' then
                raise exception 'smoke check failed: error % does not name % and %', sqlerrm, v_bad.id, v_bad.problem;
            end if;
            raise notice 'ok: %', sqlerrm;
        end;
    end loop;
    if exists (select 1 from outpost_conversations where id = '0190a000-0000-7000-8000-0000000000f7') then
        raise exception 'smoke check failed: a failed batch left a row';
    end if;
    reset role;
end
$$;


-- Staged push (schema 3): a document's chunks staged in parts are invisible until the commit,
-- which writes them all in one transaction; a missing part refuses the commit and writes
-- nothing; parts sent again replace themselves; a user never sees another's staged rows.
\set upload '5ea9ed00-0000-4000-8000-000000000001'
\set sdoc '0190a000-0000-7000-8000-0000000005d0'
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_a', true) \gset ignored_
select outpost_stage(:'upload', 0, jsonb_build_array(
    smoke.chunk('0190a000-0000-7000-8000-0000000005c0', 0, 'staged zero', smoke.vec(0.5)),
    smoke.chunk('0190a000-0000-7000-8000-0000000005c1', 1, 'staged one', smoke.vec(0.6)))) \gset s1_
-- The same part again (a retry) and the last part.
select outpost_stage(:'upload', 0, jsonb_build_array(
    smoke.chunk('0190a000-0000-7000-8000-0000000005c0', 0, 'staged zero', smoke.vec(0.5)),
    smoke.chunk('0190a000-0000-7000-8000-0000000005c1', 1, 'staged one', smoke.vec(0.6)))) \gset s2_
select smoke.check('stage held after a retry', (:'s2_outpost_stage'::jsonb ->> 'held')::int = 2,
    :'s2_outpost_stage'::jsonb);
select smoke.check('staged chunks invisible before the commit',
    not exists (select 1 from outpost_documents where id = :'sdoc')
    and not exists (select 1 from outpost_document_chunks where document_id = :'sdoc'));
do $$
begin
    perform outpost_push_staged('5ea9ed00-0000-4000-8000-000000000001',
        smoke.doc('0190a000-0000-7000-8000-0000000005d0', 7000, 'aaaaaaaa-0000-4000-8000-000000000001',
                  'staged', null) - 'chunks', 3);
    raise exception 'smoke check failed: a commit with a missing part was accepted';
exception when sqlstate '22023' then
    if sqlerrm not like '%holds 2 of the document''s 3 chunks%' then
        raise exception 'smoke check failed: missing part error: %', sqlerrm;
    end if;
end
$$;
select outpost_stage(:'upload', 2, jsonb_build_array(
    smoke.chunk('0190a000-0000-7000-8000-0000000005c2', 2, 'staged two', smoke.vec(0.7)))) \gset s3_
select outpost_push_staged(:'upload',
    smoke.doc(:'sdoc', 7000, :'dev1', 'staged', null) - 'chunks', 3) \gset c_
select smoke.check('staged commit applied', :'c_outpost_push_staged'::jsonb -> 0 ->> 'outcome' = 'applied',
    :'c_outpost_push_staged'::jsonb);
select smoke.check('staged commit wrote every chunk in order',
    (select array_agg(content order by ordinal) from outpost_document_chunks where document_id = :'sdoc')
        = array['staged zero', 'staged one', 'staged two']);
select smoke.check('staged commit removed the upload',
    not exists (select 1 from outpost_staged_chunks where upload = :'upload'));
select outpost_stage('5ea9ed00-0000-4000-8000-000000000002', 0, jsonb_build_array(
    smoke.chunk('0190a000-0000-7000-8000-0000000005c3', 0, 'left staged', smoke.vec(0.8)))) \gset s4_
commit;
begin;
set local role authenticated;
select set_config('request.jwt.claims', :'claims_b', true) \gset ignored_
select smoke.check('staged rows are their owner''s only',
    not exists (select 1 from outpost_staged_chunks));
commit;
do $$
begin
    set local role anon;
    perform outpost_stage('5ea9ed00-0000-4000-8000-000000000003', 0, '[{}]'::jsonb);
    raise exception 'smoke check failed: anon may stage';
exception when insufficient_privilege then
    reset role;
end
$$;

-- The functions that legitimately run long carry their own statement_timeout (PostgREST
-- applies it to the request's transaction).
select smoke.check('own statement_timeout',
    (select array_agg(p.proname::text || ':' || c order by p.proname)
       from pg_proc p, unnest(p.proconfig) c
      where p.pronamespace = 'public'::regnamespace and c like 'statement_timeout=%')
    = array['outpost_checksums:statement_timeout=2min', 'outpost_push_staged:statement_timeout=5min']);

select 'smoke.sql: all checks passed' as result;
