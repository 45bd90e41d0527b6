// A minimal Outpost app in Swift: open a database, index a note, search it, build a context,
// and catch a documented error. Compile it with the generated bindings (outpost_ffi.swift and
// the outpost_ffiFFI module) and link liboutpost_ffi; cross/scripts/check-swift.sh does so.
import Foundation

let dir = NSTemporaryDirectory() + "outpost-example-" + UUID().uuidString
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)

// The model is the fetched default under OUTPOST_HOME; an app passes its bundled copy:
// EngineConfig(modelDir: Bundle.main.path(forResource: "model", ofType: nil)).
let engine = try Engine.open(path: dir + "/notes.db", config: EngineConfig())
let note = try engine.ingestText(
    text: "Tides are caused by the gravitational pull of the moon and the sun.",
    title: "Tides", source: "notes/tides", metadataJson: #"{"topic": "ocean"}"#)
print("indexed \(note.source): \(note.outcome), \(note.chunks) chunk(s)")

for hit in try engine.search(query: "what causes tides", k: 3, modeName: "hybrid",
                             filterList: ["topic=ocean"]) {
    print("hit: \(hit.title) (\(hit.score))")
}
let context = try engine.context(query: "why are there tides", budget: 300, conversationId: nil)
print("context: \(context.tokens) tokens, \(context.citations.count) citation(s)")

do {
    _ = try engine.searchVector(vector: [0.1, 0.2, 0.3], k: 5)
} catch OutpostError.InvalidInput(let why) {
    print("refused: \(why)")
}
try FileManager.default.removeItem(atPath: dir)
