-- The vector conversion alone, 5,000 chunk vectors, as outpost_push does it for each form
-- (the request already parsed into jsonb). Run by bench/sync-vectors.sh after decode.sql.
\set QUIET on
drop table if exists chunks_json; drop table if exists chunks_b64;
create table chunks_json as select c from req, jsonb_array_elements(body::jsonb) d, jsonb_array_elements(d -> 'chunks') c where form = 'json';
create table chunks_b64 as select c from req, jsonb_array_elements(body::jsonb) d, jsonb_array_elements(d -> 'chunks') c where form = 'base64';
\timing on
select count((c -> 'embedding')::text::vector(384)) as json_to_vector from chunks_json;
select count(public.outpost_f32_decode(decode(c ->> 'embedding_b64', 'base64'))::vector(384)) as base64_to_vector from chunks_b64;
select count((c -> 'embedding')::text::vector(384)) as json_to_vector from chunks_json;
select count(public.outpost_f32_decode(decode(c ->> 'embedding_b64', 'base64'))::vector(384)) as base64_to_vector from chunks_b64;
select count((c -> 'embedding')::text::vector(384)) as json_to_vector from chunks_json;
select count(public.outpost_f32_decode(decode(c ->> 'embedding_b64', 'base64'))::vector(384)) as base64_to_vector from chunks_b64;
