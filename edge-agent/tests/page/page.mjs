// Drives the agent's page (edge-agent/src/agent/web/) in Debian's chromium through
// playwright-core: the token prompt, a search, a streamed answer with its sources, a source
// opened from a citation or the source list. Run by edge-agent/tests/page.rs; by hand:
//
//   OUTPOST_PLAYWRIGHT=.cache/playwright-1.65.2 OUTPOST_PAGE_TOKEN=secret \
//     node edge-agent/tests/page/page.mjs http://127.0.0.1:PORT /tmp/page.png
//
// Arguments (or the environment): the agent's URL (OUTPOST_PAGE_URL), where to save the
// screenshot (OUTPOST_PAGE_SCREENSHOT). OUTPOST_PAGE_TOKEN: the agent's token.
// OUTPOST_PAGE_QUESTION: what to ask. OUTPOST_CHROMIUM: the browser (default /usr/bin/chromium).
// OUTPOST_PAGE_TIMEOUT_MS: how long the answer may take (default 240000).
// OUTPOST_PAGE_MAX_TOKENS: the longest answer asked for (default: the agent's).
// Exits 0 after printing `page ok: {...}`, or 1 with what failed.

import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

const url = process.argv[2] || process.env.OUTPOST_PAGE_URL;
const screenshot = process.argv[3] || process.env.OUTPOST_PAGE_SCREENSHOT;
const token = process.env.OUTPOST_PAGE_TOKEN || "";
const question = process.env.OUTPOST_PAGE_QUESTION || "How do beekeepers check their hives for varroa mites?";
const chromiumPath = process.env.OUTPOST_CHROMIUM || "/usr/bin/chromium";
const answerTimeout = Number(process.env.OUTPOST_PAGE_TIMEOUT_MS || 240000);
const maxTokens = Number(process.env.OUTPOST_PAGE_MAX_TOKENS || 0);

function fail(message) {
  console.error(`page test failed: ${message}`);
  process.exit(1);
}

if (!url) fail("usage: node page.mjs AGENT_URL [SCREENSHOT.png] (or OUTPOST_PAGE_URL)");
if (!existsSync(chromiumPath)) {
  fail(`no chromium at ${chromiumPath}: install Debian's chromium (apt-get install chromium; scripts/test.sh does it) or set OUTPOST_CHROMIUM`);
}

/** playwright-core from $OUTPOST_PLAYWRIGHT (where `npm ci` installed this package), else NODE_PATH. */
function loadPlaywright() {
  const dir = process.env.OUTPOST_PLAYWRIGHT;
  const bases = dir ? [join(resolve(dir), "package.json")] : [];
  bases.push(join(process.cwd(), "package.json"), import.meta.url);
  for (const base of bases) {
    try {
      // require (not import) also looks in NODE_PATH.
      return createRequire(base)("playwright-core");
    } catch {
      /* the next place */
    }
  }
  fail(
    `playwright-core is not installed${dir ? ` in ${dir}` : ""}: run scripts/test.sh, or \`npm ci --prefix DIR\` ` +
      "with edge-agent/tests/page/package.json and package-lock.json copied to DIR, and set OUTPOST_PLAYWRIGHT=DIR",
  );
}

const { chromium } = loadPlaywright();

const problems = []; // uncaught errors and blocked loads (CSP) in the page
let step = "starting";
const report = {};

async function text(page, selector) {
  return (await page.locator(selector).first().textContent()) || "";
}

async function main() {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // Root in a container has no user namespaces for chromium's sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(30000);
    page.on("pageerror", (e) => problems.push(`uncaught: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && /Content.Security.Policy|Refused to/i.test(m.text())) problems.push(m.text());
    });
    try {
      await run(page);
    } catch (e) {
      await page.screenshot({ path: screenshot || "page-failure.png", fullPage: true }).catch(() => {});
      const status = await text(page, "#ask-status").catch(() => "");
      const answer = await text(page, "#answer").catch(() => "");
      throw new Error(
        `${e.message.split("\n")[0]}\n  #ask-status: ${JSON.stringify(status)}\n  #answer: ${JSON.stringify(answer.slice(0, 400))}`,
      );
    }
  } finally {
    await browser.close();
  }
}

async function run(page) {
  step = `opening ${url}`;
  const resp = await page.goto(url, { waitUntil: "load" });
  if (!resp || !resp.ok()) {
    throw new Error(
      `GET / answered ${resp && resp.status()} (the page's routes, edge-agent/src/agent/web.rs, ` +
        "must be merged into the agent's router and need no token)",
    );
  }
  const csp = (await resp.allHeaders())["content-security-policy"] || "";
  if (!csp.includes("default-src 'self'")) throw new Error(`no strict Content-Security-Policy on GET /: ${csp}`);

  if (token) {
    step = "the token prompt (the side panel's first calls have no token)";
    await page.locator("#auth-prompt").waitFor({ state: "visible", timeout: 15000 });
    step = "saving the token";
    await page.fill("#token-input", token);
    await page.click("#token-save");
    await page.locator("#auth-prompt").waitFor({ state: "hidden" });
    const saved = await page.evaluate(() => localStorage.getItem("outpost.token"));
    if (saved !== token) throw new Error("the token was not saved in localStorage");
  }

  step = "the side panel (GET /v1/stats, GET /v1/sync/status)";
  await page.locator("#collections [data-testid=collection]").first().waitFor();
  report.collections = (await page.locator("#collections [data-testid=collection]").allTextContents()).map((t) => t.trim());
  await page.locator("#sync dt").first().waitFor();
  report.sync = (await text(page, "#sync")).trim();

  step = "searching";
  await page.fill("#search-input", "varroa mites");
  await page.click("#search-button");
  await page.locator("#search-results [data-testid=result]").first().waitFor();
  report.search_results = await page.locator("#search-results [data-testid=result]").count();
  report.first_result = (await text(page, "#search-results .result-link")).trim();

  step = "asking";
  // Record every length the answer goes through, to see it arrive piece by piece.
  await page.evaluate(() => {
    window.__lengths = [];
    const box = document.getElementById("answer");
    new MutationObserver(() => window.__lengths.push(box.textContent.length)).observe(box, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  if (maxTokens) await page.fill("#max-tokens", String(maxTokens));
  await page.fill("#ask-input", question);
  await page.click("#ask-button");
  step = "waiting for the streamed answer";
  await page.locator("#answer[data-done=true]").waitFor({ state: "attached", timeout: answerTimeout });
  const answer = (await text(page, "#answer")).trim();
  if (!answer) throw new Error("the answer is empty");
  const lengths = [...new Set(await page.evaluate(() => window.__lengths.filter((n) => n > 0)))];
  if (lengths.length < 2) throw new Error(`the answer did not stream (it went through lengths ${JSON.stringify(lengths)})`);
  report.answer = answer;
  report.answer_steps = lengths.length;

  step = "the sources under the answer";
  const sources = page.locator("#sources li");
  const nSources = await sources.count();
  if (nSources < 1) throw new Error("no sources listed under the answer");
  report.sources = (await sources.allTextContents()).map((t) => t.trim());
  const citations = page.locator("#answer .citation");
  report.citations = await citations.count();

  if (report.citations > 0) {
    step = "opening a source from a citation";
    await citations.first().click();
    await checkSourceView(page);
    report.opened_from = "citation";
    await page.click("#source-close");
    await page.locator("#source-view").waitFor({ state: "hidden" });
  }
  step = "opening a source from the list";
  await sources.first().locator("a").click();
  report.source_view = await checkSourceView(page);
  report.opened_from = report.opened_from ? "citation and list" : "list";

  if (problems.length) throw new Error(`errors in the page: ${problems.join("; ")}`);
  if (screenshot) {
    await page.locator("#answer").scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshot, fullPage: true });
  }
}

async function checkSourceView(page) {
  await page.locator("#source-view").waitFor({ state: "visible" });
  await page.locator("#source-text mark").first().waitFor();
  const title = (await text(page, "#source-title")).trim();
  const passage = (await page.locator("#source-text mark").allTextContents()).join("").trim();
  if (!title) throw new Error("the source view has no title");
  if (!passage) throw new Error("the source view shows no passage");
  return { title, source: (await text(page, "#source-source")).trim(), passage_chars: passage.length };
}

main().then(
  () => {
    console.log(`page ok: ${JSON.stringify(report)}`);
    process.exit(0);
  },
  (e) => fail(`while ${step}: ${e.message}`),
);
