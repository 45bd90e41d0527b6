//! Command-line definitions (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Outpost: offline semantic search and RAG context over a local SQLite file.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about)]
pub struct Cli {
    /// Database file [default: <user data dir>/outpost/outpost.db].
    #[arg(long, global = true, env = "OUTPOST_DB")]
    pub db: Option<PathBuf>,
    /// Embedding model directory (Hugging Face layout) instead of the fetched default.
    #[arg(long, global = true, env = "OUTPOST_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// The embedder: `minilm` (the model, default) or `hash`, a deterministic embedder
    /// without a model (vectors from hashed words, no meaning: for testing an app or a
    /// pipeline where the weights are not installed; its collections are `test/hash-384` and
    /// never mix with the model's).
    #[arg(long, global = true, env = "OUTPOST_EMBEDDER", value_enum, default_value_t = EmbedderKind::Minilm)]
    pub embedder: EmbedderKind,
    /// Embed on the CPU even when a GPU is available.
    #[arg(long, global = true)]
    pub cpu: bool,
    /// The embedding model's dense layers in `int8` (CPU only; about twice as fast where the
    /// CPU has AVX-512 VNNI, vectors at cosine ≈ 0.99 to the default f32 ones; docs/BENCHMARKS.md
    /// has its search quality) or `none` (f32, the default).
    #[arg(long, global = true, env = "OUTPOST_QUANTIZE", value_enum, default_value_t = QuantizeKind::None)]
    pub quantize: QuantizeKind,
    /// More log output (-v info, -vv debug); OUTPOST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format: text (default) or json.
    #[arg(long, global = true, env = "OUTPOST_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--quantize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantizeKind {
    /// f32 weights and products.
    None,
    /// int8 dense layers.
    Int8,
}

impl From<QuantizeKind> for outpost_models::Quantize {
    fn from(q: QuantizeKind) -> Self {
        match q {
            QuantizeKind::None => Self::None,
            QuantizeKind::Int8 => Self::Int8,
        }
    }
}

/// Which embedder the commands use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedderKind {
    /// The embedding model (`--model-dir` or the fetched all-MiniLM-L6-v2).
    Minilm,
    /// A deterministic hash embedder of 384 dimensions; loads no model.
    Hash,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database (or upgrade its schema) and print where it is.
    Init,
    /// Ingest files and directories (recursively): text, Markdown, HTML, PDF, JSONL.
    Ingest(IngestArgs),
    /// Search the index.
    Search(SearchArgs),
    /// Build a RAG context block with numbered citations, within a token budget.
    Context(ContextArgs),
    /// Answer a question from the documents with the on-device language model: the answer
    /// streams, then its numbered sources.
    Ask(AskArgs),
    /// List, show or delete documents.
    #[command(subcommand)]
    Docs(DocsCommand),
    /// What the database holds.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Conversation memory: create, list, add messages, show.
    #[command(subcommand)]
    Conv(ConvCommand),
    /// Embedding model files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Embed texts with the model and print the vectors.
    Embed(EmbedArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Retrieval-quality evaluations.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Bring documents in from a Chroma store, a JSONL dump or a SQLite table.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Write every document out, in the format `import jsonl` reads.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Sign in to the Supabase project (Supabase Auth) and keep the session in OUTPOST_HOME:
    /// sync then acts as this user, refreshing the session as it expires.
    Login(LoginArgs),
    /// Sign out: end the session on the server (best effort) and delete it here.
    Logout(LogoutArgs),
    /// Sync with the central Supabase store: push local changes, pull other devices' ones.
    Sync(SyncArgs),
    /// Push everything stored here to a (new, empty) central store.
    Backfill(CentralJob),
    /// Pull everything from the central store into this device.
    Bootstrap(CentralJob),
    /// Compare this device with the central store: counts and content checksums per collection
    /// (with --local: check the database on its own, no central store needed).
    Verify(VerifyArgs),
    /// Run the agent: the HTTP API, watched folders and background sync, until SIGTERM/Ctrl-C.
    Serve(ServeArgs),
    /// The agent's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `outpost serve`. Every option can also be set in the configuration file and by `OUTPOST_*`
/// variables; flags win.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file [default: <user config dir>/outpost/outpost.toml, if present].
    #[arg(long, env = "OUTPOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878]; anything but loopback needs a token
    /// (OUTPOST_TOKEN or serve.token).
    #[arg(long)]
    pub addr: Option<String>,
    /// A folder to watch and keep indexed (repeatable).
    #[arg(long)]
    pub watch: Vec<PathBuf>,
    /// Collection for watched files and uploads [default: default].
    #[arg(long)]
    pub collection: Option<String>,
    /// Seconds between background syncs (0: only on POST /v1/sync).
    #[arg(long)]
    pub sync_interval: Option<u64>,
    /// The language model of /v1/chat/completions and the page (loaded at its first use).
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// `outpost config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file, environment, flags) with secrets masked.
    Show {
        /// Configuration file.
        #[arg(long, env = "OUTPOST_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

/// Where the central store is. Secrets come from the environment and are never printed.
#[derive(Debug, Args, Clone)]
pub struct CentralArgs {
    /// Direct Postgres URL of the central store (trusted gateways, bulk loads); acts as the user
    /// in OUTPOST_CENTRAL_USER, the `sub` of OUTPOST_SUPABASE_JWT or the signed-in user. Without
    /// it, the Supabase REST API from OUTPOST_SUPABASE_URL + OUTPOST_SUPABASE_ANON_KEY, as the
    /// user of OUTPOST_SUPABASE_JWT (a fixed token) or else of `outpost login`'s session.
    #[arg(long, env = "OUTPOST_CENTRAL_URL", hide_env_values = true)]
    pub central: Option<String>,
    /// Seconds to wait for any one call to the central store.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Records per push call.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Most bytes of records (as JSON) per push call; a larger document goes in staged parts of
    /// this size, committed at once on the server (central schema 3; before it, alone). A call
    /// the server refuses as too large or too slow is split, and a record it refuses even alone
    /// is set aside (`outpost sync status` lists it).
    #[arg(long, default_value_t = outpost_sync::reconcile::DEFAULT_BATCH_BYTES)]
    pub batch_bytes: usize,
    /// Records per pull call.
    #[arg(long, default_value_t = 1000)]
    pub pull_page: usize,
    /// Seconds a call keeps retrying, with backoff, while the central store is unreachable or
    /// overloaded before the command fails (0: fail at the first such error, as a script that
    /// will run again later may want).
    #[arg(long, default_value_t = 120)]
    pub give_up_after: u64,
}

impl CentralArgs {
    /// How calls to the central store retry.
    pub fn backoff(&self) -> outpost_sync::Backoff {
        if self.give_up_after == 0 {
            return outpost_sync::Backoff::none();
        }
        outpost_sync::Backoff {
            give_up_after: Some(std::time::Duration::from_secs(self.give_up_after)),
            ..outpost_sync::Backoff::default()
        }
    }
}

/// `outpost login`. The password is read from standard input with --password-stdin, else
/// prompted for without echo on a terminal (or read from standard input when it is not one).
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user's email (sign in with email and password).
    #[arg(long, required_unless_present = "refresh_token_stdin")]
    pub email: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, requires = "email", conflicts_with = "refresh_token_stdin")]
    pub password_stdin: bool,
    /// Adopt a session an app signed in: read its refresh token from standard input (it is
    /// exchanged at once, so the app must not use it again).
    #[arg(long, conflicts_with = "email")]
    pub refresh_token_stdin: bool,
    /// The Supabase project URL.
    #[arg(long, env = "OUTPOST_SUPABASE_URL")]
    pub url: Option<String>,
    /// The project's anon or publishable (`sb_publishable_…`) key.
    #[arg(long, env = "OUTPOST_SUPABASE_ANON_KEY", hide_env_values = true)]
    pub anon_key: Option<String>,
    /// Seconds to wait for Supabase Auth.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Print JSON (the user and the session's expiry; never the tokens).
    #[arg(long)]
    pub json: bool,
}

/// `outpost logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The project's anon or publishable key, to end the session on the server (without it,
    /// the session is only deleted here).
    #[arg(long, env = "OUTPOST_SUPABASE_ANON_KEY", hide_env_values = true)]
    pub anon_key: Option<String>,
    /// Seconds to wait for Supabase Auth.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost backfill`, `bootstrap`, `verify`.
#[derive(Debug, Args)]
pub struct CentralJob {
    /// The central store.
    #[command(flatten)]
    pub central: CentralArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The central store and output.
    #[command(flatten)]
    pub job: CentralJob,
    /// Check this database alone, offline: SQLite's integrity check, foreign keys, the
    /// full-text index against the chunks, and every derived index (HNSW, text) against SQLite;
    /// exit status 1 when anything is wrong.
    #[arg(long)]
    pub local: bool,
}

/// `outpost sync`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    /// `status`, or nothing to sync.
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// The central store.
    #[command(flatten)]
    pub central: CentralArgs,
    /// One round (push, then pull) and exit; without it, sync every --interval seconds until
    /// interrupted, riding out offline periods with backoff.
    #[arg(long)]
    pub once: bool,
    /// Seconds between rounds when not --once.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost sync status`.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Outbox depth, lag, last push and pull, and who is signed in until when (local only:
    /// no network; never the tokens).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `outpost embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Texts to embed, one vector each.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// Print `{"model":..,"dims":..,"vectors":[[..],..]}`.
    #[arg(long)]
    pub json: bool,
}

/// `outpost ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Collection to add to (created on first use).
    #[arg(long, default_value = outpost_core::DEFAULT_COLLECTION)]
    pub collection: String,
    /// Refuse files larger than this many bytes.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub max_file_size: u64,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 200)]
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    #[arg(long, default_value_t = 32)]
    pub chunk_overlap: usize,
    /// Chunks per embedding call (chunks of small documents share calls).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Also ingest hidden files and directories.
    #[arg(long)]
    pub hidden: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query.
    #[arg(required = true)]
    pub query: Vec<String>,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// hybrid, vector or text.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// KEY=VALUE (also KEY>=VALUE, KEY<VALUE ...): collection, source (prefix) or a metadata key.
    #[arg(long)]
    pub filter: Vec<String>,
    /// Reciprocal rank fusion constant.
    #[arg(long, default_value_t = 60.0)]
    pub rrf_k: f64,
    /// Weight of the vector ranking in hybrid mode.
    #[arg(long, default_value_t = 1.0)]
    pub vector_weight: f64,
    /// Weight of the full-text ranking in hybrid mode.
    #[arg(long, default_value_t = 1.0)]
    pub text_weight: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost context`.
#[derive(Debug, Args)]
pub struct ContextArgs {
    /// The query (the user's turn).
    #[arg(required = true)]
    pub query: Vec<String>,
    /// Most tokens in the context, by the model's tokenizer.
    #[arg(long)]
    pub budget: usize,
    /// Chunks retrieved before merging and fitting.
    #[arg(long, default_value_t = 20)]
    pub candidates: usize,
    /// hybrid, vector or text.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// Filters, as for search.
    #[arg(long)]
    pub filter: Vec<String>,
    /// Include this conversation's memory.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost docs`.
#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// List documents, newest first.
    List {
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Include deleted documents.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a document and its chunks (by id or a unique id prefix).
    Show {
        /// Document id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a document (kept as a tombstone for sync).
    Rm {
        /// Document id.
        id: String,
    },
}

/// `outpost conv`.
#[derive(Debug, Subcommand)]
pub enum ConvCommand {
    /// Start a conversation; prints its id.
    New {
        /// Title.
        title: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List conversations.
    List {
        /// Only titles containing this.
        #[arg(long)]
        title: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a message.
    Add {
        /// Conversation id.
        id: String,
        /// system, user, assistant or tool.
        role: String,
        /// The message.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Show the recent messages.
    Show {
        /// Conversation id.
        id: String,
        /// How many.
        #[arg(short, default_value_t = 20)]
        n: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `outpost models`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download a known model into the model cache (the default if no name).
    Fetch {
        /// Model name.
        name: Option<String>,
        /// The default chat model (SmolLM2-135M-Instruct, GGUF Q4_1) instead.
        #[arg(long, conflicts_with = "name")]
        llm: bool,
    },
    /// Known and installed models.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `outpost bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Search latency over a synthetic index.
    Search(BenchSearchArgs),
    /// Embedding throughput over a file of texts, and single-query latency.
    Embed(BenchEmbedArgs),
    /// The language model: prompt reading and generation speed, time to first token, memory.
    Llm(BenchLlmArgs),
    /// Push and pull rates against a central Postgres, by both transports, against COPY.
    Sync(BenchSyncArgs),
    /// A bounded load test of the agent's HTTP API on loopback: concurrent clients mixing
    /// searches, contexts, ingests and syncs against a fresh `outpost serve`.
    Http(BenchHttpArgs),
}

/// `outpost eval`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// nDCG@10, recall@100 and MRR@10 on a BEIR-format folder (corpus.jsonl, queries.jsonl,
    /// qrels/<split>.tsv), indexed into a database of its own.
    Beir(EvalBeirArgs),
    /// How well `ask`'s answers are grounded on a BEIR-format folder: whether every citation
    /// names a passage the model was given, and how often the cited passage is of a document
    /// the qrels judge relevant.
    Grounding(EvalGroundingArgs),
}

/// `outpost eval grounding`.
#[derive(Debug, Args)]
pub struct EvalGroundingArgs {
    /// The BEIR folder.
    pub dir: PathBuf,
    /// Which qrels/<split>.tsv to use.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Only the first N judged queries (in qrels order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keep the indexed corpus in this database and reuse it on later runs.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 96)]
    pub max_tokens: usize,
    /// Most tokens of sources.
    #[arg(long, default_value_t = 768)]
    pub budget: usize,
    /// The language model.
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost eval beir`.
#[derive(Debug, Args)]
pub struct EvalBeirArgs {
    /// The BEIR folder.
    pub dir: PathBuf,
    /// Which qrels/<split>.tsv to score.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// hybrid, vector or text.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// Keep the indexed corpus in this database and reuse it on later runs (default: a
    /// temporary database, removed afterwards).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Tokens per chunk.
    #[arg(long, default_value_t = outpost_core::ChunkParams::default().max_tokens)]
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    #[arg(long, default_value_t = outpost_core::ChunkParams::default().overlap)]
    pub chunk_overlap: usize,
    /// Reciprocal rank fusion constant (hybrid).
    #[arg(long, default_value_t = outpost_core::RrfParams::default().k)]
    pub rrf_k: f64,
    /// Weight of the vector ranking (hybrid).
    #[arg(long, default_value_t = outpost_core::RrfParams::default().vector_weight)]
    pub vector_weight: f64,
    /// Weight of the full-text ranking (hybrid).
    #[arg(long, default_value_t = outpost_core::RrfParams::default().text_weight)]
    pub text_weight: f64,
    /// Chunks fetched per query (and per ranking before fusion); at least 100.
    #[arg(long, default_value_t = 300)]
    pub candidates: usize,
    /// Print `{"ndcg@10":..,"recall@100":..,"mrr@10":..}` plus the run's settings.
    #[arg(long)]
    pub json: bool,
}

/// `outpost bench http`.
#[derive(Debug, Args)]
pub struct BenchHttpArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Documents ingested before the load starts.
    #[arg(long, default_value_t = 500)]
    pub docs: usize,
    /// What the clients send, as weights: `search`, `context`, `ingest`, `sync` (which needs
    /// --central), e.g. `search=10,context=4,ingest=5,sync=1`.
    #[arg(long, default_value = "search=9,ingest=1")]
    pub mix: String,
    /// Ingests edit one of this many documents (by source) instead of adding new ones, so the
    /// data stays the same size however long the load runs (0: always new documents).
    #[arg(long, default_value_t = 0)]
    pub edit_pool: usize,
    /// A central Postgres (direct URL) the agent syncs with in the background, every 2 s.
    #[arg(long, hide_env_values = true)]
    pub central: Option<String>,
    /// The user the agent syncs as (default: a fresh id).
    #[arg(long)]
    pub central_user: Option<String>,
    /// Seconds of warm-up before resident memory is taken as the baseline.
    #[arg(long, default_value_t = 10)]
    pub warm_up: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost bench sync`.
#[derive(Debug, Args)]
pub struct BenchSyncArgs {
    /// Superuser URL of a SCRATCH Postgres database with the central schema installed: the bench
    /// empties the outpost tables before each run, and uses a scratch table for COPY.
    #[arg(long, env = "OUTPOST_BENCH_CENTRAL_URL", hide_env_values = true)]
    pub central: String,
    /// Chunk rows to push and pull (10 chunks per document, 384-d synthetic vectors).
    #[arg(long, default_value_t = 10_000)]
    pub chunks: usize,
    /// Push batch sizes to try, comma-separated (documents per call).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub batch: Vec<usize>,
    /// Transports: pg, rest (through the loopback test shim, not a real PostgREST), or both.
    #[arg(long, default_value = "both", value_parser = ["pg", "rest", "both"])]
    pub transport: String,
    /// Round-trip times to measure at, in ms, comma-separated: above 0, the device reaches the
    /// central store (or the REST stand-in) through the loopback fault proxy with half of it
    /// added each way.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub rtt_ms: Vec<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost bench llm`.
#[derive(Debug, Args)]
pub struct BenchLlmArgs {
    /// A file holding the prompt exactly as the model reads it (chat template applied).
    #[arg(long)]
    pub prompt_file: PathBuf,
    /// Tokens generated per run (end-of-turn ignored, so every run generates this many).
    #[arg(long, default_value_t = 128)]
    pub tokens: usize,
    /// Measured runs (after one warm-up); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Threads (default: the core count).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The chat model.
    #[arg(long, env = "OUTPOST_LLM_MODEL")]
    pub llm_model: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which language model answers: a local GGUF, or an OpenAI-compatible server.
#[derive(Debug, Args, Clone, Default)]
pub struct LlmArgs {
    /// The chat model: a GGUF file (or a folder holding one) of a llama-family model with a chat
    /// template [default: the fetched SmolLM2-135M-Instruct].
    #[arg(long, env = "OUTPOST_LLM_MODEL")]
    pub llm_model: Option<PathBuf>,
    /// Generate with an OpenAI-compatible server instead (llama.cpp server, Ollama, a cloud
    /// API), e.g. http://127.0.0.1:8080/v1; retrieval stays local.
    #[arg(long, env = "OUTPOST_LLM_URL")]
    pub llm_url: Option<String>,
    /// The model name to ask that server for.
    #[arg(long, env = "OUTPOST_LLM_NAME", requires = "llm_url")]
    pub llm_name: Option<String>,
    /// Tokens the model attends to, prompt and answer together [default: the model's own,
    /// at most 4096].
    #[arg(long, env = "OUTPOST_LLM_WINDOW")]
    pub llm_window: Option<usize>,
}

/// `outpost ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question.
    #[arg(required = true)]
    pub question: Vec<String>,
    /// hybrid, vector or text.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// Filters, as for search.
    #[arg(long)]
    pub filter: Vec<String>,
    /// Chunks retrieved before merging and fitting.
    #[arg(long, default_value_t = 12)]
    pub candidates: usize,
    /// Most tokens of sources (shrunk to fit the model's window).
    #[arg(long, default_value_t = 1536)]
    pub budget: usize,
    /// Keep the question and answer in this conversation, and use its memory.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Most tokens in the answer.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature (0: greedy, the default).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling probability.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sampler seed.
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// A text that ends the answer (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Penalty on tokens the answer repeats (1: off).
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f64,
    /// Cosine similarity the best chunk must reach to count as relevant (0: always answer).
    #[arg(long, default_value_t = 0.25)]
    pub min_relevance: f64,
    /// The language model.
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Print JSON: answer, citations and timings.
    #[arg(long)]
    pub json: bool,
}

/// `outpost bench embed`.
#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// A file of texts, one per line (empty lines skipped).
    #[arg(long)]
    pub input: PathBuf,
    /// Texts per embedding call, as `ingest --batch` (texts are sorted by length first, as
    /// sentence-transformers does; on the CPU the model packs a call into forward passes of up
    /// to 8,192 tokens, on CUDA into padded passes of 32 texts).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Only the first N texts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Single-query latency samples.
    #[arg(long, default_value_t = 50)]
    pub queries: usize,
    /// Write the vectors, in input order, to this NumPy `.npy` file (f32, texts × dims): for
    /// comparing them with another encoder's.
    #[arg(long, value_name = "FILE")]
    pub save_vectors: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost bench search`.
#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    /// Vectors in the index.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 384)]
    pub dims: usize,
    /// Results per query.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Queries per mode.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the index in this file (default: a temporary file, removed afterwards). Synthetic
    /// data replaces what the file holds (unless --reuse); with --beir a file that holds the
    /// corpus is reused.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// With --index and synthetic data: search the database an earlier run with the same --n,
    /// --dims and --seed left there instead of building it again. Its store and index-build
    /// times are then reported as 0; the reopen times are measured.
    #[arg(long, requires = "index")]
    pub reuse: bool,
    /// Real embeddings instead of synthetic vectors: this BEIR folder's corpus chunked and
    /// embedded with the model, and its first --queries queries (by id) embedded as queries.
    /// No filtered rows (the corpus has no bucket metadata).
    #[arg(long)]
    pub beir: Option<PathBuf>,
    /// Vector-search breadths to measure besides the default (HNSW candidates kept),
    /// comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,24,32,64,96,128")]
    pub expansion: Vec<usize>,
    /// Only the vector rows: skip full text, hybrid and the sqlite-vec scan (minutes at 1M).
    #[arg(long)]
    pub vector_only: bool,
    /// Also write the vectors, queries and exact top-k to this folder (little-endian f32 / u32
    /// files plus meta.json) for `bench/peers.py`.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `import` does with vectors that come with the input.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Reembed {
    /// Embed the text of records whose vector is of another model or size; keep the others.
    Mismatched,
    /// Ignore every vector in the input and embed all texts.
    All,
}

/// Options every import takes.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Without it, vectors of the collection's model and size are stored as they are and a
    /// record with any other vector fails.
    #[arg(long, value_enum)]
    pub reembed: Option<Reembed>,
    /// Tokens per chunk, for texts embedded here.
    #[arg(long, default_value_t = outpost_core::ChunkParams::default().max_tokens)]
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    #[arg(long, default_value_t = outpost_core::ChunkParams::default().overlap)]
    pub chunk_overlap: usize,
    /// Chunks per embedding call.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outpost import`. Each record becomes a document whose source is its id; running an import
/// again (or after an interruption) adds nothing twice.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// One record per line: `id`, `title`, `text`, `metadata`, optionally `embedding` with
    /// `model` (and the `chunks` of Outpost's own export).
    Jsonl {
        /// The JSONL file.
        file: PathBuf,
        /// Collection to import into [default: the one each record names, else "default"].
        #[arg(long)]
        collection: Option<String>,
        #[command(flatten)]
        args: ImportArgs,
    },
    /// Every collection of a Chroma persistent directory (`chroma.sqlite3` and its segment
    /// folders, as chromadb 1.x writes them), or the named ones, into collections of the same
    /// names; the documents are embedded with Outpost's model.
    Chroma {
        /// The Chroma directory (the client's `path`).
        path: PathBuf,
        /// Only this Chroma collection (repeatable).
        #[arg(long)]
        collection: Vec<String>,
        /// Put every record in this Outpost collection instead.
        #[arg(long)]
        into: Option<String>,
        /// Store Chroma's own vectors instead of embedding the documents: say so only when they
        /// were made by the model Outpost is configured with (Chroma's default embedding
        /// function is all-MiniLM-L6-v2, Outpost's default model).
        #[arg(long)]
        keep_vectors: bool,
        #[command(flatten)]
        args: ImportArgs,
    },
    /// Rows of a table in another SQLite database (opened read-only); a row becomes the
    /// document `TABLE/ID`.
    Sqlite {
        /// The SQLite database file (not `db`: that name is the global `--db`).
        #[arg(value_name = "DB")]
        source_db: PathBuf,
        /// The table (or view).
        #[arg(long)]
        table: String,
        /// The column that identifies a row.
        #[arg(long)]
        id_col: String,
        /// The column holding the text.
        #[arg(long)]
        text_col: String,
        /// A column holding the title [default: TABLE/ID].
        #[arg(long)]
        title_col: Option<String>,
        /// Columns copied into the metadata, comma-separated.
        #[arg(long, value_delimiter = ',')]
        meta_cols: Vec<String>,
        /// Collection to import into.
        #[arg(long, default_value = outpost_core::DEFAULT_COLLECTION)]
        collection: String,
        #[command(flatten)]
        args: ImportArgs,
    },
}

/// `outpost export`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// One document per line, with its chunks (and their vectors with --with-embeddings).
    Jsonl {
        /// The file to write ("-" for standard output).
        file: PathBuf,
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Include every chunk's vector, so that an import needs no model work.
        #[arg(long)]
        with_embeddings: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}
