// supabase-js as an app uses it, against the Supabase stand-in (outpost_sync::shim) in front of a
// central store that two users' devices have synced to. sync/tests/supabase_js.rs starts the
// stand-in, syncs the devices, and passes what it made as JSON in OUTPOST_SUPABASE_JS_FIXTURE:
// the URL, the anon and publishable keys, the users (id, email, password, and how many documents
// and chunks each has centrally), a query with its embedding, and an expired access token.
// NODE_PATH holds the pinned packages (package.json, package-lock.json).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { createClient } = require('@supabase/supabase-js');
const ws = require('ws');

const fixture = JSON.parse(process.env.OUTPOST_SUPABASE_JS_FIXTURE);
const [ada, bob] = fixture.users;
// A test, not an app: no auto-refresh timer keeping Node alive, nothing stored between clients.
// Realtime is never connected, but its client is built with every client and wants a WebSocket,
// which Node 20 lacks: `ws`, as realtime-js says to give it for Node < 22.
const options = {
  auth: { autoRefreshToken: false, persistSession: false },
  realtime: { transport: ws },
};

/** A client signed in as `user` with the project key `key`. */
async function signIn(user, key = fixture.anonKey) {
  const supabase = createClient(fixture.url, key, options);
  const { data, error } = await supabase.auth.signInWithPassword({
    email: user.email,
    password: user.password,
  });
  assert.equal(error, null);
  assert.equal(data.user.id, user.id);
  return { supabase, session: data.session };
}

/** `{ data, error }` with the error checked to be absent. */
function ok(answer) {
  assert.equal(answer.error, null, JSON.stringify(answer.error));
  return answer.data;
}

test('each user reads exactly its own synced documents and chunks', async () => {
  for (const me of [ada, bob]) {
    const { supabase } = await signIn(me);
    const documents = ok(
      await supabase.from('outpost_documents').select('id, owner, source').order('source'),
    );
    assert.equal(documents.length, me.documents);
    assert.ok(documents.every((d) => d.owner === me.id));
    const sources = documents.map((d) => d.source);
    assert.deepEqual(sources, [...sources].sort());

    const { count, error } = await supabase
      .from('outpost_document_chunks')
      .select('id', { count: 'exact', head: true });
    assert.equal(error, null);
    assert.equal(count, me.chunks);

    const chunks = ok(
      await supabase
        .from('outpost_document_chunks')
        .select('owner, document_id, ordinal, content')
        .eq('document_id', documents[0].id)
        .order('ordinal', { ascending: true }),
    );
    assert.ok(chunks.length > 0);
    assert.ok(chunks.every((c) => c.owner === me.id && c.document_id === documents[0].id));
    assert.deepEqual(
      chunks.map((c) => c.ordinal),
      chunks.map((_, i) => i),
    );
  }

  // Bob's document, asked for by its id, is not there for Ada: row-level security, not a filter
  // of the query, keeps it out.
  const asBob = (await signIn(bob)).supabase;
  const [bobsDocument] = ok(await asBob.from('outpost_documents').select('id'));
  const asAda = (await signIn(ada)).supabase;
  assert.deepEqual(
    ok(await asAda.from('outpost_documents').select('id').eq('id', bobsDocument.id)),
    [],
  );
  assert.deepEqual(
    ok(await asAda.from('outpost_document_chunks').select('id').eq('document_id', bobsDocument.id)),
    [],
  );
});

test("match_chunks and hybrid_search rank only the caller's chunks", async () => {
  for (const me of [ada, bob]) {
    const { supabase } = await signIn(me);
    const own = new Set(ok(await supabase.from('outpost_document_chunks').select('id')).map((c) => c.id));

    const matched = ok(
      await supabase.rpc('match_chunks', {
        query_embedding: fixture.queryEmbedding,
        match_count: 10,
      }),
    );
    assert.equal(matched.length, me.chunks);
    assert.ok(matched.every((c) => own.has(c.id)));
    const similarities = matched.map((c) => c.similarity);
    assert.deepEqual(similarities, [...similarities].sort((a, b) => b - a));

    const hybrid = ok(
      await supabase.rpc('hybrid_search', {
        query_text: fixture.query,
        query_embedding: fixture.queryEmbedding,
        match_count: 10,
      }),
    );
    assert.equal(hybrid.length, me.chunks);
    assert.ok(hybrid.every((c) => own.has(c.id)));
    // The chunk holding every word of the query ranks first by both measures.
    assert.match(hybrid[0].content, /sleep/);
  }
});

test('a publishable key works as the apikey, before and after signing in', async () => {
  // Before signing in the request is the anon role, which may not read the synced tables.
  const anonymous = createClient(fixture.url, fixture.publishableKey, options);
  const refused = await anonymous.from('outpost_documents').select('id');
  assert.equal(refused.status, 401);
  assert.equal(refused.error.code, '42501');

  const { supabase } = await signIn(ada, fixture.publishableKey);
  assert.equal(ok(await supabase.from('outpost_documents').select('id')).length, ada.documents);
});

test('refreshSession brings a new session that keeps working', async () => {
  const { supabase, session } = await signIn(ada);
  // A second later, so that the new access token's iat (and so the token) differs.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const refreshed = ok(await supabase.auth.refreshSession());
  assert.notEqual(refreshed.session.refresh_token, session.refresh_token);
  assert.notEqual(refreshed.session.access_token, session.access_token);
  assert.equal(refreshed.session.user.id, ada.id);

  // The client now sends the new token: to Auth (GET /auth/v1/user) and to PostgREST.
  const current = ok(await supabase.auth.getSession());
  assert.equal(current.session.access_token, refreshed.session.access_token);
  assert.equal(ok(await supabase.auth.getUser()).user.id, ada.id);
  assert.equal(ok(await supabase.from('outpost_documents').select('id')).length, ada.documents);
  const matched = ok(
    await supabase.rpc('match_chunks', { query_embedding: fixture.queryEmbedding, match_count: 10 }),
  );
  assert.equal(matched.length, ada.chunks);
});

test("an expired or garbage token gets PostgREST's JWT errors", async () => {
  for (const [token, code] of [
    [fixture.expiredToken, 'PGRST303'],
    ['not-a-jwt', 'PGRST301'],
  ]) {
    const supabase = createClient(fixture.url, fixture.anonKey, {
      ...options,
      global: { headers: { Authorization: `Bearer ${token}` } },
    });
    const read = await supabase.from('outpost_documents').select('id');
    assert.equal(read.status, 401);
    assert.equal(read.error.code, code);
    assert.equal(read.data, null);
    const called = await supabase.rpc('match_chunks', {
      query_embedding: fixture.queryEmbedding,
      match_count: 10,
    });
    assert.equal(called.status, 401);
    assert.equal(called.error.code, code);
  }
});
