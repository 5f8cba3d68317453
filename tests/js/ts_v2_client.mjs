// The MCP TypeScript client 2.x (@modelcontextprotocol/client) against aipg-mcp, in the protocol
// era it is told: generate an image with progress, then abort a call that never finishes.
// Used by tests/test_real_clients.py; examples/ts_client.mjs is the 1.x SDK version to copy.
//
//   node tests/js/ts_v2_client.mjs stdio|URL --era legacy|auto|modern --command aipg-mcp \
//       --abort-after 1500
//
// Prints "protocol <version>", "progress <p>/<total>: <message>" lines, the first result's
// text, and "aborted after <ms> ms". AIPG_* variables are forwarded to a stdio server; HTTP
// sends AIPG_MCP_AUTH_TOKEN as a bearer token.

import { parseArgs } from "node:util";

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/client/stdio";

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    era: { type: "string", default: "modern" },
    command: { type: "string", default: "aipg-mcp" },
    "abort-after": { type: "string", default: "1500" },
  },
});
const target = positionals[0] ?? "stdio";
const mode = options.era === "modern" ? { pin: "2026-07-28" } : options.era;

let transport;
if (target === "stdio") {
  const env = getDefaultEnvironment();
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("AIPG_") && value !== undefined) env[key] = value;
  }
  transport = new StdioClientTransport({ command: options.command, env, stderr: "inherit" });
} else {
  const token = process.env.AIPG_MCP_AUTH_TOKEN;
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  transport = new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
}

const client = new Client(
  { name: "aipg-ts-v2-test", version: "1.0.0" },
  { versionNegotiation: { mode } },
);
await client.connect(transport);
console.log(`protocol ${client.getNegotiatedProtocolVersion()}`);

const onprogress = ({ progress, total, message }) =>
  console.log(`progress ${progress}/${total ?? "?"}: ${message ?? ""}`);

try {
  const { tools } = await client.listTools();
  console.log(`tools: ${tools.map((tool) => tool.name).join(", ")}`);

  const done = await client.callTool(
    { name: "generate_image", arguments: { prompt: `a paper crane (${options.era})`, width: 256, height: 256 } },
    { onprogress, resetTimeoutOnProgress: true, timeout: 60_000 },
  );
  for (const block of done.content) {
    if (block.type === "text") console.log(block.text);
  }
  if (done.isError) {
    process.exitCode = 1;
  } else {
    const abortAfter = Number(options["abort-after"]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), abortAfter);
    try {
      await client.callTool(
        { name: "generate_image", arguments: { prompt: `a crane (${options.era}) [fake:never]`, width: 256, height: 256 } },
        { onprogress, resetTimeoutOnProgress: true, timeout: 60_000, signal: controller.signal },
      );
      console.log("the never-ending call returned");
      process.exitCode = 1;
    } catch (error) {
      if (!controller.signal.aborted) throw error;
      // One round trip lets the cancellation reach the server before closing (the 2026 era
      // has no ping; over HTTP it cancels by closing the request's stream).
      await client.listTools();
      console.log(`aborted after ${abortAfter} ms`);
    }
  }
} finally {
  await client.close();
}
