// The MCP TypeScript client 2.x (@modelcontextprotocol/client) in a 2025-era session, calling
// generate_image once: if the call's stream breaks, the client itself reconnects with
// Last-Event-ID. Used by tests/test_resume.py, which cuts the connection mid-call.
//
//   node tests/js/resume_client.mjs URL --prompt "a lighthouse [fake:seconds=3]"
//
// Prints "protocol <version>", "progress <p>" lines, "error <message>" for each transport error
// (a cut stream shows here), and "result <state>" with the call's structured state. HTTP sends
// AIPG_MCP_AUTH_TOKEN as a bearer token.

import { parseArgs } from "node:util";

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: { prompt: { type: "string", default: "a lighthouse" } },
});
const token = process.env.AIPG_MCP_AUTH_TOKEN;
const transport = new StreamableHTTPClientTransport(new URL(positionals[0]), {
  requestInit: { headers: token ? { Authorization: `Bearer ${token}` } : {} },
  reconnectionOptions: {
    initialReconnectionDelay: 200,
    maxReconnectionDelay: 2000,
    reconnectionDelayGrowFactor: 1.5,
    maxRetries: 5,
  },
});
const client = new Client(
  { name: "aipg-resume-test", version: "1.0.0" },
  { versionNegotiation: { mode: "legacy" } },
);
client.onerror = (error) => console.log(`error ${error.message}`);
await client.connect(transport);
console.log(`protocol ${client.getNegotiatedProtocolVersion()}`);

const done = await client.callTool(
  { name: "generate_image", arguments: { prompt: options.prompt, width: 256, height: 256 } },
  {
    onprogress: ({ progress }) => console.log(`progress ${progress}`),
    resetTimeoutOnProgress: true,
    timeout: 60_000,
  },
);
console.log(`result ${done.isError ? "error" : done.structuredContent?.state}`);
await client.close();
