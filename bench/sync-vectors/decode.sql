-- How long outpost_push takes to take 5,000 chunk rows (500 documents of 10) in each vector form,
-- with the HNSW index dropped so that the protocol (JSON parsing, validation, decoding) is what
-- is measured, not the index. The JSON form is what a device sends: each f32 widened to f64 and
-- printed in full (serde_json), e.g. 0.10000000149011612. Run by bench/sync-vectors.sh on a
-- scratch database with every migration.
\set QUIET on
set client_min_messages = warning;
drop index if exists public.outpost_document_chunks_embedding;
drop table if exists req;
create table req (form text, body text);
with v as (
    select d, o, (select array_agg((random() * 2 - 1)::real) from generate_series(1, 384) where d + o >= 0)::vector(384) as e
      from generate_series(0, 499) d, generate_series(0, 9) o
),
docs as (
    select d,
           jsonb_build_object('kind', 'document', 'id', gen_random_uuid(), 'hlc', 1, 'device', 'dev',
               'deleted', false, 'collection', 'bench', 'home_device', 'dev', 'source', 'bench://' || d,
               'title', 'doc ' || d, 'content_hash', 'h' || d, 'metadata', '{}'::jsonb,
               'created_at', 1, 'updated_at', 1) as head,
           jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'ordinal', o,
               'text', repeat('word ', 40), 'token_count', 40, 'byte_start', 0, 'byte_end', 200,
               'metadata', '{}'::jsonb, 'model', 'bench-synthetic-384',
               'embedding', to_jsonb(e::real[]::float8[])) order by o) as cj,
           jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'ordinal', o,
               'text', repeat('word ', 40), 'token_count', 40, 'byte_start', 0, 'byte_end', 200,
               'metadata', '{}'::jsonb, 'model', 'bench-synthetic-384',
               'embedding_b64', translate(encode(substring(vector_send(e) from 5), 'base64'), E'\n', '')) order by o) as cb
      from v group by d
)
insert into req
select 'json', jsonb_agg(head || jsonb_build_object('chunks', cj))::text from docs
union all
select 'base64', jsonb_agg(head || jsonb_build_object('chunks', cb))::text from docs;
select form, length(body) as request_bytes from req order by form;
-- five rounds, alternating
\ir decode-round.sql
\ir decode-round.sql
\ir decode-round.sql
\ir decode-round.sql
\ir decode-round.sql
