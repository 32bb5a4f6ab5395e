import { describe, expect, it } from "vitest";
import { createAsyncIterable, encodeEnvelope, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { endStreamFlag } from "@connectrpc/connect/protocol-connect";
import { NDJSON_CONTENT_TYPE, toLines } from "../../services/api/json-watch.js";

const text = (s: string) => new TextEncoder().encode(s);
const message = (json: unknown) => encodeEnvelope(0, text(JSON.stringify(json)));
const end = (json: unknown) => encodeEnvelope(endStreamFlag, text(JSON.stringify(json)));

/** A Connect streaming answer as its handler returns it: status 200, one chunk per envelope. */
function connectAnswer(...frames: Uint8Array[]): UniversalServerResponse {
  return { status: 200, header: new Headers({ "content-type": "application/connect+json" }), body: createAsyncIterable(frames) };
}

async function read(answer: UniversalServerResponse): Promise<string> {
  let out = "";
  for await (const chunk of answer.body as AsyncIterable<Uint8Array>) out += new TextDecoder().decode(chunk);
  return out;
}

describe("toLines (Connect stream → NDJSON)", () => {
  it("writes one {result} line per message and nothing for a clean end of stream", async () => {
    const answer = await toLines(connectAnswer(message({ event: "WATCH_EVENT_SNAPSHOT" }), message({ event: "WATCH_EVENT_COMPLETED" }), end({ metadata: {} })));
    expect(answer.status).toBe(200);
    expect(answer.header?.get("content-type")).toBe(NDJSON_CONTENT_TYPE);
    expect(await read(answer)).toBe('{"result":{"event":"WATCH_EVENT_SNAPSHOT"}}\n{"result":{"event":"WATCH_EVENT_COMPLETED"}}\n');
  });

  it("ends with an {error} line when the stream fails after it started", async () => {
    const answer = await toLines(connectAnswer(message({ n: 1 }), end({ error: { code: "internal", message: "internal error" } })));
    expect(answer.status).toBe(200);
    expect((await read(answer)).split("\n")).toEqual(['{"result":{"n":1}}', '{"error":{"code":"internal","message":"internal error"}}', ""]);
  });

  it("answers an error before the first message as a unary Connect error with its HTTP status", async () => {
    const answer = await toLines(connectAnswer(end({ error: { code: "not_found", message: "job x not found" }, metadata: { "x-trace": ["t1"] } })));
    expect(answer.status).toBe(404);
    expect(answer.header?.get("content-type")).toBe("application/json");
    expect(answer.header?.get("x-trace")).toBe("t1");
    const body = await read(answer);
    expect(answer.header?.get("content-length")).toBe(String(body.length));
    expect(JSON.parse(body)).toEqual({ code: "not_found", message: "job x not found" });
  });

  it("passes on an answer that is not a stream (e.g. 415) as it is", async () => {
    const unsupported: UniversalServerResponse = { status: 415, header: new Headers() };
    expect(await toLines(unsupported)).toBe(unsupported);
  });
});
