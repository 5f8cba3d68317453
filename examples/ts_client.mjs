#!/usr/bin/env node
// Drive aipg-mcp with the official MCP TypeScript SDK (@modelcontextprotocol/sdk 1.x, the
// client most MCP hosts embed): connect, list the tools, generate an image while printing
// progress notifications, and optionally abort a call (which cancels the grid job).
//
//   npm install @modelcontextprotocol/sdk          # or: npm ci --prefix examples
//   node examples/ts_client.mjs stdio              # spawns `aipg-mcp` (stdio)
//   node examples/ts_client.mjs http://127.0.0.1:8000/mcp   # after `aipg-mcp --transport http`
//
// Options:
//   --prompt TEXT       what to draw (default: a lighthouse at dusk)
//   --size PX           width and height, a multiple of 64 (default 512)
//   --abort-after MS    abort the generate_image call MS milliseconds after its first progress
//                       notification, when the job is on the grid (AbortController); the SDK
//                       sends notifications/cancelled and the server cancels the job
//   --command CMD       stdio: the server command (default: aipg-mcp, or $AIPG_MCP_COMMAND)
//   --token TOKEN       HTTP: bearer token (default: $AIPG_MCP_AUTH_TOKEN)
//
// Over stdio the SDK passes the server only a minimal environment (PATH, HOME, ...), so this
// script forwards every AIPG_* variable: AIPG_API_KEY, AIPG_BASE_URL and so on. To try it
// offline, serve the built-in fake grid in another shell and point the server at it:
//
//   aipg-mcp fake-grid --port 7001
//   AIPG_BASE_URL=http://127.0.0.1:7001/api node examples/ts_client.mjs stdio
//   AIPG_BASE_URL=http://127.0.0.1:7001/api node examples/ts_client.mjs stdio \
//       --prompt "a lighthouse [fake:never]" --abort-after 2000   # a job that never finishes

import { parseArgs } from "node:util";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prompt: { type: "string", default: "a lighthouse at dusk, oil painting" },
    size: { type: "string", default: "512" },
    "abort-after": { type: "string" },
    command: { type: "string", default: process.env.AIPG_MCP_COMMAND || "aipg-mcp" },
    token: { type: "string", default: process.env.AIPG_MCP_AUTH_TOKEN || "" },
  },
});
const target = positionals[0] ?? "stdio";

function transportFor(target) {
  if (target === "stdio") {
    const env = getDefaultEnvironment();
    for (const [key, value] of Object.entries(process.env)) {
      if (key.startsWith("AIPG_") && key !== "AIPG_MCP_COMMAND" && value !== undefined) {
        env[key] = value;
      }
    }
    // The server logs to stderr; show it beside our output.
    return new StdioClientTransport({ command: options.command, env, stderr: "inherit" });
  }
  const headers = options.token ? { Authorization: `Bearer ${options.token}` } : {};
  return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
}

const client = new Client({ name: "aipg-ts-example", version: "1.0.0" });
const transport = transportFor(target);
await client.connect(transport);
const server = client.getServerVersion();
console.log(`connected to ${server?.name} ${server?.version} over ${target === "stdio" ? "stdio" : "HTTP"}`);

try {
  const { tools } = await client.listTools();
  console.log(`tools: ${tools.map((tool) => tool.name).join(", ")}`);

  const size = Number(options.size);
  const controller = new AbortController();
  const abortAfter = options["abort-after"];
  let abortTimer;

  let result;
  try {
    result = await client.callTool(
      { name: "generate_image", arguments: { prompt: options.prompt, width: size, height: size } },
      undefined,
      {
        // Generation reports progress every few seconds while it waits on the grid. Hosts
        // time out a call that stays silent; progress resets that timeout here.
        onprogress: ({ progress, total, message }) => {
          console.log(`progress ${progress}/${total ?? "?"}: ${message ?? ""}`);
          if (abortAfter !== undefined && abortTimer === undefined) {
            abortTimer = setTimeout(() => controller.abort(), Number(abortAfter));
          }
        },
        resetTimeoutOnProgress: true,
        timeout: 60_000,
        maxTotalTimeout: 15 * 60_000,
        signal: controller.signal,
      },
    );
  } catch (error) {
    if (!controller.signal.aborted) throw error;
    // The SDK sends notifications/cancelled without waiting for it to go out, and closing the
    // client right away can drop it (over HTTP, close() aborts requests in flight). One round
    // trip first lets the server see the cancellation; a host that stays connected need not.
    await client.ping();
    console.log(`aborted generate_image after ${abortAfter} ms: the server cancels its grid job`);
  }

  if (result) {
    printResult(result);
    const report = result.structuredContent ?? {};
    if (!result.isError && (report.state === "queued" || report.state === "processing")) {
      // Not finished within the tool's wait: the job keeps running; wait on it again.
      const status = await client.callTool(
        { name: "get_status", arguments: { job_id: report.job_id, wait_seconds: 40 } },
        undefined,
        { timeout: 60_000, resetTimeoutOnProgress: true },
      );
      printResult(status);
    }
    if (result.isError) process.exitCode = 1;
  }
} finally {
  await client.close();
}

function printResult(result) {
  for (const block of result.content ?? []) {
    if (block.type === "text") console.log(block.text);
    else if (block.type === "image") console.log(`[inline preview: ${block.mimeType}, ${block.data.length} base64 chars]`);
  }
  if (result.isError) console.log("(the tool reported an error)");
}
