-- One round of decode.sql: a push of the JSON request, then of the base64 one, each into empty
-- tables; prints each push's time.
truncate public.outpost_documents cascade;
begin;
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"44444444-1111-4111-8111-111111111111","role":"authenticated"}', true) \gset ignored_
\echo push json
\timing on
select from (select outpost_push(body::jsonb) from req where form = 'json') as x;
\timing off
commit;
truncate public.outpost_documents cascade;
begin;
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"44444444-1111-4111-8111-111111111111","role":"authenticated"}', true) \gset ignored_
\echo push base64
\timing on
select from (select outpost_push(body::jsonb) from req where form = 'base64') as x;
\timing off
commit;
